"""The CUDA side of scripts/gpu_bench.py: preflight, model building, timed variants, the summary. Needs a GPU.

Every variant runs inside try/except (an error is recorded and the next variant runs); a deadline (`--budget-s`)
is enforced both by checks between steps (timed steps are cut to what still fits, at least 3) and by SIGALRM,
which raises `OutOfBudget` wherever the run is, so the summary is always printed.
"""

from __future__ import annotations

import statistics
import time
import traceback

import torch

from basereward.bench import gpu_setup
from basereward.collate import collate_padded, collate_shared
from basereward.losses import bradley_terry
from basereward.model import gpu_attention as ga

RESERVE_S = 15.0  # kept back for the summary
# where the run happens: "cuda", or "cpu" for scripts/gpu_bench.py --smoke-cpu (toy width, fp32, reference kernels)
RUN = {"device": "cuda", "dtype": torch.bfloat16, "smoke": False}


def use_cpu_smoke() -> None:
    RUN.update(device="cpu", dtype=torch.float32, smoke=True)


class Timer:
    """CUDA events on the GPU, perf_counter on the CPU."""

    def __enter__(self):
        if RUN["device"] == "cuda":
            self.s, self.e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.s.record()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if RUN["device"] == "cuda":
            self.e.record()
            self.e.synchronize()
            self.seconds = self.s.elapsed_time(self.e) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


class OutOfBudget(Exception):
    pass


class Clock:
    def __init__(self, budget_s: float, t0: float):
        self.deadline = t0 + budget_s

    def left(self) -> float:
        return self.deadline - time.time()

    def check(self, need: float = 0.0) -> None:
        if self.left() - need < RESERVE_S:
            raise OutOfBudget(f"{self.left():.0f} s left")


# ---- preflight


def mamf(seconds: float) -> float:
    """Best bf16 8192^3 matmul TFLOP/s over `seconds` (batches of 10 products, CUDA events)."""
    n = 8192 if RUN["device"] == "cuda" else 512
    a, b = (torch.randn(n, n, device=RUN["device"], dtype=RUN["dtype"]) for _ in range(2))
    for _ in range(3):
        a @ b
    best, end = 0.0, time.time() + seconds
    while time.time() < end:
        with Timer() as t:
            for _ in range(10):
                a @ b
        best = max(best, 2 * n**3 * 10 / t.seconds / 1e12)
    return best


def preflight(args, log) -> dict:
    import transformers

    dev = torch.cuda.get_device_name(0) if RUN["device"] == "cuda" else "cpu (smoke test, not a measurement)"
    info = {
        "device": dev,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }
    try:
        import flash_attn

        info["flash_attn"] = flash_attn.__version__
    except Exception as e:  # ImportError or a broken build: say so, use another path
        info["flash_attn"] = f"not importable ({type(e).__name__})"
    info["torch_varlen"] = ga.available("torch_varlen", RUN["device"])
    info["peak_tflops"] = args.peak_tflops
    log(f"preflight: {info}")
    if not transformers.__version__.startswith("5.24"):  # the version the CPU stack pins and tests
        log(
            f"WARNING: transformers {transformers.__version__}, not 5.24: mRoPE / attention plumbing may differ"
        )
    info["mamf_tflops"] = mamf(args.mamf_seconds)
    log(f"MAMF (bf16 8192^3): {info['mamf_tflops']:.0f} TFLOP/s")
    ga.register()
    dev, dt = RUN["device"], RUN["dtype"]
    if RUN["smoke"]:  # exercise the registered functions with the exact reference kernels
        info["attention"] = {"text": "reference", "vision": "reference"}
        return info
    text = "dense" if args.attn == "dense" else ga.choose_backend(dev, args.attn, dt, log=log)
    vision = ga.choose_backend(dev, "auto", dt, causal=False, log=log)
    # no fast kernel: "reference" would be a Python loop; the stock paths do the same work better
    info["attention"] = {
        "text": "dense" if text == "reference" else text,
        "vision": "none" if vision == "reference" else vision,
    }
    if info["attention"]["text"] == "dense":
        log("no segment-aware kernel passed: shared variants use SDPA with the dense 4-D mask")
    return info


