"""`basereward plan`: the arithmetic against the real thing on tiny models, and the CLI on shipped configs.

- Parameter counts equal `sum(p.numel())` of the real reward model (tiny Qwen2.5-VL, Qwen2-VL, Qwen2) and of
  Qwen2.5-VL-3B/7B/72B built from configs/arch/*.json on the meta device (no memory).
- Weights, gradients and AdamW state: the bytes after one real optimizer step equal the planned terms exactly.
- Activations, on a prefix-shared batch: the tensors autograd saves in one training forward (unique storages
  alive when it ends), and the peak of live tensor bytes over forward + backward (every storage an op creates,
  tracked until it is freed), against the planned terms, with and without gradient checkpointing. Left out of
  the measurement: CPU SDPA's dense (B, 1, L, L) masks (the GPU path is varlen, without one).
"""

import json
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from basereward import plan as P
from basereward.cli import main
from basereward.collate import COLLATORS
from basereward.config import LoraArgs
from basereward.data.io import read_pairs
from basereward.data.synthetic import synthesize
from basereward.losses import bradley_terry
from basereward.model.backbone import enable_activation_checkpointing
from basereward.model.lora import apply_lora
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.template import Encoder
from basereward.types import DataError

ARCH_DIR = Path(__file__).resolve().parents[1] / "configs" / "arch"
QWEN25_7B = ARCH_DIR / "qwen2.5-vl-7b.json"


def build(tiny_dirs, arch, precision="fp32", freeze_vision=False, checkpointing=False, lora=0, dropout=0.0):
    """A tiny reward model set up as train.py sets it up."""
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_dirs[arch])
    if lora:
        apply_lora(model, LoraArgs(rank=lora, dropout=dropout))
    if freeze_vision and arch != "qwen2":
        for name, p in model.backbone.visual.named_parameters():
            p.requires_grad_(name.startswith("merger."))
    if checkpointing:
        enable_activation_checkpointing(model.backbone)
    if precision == "bf16-pure":
        model.backbone.to(torch.bfloat16)
    return model.train()


@pytest.fixture(scope="module")
def batches(tiny_dirs, tmp_path_factory):
    """One prefix-shared micro-batch per architecture: 4 pairs (image pairs for the VL models)."""
    d = tmp_path_factory.mktemp("plan_pairs")
    synthesize(d, pairs=24, eval_pairs=2, seed=3)
    pairs = read_pairs(d / "train.jsonl")
    out = {}
    for arch, path in tiny_dirs.items():
        enc = Encoder(load_processor(path, arch), arch)
        chosen = [p for p in pairs if bool(p.images) == (arch != "qwen2")][:4]
        out[arch] = COLLATORS["shared"]([enc.encode(p.as_sample()) for p in chosen], enc.pad_id)
    return out


