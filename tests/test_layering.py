"""Layering (docs/design.md): types/config <- data, losses, head <- collate, backbone <- reward_model, checkpoint
<- scoring <- leaves. An import may only point to the same or a lower layer, nothing but a leaf (or the demo,
which composes leaves) imports a leaf, and no two modules, and no two packages, import each other even through a
chain. Parsed from source, so lazy imports inside functions count too. There are no exceptions."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "basereward"

# module name prefix -> layer (the longest matching prefix wins)
LAYERS = {
    "basereward.types": 0,
    "basereward.config": 0,
    "basereward.distributed": 0,  # process group and collectives: torch only
    "basereward.calibration": 0,
    "basereward.metrics_log": 0,  # metrics.jsonl + TensorBoard writer
    "basereward.faults": 0,  # BASEREWARD_FAULT test hooks (kill / hang / nan at a step and phase): stdlib only
    "basereward.optim": 1,  # learning-rate schedule, weight-decay groups (torch only)  # raw reward -> probability / normalised scale (math only)
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
    "basereward.sharding": 3,  # DDP / FSDP2 wrapping of a reward model
    "basereward.step_batches": 3,  # the data order of training steps (collate + template)
    "basereward.tiny": 3,
    "basereward.model.generative": 3,  # the generative judge: LM + head, prompt format, loss, its checkpoint
    "basereward.model.generative_scorer": 3,  # GenerativeScorer: judge calls in both orders, R1-Reward's rule
    "basereward.generative_train": 3,
    "basereward.model.critic": 3,  # the critic RM: LM + reward head, the critique exchange, its checkpoint
    "basereward.model.critic_scorer": 3,  # CriticScorer: critiques generated (greedy, batched), then scored
    "basereward.model.rewards": 3,  # chunk -> collate -> forward of a reward-head model (the scoring path's end)
    "basereward.critic_train": 3,  # the critic paradigm's training pieces (steps with critiques, loss sums)  # the generative paradigm's training pieces (steps, order record, loss sums)
    "basereward.scoring": 4,
    "basereward.ensemble": 4,  # EnsembleScorer and ensemble.json; scoring's load_scorer dispatches to it
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
    "basereward.ensemble_cli",
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


def import_graph() -> dict[str, set[str]]:
    """module -> the basereward modules it imports (a `from pkg import name` counts as importing pkg)."""
    modules = known_modules()
    graph = {}
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        graph[me] = {t for t in imports(path) if t in modules and t != me}
    return graph


def package_of(module: str) -> str:
    """basereward.data.io -> basereward.data; a top-level module (basereward.train) is its own package."""
    parts = module.split(".")
    if len(parts) >= 2 and (PKG / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for me, targets in graph.items():
        mine = package_of(me)
        out.setdefault(mine, set()).update(package_of(t) for t in targets if package_of(t) != mine)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted: every import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles_between_modules_or_packages():
    graph = import_graph()
    assert not cycles(graph), f"module import cycles: {cycles(graph)}"
    assert not cycles(package_graph(graph)), f"package import cycles: {cycles(package_graph(graph))}"


def test_cycle_check_catches_an_injected_cycle():
    """Negative control: the check is not vacuous. One added edge closes a package cycle (eval already imports
    data), another a module cycle inside bench (worker already imports train_bench, which imports runtime)."""
    graph = import_graph()
    assert "basereward.data.io" in graph["basereward.data.benchmarks.pairs"]
    with_package_cycle = {k: set(v) for k, v in graph.items()}
    with_package_cycle["basereward.data.io"].add("basereward.eval.metrics")
    assert ["basereward.data", "basereward.eval"] in cycles(package_graph(with_package_cycle))
    with_module_cycle = {k: set(v) for k, v in graph.items()}
    with_module_cycle["basereward.bench.runtime"].add("basereward.bench.worker")
    found = cycles(with_module_cycle)
    assert any({"basereward.bench.runtime", "basereward.bench.worker"} <= set(c) for c in found), found


def test_no_upward_imports_and_no_imported_leaves():
    modules = known_modules()
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        for target in imports(path):
            if target not in modules:  # `from pkg import name` where name is not a module
                continue
            if target == me:
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
