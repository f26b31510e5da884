"""Multimodal converters, each on a fixture in its dataset's public layout (docs/datasets.md §2):
RLAIF-V, RLHF-V, MMPR v1.2, MM-RLHF, VLFeedback, the combined R1-Reward SFT source, MMIF, OmniAlign-V-DPO."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from data_fixtures import convert, jpeg, png, write_json, write_jsonl, write_parquet

from basereward.types import IMAGE_TAG


def _bytes(img):
    return img.data if img.data is not None else Path(img.path).read_bytes()


def rlaif_rows(n=3):
    return [
        {
            "ds_name": "RLAIF-V",
            "image": {"bytes": png(i), "path": f"{i}.png"},
            "question": f"What is shown in picture {i}?",
            "chosen": f"A red square {i}.",
            "rejected": f"A blue circle {i}.",
            "origin_dataset": "COCO",
            "origin_split": '{"model": "llava", "type": "detailed_description"}',
            "idx": f"OmniLMM-{i}",
            "image_path": f"coco/{i}.jpg",
        }
        for i in range(n)
    ]


def test_rlaif_v_parquet(tmp_path):
    src = write_parquet(tmp_path / "RLAIF-V-Dataset" / "RLAIF-V-Dataset_000.parquet", rlaif_rows())
    report, pairs = convert("rlaif-v", src.parent, tmp_path / "out", "--revision", "abc123")
    assert report["pairs"] == 3 and report["sources"] == {"rlaif_v": 3} and report["image_rows"] == 3
    p = pairs[1]
    assert p.id == "rlaif_v:OmniLMM-1:0" and p.source == "rlaif_v"
    assert p.prompt == [{"role": "user", "content": "<image>\nWhat is shown in picture 1?"}]
    assert (p.chosen, p.rejected) == ("A red square 1.", "A blue circle 1.")
    assert _bytes(p.images[0]) == png(1)
    assert (
        p.meta["origin_dataset"] == "COCO"
        and p.meta["license"] == "cc-by-nc-4.0"
        and p.meta["revision"] == "abc123"
    )


def test_rlaif_v_save_to_disk_folder_and_image_paths(tmp_path):
    import datasets

    datasets.Dataset.from_list(rlaif_rows(2)).save_to_disk(str(tmp_path / "disk"))
    _, pairs = convert(
        "rlaif-v", tmp_path / "disk", tmp_path / "out", "--image-mode", "path", "--format", "arrow"
    )
    assert [p.id for p in pairs] == ["rlaif_v:OmniLMM-0:0", "rlaif_v:OmniLMM-1:0"]
    assert pairs[0].images[0].path.startswith(str(tmp_path / "out" / "images"))  # stored as a file, by path
    assert Path(pairs[0].images[0].path).read_bytes() == png(0)


def test_rlhf_v(tmp_path):
    rows = [
        {
            "ds_name": "RLHF-V",
            "image": {"bytes": jpeg(i), "path": None},
            "text": json.dumps(
                {
                    "question": f"Describe image {i}.",
                    "chosen": "" if i == 2 else f"Fixed {i}.",
                    "rejected": f"Wrong {i}.",
                }
            ),
            "origin_dataset": "coco",
            "origin_split": "train",
            "idx": i,
            "image_path": f"{i}.jpg",
        }
        for i in range(3)
    ]
    src = write_parquet(tmp_path / "RLHF-V-Dataset.parquet", rows)
    report, pairs = convert("rlhf-v", src, tmp_path / "out")
    assert report["dropped"] == {"empty chosen": 1}  # the card: some chosen are empty
    assert [p.id for p in pairs] == ["rlhf_v:0:0", "rlhf_v:1:0"]
    assert pairs[1].prompt[0]["content"] == "<image>\nDescribe image 1." and pairs[1].chosen == "Fixed 1."
    assert _bytes(pairs[1].images[0]) == jpeg(1)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_mmpr_meta_annotations_zip_and_split_image_zip(tmp_path):
    root = tmp_path / "MMPR-v1.2"
    ai2d = [
        {
            "image": "a.png",
            "question": "<image>\nWhich part is the leaf?",
            "chosen": "B",
            "rejected": "C",
            "answer_gt": "B",
        },
        {
            "image": ["a.png", "b.png"],
            "question": "Compare the two.",
            "chosen": "Same.",
            "rejected": "Different.",
        },
        {"question": "What is 2+2?", "chosen": "4", "rejected": "5"},  # text-only row: kept with no image
        {"image": "c.gif", "question": "Count.", "chosen": "3", "rejected": "2"},  # only c.jpg exists
        {"image": "missing.png", "question": "Q?", "chosen": "x", "rejected": "y"},
        {"image": "a.png", "question": "Q?", "chosen": "same", "rejected": "same"},
        {"image": "a.png", "question": "Q?", "chosen": "look <image> here", "rejected": "y"},
        {"video": "clip/", "question": "Q?", "chosen": "x", "rejected": "y"},
    ]
    rlaif = [{"image": "d.png", "question": "Describe.", "chosen": "good", "rejected": "bad"}]
    meta = {
        "ai2d_train_12k_en_20240410_extracted_pairs_vqa_correctness_rules": {
            "root": "MMPR-v1.2/images/ai2d",
            "annotation": "MMPR-v1.2/annotations/ai2d_pairs.jsonl",
            "data_augment": False,
            "repeat_time": 1,
            "length": len(ai2d),
        },
        "RLAIF-V-Dataset": {
            "root": "MMPR-v1.2/images/RLAIF-V",
            "annotation": "MMPR-v1.2/annotations/RLAIF-V-Dataset.jsonl",
            "data_augment": False,
            "repeat_time": 1,
            "length": 1,
        },
    }
    write_json(root / "meta.json", meta)
    _zip(
        root / "annotations.zip",
        {
            "annotations/ai2d_pairs.jsonl": _jsonl_bytes(ai2d),
            "annotations/RLAIF-V-Dataset.jsonl": _jsonl_bytes(rlaif),
        },
    )
    images = {
        "images/ai2d/a.png": png(1),
        "images/ai2d/b.png": png(2),
        "images/ai2d/c.jpg": jpeg(3),
        "images/RLAIF-V/d.png": png(4),
    }
    whole = _zip(tmp_path / "whole.zip", images).read_bytes()
    cut = len(whole) // 2  # split like `split -b`: the zip is only readable through the concatenated parts
    (root / "images.zip_aa").write_bytes(whole[:cut])
    (root / "images.zip_ab").write_bytes(whole[cut:])

    report, pairs = convert("mmpr-v1.2", root, tmp_path / "out")
    assert report["dropped"] == {
        "<image> tag in a response": 1,
        "chosen == rejected": 1,
        "missing image file": 1,
        "video row (not converted)": 1,
    }
    sub = "ai2d_train_12k_en_20240410_extracted_pairs_vqa_correctness_rules"
    by_id = {p.id: p for p in pairs}
    one = by_id[f"mmpr_v1.2/{sub}:0:0"]
    assert one.source == f"mmpr_v1.2/{sub}" and one.prompt[0]["content"] == "<image>\nWhich part is the leaf?"
    assert _bytes(one.images[0]) == png(1) and one.meta["answer_gt"] == "B" and one.meta["license"] == "mit"
    two = by_id[f"mmpr_v1.2/{sub}:1:0"]
    assert two.prompt[0]["content"] == "<image>\n<image>\nCompare the two." and [
        _bytes(i) for i in two.images
    ] == [png(1), png(2)]
    text_only = by_id[f"mmpr_v1.2/{sub}:2:0"]
    assert text_only.images == [] and text_only.prompt[0]["content"] == "What is 2+2?"
    assert _bytes(by_id[f"mmpr_v1.2/{sub}:3:0"].images[0]) == jpeg(3)  # .gif -> .jpg fallback
    nc = by_id["mmpr_v1.2/RLAIF-V-Dataset:0:0"]
    assert nc.meta["license"] == "non-commercial" and _bytes(nc.images[0]) == png(4)
    assert len(pairs) == 5

    _, only = convert("mmpr-v1.2", root, tmp_path / "one", "--split", "RLAIF-V-Dataset")
    assert [p.id for p in only] == ["mmpr_v1.2/RLAIF-V-Dataset:0:0"]


def _mm_rlhf_folder(root: Path) -> Path:
    rows = [
        {
            "prompt": "<image>\nWhat is unusual here?",
            "chosen": "A cat on a roof.",
            "rejected": "A dog.",
            "image": "long/x1.jpg",
            "chosen_reason": "accurate",
            "rejected_reason": "wrong animal",
        },
        {"prompt": "Read the sign. <image>", "chosen": "STOP", "rejected": "GO", "image": "short/y1.png"},
        {"prompt": "What happens?", "chosen": "Running.", "rejected": "Sleeping.", "video": "video/clip1"},
        {"prompt": "Which?", "chosen": "A", "rejected": "B", "image": "mcq/z.png", "is_tie": True},
    ]
    write_jsonl(root / "dpo_pairs.jsonl", rows)
    _zip(root / "long.zip", {"long/x1.jpg": jpeg(5)})
    (root / "short").mkdir(parents=True)
    (root / "short" / "y1.png").write_bytes(png(6))
    return root


def test_mm_rlhf_dpo_pairs_with_zip_and_folder_media(tmp_path):
    root = _mm_rlhf_folder(tmp_path / "MM-RLHF")
    report, pairs = convert("mm-rlhf-dpo", root, tmp_path / "out")
    assert report["dropped"] == {"tie": 1, "video row (not converted)": 1}
    assert [p.prompt[0]["content"] for p in pairs] == [
        "<image>\nWhat is unusual here?",
        "<image>\nRead the sign.",
    ]
    assert _bytes(pairs[0].images[0]) == jpeg(5) and _bytes(pairs[1].images[0]) == png(6)
    assert pairs[0].meta["chosen_reason"] == "accurate" and pairs[0].source == "mm_rlhf"


def _vlfeedback_folder(root: Path) -> Path:
    def comp(model, h, e, v, text):
        ann = {
            "Helpfulness": {"Rating": h, "Rationale": "."},
            "Ethical Considerations": {"Rating": e, "Rationale": "."},
            "Visual Faithfulness": {"Rating": v, "Rationale": "."},
        }
        return {"annotations": ann, "model": model, "response": text}

    row = {
        "id": "svit-1",
        "prompt": "What is the man holding?",
        "models": ["m0", "m1", "m2", "m3"],
        "img_path": "svit/1.jpg",
        "completions": [
            comp("m0", "5", "5", "4", "An umbrella."),  # 4.667
            comp("m1", "3", "5", "N/A", "A bag."),  # 4.0 ("N/A" ignored)
            comp("m2", "3", "5", "4", "A hat."),  # 4.0 -> ties m1: no pair
            comp("m3", "N/A", "N/A", "N/A", "Nothing."),  # unscored
        ],
    }
    write_jsonl(root / "vlfeedback_80k.jsonl", [row])
    _zip(root / "merged_images.zip", {"merged_images/svit/1.jpg": jpeg(7)})
    return root


def test_vlfeedback_all_non_tied_pairs(tmp_path):
    _, pairs = convert("vlfeedback", _vlfeedback_folder(tmp_path / "VLFeedback"), tmp_path / "out")
    got = [(p.id, p.chosen, p.rejected, round(p.margin, 3)) for p in pairs]
    assert got == [
        ("vlfeedback:svit-1:0", "An umbrella.", "A bag.", 0.667),
        ("vlfeedback:svit-1:1", "An umbrella.", "A hat.", 0.667),
    ]
    assert pairs[0].prompt[0]["content"] == "<image>\nWhat is the man holding?" and _bytes(
        pairs[0].images[0]
    ) == jpeg(7)
    assert pairs[0].meta["chosen_model"] == "m0" and pairs[0].meta["rejected_model"] == "m1"


def test_r1_reward_sft_combined(tmp_path):
    root = tmp_path / "r1"
    _mm_rlhf_folder(root / "MM-RLHF")
    _vlfeedback_folder(root / "VLFeedback")
    rows = [
        {
            "ds_name": "RLHF-V",
            "image": {"bytes": png(9), "path": None},
            "text": json.dumps({"question": "Q", "chosen": "c", "rejected": "r"}),
            "origin_dataset": "x",
            "origin_split": "y",
            "idx": 0,
            "image_path": "a",
        }
    ]
    write_parquet(root / "RLHF-V-Dataset" / "RLHF-V-Dataset.parquet", rows)
    report, pairs = convert("mm-rlhf", root, tmp_path / "out")
    assert report["sources"] == {"mm_rlhf": 2, "rlhf_v": 1, "vlfeedback": 2}
    assert all(IMAGE_TAG in p.prompt[0]["content"] for p in pairs)


def test_mmif_sharegpt_json_list(tmp_path):
    (tmp_path / "mmif" / "images").mkdir(parents=True)
    (tmp_path / "mmif" / "images" / "1.png").write_bytes(png(11))
    rows = [
        {
            "conversations": [
                {"from": "human", "value": "<image>\nWrite exactly three lines about this image."}
            ],
            "chosen": {"from": "gpt", "value": "Line one.\nLine two.\nLine three."},
            "rejected": {"from": "gpt", "value": "One line."},
            "images": ["images/1.png"],
        }
    ]
    src = write_json(tmp_path / "mmif" / "mmif_23k_dpo.json", rows)
    _, pairs = convert("mmif", src, tmp_path / "out")
    assert pairs[0].prompt == [
        {"role": "user", "content": "<image>\nWrite exactly three lines about this image."}
    ]
    assert pairs[0].chosen == "Line one.\nLine two.\nLine three." and _bytes(pairs[0].images[0]) == png(11)
    assert pairs[0].source == "mmif"


def test_omnialign_jsonl_subsets_and_tar_images(tmp_path):
    root = tmp_path / "OmniAlign-V-DPO"
    write_jsonl(
        root / "chart.jsonl",
        [
            {
                "prompt": "Explain the trend.",
                "chosen": "It rises.",
                "rejected": "Cats.",
                "image": "chart/1.png",
            }
        ],
    )
    write_jsonl(
        root / "poster.jsonl",
        [
            {
                "prompt": "<image>Compare.",
                "chosen": "Both blue.",
                "rejected": "No.",
                "image": ["poster/1.png", "poster/2.png"],
            }
        ],
    )
    with tarfile.open(root / "images.tar", "w") as tar:  # members carry an extra leading folder
        for name, data in {
            "images/chart/1.png": png(12),
            "images/poster/1.png": png(13),
            "images/poster/2.png": png(14),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _, pairs = convert("omnialign-v-dpo", root, tmp_path / "out")
    assert [p.meta["subset"] for p in pairs] == ["chart", "poster"]
    assert pairs[0].prompt[0]["content"] == "<image>\nExplain the trend." and _bytes(
        pairs[0].images[0]
    ) == png(12)
    assert pairs[1].prompt[0]["content"] == "<image>\n<image>\nCompare." and [
        _bytes(i) for i in pairs[1].images
    ] == [png(13), png(14)]


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "jsonl"])
def test_output_formats_read_back_identically(tmp_path, fmt):
    src = write_parquet(tmp_path / "r.parquet", rlaif_rows(2))
    _, pairs = convert("rlaif-v", src, tmp_path / fmt, "--format", fmt)
    assert [(p.id, p.prompt, p.chosen, _bytes(p.images[0])) for p in pairs] == [
        (
            f"rlaif_v:OmniLMM-{i}:0",
            [{"role": "user", "content": f"<image>\nWhat is shown in picture {i}?"}],
            f"A red square {i}.",
            png(i),
        )
        for i in range(2)
    ]
