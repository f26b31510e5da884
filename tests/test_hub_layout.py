"""`init-tiny --layout hub`: the file set of a real Qwen2.5-VL / Qwen2-VL download loads, trains, scores, evaluates
and serves like the transformers 5 layout, and a shard with a tensor cut out is refused with the tensor named."""

import base64
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from basereward.cli import main
from basereward.data.synthetic import synthesize
from basereward.model.backbone import load_backbone
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel
from basereward.scoring import RewardScorer
from basereward.tiny import init_tiny
from basereward.types import DataError, ImageRef, Sample

SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {
        arch: init_tiny(root / arch, arch=arch, seed=0, layout="hub") for arch in ("qwen2_5_vl", "qwen2_vl")
    }


def test_hub_layout_has_the_download_file_set(hub_dirs):
    d = hub_dirs["qwen2_5_vl"]
    names = {p.name for p in d.iterdir()}
    assert set(SHARDS) | {INDEX, "config.json", "preprocessor_config.json", "chat_template.json"} <= names
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "model.safetensors" not in names and "processor_config.json" not in names
    index = json.loads((d / INDEX).read_text())["weight_map"]
    in_shards = {k: s for s in SHARDS for k in load_file(str(d / s))}
    assert index == in_shards and set(index.values()) == set(SHARDS)
    # the Hub's 4.x tensor names, not transformers 5's module paths
    assert {"model.embed_tokens.weight", "lm_head.weight", "visual.blocks.0.attn.qkv.weight"} <= set(index)
    assert not any(k.startswith(("model.language_model.", "model.visual.")) for k in index)
    cfg = json.loads((d / "config.json").read_text())
    assert "text_config" not in cfg and "rope_parameters" not in cfg
    assert cfg["torch_dtype"] == "float32" and cfg["hidden_size"] == 64 and cfg["rope_theta"] == 10000.0
    assert cfg["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
    assert json.loads((d / "tokenizer_config.json").read_text())["tokenizer_class"] == "Qwen2Tokenizer"
    pre = json.loads((d / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"]) == (56 * 56, 112 * 112)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
def test_hub_layout_gives_the_same_model_as_the_default_layout(hub_dirs, tiny_dirs, arch, tmp_path):
    from PIL import Image

    hub, default = hub_dirs[arch], tiny_dirs[arch]
    a, b = load_backbone(hub), load_backbone(default)  # either would raise on a missing tensor
    assert a.config.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    # the 4.x-only names (in_chans, spatial_patch_size) stay on as extra attributes; every 5.x field agrees
    va = {
        k: v
        for k, v in a.config.vision_config.to_dict().items()
        if k not in ("in_chans", "spatial_patch_size")
    }
    assert va == b.config.vision_config.to_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    img = tmp_path / "i.png"
    Image.new("RGB", (84, 140), (200, 30, 90)).save(img)
    # no digits: Qwen2Tokenizer splits numbers into single digits, the default layout's BPE does not
    sample = Sample(
        [{"role": "user", "content": "<image>\nWhat colour is the shape?"}],
        ["It is red.", "The shape is blue."],
        [ImageRef(path=str(img))],
    )
    rewards = []
    for d in (hub, default):
        proc = load_processor(d, arch)
        assert proc.chat_template and proc.image_processor.size["longest_edge"] == 112 * 112
        model = RewardModel.from_backbone(d, seed=3).eval()
        with torch.no_grad():  # a head far from zero, so equal rewards mean equal hidden states
            for p in model.head.parameters():
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
        rewards.append(torch.tensor(RewardScorer(model, proc)([sample])[0]))
    assert torch.allclose(rewards[0], rewards[1], atol=1e-5)
    assert not torch.allclose(rewards[0][0], rewards[0][1])


@pytest.fixture(scope="module")
def hub_trained(hub_dirs, tmp_path_factory):
    """A reward model trained for 2 steps on the hub-layout Qwen2.5-VL backbone, and its synthetic data folder."""
    root = tmp_path_factory.mktemp("hub-train")
    synthesize(root / "d", pairs=16, eval_pairs=8, seed=1)
    run = root / "run"
    rc = main(
        [
            "train",
            f"model.backbone={hub_dirs['qwen2_5_vl']}",
            f"data.train={root / 'd' / 'train.jsonl'}",
            f"output_dir={run}",
            "max_steps=2",
            "batch_size=4",
            "micro_batch_size=4",
            "eval_every=0",
            "progress=false",
            "tensorboard=false",
        ]
    )
    assert rc == 0
    return run / "final", root / "d"


def test_train_score_and_eval_run_on_the_hub_layout(hub_trained, tmp_path, capsys):
    final, data = hub_trained
    capsys.readouterr()
    assert (final / "head.safetensors").is_file()

    scores = tmp_path / "scores.jsonl"
    test_file = data / "test.jsonl"
    argv = ["score", "--model", str(final), "--input", str(test_file), "--output", str(scores)]
    assert main([*argv, "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n"] == 8 == len(scores.read_text().splitlines())

    assert main(["eval", "--benchmark", "pairs", "--data", str(test_file), "--model", str(final)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 8 and 0 <= result["accuracy"] <= 100


def test_the_server_on_a_hub_layout_model_returns_the_rewards_of_score(hub_trained, tmp_path, capsys):
    """`basereward serve`'s app over the model trained on the hub layout: /v1/reward, images sent as data URIs,
    gives every test pair the rewards `basereward score` wrote for it (image pairs and the text-only one)."""
    from fastapi.testclient import TestClient
    from serve_fixtures import service

    from basereward.serve.app import create_app

    final, data = hub_trained
    scores = tmp_path / "scores.jsonl"
    argv = ["score", "--model", str(final), "--input", str(data / "test.jsonl"), "--output", str(scores)]
    assert main([*argv, "--device", "cpu"]) == 0
    capsys.readouterr()
    expected = {r["id"]: r for r in map(json.loads, scores.read_text().splitlines())}
    records = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    assert any(r["images"] for r in records) and any(not r["images"] for r in records)

    def uri(image):
        return "data:image/png;base64," + base64.b64encode((data / image["path"]).read_bytes()).decode()

    samples = [
        {
            "uid": f"{r['id']}/{side}",
            "messages": [*r["prompt"], {"role": "assistant", "content": r[side]}],
            "images": [uri(im) for im in r["images"]],
        }
        for r in records
        for side in ("chosen", "rejected")
    ]
    with TestClient(create_app(service(final, max_wait_ms=1.0))) as client:
        health = client.get("/health").json()
        resp = client.post("/v1/reward", json={"samples": samples, "return": ["raw", "normalized"]})
    assert resp.status_code == 200, resp.text
    assert health["model_type"] == "qwen2_5_vl"
    results = resp.json()["results"]
    assert [x["uid"] for x in results] == [s["uid"] for s in samples]
    for x in results:
        pair, side = x["uid"].split("/")
        want = expected[pair]
        assert x["raw"] == pytest.approx(want[f"reward_{side}"], abs=1e-4), x["uid"]
        assert x["normalized"] == pytest.approx(want[f"normalized_{side}"], abs=1e-4), x["uid"]
    # rewards that vary across samples: equal numbers above are not a constant head output
    assert len({round(x["raw"], 4) for x in results}) > 2


def test_a_tensor_cut_from_a_shard_is_refused_by_name(hub_dirs, tmp_path):
    d = shutil.copytree(hub_dirs["qwen2_5_vl"], tmp_path / "cut")
    index = json.loads((d / INDEX).read_text())
    victim = "model.layers.1.mlp.up_proj.weight"
    shard = d / index["weight_map"].pop(victim)
    tensors = {k: v.clone() for k, v in load_file(str(shard)).items()}  # not the mapped file's memory
    del tensors[victim]
    save_file(tensors, str(shard), metadata={"format": "pt"})
    (d / INDEX).write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"missing: [^;]*layers\.1\.mlp\.up_proj\.weight"):
        load_backbone(d)
    with pytest.raises(DataError, match="cut"):
        RewardModel.from_backbone(d)


def test_init_tiny_cli_writes_the_hub_layout_for_a_text_model(tiny_dirs, tmp_path, capsys):
    assert main(["init-tiny", str(tmp_path / "t"), "--arch", "qwen2", "--layout", "hub"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["layout"] == "hub"
    assert json.loads((tmp_path / "t" / INDEX).read_text())["weight_map"]["lm_head.weight"] in SHARDS
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["rope_theta"] == 10000.0 and "rope_parameters" not in cfg
    hub, default = load_backbone(tmp_path / "t"), load_backbone(tiny_dirs["qwen2"])
    assert result["backbone_params"] == sum(p.numel() for p in default.parameters())
    ids = torch.tensor([[1, 40, 41, 42, 2]])
    with torch.no_grad():
        assert torch.equal(hub(input_ids=ids).last_hidden_state, default(input_ids=ids).last_hidden_state)
