"""Mixtures: determinism by seed, per-source sizes, dedup, the stats report, every output format opened by the
trainer's `open_pairs`, image paths across folders, and every shipped configs/data/*.yaml recipe."""

import json
from pathlib import Path

import pytest
from data_fixtures import cli, png, write_jsonl, write_parquet

from basereward.data.mixture import build
from basereward.data.recipe import Recipe, SourceSpec, load_recipe
from basereward.data.sources import SOURCES
from basereward.data.store import open_pairs
from basereward.types import DataError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "data").glob("*.yaml"))


def _text_pairs(path: Path, n: int, tag: str) -> Path:
    rows = [
        {
            "id": f"{tag}:{i}",
            "source": tag,
            "prompt": [{"role": "user", "content": f"{tag} question number {i} " + "word " * (i % 7)}],
            "chosen": f"good answer {i}",
            "rejected": f"bad {i}",
        }
        for i in range(n)
    ]
    return write_jsonl(path, rows)


def _image_source(path: Path, n: int) -> Path:
    rows = [
        {
            "ds_name": "RLAIF-V",
            "image": {"bytes": png(i, 16), "path": None},
            "question": f"What colour is shape {i}?",
            "chosen": f"Red {i}.",
            "rejected": f"Blue {i}.",
            "origin_dataset": "COCO",
            "origin_split": "x",
            "idx": str(i),
            "image_path": "p",
        }
        for i in range(n)
    ]
    return write_parquet(path, rows)


@pytest.fixture
def sources(tmp_path):
    _text_pairs(tmp_path / "raw" / "text_a.jsonl", 60, "a")
    _text_pairs(tmp_path / "raw" / "text_b.jsonl", 30, "b")
    _image_source(tmp_path / "raw" / "rlaif" / "train.parquet", 20)
    return tmp_path / "raw"


def _recipe(seed=0, **kw):
    specs = (
        SourceSpec(name="a", path="text_a.jsonl", max_pairs=40),
        SourceSpec(name="b", path="text_b.jsonl", weight=2.0),
        SourceSpec(name="img", path="rlaif", converter="rlaif-v", weight=0.5),
    )
    return Recipe(name="t", sources=specs, seed=seed, **kw)


def _ids(path):
    return [p.id for p in open_pairs(path)]


def test_same_seed_same_order_other_seed_other_order(tmp_path, sources):
    build(_recipe(seed=0), tmp_path / "m0", root=sources)
    build(_recipe(seed=0), tmp_path / "m0bis", root=sources)
    build(_recipe(seed=1), tmp_path / "m1", root=sources)
    a, a2, b = _ids(tmp_path / "m0"), _ids(tmp_path / "m0bis"), _ids(tmp_path / "m1")
    assert a == a2
    assert a != b  # another seed: another order
    assert len(a) == len(b) == 40 + 60 + 10


def test_sizes_weights_and_report(tmp_path, sources):
    report = build(_recipe(), tmp_path / "m", root=sources)
    s = report["sources"]
    assert (s["a"]["available"], s["a"]["pairs"]) == (60, 40)  # max_pairs: a subsample
    assert (s["b"]["selected"], s["b"]["pairs"]) == (60, 60)  # weight 2: every pair twice
    assert s["img"]["pairs"] == 10 and s["img"]["image_pairs"] == 10
    assert report["rows"] == 110 and report["image_share"] == round(10 / 110, 4)
    tl = report["token_lengths"]
    assert tl["proxy"].startswith("whitespace") and tl["prompt"]["max"] >= tl["prompt"]["p50"] >= 4
    ids = _ids(tmp_path / "m")
    assert sum(i.startswith("b:") for i in ids) == 60 and len({i for i in ids if i.startswith("b:")}) == 30
    assert json.loads((tmp_path / "m" / "stats.json").read_text())["rows"] == 110
    assert not (tmp_path / "m" / ".staging").exists()


def test_exact_duplicates_across_sources_are_removed_first_copy_kept(tmp_path):
    rec = {
        "id": "x:1",
        "source": "x",
        "prompt": [{"role": "user", "content": "Same   Question?"}],
        "chosen": "Yes",
        "rejected": "No",
    }
    dup = {**rec, "id": "y:1", "source": "y", "prompt": [{"role": "user", "content": "same question?"}]}
    other = {**rec, "id": "y:2", "chosen": "Maybe"}
    write_jsonl(tmp_path / "x.jsonl", [rec])
    write_jsonl(tmp_path / "y.jsonl", [dup, other])
    recipe = Recipe(
        name="d", sources=(SourceSpec(name="x", path="x.jsonl"), SourceSpec(name="y", path="y.jsonl"))
    )
    report = build(recipe, tmp_path / "m", root=tmp_path)
    assert sorted(_ids(tmp_path / "m")) == ["x:1", "y:2"]
    assert report["duplicates"]["exact_pairs"] == 1 and report["sources"]["y"]["duplicates_removed"] == 1
    assert report["duplicates"]["distinct_prompts"] == 1
    kept = build(Recipe(name="d", sources=recipe.sources, dedup=False), tmp_path / "m2", root=tmp_path)
    assert kept["rows"] == 3 and kept["duplicates"]["exact_pairs"] == 1 and kept["duplicates"]["removed"] == 0


