"""Cross-request dynamic batching: the batcher's grouping and failure isolation, and a real uvicorn server on
127.0.0.1 that batches concurrent single-sample requests with results equal to one-by-one scoring."""

import asyncio
import re
import threading
import time

import httpx
import pytest
from serve_fixtures import data_uri, live_server, make_reward_model, png, ref_sample, service

from basereward.scoring import load_scorer
from basereward.serve.app import create_app
from basereward.serve.batcher import DynamicBatcher
from basereward.template import EncodedSample, PromptEncoding
from basereward.types import DataError


def enc(tag: int) -> EncodedSample:
    return EncodedSample(PromptEncoding(input_ids=[tag]), [[tag, 2]], id=str(tag))


def test_batcher_groups_keys_and_maps_results_back():
    seen: list[list[int]] = []

    def forward(samples):
        seen.append([s.prompt.input_ids[0] for s in samples])
        return [[float(s.prompt.input_ids[0])] for s in samples]

    b = DynamicBatcher(forward, max_batch_size=64, max_wait_ms=200)
    b.start()
    try:
        # three requests whose samples interleave two groups; all arrive within the wait window
        futs = [b.submit([enc(1), enc(2)], ["A", "B"]), b.submit([enc(3)], ["A"]), b.submit([enc(4)], ["B"])]
        results = [f.result(10) for f in futs]
    finally:
        b.stop()
    assert seen == [[1, 3, 2, 4]]  # one forward; group A's samples side by side, then group B's
    assert [r.rewards for r in results] == [[[1.0], [2.0]], [[3.0]], [[4.0]]]
    assert all(r.batch_rows == [4] for r in results)


def test_batcher_respects_max_batch_size_and_isolates_failures():
    sizes = []

    def forward(samples):
        sizes.append(len(samples))
        if any(s.prompt.input_ids[0] == 13 for s in samples):
            raise RuntimeError("bad sample")
        return [[0.5] for _ in samples]

    b = DynamicBatcher(forward, max_batch_size=4, max_wait_ms=200)
    b.start()
    try:
        futs = [b.submit([enc(i)], [str(i)]) for i in range(10, 20)]
        done = []
        for f in futs:
            try:
                done.append(f.result(10).rewards)
            except RuntimeError:
                done.append("failed")
    finally:
        b.stop()
    assert done[3] == "failed" and done.count("failed") == 1  # only the bad sample's request fails
    assert max(s for s in sizes) <= 4


def _histogram(text: str, name: str) -> tuple[float, float]:
    count = float(re.search(rf"^{name}_count (\S+)$", text, re.M).group(1))
    total = float(re.search(rf"^{name}_sum (\S+)$", text, re.M).group(1))
    return count, total


def test_live_server_batches_concurrent_requests(tmp_path):
    rm = make_reward_model(tmp_path)
    scorer = load_scorer(rm, device="cpu", progress=False)
    colours = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]
    samples = [ref_sample(c, response=f"The shape is {c}.") for c in colours] * 2  # 16 requests, 2 per prompt
    alone = [scorer([s])[0][0] for s in samples]  # one-by-one reference
    app = create_app(service(rm, max_batch_size=16, max_wait_ms=500.0))

    def body(s):
        msgs = [
            {"role": "user", "content": s.prompt[0]["content"]},
            {"role": "assistant", "content": s.responses[0]},
        ]
        return {"samples": [{"messages": msgs, "images": [data_uri(s.images[0].data)]}]}

    async def fire(url):
        async with httpx.AsyncClient(timeout=60) as c:
            rs = await asyncio.gather(*(c.post(f"{url}/v1/reward", json=body(s)) for s in samples))
            return [r.json() for r in rs], (await c.get(f"{url}/metrics")).text

    with live_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        outs, metrics = asyncio.run(fire(url))
    got = [o["results"][0]["raw"] for o in outs]
    assert got == pytest.approx(alone, abs=1e-5)
    forwards, rows = _histogram(metrics, "basereward_batch_size")
    assert rows == len(samples) and forwards < len(samples) / 2, metrics  # batched: few forwards, all 16 rows
    served = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("basereward_requests_total{")
        and 'route="/v1/reward"' in line
        and 'code="200"' in line  # label order and 16 vs 16.0 are the exposition library's choice
    ]
    assert served == [16], [x for x in metrics.splitlines() if "requests_total" in x]


