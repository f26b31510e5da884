"""The typed `serve` verb: flags -> `ServeConfig` (one set of defaults), and `run` as a thin wrapper that serves the
built app with the configured host/port/log level and summarises the run from the app's metrics. No model."""

import argparse
import gc
import sys
import types
from dataclasses import fields

import pytest

from basereward.serve import cli
from basereward.serve.metrics import Metrics


def parse(argv):
    p = argparse.ArgumentParser()
    cli.add_args(p)
    return p.parse_args(argv)


def test_flag_defaults_are_the_config_defaults():
    assert cli.ServeConfig.from_args(parse(["--model", "m"])) == cli.ServeConfig(model="m")


def test_every_flag_reaches_its_field():
    argv = ["--model", "m", "--ensemble-model", "e1", "--ensemble-model", "e2", "--text-model", "t"]
    argv += [
        "--host",
        "0.0.0.0",
        "--port",
        "9",
        "--served-model-name",
        "rm",
        "--device",
        "cpu",
        "--dtype",
        "bf16",
    ]
    argv += ["--max-batch-size", "2", "--max-batch-tokens", "64", "--max-wait-ms", "7", "--deterministic"]
    argv += ["--image-root", "/img", "--allow-url-prefix", "https://a/", "--max-images", "3"]
    argv += ["--max-image-pixels", "100", "--max-body-mb", "1.5", "--max-tokens", "512", "--max-samples", "8"]
    argv += ["--prompt-cache", "0", "--request-timeout-s", "9.5", "--get-reward-path", "/reward"]
    argv += ["--threads", "1", "--log-level", "info"]
    argv += ["--max-queue-mb", "3", "--media-cache-mb", "2", "--api-key", "k"]
    c = cli.ServeConfig.from_args(parse(argv))
    defaults = cli.ServeConfig(model="m")
    assert [f.name for f in fields(c) if getattr(c, f.name) == getattr(defaults, f.name)] == ["model"]
    assert c.ensemble_models == ("e1", "e2") and c.allow_url_prefixes == ("https://a/",)
    assert c.get_reward_paths == ("/reward",) and c.deterministic and c.max_body_mb == 1.5


def test_run_serves_the_built_app_and_summarises_its_metrics(monkeypatch, capsys):
    metrics = Metrics()
    for code in (200, 200, 429):
        metrics.record_request("/get_reward", code, 0.01)
    metrics.record_batch(rows=2, forward_s=0.01, wait_s=0.0)
    svc = types.SimpleNamespace(
        model_name="rm", revision="abc", max_batch_size=4, max_wait_ms=5.0, metrics=metrics
    )
    app = types.SimpleNamespace(state=types.SimpleNamespace(service=svc))
    built, served = [], []
    monkeypatch.setattr(cli, "build_app", lambda config: built.append(config) or app)
    fake_uvicorn = types.SimpleNamespace(run=lambda a, **kw: served.append((a, kw)))
    monkeypatch.setitem(sys.modules, "uvicorn", fake_uvicorn)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not the test process's whole heap

    out = cli.run(parse(["--model", "m", "--port", "9001", "--max-batch-size", "4"]))
    assert built == [cli.ServeConfig(model="m", port=9001, max_batch_size=4)]
    assert served == [(app, {"host": "127.0.0.1", "port": 9001, "log_level": "warning"})]
    assert out == {"model": "rm", "revision": "abc", "requests": 3, "batches": 1}
    assert "http://127.0.0.1:9001" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "x"])
def test_token_budget_must_be_a_positive_integer(bad, capsys):
    with pytest.raises(SystemExit):
        parse(["--model", "m", "--max-batch-tokens", bad])
    assert "--max-batch-tokens" in capsys.readouterr().err
