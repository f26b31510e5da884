"""Decontamination (a planted benchmark item, a copy with other case/whitespace and a resized re-encoded
image, all found and removed; look-alikes kept; counts per benchmark), the hashing primitives, and the
train/validation split by prompt+image hash."""

import json

import numpy as np
from data_fixtures import cli, encode, picture, write_jsonl

from basereward.data.dedup import dhash, hamming, normalise, open_grey, phash
from basereward.data.split import split
from basereward.data.store import open_pairs
from basereward.types import ImageRef

QUESTION = "What is the man on the left holding in his right hand while crossing the busy street?"


def _bench_pairs(tmp_path):
    """Benchmark fixture in our pair JSONL form: one image item, one text-only item, one whose image is
    absent."""
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b1.png").write_bytes(encode(picture(100, 128)))
    rows = [
        {
            "id": "bench-img",
            "prompt": [{"role": "user", "content": "<image>\n" + QUESTION}],
            "images": ["b1.png"],
            "chosen": "An umbrella.",
            "rejected": "A dog.",
        },
        {
            "id": "bench-text",
            "prompt": [
                {"role": "user", "content": "Prove that the square root of two is irrational, step by step."}
            ],
            "chosen": "Assume p/q ...",
            "rejected": "It is rational.",
        },
    ]
    return write_jsonl(tmp_path / "bench" / "bench.jsonl", rows)


