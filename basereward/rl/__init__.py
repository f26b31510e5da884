"""BaseReward as the reward in RL: the hybrid reward and the adapters each framework calls (docs/server-api.md).

`rewards.py` (hybrid reward, answer matchers), `samples.py` (rollout records -> `Sample`), `client.py` (in-process
or HTTP scorer), `trl.py` (TRL GRPO reward function), `verl.py` (verl `compute_score`), `openrlhf.py` (OpenRLHF
remote reward-function file), `grpo.py` (the `basereward grpo` demo: TRL GRPOTrainer on a tiny Qwen2.5-VL).
"""
