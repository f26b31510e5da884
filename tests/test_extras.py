"""Dependencies fit a user's environment: ranges (no pins) in pyproject.toml, our exact versions in
constraints.txt inside those ranges, optional packages in extras, and the core importing and evaluating without
any extra installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# what each extra brings that the core must not need (as import names)
EXTRA_MODULES = {
    "serve": ["fastapi", "uvicorn", "httptools", "uvloop", "pydantic", "httpx", "prometheus_client"],
    "rl": ["trl", "httpx"],
    "eval": ["matplotlib"],
}


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(project: dict) -> list[Requirement]:
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "basereward"]


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact name==version pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_pyproject_has_ranges_not_pins_and_dev_has_every_extra():
    project = _project()
    pinned = [str(r) for r in _requirements(project) if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins make basereward uninstallable beside other frameworks: {pinned}"
    extras = project["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)
    dev_self = [
        Requirement(r) for r in extras["dev"] if canonicalize_name(Requirement(r).name) == "basereward"
    ]
    assert dev_self and dev_self[0].extras == set(extras) - {"dev"}


def test_constraints_pin_every_requirement_inside_its_range():
    pins = _constraints()
    assert "torchvision" not in pins  # its only wheel for our torch is CUDA-linked and breaks transformers
    for req in _requirements(_project()):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt (CI would resolve it freely)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt has {name}=={pins[name]}, outside pyproject's {req}"
        )


def test_core_imports_and_evaluates_without_any_extra(tmp_path):
    """Every module outside basereward.serve imports with the extras' packages absent, and `basereward eval`
    writes its report without matplotlib: tables and one note instead of the plots."""
    blocked = sorted({m for mods in EXTRA_MODULES.values() for m in mods})
    pairs = tmp_path / "p.jsonl"
    recs = [
        {"id": str(i), "prompt": "q", "chosen": c, "rejected": r} for i, (c, r) in enumerate([("long", "no")])
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in recs))
    code = textwrap.dedent(
        f"""
        import importlib, json, pkgutil, sys
        for name in {blocked!r}:
            sys.modules[name] = None  # `import name` now fails as if it were not installed
        import basereward
        failed = {{}}
        for mod in pkgutil.walk_packages(basereward.__path__, "basereward."):
            if mod.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(mod.name)
            except ModuleNotFoundError as e:
                failed[mod.name] = e.name
        from basereward.cli import main
        rc = main(["eval", "--benchmark", "pairs", "--data", {str(pairs)!r}, "--scorer", "length",
                   "--out", {str(tmp_path / "report")!r}])
        print(json.dumps({{"failed": failed, "rc": rc}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    outside_serve = {m: e for m, e in result["failed"].items() if not m.startswith("basereward.serve")}
    assert not outside_serve, f"core modules import an extra's package at module level: {outside_serve}"
    serve_extra = set(EXTRA_MODULES["serve"])
    assert all(e in serve_extra for e in result["failed"].values()), result["failed"]
    assert result["rc"] == 0
    from basereward.eval.report import PLOTS_SKIPPED

    report = (tmp_path / "report" / "report.md").read_text()
    assert PLOTS_SKIPPED in report and "](reward_hist.png)" not in report
    assert not list((tmp_path / "report").glob("*.png"))
    assert (tmp_path / "report" / "metrics.json").is_file()
    assert proc.stderr.count("pip install 'basereward[eval]'") == 1


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["serve", "--model", "nowhere"], "uvicorn", "serve"),
        (["serve", "--model", "nowhere"], "fastapi", "serve"),
        (["grpo", "--config", str(ROOT / "configs" / "grpo-demo.yaml")], "trl", "rl"),
    ],
)
def test_verb_without_its_extra_names_the_extra(argv, blocked, extra):
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"from basereward.cli import main; sys.exit(main({argv!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"pip install 'basereward[{extra}]'" in proc.stderr and "Traceback" not in proc.stderr