@pytest.mark.parametrize("fmt", ["arrow", "parquet", "jsonl"])
def test_built_folder_opens_for_training_with_random_access(tmp_path, sources, fmt):
    build(_recipe(format=fmt), tmp_path / "m", root=sources)
    ds = open_pairs(tmp_path / "m")
    assert len(ds) == 110
    every = list(ds)
    for i in (0, 57, 109, -1):
        assert ds[i].id == every[i].id and ds[i].prompt == every[i].prompt
    img = next(p for p in every if p.images)
    assert img.images[0].load().size == (16, 16) and img.prompt[0]["content"].startswith("<image>\n")


def test_image_paths_follow_the_data_into_the_mixture(tmp_path, sources):
    rc, _, err = cli(
        "data",
        "convert",
        "--source",
        "rlaif-v",
        "--input",
        sources / "rlaif",
        "--out",
        tmp_path / "conv",
        "--image-mode",
        "path",
    )
    assert rc == 0, err
    recipe = Recipe(name="p", sources=(SourceSpec(name="conv", path=str(tmp_path / "conv")),))
    build(recipe, tmp_path / "deep" / "mix", root=tmp_path)
    pairs = list(open_pairs(tmp_path / "deep" / "mix"))
    assert len(pairs) == 20 and all(Path(p.images[0].path).is_file() for p in pairs)
    assert {Path(p.images[0].path).read_bytes() for p in pairs} == {png(i, 16) for i in range(20)}


def test_tokenizer_lengths_on_a_sample(tmp_path, sources):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "question": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    report = build(_recipe(tokenizer=str(tmp_path), token_sample=50), tmp_path / "m", root=sources)
    t = report["tokenizer_lengths"]
    assert t["rows"] == 50 and t["chosen"]["p50"] >= 2


def test_cli_build_and_seed_override(tmp_path, sources):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: cli\nseed: 0\nsources:\n  - {name: a, path: text_a.jsonl, max_pairs: 10}\n")
    rc, out, err = cli(
        "data", "build", "--recipe", recipe, "--out", tmp_path / "m", "--root", sources, "--seed", "5"
    )
    assert rc == 0, err
    assert out["seed"] == 5 and out["rows"] == 10 and out["out"] == str(tmp_path / "m")


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nsources: []\n", "non-empty list"),
        ("name: x\nshuffle: true\nsources:\n  - {name: a, path: p}\n", "shuffle: unknown key (valid keys"),
        (
            "name: x\nsources:\n  - {name: a, path: p, convertr: shp}\n",
            "did you mean 'sources[0].converter'?",
        ),
        ("name: x\nsources:\n  - {name: a, path: p, converter: nope}\n", "sources[0]: converter 'nope'"),
        ("name: x\nsources:\n  - {name: a, path: p, max_pairs: -1}\n", "sources[0]: max_pairs"),
        (
            "name: x\nsources:\n  - {name: a, path: p, max_pairs: 2.5}\n",
            "sources[0].max_pairs: expected an integer",
        ),
        ("name: x\nseed: [1]\nsources:\n  - {name: a, path: p}\n", "seed: expected an integer, got [1]"),
        ("name: x\nsources:\n  - {name: a}\n", "sources[0].path: missing required key"),
        ("sources:\n  - {name: a, path: p}\n", "name: missing required key"),
        ("name: x\nsources: {name: a}\n", "sources: expected a list"),
        ("name: x\nsources:\n  - {name: a, path: p}\n  - {name: a, path: q}\n", "unique"),
        ("name: x\nformat: csv\nsources:\n  - {name: a, path: p}\n", "format must be"),
    ],
)
def test_bad_recipes_fail_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        load_recipe(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_recipe_problems_are_reported_together_and_digit_revisions_stay_strings(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nseed: one\nsources:\n  - {name: a, pth: p, revision: 1234567}\n")
    with pytest.raises(DataError) as e:
        load_recipe(path)
    assert str(e.value) == (
        f"{path}: 3 problems: sources[0].pth: unknown key (did you mean 'sources[0].path'?); "
        "sources[0].path: missing required key; seed: expected an integer, got 'one'"
    )
    path.write_text("name: x\nsources:\n  - {name: a, path: p, revision: 1234567, weight: 2}\n")
    spec = load_recipe(path).sources[0]
    assert spec.revision == "1234567" and spec.weight == 2.0 and isinstance(spec.weight, float)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_data_recipe_loads_and_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.format == "arrow"
    assert all(s.converter in SOURCES for s in recipe.sources)
    assert f"basereward data build --recipe configs/data/{path.name}" in path.read_text().split("\nname:")[0]


def test_final_recipe_is_the_papers_seven_datasets():
    recipe = load_recipe(next(p for p in CONFIGS if p.name == "basereward-final.yaml"))
    assert {s.converter for s in recipe.sources} == {
        "rlaif-v",
        "mmpr-v1.2",
        "mm-rlhf-dpo",
        "vlfeedback",
        "rlhf-v",
        "ultrafeedback-hard",
        "olmo-2-mix",
        "tulu-3-if",
        "tulu-3-wildchat",
        "tulu-3-ultrafeedback-on-policy",
        "swe-arena",
    }
    r1 = sum(s.max_pairs for s in recipe.sources if s.converter in ("mm-rlhf-dpo", "vlfeedback", "rlhf-v"))
    assert r1 == 200_000
    assert len(CONFIGS) == 12  # the final mixture + one recipe per Table 4 dataset