def test_max_batch_size_one_scores_alone(tmp_path):
    rm = make_reward_model(tmp_path)
    svc = service(rm, max_batch_size=1, max_wait_ms=0.0)
    app = create_app(svc)
    s = ref_sample()
    msgs = [
        {"role": "user", "content": s.prompt[0]["content"]},
        {"role": "assistant", "content": s.responses[0]},
    ]
    results = []

    def call(url):
        results.append(
            httpx.post(
                f"{url}/v1/reward",
                json={"samples": [{"messages": msgs, "images": [data_uri(png())]}]},
                timeout=60,
            ).json()
        )

    with live_server(app) as url:
        threads = [threading.Thread(target=call, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.05)
        metrics = httpx.get(f"{url}/metrics").text
    forwards, rows = _histogram(metrics, "basereward_batch_size")
    assert forwards == rows == 4 and len(results) == 4


def test_batcher_merges_identical_prompts_across_requests():
    seen = []

    def forward(samples):
        seen.append([(s.prompt.input_ids, len(s.responses)) for s in samples])
        return [[float(i) for i in range(len(s.responses))] for s in samples]

    b = DynamicBatcher(forward, max_batch_size=8, max_wait_ms=200)
    b.start()
    try:
        same = PromptEncoding(input_ids=[7, 7])
        futs = [
            b.submit([EncodedSample(PromptEncoding(input_ids=[7, 7]), [[1, 2]])], ["g"]),
            b.submit([enc(5)], ["other"]),
            b.submit([EncodedSample(same, [[3, 2], [4, 2]])], ["g"]),
        ]
        results = [f.result(10).rewards for f in futs]
    finally:
        b.stop()
    assert seen == [[([7, 7], 3), ([5], 1)]]  # one prompt row for the three responses of group g
    assert results == [[[0.0]], [[0.0]], [[1.0, 2.0]]]


def test_prompt_cache_reuses_the_encoding_of_a_group(tmp_path):
    from serve_fixtures import same_encoding

    from basereward.template import Encoder

    rm = make_reward_model(tmp_path)
    svc = service(rm, prompt_cache_size=2)
    a, b = ref_sample(response="The shape is red."), ref_sample(response="It is blue.")
    assert a.prompt_key() == b.prompt_key() != ref_sample("blue").prompt_key()
    main = svc.members[0].scorer
    assert main.encoder.prompt_cache == 2  # the server turned the encoder's cache on
    ea, eb = main.encode(a), main.encode(b)
    assert eb.prompt is ea.prompt  # decoded and patched once
    plain = Encoder(main.processor, main.model.model_type, main.model.pool_token)  # no cache
    assert plain.prompt_cache == 0 and plain.encode(a).prompt is not plain.encode(a).prompt
    assert same_encoding(eb, plain.encode(b))  # and identical to the uncached path
    # a cache hit still checks the responses: an empty one is refused as on a miss
    with pytest.raises(DataError, match="response 0 is empty"):
        main.encode(ref_sample(response=" "))
    # least recently used out: with room for 2 prompts, touching a then adding a third prompt evicts c, not a
    c, d = ref_sample("blue"), ref_sample("green")
    pc = main.encode(c).prompt
    assert main.encode(a).prompt is ea.prompt
    main.encode(d)
    assert main.encode(a).prompt is ea.prompt
    assert main.encode(c).prompt is not pc


def test_batcher_token_budget_and_length_buckets():
    """A forward holds at most max_batch_tokens tokens (a longer sample runs alone), and when a batch takes several
    forwards its groups are ordered by length, so short samples share forwards and long ones do."""
    seen: list[list[int]] = []

    def forward(samples):
        seen.append([len(s.prompt.input_ids) + sum(len(r) for r in s.responses) for s in samples])
        return [[float(len(s.prompt.input_ids))] for s in samples]

    def sized(n: int) -> EncodedSample:  # n tokens: an (n - 2)-token prompt and one 2-token response
        return EncodedSample(PromptEncoding(input_ids=[n] * (n - 2)), [[n, 2]], id=str(n))

    b = DynamicBatcher(forward, max_batch_size=64, max_batch_tokens=20, max_wait_ms=300)
    lengths = [4, 12, 5, 30, 4, 11]
    futs = [b.submit([sized(n)], [f"k{i}"]) for i, n in enumerate(lengths)]  # queued before the worker starts
    b.start()
    try:
        results = [f.result(10) for f in futs]
    finally:
        b.stop()
    assert [r.rewards for r in results] == [
        [[float(n - 2)]] for n in lengths
    ]  # each gets its own reward back
    # gathering stops once the budget is reached: [4, 12, 5], then [30] (alone: over the budget), then [4, 11];
    # the first batch needs two forwards, so its samples run shortest first
    assert seen == [[4, 5], [12], [30], [4, 11]]
    assert results[0].batch_rows == [2] and results[1].batch_rows == [1]


def test_batcher_answers_a_job_when_its_own_forward_is_done():
    """A batch that takes two forwards answers the first forward's requests while the second one runs."""
    release = threading.Event()

    def forward(samples):
        if len(samples[0].prompt.input_ids) > 5:  # the second forward blocks until the test has looked
            assert release.wait(10)
        return [[1.0] for _ in samples]

    b = DynamicBatcher(forward, max_batch_size=8, max_batch_tokens=12, max_wait_ms=300)
    long = b.submit([EncodedSample(PromptEncoding(input_ids=[2] * 8), [[2, 2]])], ["a"])  # 10 tokens
    short = b.submit([EncodedSample(PromptEncoding(input_ids=[1, 1]), [[1, 2]])], ["b"])  # 4 tokens
    b.start()  # one batch of 14 tokens > 12: two forwards, the short sample's first
    try:
        assert short.result(10).rewards == [[1.0]]
        assert not long.done()  # its forward is still running
        release.set()
        assert long.result(10).rewards == [[1.0]]
    finally:
        release.set()
        b.stop()
