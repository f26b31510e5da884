"""A failing or slow request must not stall the others: the batcher isolates a failing sample by bisecting the
batch (O(log N) extra forwards, not N), and the encoder decodes images outside its lock so the preprocessing
threads encode image requests in parallel, with results and prompt cache identical to single-threaded encoding."""

import math
import threading
import time

import pytest
from serve_fixtures import png, same_encoding

from basereward.serve.batcher import DynamicBatcher
from basereward.template import EncodedSample, Encoder, PromptEncoding
from basereward.types import DataError, ImageRef, Sample

POISON = 13


def enc(tag: int, responses: int = 1) -> EncodedSample:
    return EncodedSample(PromptEncoding(input_ids=[tag]), [[tag, r] for r in range(responses)], id=str(tag))


def run_batch(jobs: list[list[EncodedSample]], forward, max_batch_size: int) -> list:
    """Submit every job before the worker starts, so they all land in one collected batch; results or exceptions."""
    b = DynamicBatcher(forward, max_batch_size=max_batch_size, max_wait_ms=1000)
    futs = [b.submit(j, [str(i) for i in range(len(j))]) for j in jobs]  # distinct keys: no regrouping
    b.start()
    try:
        out = []
        for f in futs:
            try:
                out.append(f.result(10).rewards)
            except Exception as e:  # noqa: BLE001 - the test inspects it
                out.append(e)
        return out
    finally:
        b.stop()


@pytest.mark.parametrize("n", [2, 16, 32])
@pytest.mark.parametrize("error", [DataError, RuntimeError])
def test_bisection_answers_clean_requests_in_log_forwards(n, error):
    calls: list[list[int]] = []

    def forward(samples):
        calls.append([s.prompt.input_ids[0] for s in samples])
        if any(s.prompt.input_ids[0] == POISON for s in samples):
            raise error("poisoned")
        return [[float(s.prompt.input_ids[0]) + r for r in range(len(s.responses))] for s in samples]

    tags = list(range(POISON - n // 2, POISON - n // 2 + n))  # the poisoned sample sits mid-batch
    out = run_batch([[enc(t, responses=2)] for t in tags], forward, max_batch_size=2 * n)
    for t, r in zip(tags, out):
        if t == POISON:
            # its own exception, so the service maps its type
            assert type(r) is error and str(r) == "poisoned"
        else:
            assert r == [[float(t), float(t) + 1]]
    # the full batch, then two halves per level down to the poisoned sample alone; the serial retry took 1 + n
    assert len(calls) <= 1 + 2 * math.ceil(math.log2(n))
    assert [POISON] in calls and all(len(c) >= 1 for c in calls)
    # the full batch once, then at most n samples re-run per bisection level
    assert sum(len(c) for c in calls) <= n * (1 + math.ceil(math.log2(n)))


def test_bisection_fails_only_the_requests_holding_a_poisoned_sample():
    calls = []

    def forward(samples):
        calls.append(len(samples))
        if any(s.prompt.input_ids[0] in (3, POISON) for s in samples):
            raise RuntimeError("bad")
        return [[1.0] for _ in samples]

    # job 1 carries a clean sample and a poisoned one: it fails as a whole; every other job is answered
    jobs = [[enc(i)] for i in range(8)] + [[enc(20), enc(POISON)]] + [[enc(i)] for i in range(21, 28)]
    out = run_batch(jobs, forward, max_batch_size=64)
    failed = [i for i, r in enumerate(out) if isinstance(r, Exception)]
    assert failed == [3, 8]
    assert all(r == [[1.0]] * len(j) for j, r in zip(jobs, out) if not isinstance(r, Exception))
    assert len(calls) <= 1 + 2 * 2 * math.ceil(math.log2(17))  # two bad samples: two bisection paths at most


def test_bisection_retries_only_the_failing_chunk():
    """A batch over max_batch_size is scored in chunks; only the chunk holding the bad sample is bisected."""
    calls = []

    def forward(samples):
        calls.append(len(samples))
        if any(s.prompt.input_ids[0] == POISON for s in samples):
            raise RuntimeError("bad")
        return [[0.5] for _ in samples]

    out = run_batch([[enc(i)] for i in range(10, 26)], forward, max_batch_size=8)
    assert [isinstance(r, Exception) for r in out].count(True) == 1 and isinstance(
        out[POISON - 10], Exception
    )
    assert max(calls) <= 8
    assert len(calls) <= 1 + (1 + 2 * 3)  # the clean chunk once, the bad chunk bisected (8 -> 4 -> 2 -> 1)


# ---- encoder: image decoding outside the lock ----------------------------------------------------------------


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from basereward.model.processor import load_processor
    from basereward.tiny import init_tiny

    return load_processor(init_tiny(tmp_path_factory.mktemp("tiny")), "qwen2_5_vl")


COLOURS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]


def image_sample(colour: str, k: int = 0) -> Sample:
    return Sample(
        [{"role": "user", "content": f"<image>\nWhat colour is the shape? ({colour})"}],
        [f"It is {colour}, answer {k}.", "I am not sure."],
        [ImageRef(data=png(colour, size=(56 + 28 * (k % 2), 56)))],
    )


class _CountingTokenizer:
    """Wraps a tokenizer and records how many threads are inside a call at once (must stay 1)."""

    def __init__(self, tok):
        self._tok, self.inside, self.most = tok, 0, 0
        self._count = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *a, **kw):
        with self._count:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(0.001)  # widen the window a concurrent entry would need
            return self._tok(*a, **kw)
        finally:
            with self._count:
                self.inside -= 1


