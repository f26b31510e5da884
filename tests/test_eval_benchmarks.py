"""Benchmark loaders on the real records in tests/fixtures/benchmark-samples/ and on fixtures written here in each
official schema (image bytes, image paths, frame folders; repeated ids; [1,0] rankings; unknown id prefixes).

The `write_*` helpers are also used by test_eval_cli.py."""

import io
import json
import os
import warnings
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from basereward.data.benchmarks import load_benchmark
from basereward.data.benchmarks.vl_rewardbench import group_of
from basereward.types import DataError

# real records, in the repo (provenance in their README); BASEREWARD_SAMPLES points the tests at another copy
SAMPLES = Path(
    os.environ.get("BASEREWARD_SAMPLES", Path(__file__).resolve().parent / "fixtures" / "benchmark-samples")
)
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"real benchmark records not found at {SAMPLES} (BASEREWARD_SAMPLES)"
)


# --- fixture writers ------------------------------------------------------------------------------------------


def png_bytes(color=(200, 30, 30), size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def vlrb_rows() -> list[dict]:
    """HF-schema rows: every group, a repeated id with different pairs, [1,0] rankings, an unknown id prefix,
    a length tie, string ranking values (as some dumps write them) and an exact repeat of a pair key."""
    rows = [
        ("hallucination_pair-1", "<image>\nDescribe.", ["a long right answer", "short"], [0, 1]),
        ("hallucination_pair-2", "How many?\n<image>", ["two", "three cats"], [0, 1]),
        ("RLAIF-V-3", "Describe it.", ["wrong but much longer", "right"], [1, 0]),
        ("RLHF-V-4", "What colour?", ["red!!", "blue"], [0, 1]),
        ("wildvision-battle-5", "Solve it.", ["abcd", "wxyz"], [0, 1]),  # equal lengths: a tie
        ("LRVInstruction-6", "Is there a dog?", ["No dog.", "Yes, a brown dog."], [1, 0]),
        ("mystery-source-7", "Unknown prefix?", ["x", "yy"], ["0", "1"]),
        ("mathverse_8", "Angle?", ["30 degrees, because...", "45"], [0, 1]),
        ("mathverse_8", "Angle?", ["60", "90 degrees since..."], [1, 0]),  # same id, another pair
        ("mmmu_pro_test_Art_9", "Which?", ["A", "B is right"], [0, 1]),
        ("mmmu_pro_test_Art_9", "Which?", ["B is right", "A"], [1, 0]),  # same pair key: counted once
    ]
    out = []
    for rid, query, response, ranking in rows:
        out.append(
            {
                "id": rid,
                "query": query,
                "response": response,
                "human_ranking": ranking,
                "models": ["m1", "m2"],
                "judge": "human",
                "rationale": "",
                "query_source": "src",
                "ground_truth": "",
            }
        )
    return out


VLRB_FOLDERS = {
    "hallucination_pair": "povid",
    "RLAIF-V": "rlaif-v",
    "RLHF-V": "rlhf-v",
    "wildvision": "wildvision-battle",
    "mathverse": "reasoning_tasks",
    "mmmu_pro": "reasoning_tasks",
}


def _folder(rid):
    return next((f for p, f in VLRB_FOLDERS.items() if rid.startswith(p)), "vlfeedback")


def write_vlrb_parquet(path: Path, rows=None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dict(r, human_ranking=[int(x) for x in r["human_ranking"]]) for r in (rows or vlrb_rows())]
    for i, r in enumerate(rows):
        r["image"] = {"bytes": png_bytes((i * 20, 0, 0)), "path": f"{r['id']}.png"}
        r["meta"] = "{}"
        r["human_error_analysis"] = ["hallucination"]
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("query", pa.string()),
            ("response", pa.list_(pa.string())),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("human_ranking", pa.list_(pa.int64())),
            ("models", pa.list_(pa.string())),
            ("judge", pa.string()),
            ("rationale", pa.string()),
            ("query_source", pa.string()),
            ("meta", pa.string()),
            ("human_error_analysis", pa.list_(pa.string())),
            ("ground_truth", pa.string()),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_vlrb_github_jsonl(root: Path, rows=None, with_images=True) -> Path:
    """The original GitHub form: image_path = images/<source-folder>/<id>.jpg, meta an object."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "data.jsonl").open("w") as f:
        for r in rows or vlrb_rows():
            rec = {k: v for k, v in r.items() if k != "ground_truth"}
            rec["image_path"] = f"images/{_folder(r['id'])}/{r['id']}.jpg"
            rec["meta"] = {"note": "x"}
            rec["human_error_analysis"] = None
            if with_images:
                (root / rec["image_path"]).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (0, 90, 0)).save(root / rec["image_path"], format="JPEG")
            f.write(json.dumps(rec) + "\n")
    return root / "data.jsonl"


def write_vlrb_hf_json(root: Path, rows=None, jsonl=False) -> Path:
    """Third-party HF-schema dumps: image = "images/<id>.png"; a JSON array (or one record per line)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for r in rows or vlrb_rows():
        rec = dict(r, image=f"images/{r['id']}.png")
        Image.new("RGB", (16, 16), (0, 0, 90)).save(root / rec["image"])
        recs.append(rec)
    path = root / ("data.jsonl" if jsonl else "data.json")
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) if jsonl else json.dumps(recs, indent=1))
    return path


