"""Layering (DESIGN.md): types/config <- data, losses, head <- collate, backbone <- reward_model, checkpoint <-
scoring <- leaves. An import may only point to the same or a lower layer, and nothing but a leaf (or the demo,
which composes leaves) imports a leaf. Parsed from source, so lazy imports inside functions count too."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "basereward"

# module name prefix -> layer (the longest matching prefix wins)
LAYERS = {
    "basereward.types": 0,
    "basereward.config": 0,
    "basereward.distributed": 0,
    "basereward.calibration": 0,  # raw reward -> probability / normalised scale (math only)  # process group and collectives: torch only
    "basereward.data": 1,
    "basereward.losses": 1,
    "basereward.model.head": 1,
    "basereward.model.gpu_attention": 1,  # attention kernels: torch only
    "basereward.model.fast_vision": 1,
    "basereward.video": 1,
    "basereward.collate": 2,
    "basereward.template": 2,
    "basereward.model.backbone": 2,
    "basereward.model.processor": 2,
    "basereward.model": 3,
    "basereward.checkpoint": 3,
    "basereward.sharding": 3,
    "basereward.step_batches": 3,  # the data order of training steps (collate + template)  # DDP / FSDP2 wrapping of a reward model
    "basereward.tiny": 3,
    "basereward.scoring": 4,
    "basereward.eval": 5,
    "basereward.serve": 5,
    "basereward.rl": 5,
    "basereward.bench": 5,
}
# Entry points: verb modules and scripts. They may import anything below them; nothing non-leaf imports them.
LEAVES = {
    "basereward.cli",
    "basereward.train",
    "basereward.demo",
    "basereward.score_cli",
    "basereward.eval.evaluate",
    "basereward.data.convert",
    "basereward.data.mixture",
    "basereward.data.split",
    "basereward.data.decontam",
    "basereward.serve.cli",
    "basereward.rl.grpo",
    "basereward.export",
    "basereward.plan",
    "basereward.__main__",
}
# The verb table, the demo (init-tiny -> synth -> train -> eval) and `data build` (which converts each raw source
# with `data convert`) compose other entry points.
LEAF_IMPORTERS = {"basereward.cli", "basereward.__main__", "basereward.demo", "basereward.data.mixture"}
# Deliberate exceptions, each with its reason.
ALLOWED = {
    # decontamination reads the benchmarks through the evaluation loaders (one loader per benchmark, not two)
    ("basereward.data.decontam", "basereward.eval.benchmarks"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(name: str) -> int | None:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    return LAYERS[best] if best else None


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("basereward"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("basereward"))
    return out


def known_modules() -> set[str]:
    return {module_name(p) for p in PKG.rglob("*.py")}


def test_no_upward_imports_and_no_imported_leaves():
    modules = known_modules()
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        for target in imports(path):
            if target not in modules:  # `from pkg import name` where name is not a module
                continue
            if (me, target) in ALLOWED or target == me:
                continue
            if target in LEAVES and me not in LEAF_IMPORTERS:
                problems.append(f"{me} imports the leaf {target}")
                continue
            mine, theirs = layer(me), layer(target)
            if me not in LEAVES and mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{me} (layer {mine}) imports {target} (layer {theirs})")
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer():
    missing = [m for m in known_modules() if m != "basereward" and layer(m) is None and m not in LEAVES]
    assert not missing, missing
