"""Loading is all or nothing and reads no pickles: a backbone, head or adapter whose tensors do not fit, weights
stored as pickles, and a malformed basereward.json are each a DataError naming the file and the tensor or field."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from basereward.config import LoraArgs
from basereward.model.backbone import load_backbone
from basereward.model.lora import apply_lora
from basereward.model.processor import load_processor
from basereward.model.reward_model import RewardModel, load_reward_model
from basereward.types import DataError


@pytest.fixture(scope="module")
def rm_dir(tiny_dirs, tmp_path_factory):
    """A saved reward model on the tiny text backbone (the fastest to load)."""
    model = RewardModel.from_backbone(tiny_dirs["qwen2"], seed=1)
    return model.save(tmp_path_factory.mktemp("rm") / "rm", load_processor(tiny_dirs["qwen2"], "qwen2"))


def read(path):
    # copies: load_file maps the file, and rewriting a mapped file under its tensors crashes the process
    return {k: v.clone() for k, v in load_file(str(path)).items()}


def rewrite(path, edit):
    tensors = read(path)
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_a_missing_or_renamed_backbone_tensor_is_refused_by_name(tiny_dirs, tmp_path):
    d = shutil.copytree(tiny_dirs["qwen2_5_vl"], tmp_path / "bb")

    def cut(t):
        del t["model.norm.weight"]
        t["visual.merger.mlp.0.weight_v2"] = t.pop("visual.merger.mlp.0.weight")

    rewrite(d / "model.safetensors", cut)
    with pytest.raises(DataError) as err:
        load_backbone(d)
    msg = str(err.value)
    assert str(d) in msg
    assert re.search(r"missing: language_model\.norm\.weight, visual\.merger\.mlp\.0\.weight;", msg)
    assert "unexpected: visual.merger.mlp.0.weight_v2" in msg
    assert "lm_head" not in msg  # the LM head in the file is expected, not reported


def test_only_the_lm_head_may_be_left_over(tiny_dirs, tmp_path):
    d = shutil.copytree(tiny_dirs["qwen2"], tmp_path / "bb")
    assert "lm_head.weight" in load_file(str(d / "model.safetensors"))
    load_backbone(d)  # the LM head alone: fine
    rewrite(d / "model.safetensors", lambda t: t.update({"score.weight": torch.zeros(1, 64)}))
    with pytest.raises(DataError, match=r"unexpected: score\.weight"):
        load_backbone(d)


def test_pickled_weights_are_refused_unread(tiny_dirs, tmp_path):
    d = shutil.copytree(tiny_dirs["qwen2"], tmp_path / "bb")
    sd = read(d / "model.safetensors")
    (d / "model.safetensors").unlink()
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(DataError, match=r"pickle files \(pytorch_model\.bin\).*safetensors only"):
        load_backbone(d)
    (d / "pytorch_model.bin").rename(d / "model.safetensors")  # a pickle under the expected name
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_backbone(d)


def test_a_pickled_head_file_is_refused(rm_dir, tmp_path):
    d = shutil.copytree(rm_dir, tmp_path / "rm")
    torch.save(read(d / "head.safetensors"), d / "head.safetensors")
    with pytest.raises(DataError, match=r"head\.safetensors: not a readable safetensors file"):
        load_reward_model(d)


@pytest.mark.parametrize(
    "edit,named",
    [
        (lambda t: t.pop("mlp.2.weight"), r"missing \['mlp\.2\.weight'\]"),
        (lambda t: t.update({"mlp.9.weight": torch.zeros(1)}), r"unexpected \['mlp\.9\.weight'\]"),
        (lambda t: t.update({"mlp.0.bias": torch.zeros(3)}), r"wrong shape \['mlp\.0\.bias \(3,\)"),
    ],
)
def test_a_head_file_that_does_not_fit_is_refused(rm_dir, tmp_path, edit, named):
    d = shutil.copytree(rm_dir, tmp_path / "rm")
    rewrite(d / "head.safetensors", edit)
    with pytest.raises(DataError, match=r"head\.safetensors: does not fit the reward head.*" + named):
        load_reward_model(d)


@pytest.mark.parametrize(
    "edit,named",
    [
        (lambda m: "{not json", "not valid JSON"),
        (
            lambda m: {**m, "head": {**m["head"], "activation": "gelu"}},
            r"field head\.activation must be one of",
        ),
        (lambda m: {**m, "head": {**m["head"], "layers": 9}}, r"field head\.layers must be 1-5, got 9"),
        (
            lambda m: {**m, "head": {**m["head"], "layers": "2"}},
            r"field head\.layers has an invalid value '2'",
        ),
        (lambda m: {**m, "head": {**m["head"], "depth": 2}}, r"field head has unknown keys \['depth'\]"),
        (lambda m: {**m, "pooling": {**m["pooling"], "rule": "mean of all tokens"}}, r"field pooling\.rule"),
        (lambda m: {**m, "pooling": {"rule": m["pooling"]["rule"]}}, r"field pooling must be an object"),
        (lambda m: {k: v for k, v in m.items() if k != "model_type"}, r"field model_type must be a string"),
        (lambda m: {**m, "hidden_size": 32}, r"field hidden_size is 32, but the backbone"),
        (lambda m: {**m, "format_version": 99}, r"format_version 99 is newer"),
    ],
)
def test_a_malformed_basereward_json_names_the_file_and_field(rm_dir, tmp_path, edit, named):
    d = shutil.copytree(rm_dir, tmp_path / "rm")
    meta = edit(json.loads((d / "basereward.json").read_text()))
    (d / "basereward.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    with pytest.raises(DataError, match=str(d / "basereward.json").replace(".", r"\.") + ": .*" + named):
        load_reward_model(d)


def test_an_adapter_file_that_does_not_fit_is_refused(tiny_dirs, tmp_path):
    model = RewardModel.from_backbone(tiny_dirs["qwen2"], seed=1)
    apply_lora(model, LoraArgs(rank=2, targets="q_proj,v_proj"))
    d = model.save(tmp_path / "rm", load_processor(tiny_dirs["qwen2"], "qwen2"))
    load_reward_model(d)  # as saved: loads
    victim = next(k for k in load_file(str(d / "adapter.safetensors")) if "lora_B" in k)
    rewrite(d / "adapter.safetensors", lambda t: t.pop(victim))
    with pytest.raises(DataError, match=r"adapter\.safetensors: does not fit .*missing \['" + victim):
        load_reward_model(d)
    rewrite(
        d / "adapter.safetensors",
        lambda t: t.update({victim: torch.zeros(3, 3), "stray.weight": torch.zeros(1)}),
    )
    with pytest.raises(DataError, match=r"unexpected \['stray\.weight'\], wrong shape \['" + victim):
        load_reward_model(d)