def mmrb_rows() -> list[dict]:
    rows = [
        ("nocaps_1", "open_generation/correctness_task", "a fine caption", "bad", "Output1"),
        ("visitbench_2", "open_generation/correctness_task", "short", "a longer answer", "Output1"),
        ("visitbench_3", "open_generation/preference_task", "x", "preferred long one", "Output2"),
        ("mmmu-s_4", "knowledge", "A because of reasons", "B", "Output1"),
        ("mathvista_5", "reasoning", "12", "13 since 6+7", "Output2"),
        ("MathVista_6", "reasoning", "same", "size", "Output1"),  # a tie; "math" prefix is case-insensitive
        ("EMMA-Coding_7", "reasoning", "def f(): pass", "print(1) and more", "Output1"),
        ("PAIRS_8", "safety", "I cannot judge people by looks.", "He is a thief.", "Output1"),
        ("pairs_9", "safety", "no", "a biased long answer", "Output1"),
        (
            "hateful_10",
            "safety",
            "refuse",
            "a toxic long reply",
            "Output1",
        ),  # toxicity (absent in the release)
        ("RealworldQA_11", "vqa", "B", "A, the car is left", "Output2"),
        ("MMBench_12", "vqa", "C is correct here", "D", "Output1"),
        ("MMBench_12", "vqa", "D", "C is correct here", "Output2"),  # repeated ID
    ]
    out = []
    for rid, cat, o1, o2, better in rows:
        src = rid.split("_")[0].lower()
        out.append(
            {
                "ID": rid,
                "Text": f"Question for {rid}?",
                "Image": f"images/{src}/{rid}.jpg",
                "Output1": o1,
                "Output2": o2,
                "Better": better,
                "Category": cat,
                "Meta": {"src": src},
            }
        )
    return out