# ---- model and steps


def build_model(layers: int, v_depth: int):
    from transformers import Qwen2_5_VLModel

    from basereward.model.head import RewardHead
    from basereward.model.reward_model import RewardModel

    cfg, dims = gpu_setup.qwen7b_config(layers, v_depth, smoke=RUN["smoke"])
    torch.manual_seed(0)
    with torch.device(RUN["device"]):
        try:
            backbone = Qwen2_5_VLModel._from_config(cfg, dtype=RUN["dtype"])
        except TypeError:  # older transformers spell it torch_dtype
            backbone = Qwen2_5_VLModel._from_config(cfg, torch_dtype=RUN["dtype"])
        head = RewardHead(dims.hidden)
        with torch.no_grad():
            for p in head.parameters():
                p.normal_(0, (p.shape[-1] if p.ndim > 1 else p.shape[0]) ** -0.5)
    backbone.config.use_cache = False
    return RewardModel(backbone, head, "qwen2_5_vl"), dims


def set_attention(model, shared: bool, backends: dict) -> str:
    text = backends["text"] if shared and backends["text"] != "dense" else None
    vision = backends["vision"] if backends["vision"] != "none" else None
    ga.apply(model, text, vision)
    return (text or ("sdpa-dense-mask" if shared else "sdpa")) + f" / vision {vision or 'sdpa-chunks'}"


def all_positions(model, batch) -> torch.Tensor:
    h = model.backbone(**batch.model_inputs(), use_cache=False).last_hidden_state
    with torch.autocast(RUN["device"], dtype=torch.bfloat16, enabled=RUN["dtype"] != torch.float32):
        return model.head(h)[batch.score_rows, batch.score_cols].float()


def rewards(variant: str, model, b, lm_head=None) -> torch.Tensor:
    """(N,) rewards of one batch computed the variant's way; training variants: chosen first, then rejected."""
    if variant == "B0":
        return torch.cat([all_positions(model, b[0]), all_positions(model, b[1])])  # chosen then rejected
    if variant == "B1":
        r = all_positions(model, b)
        return torch.cat([r[0::2], r[1::2]])
    if variant in ("T4", "T5"):
        r = model(b)
        return torch.cat([r[0::2], r[1::2]])
    if variant == "S0":
        h = model.backbone(**b.model_inputs(), use_cache=False).last_hidden_state
        lm_head(h)  # what a CausalLM + value-head RM computes and throws away
        with torch.autocast(RUN["device"], dtype=torch.bfloat16, enabled=RUN["dtype"] != torch.float32):
            return model.head(h)[b.score_rows, b.score_cols].float()
    return model(b)


def batches_for(variant: str, samples: list):
    pad = gpu_setup.IDS["pad"]
    if variant == "B0":
        from basereward.bench.data import split_pairs

        chosen, rejected = split_pairs(samples)
        return collate_padded(chosen, pad).to(RUN["device"]), collate_padded(rejected, pad).to(RUN["device"])
    if variant in ("B1", "S0", "S1"):
        return collate_padded(samples, pad).to(RUN["device"])
    return collate_shared(samples, pad).to(RUN["device"])


def timed(fn, args, clock: Clock) -> list[float]:
    """CUDA-event seconds of each timed step; timed steps are cut to what fits the budget (at least 3)."""
    times, steps, i = [], args.steps, 0
    while i < args.warmup + steps:
        clock.check()
        with Timer() as t:
            fn()
        dt = t.seconds
        if i >= args.warmup:
            times.append(dt)
        elif i == args.warmup - 1:  # after warm-up: how many timed steps still fit?
            fit = int((clock.left() - RESERVE_S - 5) / max(dt, 1e-3))
            steps = max(3, min(steps, fit))
        i += 1
    return times


