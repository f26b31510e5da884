"""The reward model: backbone (any supported HF model, LM head never computed) + MLP head."""