def _train(tmp_path):
    img_dir = tmp_path / "train_img"
    img_dir.mkdir()
    resized = picture(100, 128).resize((90, 90))
    (img_dir / "planted.png").write_bytes(encode(picture(100, 128)))
    (img_dir / "resized.jpg").write_bytes(encode(resized, "JPEG", quality=70))
    (img_dir / "other.png").write_bytes(encode(picture(7, 128)))

    def row(i, text, img=None):
        return {
            "id": f"t:{i}",
            "source": "train_src",
            "prompt": [{"role": "user", "content": ("<image>\n" if img else "") + text}],
            "images": [f"train_img/{img}"] if img else [],
            "chosen": "yes",
            "rejected": "no",
        }

    rows = [
        row(0, QUESTION, "planted.png"),  # the benchmark item itself
        row(
            1, "  " + QUESTION.upper().replace(" ", "   \n ") + "  ", "resized.jpg"
        ),  # other case/space, resized JPEG
        row(
            2, "Please answer briefly. " + QUESTION + " Think first.", "resized.jpg"
        ),  # wrapped: near-duplicate text
        row(3, QUESTION, "other.png"),  # same words, unrelated image: not the benchmark item
        row(4, "What colour is the sky?", "planted.png"),  # benchmark image, unrelated question: kept
        row(5, "prove that the SQUARE root of two is irrational,   step by step."),  # the text-only item
        row(6, "Write a haiku about rain."),
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    rc, _, err = cli(
        "data",
        "convert",
        "--source",
        "pairs",
        "--input",
        tmp_path / "train.jsonl",
        "--out",
        tmp_path / "train",
    )
    assert rc == 0, err
    return tmp_path / "train"


def test_planted_items_found_and_removed_with_counts_per_benchmark(tmp_path):
    bench = _bench_pairs(tmp_path)
    train = _train(tmp_path)
    rc, report, err = cli(
        "data",
        "decontam",
        "--train",
        train,
        "--against",
        f"pairs:{bench}",
        "--out",
        tmp_path / "clean",
    )
    assert rc == 0, err
    kept = [p.id for p in open_pairs(tmp_path / "clean")]
    assert kept == ["t:3", "t:4", "t:6"]
    b = report["benchmarks"]["pairs"]
    assert b["items"] == 2 and b["items_matched"] == 2 and b["train_pairs_matched"] == 4
    assert b["by_source"] == {"train_src": 4}
    assert report["removed"] == 4 and report["train_pairs_matched"] == 4
    matches = [
        json.loads(line) for line in (tmp_path / "clean" / "decontam_matches.jsonl").read_text().splitlines()
    ]
    rules = {(m["train_id"], m["text"], m["image"]) for m in matches}
    assert ("t:0", "exact_text", "image_exact") in rules and ("t:1", "exact_text", "image_near") in rules
    assert ("t:2", "near_text", "image_near") in rules and ("t:5", "exact_text", None) in rules


def test_report_only_and_unavailable_benchmark_images(tmp_path):
    bench = _bench_pairs(tmp_path)
    train = _train(tmp_path)
    # media not downloaded: text decides for long questions
    (tmp_path / "bench" / "b1.png").write_bytes(b"gone")
    from basereward.data.decontam import Settings, decontaminate
    from basereward.data.io import read_pairs

    report = decontaminate(train, [("vlrb", read_pairs(bench, check_images=False))], settings=Settings())
    b = report["benchmarks"]["vlrb"]
    assert b["items_image_unavailable"] == 1 and b["train_pairs_matched"] == 5  # t:0-3 on text, t:5
    assert "out" not in report and len(open_pairs(train)) == 7  # report only: nothing written


def test_vl_rewardbench_github_form(tmp_path):
    root = tmp_path / "vlrb"
    (root / "images" / "rlaif-v").mkdir(parents=True)
    (root / "images" / "rlaif-v" / "RLAIF-V-14.jpg").write_bytes(
        encode(picture(100, 128), "JPEG", quality=95)
    )
    rec = {
        "id": "RLAIF-V-14",
        "image_path": "images/rlaif-v/RLAIF-V-14.jpg",
        "query": QUESTION,
        "response": ["An umbrella.", "A dog."],
        "human_ranking": [0, 1],
        "models": ["a", "b"],
        "judge": "human",
        "rationale": None,
        "query_source": "RLAIF-V",
        "meta": {},
        "human_error_analysis": None,
    }
    write_jsonl(root / "data.jsonl", [rec])
    train = _train(tmp_path)
    rc, report, err = cli(
        "data", "decontam", "--train", train, "--against", f"vl-rewardbench:{root / 'data.jsonl'}:{root}"
    )
    assert rc == 0, err
    b = report["benchmarks"]["vl-rewardbench"]
    assert b["items"] == 1 and b["items_image_unavailable"] == 0
    assert b["train_pairs_matched"] == 3  # t:0 (same image re-encoded), t:1 (resized), t:2 (wrapped question)


def test_normalise_and_perceptual_hashes():
    assert normalise("  What IS\n\tthis?<image> ") == normalise("<image>\nwhat is this?")
    a = ImageRef(data=encode(picture(3, 200)))
    small = ImageRef(data=encode(picture(3, 200).resize((77, 77)), "JPEG", quality=50))
    other = ImageRef(data=encode(picture(4, 200)))
    for h in (phash, dhash):
        ha, hs, ho = h(open_grey(a)), h(open_grey(small)), h(open_grey(other))
        d = hamming(ha, np.array([hs, ho], np.uint64))
        assert d[0] <= 6 < 12 <= d[1]


def test_split_keeps_each_prompt_image_on_one_side(tmp_path):
    (tmp_path / "i1.png").write_bytes(encode(picture(1, 32)))
    (tmp_path / "i2.png").write_bytes(encode(picture(2, 32)))
    rows = []
    for g in range(40):  # 40 prompts with 1-4 pairs each; the generic prompt recurs over two images
        for k in range(g % 4 + 1):
            rows.append(
                {
                    "id": f"g{g}:{k}",
                    "prompt": [{"role": "user", "content": f"Question {g}?"}],
                    "chosen": f"a{k}",
                    "rejected": f"b{k}",
                }
            )
    for img in ("i1.png", "i2.png"):
        for k in range(3):
            rows.append(
                {
                    "id": f"{img}:{k}",
                    "prompt": [{"role": "user", "content": "<image>\nDescribe this image."}],
                    "images": [img],
                    "chosen": f"c{k}",
                    "rejected": f"d{k}",
                }
            )
    write_jsonl(tmp_path / "all.jsonl", rows)
    cli(
        "data",
        "convert",
        "--source",
        "pairs",
        "--input",
        tmp_path / "all.jsonl",
        "--out",
        tmp_path / "all",
        "--format",
        "arrow",
    )
    report = split(tmp_path / "all", tmp_path / "split", val_size=20, seed=3)
    train, val = (
        list(open_pairs(tmp_path / "split" / "train")),
        list(open_pairs(tmp_path / "split" / "validation")),
    )
    assert len(train) + len(val) == len(rows) and 20 <= len(val) < 24

    def key(p):
        return (p.prompt[0]["content"], p.images[0].data if p.images else None)

    assert not {key(p) for p in train} & {key(p) for p in val}
    assert report["prompts_on_both_sides"] == 0 and report["validation"]["rows"] == len(val)
    again = split(tmp_path / "all", tmp_path / "split2", val_size=20, seed=3)
    assert again["validation"] == report["validation"]  # deterministic by seed
    rc, out, err = cli(
        "data", "split", "--input", tmp_path / "all", "--out", tmp_path / "s3", "--val-fraction", "0.1"
    )
    assert rc == 0 and out["validation"]["rows"] >= 0.1 * len(rows)