# ---- phases


def phase(kind: str, args, data, pred: dict, info: dict, clock: Clock, log) -> dict:
    """Build the phase's model, compare every variant's rewards with the first variant's (before any update), then
    time each variant. Returns {variant: result}; a variant's failure is recorded in its result."""
    order = ("B0", "T4", "B1", "T5") if kind == "train" else ("S0", "S3", "S1")
    names = [v for v in order if v in args.variants]
    if not names:
        return {}
    clock.check(30)
    train = kind == "train"
    depth = (
        (args.train_layers, args.train_vit_layers) if train else (args.score_layers, args.score_vit_layers)
    )
    t_build = time.time()
    model, dims = build_model(*depth)
    log(f"{kind}: built the {depth[0]}-layer / ViT {depth[1]} model in {time.time() - t_build:.0f} s")
    lm_head = None
    if not train:
        model.eval()
        lm_head = torch.nn.Linear(
            dims.hidden, dims.vocab, bias=False, device=RUN["device"], dtype=RUN["dtype"]
        )
    results = {v: {"attention": None} for v in names}
    ref = None
    for v in names:  # correctness first: the same weights for every variant
        try:
            clock.check(10)
            results[v]["attention"] = set_attention(model, v in ("T4", "T5", "S3"), info["attention"])
            with torch.no_grad():
                r = rewards(v, model, batches_for(v, data[kind]), lm_head).float()
            ref = r if ref is None else ref
            results[v]["reward_rel_diff"] = float((r - ref).abs().max() / ref.abs().max().clamp_min(1e-6))
        except OutOfBudget:
            raise
        except Exception as e:  # fail soft: the timing below will say what breaks
            results[v]["reward_check_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-7) if train else None
    items = len(data[kind]) if train else args.group
    for v in names:
        res = results[v]
        try:
            clock.check(10)
            set_attention(model, v in ("T4", "T5", "S3"), info["attention"])
            model.backbone.visual.requires_grad_(v != "T5")
            if RUN["device"] == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = timed(make_step(v, model, batches_for(v, data[kind]), optimizer, lm_head), args, clock)
            res.update(summarize(times, pred[v], items, info))
            if RUN["device"] == "cuda":
                res["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        except OutOfBudget as e:
            res["error"] = f"out of budget: {e}"
            log(f"{kind} {v}: stopped, {res['error']}")
            break
        except Exception as e:  # fail soft: record, free memory, go on with the next variant
            res["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            log(f"{kind} {v}: FAILED {res['error']}\n{traceback.format_exc()[-1200:]}")
            if RUN["device"] == "cuda":
                torch.cuda.empty_cache()
        log(f"{kind} {v}: " + ", ".join(f"{k}={_short(x)}" for k, x in res.items()))
    return results


def make_step(variant: str, model, batch, optimizer, lm_head):
    """One timed step: forward + BT loss + backward + SGD for training variants, an inference forward for scoring."""
    if optimizer is None:

        def score_step():
            with torch.inference_mode():
                rewards(variant, model, batch, lm_head)

        return score_step

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        out = rewards(variant, model, batch)
        n = out.shape[0] // 2
        bradley_terry(out[:n], out[n:]).backward()
        optimizer.step()

    return train_step


def summarize(times: list[float], flops_per_step: float, items: int, info: dict) -> dict:
    med = statistics.median(times)
    tflops = flops_per_step / med / 1e12
    return {
        "median_s": med,
        "iqr_s": [_q(times, 0.25), _q(times, 0.75)],
        "n_timed": len(times),
        "items_per_s": items / med,
        "tflops": tflops,
        "mfu": tflops / info["peak_tflops"],
        "mfu_vs_mamf": tflops / info["mamf_tflops"] if info.get("mamf_tflops") else None,
    }


def _q(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _short(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