def test_two_threads_decode_images_at_once(processor, monkeypatch):
    encoder = Encoder(processor, "qwen2_5_vl", prompt_cache=8)
    reference = {c: Encoder(processor, "qwen2_5_vl").encode(image_sample(c)) for c in ("red", "blue")}
    # Each decode waits until the other thread is also inside a decode: if decoding held the encoder's lock, the
    # second thread could never get there and the barrier would time out.
    barrier = threading.Barrier(2, timeout=20)
    original = ImageRef.load

    def rendezvous(self, *a, **kw):
        barrier.wait()
        return original(self, *a, **kw)

    monkeypatch.setattr(ImageRef, "load", rendezvous)
    results, errors = {}, []

    def work(colour):
        try:
            results[colour] = encoder.encode(image_sample(colour))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in ("red", "blue")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert all(same_encoding(results[c], reference[c]) for c in reference)


@pytest.mark.parametrize("capacity", [16, 3])
def test_concurrent_encoding_equals_single_threaded_and_keeps_the_cache_right(processor, capacity):
    samples = [image_sample(c, k) for k in range(2) for c in COLOURS] * 2  # each prompt 4 times, 2 sizes
    single = Encoder(processor, "qwen2_5_vl")
    reference = [single.encode(s) for s in samples]
    encoder = Encoder(processor, "qwen2_5_vl", prompt_cache=capacity)
    counting = _CountingTokenizer(encoder.tokenizer)
    encoder.tokenizer = counting
    out: list = [None] * len(samples)
    errors = []

    def work(offset):
        try:
            for i in range(offset, len(samples), 4):
                out[i] = encoder.encode(samples[i])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(same_encoding(a, b) for a, b in zip(out, reference))
    assert counting.most == 1  # the tokenizer is still entered by one thread at a time
    assert len(encoder._prompts) <= capacity
    for key, prompt in encoder._prompts.items():  # every cached entry is the encoding of its own key
        i = next(i for i, s in enumerate(samples) if s.prompt_key() == key)
        assert same_encoding(EncodedSample(prompt, reference[i].responses), reference[i])
    if capacity >= len(COLOURS) * 2:
        # nothing was evicted: every encoding of one prompt is the one cached object (a racing miss adopts it)
        by_key: dict = {}
        for s, e in zip(samples, out):
            by_key.setdefault(s.prompt_key(), set()).add(id(e.prompt))
        assert all(len(ids) == 1 for ids in by_key.values())
