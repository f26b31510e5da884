"""metrics.jsonl and TensorBoard: what a training run writes as it goes (rank 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLogger:
    """metrics.jsonl (one object per line, with a "split" key) and TensorBoard scalars. Rank 0 only."""

    def __init__(self, out: Path, tensorboard: bool):
        self.file = (out / "metrics.jsonl").open("a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def log(self, split: str, rec: dict) -> None:
        self.file.write(json.dumps({"split": split, **rec}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, rec["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