def planned(tiny_dirs, arch, batch, **kw):
    rows, length = batch.input_ids.shape
    merged = int(batch.image_grid_thw.prod(-1).sum()) // 4 if batch.image_grid_thw is not None else 0
    arch = P.read_arch(tiny_dirs[arch])
    return P.plan(arch, micro_batch=rows, max_length=length, image_tokens=merged // rows, **kw)


def forward_backward(model, batch, precision, after_forward=lambda: None):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        rewards = model(batch)
    loss = bradley_terry(rewards[0::2], rewards[1::2])
    after_forward()
    loss.backward()


# --- parameters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl", "qwen2"])
def test_parameter_count_equals_the_real_reward_model(tiny_dirs, arch):
    model = RewardModel.from_backbone(tiny_dirs[arch])
    n = P.plan(P.read_arch(tiny_dirs[arch]))["params"]
    assert n["total"] == sum(p.numel() for p in model.parameters())
    assert n["head"] == sum(p.numel() for p in model.head.parameters())
    assert n["embeddings"] == model.backbone.get_input_embeddings().weight.numel()
    if arch != "qwen2":
        visual = model.backbone.visual
        assert n["merger"] == sum(p.numel() for p in visual.merger.parameters())
        assert n["vision_tower"] + n["merger"] == sum(p.numel() for p in visual.parameters())


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_lora_counts_equal_the_real_adapters(tiny_dirs, arch):
    model = build(tiny_dirs, arch, freeze_vision=True, lora=4)
    n = P.plan(P.read_arch(tiny_dirs[arch]), lora=4, freeze_vision=True)["params"]
    assert n["lora_adapters"] == sum(p.numel() for k, p in model.named_parameters() if ".lora_" in k)
    assert n["trained"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-72b"])
def test_parameter_count_equals_the_model_built_from_the_shipped_config(name):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

    from basereward.model.head import RewardHead

    config = Qwen2_5_VLConfig.from_json_file(str(ARCH_DIR / f"{name}.json"))  # loadable by transformers
    with torch.device("meta"):  # shapes only: no memory
        backbone = Qwen2_5_VLModel(config)
        head = RewardHead(config.text_config.hidden_size)
    n = P.plan(P.read_arch(ARCH_DIR / f"{name}.json"))["params"]
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert n["total"] == count(backbone) + count(head)
    assert n["vision_tower"] + n["merger"] == sum(p.numel() for p in backbone.visual.parameters())
    if name == "qwen2.5-vl-7b":  # the published totals (docs/performance.md §1)
        assert round((n["language_model"] - n["embeddings"]) / 1e9, 2) == 6.53
        assert round(n["embeddings"] / 1e9, 3) == round(n["lm_head_dropped"] / 1e9, 3) == 0.545
        # 0.6766: "0.677 B" in docs/performance.md §1
        assert round((n["vision_tower"] + n["merger"]) / 1e9, 3) == 0.677
        assert round(n["merger"] / 1e6, 1) == 44.6


def test_a_hub_style_flat_config_reads_the_same(tmp_path):
    nested = json.loads(QWEN25_7B.read_text())
    text = nested.pop("text_config")
    rope, _ = text.pop("rope_parameters"), text.pop("model_type")
    flat = {
        **nested,
        **text,
        "rope_theta": rope["rope_theta"],
        "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
    }
    (tmp_path / "config.json").write_text(json.dumps(flat))
    assert P.read_arch(tmp_path) == P.read_arch(QWEN25_7B)


# --- weights, gradients, optimizer state --------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision,freeze_vision,lora", [("fp32", False, 0), ("bf16-pure", True, 0), ("fp32", True, 4)]
)
def test_weight_gradient_and_adamw_bytes_are_exact(tiny_dirs, batches, precision, freeze_vision, lora):
    model = build(tiny_dirs, "qwen2_5_vl", precision, freeze_vision, lora=lora)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    forward_backward(model, batches["qwen2_5_vl"], precision)
    optimizer.step()
    state = [t for s in optimizer.state.values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
    # `step` is a 0-dim tensor per parameter, on the CPU for the default (not fused/capturable) AdamW
    assert all(s["step"].ndim == 0 for s in optimizer.state.values())
    plan = planned(
        tiny_dirs,
        "qwen2_5_vl",
        batches["qwen2_5_vl"],
        precision=precision,
        freeze_vision=freeze_vision,
        lora=lora,
    )["bytes"]
    assert sum(p.nbytes for p in model.parameters()) == plan["weights"]
    assert sum(p.grad.nbytes for p in trained) == plan["gradients"]
    assert sum(t.nbytes for t in state) == plan["optimizer"]
    assert plan["optimizer"] == 2 * plan["gradients"]


# --- activations --------------------------------------------------------------------------------------------


def is_cpu_mask(t, length) -> bool:
    return t.ndim == 4 and t.shape[-1] == t.shape[-2] == length


def saved_bytes(model, batch, precision) -> tuple[int, int]:
    """(activations, bf16 weight copies): unique storages of the tensors autograd saves in the forward that
    are alive when it ends; parameters and batch inputs (but the pixels: the patch embedding's input) left
    out."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip |= {
        v.untyped_storage().data_ptr()
        for k, v in vars(batch).items()
        if isinstance(v, torch.Tensor) and k != "pixel_values"
    }
    refs, found = [], {}

    def pack(t):
        refs.append(
            (
                weakref.ref(t.untyped_storage()),
                is_cpu_mask(t, batch.input_ids.shape[1]),
                t.grad_fn is not None and t.grad_fn.name() == "TBackward0",
            )
        )
        return t

    def collect():
        for ref, mask, weight_copy in refs:
            s = ref()
            if s is not None and not mask and s.data_ptr() not in skip:
                found[s.data_ptr()] = (s.nbytes(), weight_copy)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_backward(model, batch, precision, after_forward=collect)
    return sum(b for b, w in found.values() if not w), sum(b for b, w in found.values() if w)


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages ops create, while they live, and the peak (a storage dies with its last user)."""

    def __init__(self, existing: set[int], length: int):
        super().__init__()
        self.seen, self.live, self.peak, self.length = set(existing), 0, 0, length

    def _freed(self, key: int, nbytes: int) -> None:
        self.seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not is_cpu_mask(t, self.length):
                s = t.untyped_storage()
                if s.nbytes() and s.data_ptr() not in self.seen:
                    self.seen.add(s.data_ptr())
                    self.live += s.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(s, self._freed, s.data_ptr(), s.nbytes())
        return out


def peak_bytes(model, batch, precision) -> int:
    """Peak live bytes over one forward + backward, without the parameters' gradients (a term of their own:
    each is dropped once accumulated) and with the pixels (the patch embedding's input) counted."""
    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [v for v in vars(batch).values() if isinstance(v, torch.Tensor)]
    mode = LiveBytes({t.untyped_storage().data_ptr() for t in tensors}, batch.input_ids.shape[1])
    with mode:
        forward_backward(model, batch, precision)
    # in fp32 the patch embedding saves the batch's pixel tensor (made before the forward); else a cast copy
    visual = getattr(model.backbone, "visual", None)
    trains_patches = visual is not None and visual.patch_embed.proj.weight.requires_grad
    return mode.peak + (batch.pixel_values.nbytes if trains_patches and precision == "fp32" else 0)


# the whole grid (54 cases) runs under `make test-slow`; the default run keeps six (~1 s each)
GRID = [
    (a, p, f, c, 0, 0.0)
    for a in ("qwen2_5_vl", "qwen2_vl", "qwen2")
    for p in ("fp32", "bf16", "bf16-pure")
    for f in ((False, True) if a != "qwen2" else (False,))
    for c in (False, True)
]
GRID += [
    (a, p, True, c, 8, d)
    for a in ("qwen2_5_vl", "qwen2")
    for p in ("fp32", "bf16", "bf16-pure")
    for c in (False, True)
    for d in (0.0, 0.05)
]
FAST = {
    ("qwen2_5_vl", "bf16", True, False, 0, 0.0),
    ("qwen2_5_vl", "fp32", True, True, 0, 0.0),
    ("qwen2_5_vl", "bf16-pure", False, True, 0, 0.0),
    ("qwen2_vl", "fp32", False, False, 0, 0.0),
    ("qwen2", "bf16", True, True, 8, 0.05),
    ("qwen2_5_vl", "bf16", True, False, 8, 0.0),
}
CASES = [case if case in FAST else pytest.param(*case, marks=pytest.mark.slow) for case in GRID]


@pytest.mark.parametrize("arch,precision,freeze_vision,checkpointing,lora,dropout", CASES)
def test_activation_estimate_matches_measured(
    tiny_dirs, batches, arch, precision, freeze_vision, checkpointing, lora, dropout
):
    batch = batches[arch]
    plan = planned(
        tiny_dirs,
        arch,
        batch,
        precision=precision,
        freeze_vision=freeze_vision,
        checkpointing=checkpointing,
        lora=lora,
        lora_dropout=dropout,
    )
    acts, working = plan["bytes"]["activations"], plan["bytes"]["working"]
    model = build(tiny_dirs, arch, precision, freeze_vision, checkpointing, lora, dropout)
    peak = peak_bytes(model, batch, precision)
    vision = "frozen" if freeze_vision else "trained"
    line = f"{arch} {precision} vision {vision} ckpt {checkpointing} lora {lora}/{dropout}: "
    line += f"peak {peak} planned {acts + working} ({(acts + working) / peak:.3f})"
    assert abs((acts + working) / peak - 1) <= 0.10, line
    if not checkpointing:  # what autograd keeps from the forward: the planned terms less backward's own
        model = build(tiny_dirs, arch, precision, freeze_vision, lora=lora, dropout=dropout)
        saved, copies = saved_bytes(model, batch, precision)
        kept = acts - plan["activation_bytes"]["backward"]
        ratio = (kept + working) / (saved + copies)
        line += f"; saved {saved + copies} planned {kept + working} ({ratio:.3f})"
        line += f"; weight copies {copies} planned {working}"
        # frozen weights' bf16 copies (LoRA) have no grad_fn: they are among `saved`, and in `working`
        assert abs(ratio - 1) <= 0.12, line
        if precision == "bf16" and not lora:  # autocast's copies of trained weights: ddp's "working" term
            assert abs(working / copies - 1) <= 0.02, line
    print(line)


# --- the command --------------------------------------------------------------------------------------------


def run_plan(capsys, *args) -> tuple[int, dict | None, str]:
    rc = main(["plan", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, json.loads(out.strip().splitlines()[-1]) if rc == 0 else None, out + err


def test_qwen25_vl_7b_fits_on_8_gpus_with_fsdp_and_not_on_one(capsys):
    rc, res, out = run_plan(
        capsys,
        "--backbone",
        QWEN25_7B,
        "--gpus",
        8,
        "--strategy",
        "fsdp",
        "--precision",
        "bf16",
        "--gradient-checkpointing",
        "--gpu-memory",
        80,
    )
    assert rc == 0 and res["fits"] is True and res["per_gpu_gb"] < 80, out
    assert round(res["params_b"], 2) == 7.76 and res["trainable_params_b"] < res["params_b"]  # vision frozen
    terms = ("weights", "gradients", "optimizer", "working", "ddp_buckets", "activations", "overhead")
    assert res["per_gpu_gb"] == pytest.approx(sum(res[t + "_gb"] for t in terms), abs=0.01)
    assert "weights" in out and "fits" in out  # the human table comes first
    rc, res, out = run_plan(
        capsys,
        "--backbone",
        QWEN25_7B,
        "--gpus",
        1,
        "--strategy",
        "ddp",
        "--precision",
        "bf16",
        "--no-freeze-vision",
    )
    assert rc == 0 and res["fits"] is False and res["per_gpu_gb"] > 80
    assert res["trainable_params_b"] == res["params_b"]


def test_sharding_lora_offload_and_checkpointing_move_the_terms_the_right_way():
    arch = P.read_arch(QWEN25_7B)
    one = P.plan(arch, gpus=1, strategy="fsdp")
    eight = P.plan(arch, gpus=8, strategy="fsdp")
    assert eight["bytes"]["optimizer"] * 8 == pytest.approx(one["bytes"]["optimizer"])
    lora = P.plan(arch, gpus=8, strategy="fsdp", lora=64)
    assert lora["optimizer_gb"] < eight["optimizer_gb"] / 25 and lora["weights_gb"] > eight["weights_gb"]
    h, kv, i = 3584, 512, 18944  # q and o: h -> h; k and v: h -> kv; gate, up, down: h <-> i
    assert lora["params"]["lora_adapters"] == 28 * 64 * (2 * (h + h) + 2 * (h + kv) + 3 * (h + i))
    offload = P.plan(arch, gpus=8, strategy="fsdp", cpu_offload=True)
    assert offload["weights_gb"] == offload["optimizer_gb"] == 0 and offload["cpu_offload_gb"] > 0
    ckpt = P.plan(arch, gpus=8, strategy="fsdp", checkpointing=True)
    assert ckpt["activations_gb"] < eight["activations_gb"] / 5
    # FSDP gathers bf16 parameters under bf16, so its forward is that of bf16-pure
    assert eight["bytes"]["activations"] == P.plan(arch, precision="bf16-pure")["bytes"]["activations"]
    pure = P.plan(arch, precision="bf16-pure")
    assert pure["bytes"]["optimizer"] < P.plan(arch, precision="bf16")["bytes"]["optimizer"] * 0.51


def test_a_checkpoint_directory_plans_like_its_config(tiny_dirs, capsys):
    rc, res, _ = run_plan(capsys, "--backbone", tiny_dirs["qwen2"], "--precision", "fp32")
    assert rc == 0 and res["params"]["total"] == P.plan(P.read_arch(tiny_dirs["qwen2"]))["params"]["total"]


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    rc, _, out = run_plan(capsys, "--backbone", tmp_path / "missing")
    assert rc == 1 and "missing" in out and "Traceback" not in out
    (tmp_path / "llama.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    rc, _, out = run_plan(capsys, "--backbone", tmp_path / "llama.json")
    assert rc == 1 and "model_type 'llama' is not supported" in out
    (tmp_path / "broken.json").write_text("{not json")
    rc, _, out = run_plan(capsys, "--backbone", tmp_path / "broken.json")
    assert rc == 1 and "not a JSON config" in out
    (tmp_path / "partial.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 8}))
    rc, _, out = run_plan(capsys, "--backbone", tmp_path / "partial.json")
    assert rc == 1 and "num_attention_heads is missing" in out
    rc, _, out = run_plan(capsys, "--backbone", QWEN25_7B, "--cpu-offload")
    assert rc == 1 and "--cpu-offload needs --strategy fsdp" in out
    with pytest.raises(FileNotFoundError):
        P.read_arch(tmp_path / "missing")
    with pytest.raises(DataError):
        P.read_arch(tmp_path / "llama.json")
