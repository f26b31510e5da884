"""Helpers for the serve and RL tests: a tiny reward-model checkpoint, images, reference samples and a real uvicorn
server on 127.0.0.1 (a free port). Not a test module."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from pathlib import Path

from PIL import Image

PROMPT = "What colour is the shape?"
STATS = {"mean": 0.25, "std": 2.0, "n": 8, "split": "test"}  # non-trivial so `normalized` differs from `raw`


def make_reward_model(root: Path, arch: str = "qwen2_5_vl", seed: int = 0, stats: dict = STATS) -> Path:
    """A tiny reward model (random head) saved as a basereward checkpoint with calibration stats."""
    from basereward.model.processor import load_processor
    from basereward.model.reward_model import RewardModel
    from basereward.tiny import init_tiny

    tiny = init_tiny(root / "tiny", arch=arch, seed=seed)
    model = RewardModel.from_backbone(tiny, seed=1 + seed)
    model.reward_stats = dict(stats)
    return model.save(root / "rm", load_processor(tiny, arch))


def png(colour="red", size=(112, 112)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def ref_sample(colour="red", response="The shape is red.", image=True):
    """The reference Sample in the unified convention."""
    from basereward.types import ImageRef, Sample

    if not image:
        return Sample([{"role": "user", "content": "What is 2 + 2?"}], [response])
    return Sample(
        [{"role": "user", "content": f"<image>\n{PROMPT}"}], [response], [ImageRef(data=png(colour))]
    )


def same_encoding(a, b) -> bool:
    """Two EncodedSamples feed the model identical inputs."""
    import torch

    pa, pb = a.prompt, b.prompt
    if (pa.input_ids, pa.mm_token_type_ids, a.responses) != (pb.input_ids, pb.mm_token_type_ids, b.responses):
        return False
    if (pa.pixel_values is None) != (pb.pixel_values is None):
        return False
    return pa.pixel_values is None or (
        torch.equal(pa.pixel_values, pb.pixel_values) and torch.equal(pa.image_grid_thw, pb.image_grid_thw)
    )


def decoded_query(scorer, sample, left_pads: int = 2) -> str:
    """What OpenRLHF sends for a sample: the token ids decoded with special tokens, image pads expanded."""
    enc = scorer.encode(sample)
    tok = scorer.encoder.tokenizer
    ids = [tok.pad_token_id] * left_pads + enc.prompt.input_ids + enc.responses[0]
    return tok.decode(ids, skip_special_tokens=False)


def service(model_dir, **kw):
    from basereward.scoring import load_scorer
    from basereward.serve.service import RewardService

    return RewardService(load_scorer(model_dir, device="cpu", progress=False), model_dir=model_dir, **kw)


@contextlib.contextmanager
def live_server(app):
    """Run `app` under uvicorn on 127.0.0.1 with a free port (port 0) in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value in a Prometheus text exposition (0.0 when the series does not exist yet), parsed with
    prometheus_client's own parser so label order and number formatting do not matter."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0