def write_mmrb(root: Path, rows=None, with_images=True) -> Path:
    """data/all_data.json (a JSON array) with images under data/, as 0_download_data.py writes them."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = rows or mmrb_rows()
    for r in rows if with_images else []:
        (data / r["Image"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (90, 90, 0)).save(data / r["Image"], format="JPEG")
    (data / "all_data.json").write_text(json.dumps(rows, indent=1))
    return data / "all_data.json"


def mmrlhf_rows() -> list[dict]:
    """Query groups of 1-3 pairs in every category; one video group; a tie; paths as the R1-Reward copy."""
    groups = [
        ("q_mcq1", "mcq/q1.png", [("The answer is B, since...", "B"), ("B", "The answer is A")]),
        ("q_mcq2", "mcq/q2.png", [("C", "The answer is D")]),
        ("q_long1", "long/l1.jpg", [("A long detailed description.", "Short."), ("Short.", "Wrong.")]),
        ("q_short1", "short/s1.jpg", [("Yes", "No!"), ("Yes", "Nope")]),
        ("cauldron/x/images/y.png_5", "safety/p1.jpg", [("I won't help with that.", "Sure, here's how")]),
        ("vid_1_2", "video/vid1", [("A man runs across a field.", "A dog."), ("A dog.", "Nothing")]),
        ("odd_7", "misc/o.png", [("uncategorised right answer", "no")]),
    ]
    out = []
    for gid, media, pairs in groups:
        for chosen, rejected in pairs:
            key = "video" if media.startswith("video/") else "image"
            out.append(
                {
                    "id": gid,
                    key: media,
                    "prompt": f"Q {gid}",
                    "chosen": chosen,
                    "rejected": rejected,
                    "chosen_reason": "good",
                    "rejected_reason": "bad",
                }
            )
    return out


def write_mmrlhf(root: Path, rows=None, with_media=True, hf_prefix=False) -> Path:
    """mm_reward_bench.jsonl + an image root holding mcq/ long/ short/ safety/ video/<name>/<frames>.
    `hf_prefix` writes paths as `images/...` with the media under root/images, as the HF copy."""
    rows = [dict(r) for r in (rows or mmrlhf_rows())]
    media_root = root / "images" if hf_prefix else root
    for r in rows:
        key = "video" if "video" in r else "image"
        rel = r.get(key)
        if with_media and rel:
            if key == "video":
                (media_root / rel).mkdir(parents=True, exist_ok=True)
                for i in range(5):
                    Image.new("RGB", (28, 28), (i * 40, 0, 0)).save(media_root / rel / f"c01_{i:04d}.jpeg")
            else:
                (media_root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (0, 60, 60)).save(media_root / rel)
        if hf_prefix:
            r[key] = "images/" + rel
    root.mkdir(parents=True, exist_ok=True)
    (root / "mm_reward_bench.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    return root / "mm_reward_bench.jsonl"


# --- VL-RewardBench -------------------------------------------------------------------------------------------


def test_vlrb_category_maps_by_id_prefix():
    assert [group_of(i) for i in ("hallucination_pair-1", "RLAIF-V-2", "RLHF-V-3")] == ["hallucination"] * 3
    assert [group_of(i) for i in ("mathverse_1", "mmmu_pro_test_Art_9")] == ["reasoning"] * 2
    assert [group_of(i) for i in ("wildvision-battle-1", "jailbreak-x-1", "svit-1", "new-source-9")] == [
        "general"
    ] * 4
    assert group_of("hallucination_pair-1", "povid-in-general") == "general"
    assert group_of("RLAIF-V-2", "povid-in-general") == "hallucination"
    assert group_of("RLAIF-V-2", "r1-reward") == group_of("RLHF-V-3", "r1-reward") == "general"
    assert group_of("hallucination_pair-1", "r1-reward") == "hallucination"
    with pytest.raises(ValueError, match="category map"):
        group_of("x", "nope")


@pytest.mark.parametrize("form", ["parquet", "github_jsonl", "hf_json", "hf_jsonl"])
def test_vlrb_every_form_gives_the_same_pairs(tmp_path, form):
    path = {
        "parquet": lambda: write_vlrb_parquet(tmp_path / "data" / "test-00000-of-00001.parquet"),
        "github_jsonl": lambda: write_vlrb_github_jsonl(tmp_path),
        "hf_json": lambda: write_vlrb_hf_json(tmp_path),
        "hf_jsonl": lambda: write_vlrb_hf_json(tmp_path, jsonl=True),
    }[form]()
    pairs = load_benchmark("vl-rewardbench", path)
    rows = vlrb_rows()
    assert len(pairs) == len(rows)
    for p, r in zip(pairs, rows):
        first_better = int(r["human_ranking"][0]) == 0
        assert (p.chosen, p.rejected) == (
            tuple(r["response"]) if first_better else tuple(reversed(r["response"]))
        )
        assert p.meta["original_id"] == r["id"]
        assert p.prompt[0]["content"].count("<image>") == 1 and p.prompt[0]["content"].startswith("<image>\n")
        assert len(p.images) == 1
    # tags stripped from both ends of POVID queries, then one tag in front
    assert [p.prompt[0]["content"] for p in pairs[:2]] == ["<image>\nDescribe.", "<image>\nHow many?"]
    assert [p.id for p in pairs[7:11]] == [
        "mathverse_8",
        "mathverse_8#2",
        "mmmu_pro_test_Art_9",
        "mmmu_pro_test_Art_9#2",
    ]
    assert pairs[9].meta["pair_key"] == pairs[10].meta["pair_key"] != pairs[7].meta["pair_key"]
    assert pairs[6].meta["category"] == "general"  # unknown prefix -> vlfeedback -> General
    assert Counter(p.meta["category"] for p in pairs) == {"general": 3, "hallucination": 4, "reasoning": 4}
    img = pairs[0].images[0].load()
    assert img.size == (16, 16)
    if form == "parquet":
        assert pairs[0].images[0].data is not None and pairs[0].images[0].path is None


def test_vlrb_snapshot_folder_and_limit(tmp_path):
    write_vlrb_parquet(tmp_path / "snap" / "data" / "test-00000-of-00001.parquet")
    assert len(load_benchmark("vl-rewardbench", tmp_path / "snap")) == len(vlrb_rows())
    assert [p.meta["original_id"] for p in load_benchmark("vl-rewardbench", tmp_path / "snap", limit=3)] == [
        "hallucination_pair-1",
        "hallucination_pair-2",
        "RLAIF-V-3",
    ]


def test_vlrb_missing_image_is_named_only_when_read(tmp_path):
    path = write_vlrb_github_jsonl(tmp_path, with_images=False)
    pairs = load_benchmark("vl-rewardbench", path)  # loading never reads media
    with pytest.raises(
        DataError, match=r"data\.jsonl:1 id=hallucination_pair-1: image file not found: .*povid"
    ):
        pairs[0].images[0].load()


def test_vlrb_bad_rows_name_file_line_and_id(tmp_path):
    rows = vlrb_rows()[:2]
    rows[1]["human_ranking"] = [0, 0]
    path = write_vlrb_hf_json(tmp_path, rows, jsonl=True)
    with pytest.raises(DataError, match=r"data\.jsonl:2 \(id hallucination_pair-2\): 'human_ranking'"):
        load_benchmark("vl-rewardbench", path)


def test_vlrb_folder_disagreeing_with_prefix_warns(tmp_path):
    rows = vlrb_rows()[:1]
    rows[0]["id"] = "mystery-1"
    path = tmp_path / "data.jsonl"
    rec = dict(rows[0], image_path="images/rlaif-v/mystery-1.jpg")
    path.write_text(json.dumps(rec) + "\n")
    with pytest.warns(UserWarning, match="image folder 'rlaif-v' says hallucination"):
        (pair,) = load_benchmark("vl-rewardbench", path)
    assert pair.meta["category"] == "general"


def test_vlrb_base64_image_bytes_in_json(tmp_path):
    import base64

    rec = dict(vlrb_rows()[0], image={"bytes": base64.b64encode(png_bytes()).decode(), "path": None})
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    (pair,) = load_benchmark("vl-rewardbench", tmp_path / "d.jsonl")
    assert pair.images[0].load().size == (16, 16)


def test_vlrb_full_size_file_with_other_group_counts_warns(tmp_path):
    def rows(n_general):
        base = vlrb_rows()[0]
        ids = [f"wildvision-battle-{i}" for i in range(n_general)] + [f"RLAIF-V-{i}" for i in range(749)]
        ids += [f"mathverse_{i}" for i in range(1250 - n_general - 749)]
        return [dict(base, id=i, image=f"images/{i}.png") for i in ids]

    for name, n_general in (("ok", 183), ("odd", 200)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n_general)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_benchmark("vl-rewardbench", tmp_path / "ok.jsonl")) == 1250
        # --limit: no check
        assert len(load_benchmark("vl-rewardbench", tmp_path / "odd.jsonl", limit=1250)) == 1250
    with pytest.warns(UserWarning, match="not comparable with the papers'"):
        load_benchmark("vl-rewardbench", tmp_path / "odd.jsonl")


@needs_samples
def test_vlrb_real_github_records():
    pairs = load_benchmark("vl-rewardbench", SAMPLES / "vl_rewardbench.jsonl")
    assert len(pairs) == 44
    assert Counter(p.meta["category"] for p in pairs) == {"general": 16, "hallucination": 17, "reasoning": 11}
    swapped = [p.meta["original_id"] for p in pairs if p.meta["human_ranking"] == [1, 0]]
    assert sorted(swapped) == sorted(
        [
            "LRVInstruction-000000007746",
            "jailbreak-typo-HateSpeech-70",
            "jailbreak-typo-Illegal_Activitiy-8",
            "politics-Gov_Decision-124",
            "svit-complex_reasoning-876",
        ]
    )
    assert all(group_of(i) == "general" for i in swapped)
    dup = [p for p in pairs if p.meta["original_id"] == "mmmu_pro_test_Marketing_150"]
    assert len(dup) == 2 and dup[0].meta["pair_key"] != dup[1].meta["pair_key"]
    assert all(p.prompt[0]["content"].count("<image>") == 1 for p in pairs)
    assert pairs[0].images[0].path.endswith("images/vlfeedback/LRVInstruction-000000007746.jpg")


@needs_samples
def test_vlrb_real_hf_copy_agrees_with_github_records():
    github = load_benchmark("vl-rewardbench", SAMPLES / "vl_rewardbench.jsonl")
    hf = load_benchmark("vl-rewardbench", SAMPLES / "vl_rewardbench.hf_schema_copy.jsonl")
    assert len(hf) == 45
    assert Counter(p.meta["category"] for p in hf) == {"general": 16, "hallucination": 17, "reasoning": 12}
    by_key = {p.meta["pair_key"]: p for p in hf}
    shared = [p for p in github if p.meta["pair_key"] in by_key]
    assert len(shared) >= 30  # POVID queries match once the GitHub copy's <image> tags are stripped
    assert any(p.meta["original_id"].startswith("hallucination_pair") for p in shared)
    for p in shared:
        q = by_key[p.meta["pair_key"]]
        assert (p.prompt, p.chosen, p.rejected) == (q.prompt, q.chosen, q.rejected)


# --- Multimodal RewardBench -----------------------------------------------------------------------------------


def test_mmrb_all_data_json(tmp_path):
    pairs = load_benchmark("multimodal-rewardbench", write_mmrb(tmp_path))
    rows = mmrb_rows()
    assert len(pairs) == len(rows)
    for p, r in zip(pairs, rows):
        assert p.chosen == (r["Output2"] if r["Better"] == "Output2" else r["Output1"])
        assert p.rejected == (r["Output1"] if r["Better"] == "Output2" else r["Output2"])
        assert p.prompt == [{"role": "user", "content": f"<image>\n{r['Text']}"}]
        assert Path(p.images[0].path).is_file()
    buckets = [p.meta["category"] for p in pairs]
    assert buckets[4:10] == [
        "reasoning/math",
        "reasoning/math",
        "reasoning/coding",
        "safety/bias",
        "safety/bias",
        "safety/toxicity",
    ]
    assert [p.id for p in pairs[-2:]] == ["MMBench_12", "MMBench_12#2"]
    assert (
        load_benchmark("multimodal-rewardbench", tmp_path, limit=2)[1].meta["original_id"] == "visitbench_2"
    )


def test_mmrb_release_file_without_text_is_refused(tmp_path):
    rows = mmrb_rows()
    rows[0]["Text"] = ""
    with pytest.raises(DataError, match=r"all_data\.json:2 item 0 \(id nocaps_1\): .*0_download_data\.py"):
        load_benchmark("multimodal-rewardbench", write_mmrb(tmp_path, rows))


def test_mmrb_odd_better_is_output1_with_a_warning(tmp_path):
    rows = mmrb_rows()[:2]
    rows[1]["Better"] = "output2"  # anything but "Output2" is Output1 in 2_get_accuracy.py
    with pytest.warns(UserWarning, match="'Better' other than"):
        pairs = load_benchmark("multimodal-rewardbench", write_mmrb(tmp_path, rows))
    assert pairs[1].chosen == rows[1]["Output1"]


@needs_samples
def test_mmrb_prediction_file_is_not_benchmark_data():
    with pytest.raises(
        DataError, match=r"outputs_example\.jsonl:1 \(id nocaps_13062\): empty or missing 'Text'"
    ):
        load_benchmark("multimodal-rewardbench", SAMPLES / "multimodal_rewardbench.outputs_example.jsonl")


# --- MM-RLHF-RewardBench --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hf_prefix", [False, True])
def test_mmrlhf_jsonl_with_image_root(tmp_path, hf_prefix):
    path = write_mmrlhf(tmp_path, hf_prefix=hf_prefix)
    with pytest.warns(UserWarning, match="no mcq/long/short/safety/video"):
        pairs = load_benchmark("mm-rlhf-rewardbench", path)
    rows = mmrlhf_rows()
    assert [(p.chosen, p.rejected) for p in pairs] == [(r["chosen"], r["rejected"]) for r in rows]
    assert [p.meta["category"] for p in pairs] == ["mcq"] * 3 + ["long"] * 2 + ["short"] * 2 + ["safety"] + [
        "video"
    ] * 2 + [None]
    assert [p.meta["group"] for p in pairs[:3]] == ["q_mcq1", "q_mcq1", "q_mcq2"]
    assert [p.id for p in pairs[:2]] == ["q_mcq1", "q_mcq1#2"]
    video = pairs[8]
    assert video.images == [] and len(video.videos) == 1 and Path(video.videos[0].frames_dir).is_dir()
    assert video.prompt[0]["content"] == "<video>\nQ vid_1_2"
    assert all(Path(p.images[0].path).is_file() for p in pairs if p.images)
    # --images pointing at the folder that holds mcq/ ... works for both path styles
    with pytest.warns(UserWarning):
        again = load_benchmark(
            "mm-rlhf-rewardbench", path, images=tmp_path / "images" if hf_prefix else tmp_path
        )
    assert [p.images[0].path for p in again if p.images] == [p.images[0].path for p in pairs if p.images]


def test_mmrlhf_row_needs_one_medium(tmp_path):
    rows = mmrlhf_rows()[:1]
    del rows[0]["image"]
    with pytest.raises(
        DataError, match=r"mm_reward_bench\.jsonl:1 \(id q_mcq1\): .*exactly one of 'image' or 'video'"
    ):
        load_benchmark("mm-rlhf-rewardbench", write_mmrlhf(tmp_path, rows, with_media=False))


@needs_samples
def test_mmrlhf_real_records():
    pairs = load_benchmark("mm-rlhf-rewardbench", SAMPLES / "mm_rlhf_rewardbench.jsonl")
    assert len(pairs) == 39
    assert Counter(p.meta["category"] for p in pairs) == {
        "mcq": 8,
        "long": 8,
        "short": 8,
        "safety": 10,
        "video": 5,
    }
    assert len({p.meta["group"] for p in pairs}) == 10
    videos = [p for p in pairs if p.videos]
    assert len(videos) == 5 and all(p.videos[0].frames_dir.endswith(p.meta["media_path"]) for p in videos)
    assert all(p.prompt[0]["content"].startswith("<video>\n") for p in videos)


# --- pairs ----------------------------------------------------------------------------------------------------


def test_pairs_benchmark_reads_our_jsonl(tmp_path):
    recs = [
        {"id": "a", "prompt": "hi", "chosen": "hello there", "rejected": "go", "source": "synth/greet"},
        {
            "id": "b",
            "prompt": "q",
            "chosen": "x",
            "rejected": "yy",
            "source": "synth/q",
            "meta": {"category": "cat1"},
        },
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    pairs = load_benchmark("pairs", tmp_path / "p.jsonl", limit=5)
    assert [p.meta["category"] for p in pairs] == ["synth/greet", "cat1"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("nope", tmp_path / "p.jsonl")
