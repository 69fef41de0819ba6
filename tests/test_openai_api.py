"""OpenAI-compatible adapter, without any server: retries, log-prob mapping, images, keys.

The real HTTP path (a vLLM server, a fault-injecting proxy) is covered by tests/integration/.
"""
from __future__ import annotations

import base64
import io
import json
import math
import random
import re
import threading
import time
from email.utils import formatdate

import numpy as np
import openai
import pytest
from PIL import Image

from adapters.base import Pair, compare_batch, rate_batch
from adapters.openai_api import (UNSEEN_LEVEL_LOGPROB, ImageEncoding, OpenAIComparator, PairFailure, RetryPolicy,
                                 _make_client, call_with_retries, image_data_url, level_of, levels_from_strings,
                                 levels_from_token_ids, parse_retry_after)

try:  # the transport the installed openai client is built on
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

LEVEL_IDS = [101, 102, 103, 104, 105]
RATING_IDS = [201, 202, 203, 204, 205]


def completion(top: list[tuple[str, float]] | None) -> openai.types.chat.ChatCompletion:
    """A real ChatCompletion object with `top` as the first token's top_logprobs."""
    logprobs = None
    if top is not None:
        entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
        logprobs = {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}
    return openai.types.chat.ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": top[0][0] if top else ""}}]})


def status_error(status: int, headers: dict | None = None) -> openai.APIStatusError:
    req = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    resp = httpx.Response(status, headers=headers or {}, request=req)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 400: openai.BadRequestError,
           401: openai.AuthenticationError}.get(status, openai.APIStatusError)
    return cls(f"status {status}", response=resp, body=None)


# --------------------------------------------------------------------------- retries
def test_backoff_grows_with_jitter_and_honours_retry_after():
    pol = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=10.0)
    rng = random.Random(0)
    for attempt, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (7, 10.0)]:
        ds = [pol.delay(attempt, None, rng) for _ in range(200)]
        assert cap / 2 <= min(ds) and max(ds) <= cap
        assert max(ds) - min(ds) > cap / 4  # jittered, not constant
    assert all(pol.delay(0, 7.0, rng) >= 7.0 for _ in range(50))
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="deadline must be > 0"):
            RetryPolicy(deadline=bad)


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


class FakeClock:
    """Time that moves only when the test says: each attempt costs `attempt_s`, each sleep its length."""

    def __init__(self, attempt_s: float = 0.0):
        self.now, self.attempt_s, self.sleeps = 0.0, attempt_s, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += seconds


def run_faults(faults, policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0), clock=None):
    """Drive call_with_retries through a scripted sequence of exceptions on a fake clock (no real
    waiting); returns ((result, attempts), the sleeps asked for)."""
    clock = clock or FakeClock()
    calls = []

    def send(time_left):
        calls.append(clock.now)
        clock.now += min(clock.attempt_s, time_left)  # the attempt's timeout is capped by the deadline
        if len(calls) <= len(faults):
            raise faults[len(calls) - 1]
        return "ok"

    result = call_with_retries(send, policy, rng=random.Random(1), sleep=clock.sleep, clock=clock)
    return result, clock.sleeps


def test_transient_errors_are_retried_and_retry_after_is_waited():
    req = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    faults = [status_error(429, {"retry-after": "2"}), status_error(500), openai.APITimeoutError(request=req)]
    (result, attempts), sleeps = run_faults(faults)
    assert (result, attempts) == ("ok", 4)
    assert len(sleeps) == 3 and sleeps[0] >= 2.0 and all(s < 1.0 for s in sleeps[1:])
    # every retryable kind: 408, 409, 429, 5xx, connection errors; retry-after-ms is read too
    faults = [status_error(408), status_error(409), status_error(503, {"retry-after-ms": "1500"}),
              openai.APIConnectionError(request=req)]
    (result, attempts), sleeps = run_faults(faults, RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=5.0))
    assert (result, attempts) == ("ok", 5) and sleeps[2] >= 1.5 and max(sleeps[:2] + sleeps[3:]) < 0.1


def test_permanent_errors_fail_at_once_and_retries_give_up():
    for status in (400, 401, 403, 404, 422):
        with pytest.raises(PairFailure, match=rf"HTTP {status}.*\(attempt 1, not retryable\)"):
            run_faults([status_error(status)])
    with pytest.raises(PairFailure, match="ValueError: bad reply.*not retryable"):
        run_faults([ValueError("bad reply")])
    with pytest.raises(PairFailure, match=r"HTTP 500.*gave up after 4 attempts"):
        run_faults([status_error(500)] * 10)
    with pytest.raises(PairFailure, match="retry after 600 s, more than max_delay"):
        run_faults([status_error(429, {"retry-after": "600"})])


def test_the_deadline_bounds_all_attempts_and_waits_together():
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=8.0, deadline=30.0)
    clock = FakeClock(attempt_s=2.0)
    with pytest.raises(PairFailure, match=r"HTTP 503.*deadline of 30 s reached: \d+ attempt\(s\)") as failed:
        run_faults([status_error(503)] * 100, policy, clock)
    assert clock.now <= 30.0, "a wait past the deadline was taken"
    n = int(re.search(r"reached: (\d+) attempt", str(failed.value)).group(1))
    assert len(clock.sleeps) == n - 1 and n * 2.0 + sum(clock.sleeps) == pytest.approx(clock.now)
    assert 30.0 - clock.now < 2.0 + 8.0, "stopped although the next attempt could still fit"
    # a Retry-After that would end past the deadline is not waited for: the item fails at once
    clock = FakeClock(attempt_s=3.0)
    with pytest.raises(PairFailure, match=r"HTTP 429.*deadline of 10 s reached: 1 attempt\(s\) in 3\.0 s, "
                                          r"the next wait of 8\.\d s would pass it"):
        run_faults([status_error(429, {"retry-after": "8"})], RetryPolicy(max_delay=9.0, deadline=10.0), clock)
    assert clock.sleeps == []
    # one that fits is waited for, and the request then succeeds
    clock = FakeClock(attempt_s=3.0)
    (result, attempts), sleeps = run_faults([status_error(429, {"retry-after": "4"})],
                                            RetryPolicy(max_delay=9.0, deadline=10.0), clock)
    assert (result, attempts) == ("ok", 2) and sleeps[0] >= 4.0
    # an attempt gets no more than what is left of the deadline, so slow attempts cannot stretch it
    clock = FakeClock(attempt_s=12.0)
    req = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    with pytest.raises(PairFailure, match=r"request timed out \(deadline of 10 s reached: 1 attempt\(s\)"):
        run_faults([openai.APITimeoutError(request=req)], RetryPolicy(deadline=10.0), clock)
    assert clock.now == pytest.approx(10.0)
    clock = FakeClock(attempt_s=60.0)
    with pytest.raises(PairFailure, match=r"deadline of 100 s reached: 2 attempt\(s\) in 100\.0 s"):
        run_faults([openai.APITimeoutError(request=req)] * 5, RetryPolicy(deadline=100.0), clock)
    assert clock.now == pytest.approx(100.0)


def test_the_client_leaves_retries_to_the_policy_and_keeps_its_per_attempt_timeout(monkeypatch):
    monkeypatch.setenv("C2S_TEST_KEY", "sk-test-key-123456")
    client = _make_client("http://127.0.0.1:9/v1", "C2S_TEST_KEY", 7.5)
    assert client.sdk.max_retries == 0 and client.sdk.timeout == 7.5


def test_faults_over_real_http_are_classified_retried_and_bounded(images, transport):
    """The SDK's real transport against the fault proxy (127.0.0.1, no upstream needed): a stall
    ended by the client's timeout, a 429 whose Retry-After is waited, a 500 and a hang-up are each
    retried; a Retry-After that would pass the deadline ends the request at once. Only lower bounds
    of time are asserted, with slack: a loaded machine can make things slower, never faster."""
    from tests.integration.fault_proxy import FaultProxy

    pair = [Pair(images[0], images[1])]
    with FaultProxy("http://127.0.0.1:9", ["stall", "429", "500", "drop"], retry_after=1) as proxy:
        comp = OpenAIComparator("served", base_url=proxy.url + "/v1", server="vllm", level_token_ids=LEVEL_IDS,
                                api_key_env=None, timeout=2.0, max_attempts=4, base_delay=0.01, max_delay=5.0)
        res = comp.compare_detailed(pair)
    assert [action for _, action, _ in proxy.log] == ["stall", "429", "500", "drop"]
    assert "gave up after 4 attempts" in res.errors[0] and np.isnan(res.logprobs[0]).all()
    times = [t for t, _, _ in proxy.log]
    # the client's 2-s clock starts as it finishes sending, a little before the proxy logs the arrival
    assert times[1] - times[0] >= 1.0, "the stalled request was abandoned long before the client's timeout"
    assert times[2] - times[1] >= 1.0, "the retry after a 429 came before its Retry-After"
    with FaultProxy("http://127.0.0.1:9", ["429"], repeat=True, retry_after=30) as proxy:
        comp = OpenAIComparator("served", base_url=proxy.url + "/v1", server="vllm", level_token_ids=LEVEL_IDS,
                                api_key_env=None, max_delay=60.0, deadline=10.0)
        res = comp.compare_detailed(pair)
    assert len(proxy.log) == 1 and "HTTP 429" in res.errors[0]
    assert re.search(r"deadline of 10 s reached: 1 attempt\(s\) in [\d.]+ s, the next wait of 30\.0 s", res.errors[0])


@pytest.mark.parametrize("action, options", [
    ("trickle", {"timeout": 1.0, "deadline": 60.0, "max_attempts": 2}),  # one byte every 0.2 s, for a minute
    ("silent", {"timeout": 1.0, "deadline": 60.0, "max_attempts": 2}),  # never answers
    ("trickle", {"timeout": 60.0, "deadline": 1.5, "max_attempts": 5}),  # the request's deadline cuts the attempt
])
def test_timeout_bounds_connect_send_and_every_read_together(images, action, options, transport):
    """A server that trickles its answer (each read well within any per-read timeout) or never answers
    ends each attempt at its timeout and the request at its deadline. Only an upper bound is asserted,
    with generous slack: before, the trickle held the request for as long as the server liked."""
    from tests.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer([action], gap=0.2, trickle_s=60.0) as server:
        comp = OpenAIComparator("served", base_url=server.url + "/v1", server="vllm", level_token_ids=LEVEL_IDS,
                                api_key_env=None, base_delay=0.0, **options)
        started = time.monotonic()
        res = comp.compare_detailed([Pair(images[0], images[1])])
        took = time.monotonic() - started
        comp.close()
    bound = min(options["timeout"] * options["max_attempts"], options["deadline"])
    assert "request timed out" in res.errors[0] and np.isnan(res.logprobs[0]).all()
    assert took < bound + 15.0, f"the request took {took:.1f} s, its bound is {bound:g} s"
    assert 1 <= len(server.log) <= options["max_attempts"]


def test_closing_the_adapter_ends_requests_in_flight(images, transport):
    """A request blocked on a silent server (timeout 60 s) ends soon after close(), as when a run aborts."""
    from tests.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(["silent"]) as server:
        comp = OpenAIComparator("served", base_url=server.url + "/v1", server="vllm", level_token_ids=LEVEL_IDS,
                                api_key_env=None, timeout=60.0, deadline=120.0, base_delay=5.0, max_delay=10.0)
        result: list = []
        worker = threading.Thread(target=lambda: result.append(comp.compare_detailed([Pair(images[0], images[1])])))
        worker.start()
        waited = time.monotonic()
        while not server.log and time.monotonic() - waited < 60:  # until the request is in flight
            time.sleep(0.01)
        comp.close()
        worker.join(timeout=30)
    assert not worker.is_alive(), "close() left the request running"
    assert result and result[0].errors[0] is not None


# --------------------------------------------------------------------------- log-probs
def test_token_id_mode_reads_the_five_levels_in_order():
    top = [("token_id:7", -0.1)] + [(f"token_id:{i}", -float(k + 1)) for k, i in enumerate(reversed(LEVEL_IDS))]
    lp = levels_from_token_ids(completion(top), LEVEL_IDS)
    np.testing.assert_array_equal(lp, [-5.0, -4.0, -3.0, -2.0, -1.0])
    with pytest.raises(PairFailure, match="no log-prob for level.*superior"):
        levels_from_token_ids(completion(top[:-1][:1] + top[2:]), LEVEL_IDS)
    with pytest.raises(PairFailure, match="not in 'token_id:N' form"):
        levels_from_token_ids(completion([("better", -1.0)]), LEVEL_IDS)


def test_level_of_normalises_and_accepts_only_unique_prefixes():
    assert level_of(" Better") == 3 and level_of("SUPERIOR.") == 4 and level_of("\u2002worse") == 1
    assert level_of("sup") == 4 and level_of("inf") == 0 and level_of("sim") == 2
    assert level_of("s") is None and level_of("su") is None  # too short: 'similar' and 'superior'
    assert level_of("betterment") is None and level_of("") is None and level_of("!!") is None


def test_generic_mode_renormalises_over_seen_levels_and_records_missing_mass():
    top = [("Better", math.log(0.40)), (" better", math.log(0.10)), ("Similar", math.log(0.20)),
           ("The", math.log(0.15)), ("sup", math.log(0.05)), ("I", math.log(0.01))]
    lp, meta = levels_from_strings(completion(top))
    p = np.exp(lp)
    seen = 0.40 + 0.10 + 0.20 + 0.05  # independent hand computation
    np.testing.assert_allclose(p, [0.0, 0.0, 0.20 / seen, 0.50 / seen, 0.05 / seen], atol=1e-12)
    assert lp[0] == UNSEEN_LEVEL_LOGPROB and np.isfinite(lp).all()
    assert meta["missing_mass"] == pytest.approx(1 - seen) and meta["levels_missing"] == ["inferior", "worse"]
    assert meta["level_mass"] == pytest.approx(seen)
    assert meta["top_k"] == 6
    # the stand-in for unseen levels stays at probability 0 even at the official temperature T = 100
    assert np.exp(UNSEEN_LEVEL_LOGPROB / 100) == 0.0


def test_generic_mode_fails_without_levels_or_logprobs():
    with pytest.raises(PairFailure, match="no level word among the top 2 tokens"):
        levels_from_strings(completion([("The", -0.1), ("A", -2.0)]))
    with pytest.raises(PairFailure, match="no log-probs"):
        levels_from_strings(completion(None))


# --------------------------------------------------------------------------- images
def rgb(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def decode(url):
    head, b64 = url.split(",", 1)
    return head, Image.open(io.BytesIO(base64.b64decode(b64)))


def test_data_url_is_lossless_png_within_caps():
    img = rgb(40, 30)
    head, back = decode(image_data_url(img))
    assert head == "data:image/png;base64"
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


def test_data_url_shrinks_long_images_and_falls_back_to_jpeg():
    head, back = decode(image_data_url(rgb(400, 100), ImageEncoding(max_side=100)))
    assert back.size == (100, 25) and head == "data:image/png;base64"
    head, back = decode(image_data_url(rgb(300, 300), ImageEncoding(max_side=300, max_bytes=150_000)))
    assert head == "data:image/jpeg;base64" and back.size == (300, 300)
    with pytest.raises(ValueError, match="does not fit in max_bytes=2000"):
        image_data_url(rgb(500, 500), ImageEncoding(max_bytes=2000))


# --------------------------------------------------------------------------- the adapter
class FakeClient:
    """Stands in for openai.OpenAI: answers from `reply(request kwargs)`, tracks requests in flight.

    With `gate=n` no request is answered until n are in flight at once (then all pass): a test of
    bounded concurrency sees exactly n in flight however slowly the threads are scheduled."""

    def __init__(self, reply, gate: int = 1):
        self.reply, self.gate = reply, gate
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.in_flight = self.max_in_flight = 0
        self.requests = []
        self.chat = self
        self.completions = self

    def create(self, **kw):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requests.append(kw)
            if self.in_flight >= self.gate:
                self.open.set()
        try:
            # the bound only guards against a hang: a pool smaller than the gate fails the test's assert
            self.open.wait(timeout=120)
            return self.reply(kw)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def images(tmp_path):
    paths = []
    for k in range(5):
        p = tmp_path / f"im{k}.png"
        rgb(32, 32, k).save(p)
        paths.append(str(p))
    return paths


def second_image_index(kw) -> int:
    """Which fixture image a request shows second (decoded back from its data URL)."""
    url = [c for c in kw["messages"][0]["content"] if c["type"] == "image_url"][1]["image_url"]["url"]
    px = np.asarray(decode(url)[1])
    return next(k for k in range(5) if np.array_equal(px, np.asarray(rgb(32, 32, k))))


def test_vllm_mode_requests_exact_levels_bounded_concurrency_and_per_pair_failures(images):
    def reply(kw):
        k = second_image_index(kw)
        if k == 3:
            raise status_error(400)
        return completion([(f"token_id:{i}", -1.0 - j * k) for j, i in enumerate(LEVEL_IDS)])

    fake = FakeClient(reply, gate=3)
    comp = OpenAIComparator("served", server="vllm", client=fake, level_token_ids=LEVEL_IDS, concurrency=3,
                            max_attempts=2, base_delay=0.0)
    pairs = [Pair(images[0], images[k]) for k in (1, 2, 3, 4)] * 3 + [Pair(images[0], images[0] + ".missing")]
    res = compare_batch(comp, pairs)
    assert fake.max_in_flight == 3  # bounded, and actually concurrent
    assert len(fake.requests) == 12  # the pair with a missing image never reaches the API
    body = fake.requests[0]["extra_body"]
    assert body == {"continue_final_message": True, "add_generation_prompt": False,
                    "return_tokens_as_token_ids": True, "logprob_token_ids": LEVEL_IDS}
    assert fake.requests[0]["messages"][-1]["role"] == "assistant"
    for i, pair in enumerate(pairs[:-1]):
        k = int(pair.second[-5])
        if k == 3:
            assert "HTTP 400" in res.errors[i] and np.isnan(res.logprobs[i]).all()
        else:
            expected = np.array([-1.0 - j * k for j in range(5)])
            np.testing.assert_allclose(res.logprobs[i], expected - np.log(np.exp(expected).sum()))
            assert res.errors[i] is None and res.meta[i]["attempts"] == 1
            assert res.meta[i]["level_mass"] == pytest.approx(np.exp(expected).sum())
    assert "missing file" in res.errors[-1]


def test_generic_mode_sends_no_prefill_and_fails_pairs_without_levels(images):
    def reply(kw):
        k = second_image_index(kw)
        return completion([("better", -0.5), ("The", -1.5)] if k % 2 else [("The", -0.1)])

    comp = OpenAIComparator("gpt-x", server="generic", client=FakeClient(reply))
    res = comp.compare_detailed([Pair(images[0], images[1]), Pair(images[0], images[2])])
    req_msgs = comp._endpoints.all[0].client.requests[0]["messages"]
    assert [m["role"] for m in req_msgs] == ["user"] and "one word" in req_msgs[0]["content"][-1]["text"]
    assert "extra_body" not in comp._endpoints.all[0].client.requests[0] and comp._endpoints.all[0].client.requests[0]["top_logprobs"] == 20
    assert res.errors[0] is None and res.meta[0]["missing_mass"] == pytest.approx(1 - math.exp(-0.5))
    assert np.exp(res.logprobs[0])[3] == pytest.approx(1.0)
    assert "no level word" in res.errors[1]


def test_api_key_comes_from_the_named_variable_and_is_never_exposed(monkeypatch):
    monkeypatch.delenv("C2S_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="C2S_TEST_KEY"):
        OpenAIComparator("m", server="generic", api_key_env="C2S_TEST_KEY")
    secret = "sk-test-" + "q" * 24
    monkeypatch.setenv("C2S_TEST_KEY", secret)
    comp = OpenAIComparator("m", base_url="http://u:pw@127.0.0.1:9/v1", server="generic", api_key_env="C2S_TEST_KEY")
    assert comp._endpoints.all[0].client.sdk.api_key == secret
    text = repr(comp) + str(comp.fingerprint()) + repr(vars(comp).get("extra_body"))
    assert secret not in text and "pw" not in str(comp.fingerprint())


def test_failure_reasons_never_carry_the_key(images, monkeypatch):
    secret = "sk-live-" + "z" * 30
    monkeypatch.setenv("C2S_TEST_KEY", secret)

    def reply(kw):  # servers echo the rejected key back, whole or masked
        resp = httpx.Response(401, request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
        raise openai.AuthenticationError(f"Incorrect API key provided: {secret} (shown as sk-live-zz*****zzzz)",
                                         response=resp, body=None)

    comp = OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", server="generic", api_key_env="C2S_TEST_KEY")
    comp._endpoints.all[0].client = FakeClient(reply)
    comp._endpoints.all[0].client.api_key = secret
    res = comp.compare_detailed([Pair(images[0], images[1])])
    assert "HTTP 401" in res.errors[0] and "Incorrect API key" in res.errors[0]
    assert secret not in res.errors[0] and "zzzz" not in res.errors[0]


def test_configuration_errors_are_specific():
    with pytest.raises(ValueError, match="needs base_url"):
        OpenAIComparator("m", server="vllm", level_token_ids=LEVEL_IDS, api_key_env=None)
    assert OpenAIComparator("gpt-x", api_key_env=None).server == "generic"  # OpenAI itself
    assert OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS,
                            api_key_env=None).server == "vllm"
    with pytest.raises(ValueError, match="'server' = 'tgi' .str. is not one of 'vllm', 'generic' or None"):
        OpenAIComparator("m", server="tgi", api_key_env=None)
    with pytest.raises(ValueError, match="option 'top_logprobs' must be >= 1 and <= 20, got 21"):
        OpenAIComparator("m", server="generic", top_logprobs=21, api_key_env=None)
    with pytest.raises(ValueError, match="need 0 <= base_delay <= max_delay"):
        OpenAIComparator("m", server="generic", base_delay=5, max_delay=1, api_key_env=None)
    with pytest.raises(ValueError, match="option 'timeout' must be > 0"):
        OpenAIComparator("m", server="generic", timeout=0, api_key_env=None)
    with pytest.raises(ValueError, match="base_url must be an http.s. URL"):
        OpenAIComparator("m", base_url="ftp://host/v1", api_key_env=None)
    with pytest.raises(ValueError, match="pass -o tokenizer=PATH"):
        OpenAIComparator("remote-model", base_url="http://127.0.0.1:9/v1", api_key_env=None)
    with pytest.raises(ValueError, match="5 distinct ids"):
        OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=[1, 1, 2, 3, 4], api_key_env=None)
    with pytest.raises(ValueError, match="a comparison needs 2"):
        OpenAIComparator("m", server="generic", prompt="rating", api_key_env=None)


# --------------------------------------------------------------------------- parity report, vLLM plumbing
# (harness/parity.py and adapters/vllm.py pieces that need no vLLM; the real runs are in tests/integration)
def test_parity_report_flags_deviations_and_one_sided_failures():
    from adapters.base import Comparisons
    from harness.tools.parity import compare_backends

    ref_p = np.array([[0.1, 0.2, 0.3, 0.2, 0.2], [0.5, 0.1, 0.1, 0.1, 0.2], [0.2] * 5])
    near = ref_p + np.array([0.0004, -0.0004, 0.0, 0.0, 0.0])
    far = ref_p.copy()
    far[1] = [0.49, 0.11, 0.1, 0.1, 0.2]
    pairs = [Pair(f"a{i}", f"b{i}") for i in range(3)]
    failed_last = np.log(near)
    failed_last[2] = np.nan
    results = {"hf": Comparisons(np.log(ref_p)), "vllm": Comparisons(np.log(near)),
               "openai-vllm-server": Comparisons(np.log(far))}
    rep = compare_backends(results, pairs, tol=1e-3)
    assert rep.max_abs_diff["vllm"] == pytest.approx(4e-4) and rep.max_abs_diff["openai-vllm-server"] == pytest.approx(0.01)
    assert not rep.ok and "PARITY FAILED" in rep.format()
    assert compare_backends({"hf": results["hf"], "vllm": results["vllm"]}, pairs, 1e-3).ok
    one_sided = compare_backends({"hf": results["hf"], "vllm": Comparisons(failed_last, [None, None, "boom"])},
                                 pairs, 1e-3)
    assert one_sided.mismatched_failures["vllm"] == [2] and not one_sided.ok


def test_check_parity_refuses_bad_requests_before_any_model_work(tmp_path):
    from harness.tools.parity import check_parity

    with pytest.raises(ValueError, match="unknown backend"):
        check_parity(str(tmp_path), backends=("hf", "tgi"))
    with pytest.raises(ValueError, match="not a folder"):
        check_parity(str(tmp_path / "nope"), backends=("hf",))


def test_vllm_server_flags_and_offline_option_checks():
    from adapters.vllm import VLLMComparator, VLLMServer

    srv = VLLMServer("/py", "/m", options={"max_model_len": 512, "enforce_eager": True,
                                           "enable_prefix_caching": False, "limit_mm_per_prompt": {"image": 2}})
    cmd = srv.command()
    assert cmd[:4] == ["/py", "-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--max-model-len") + 1] == "512"
    assert "--enforce-eager" in cmd and "--no-enable-prefix-caching" in cmd
    assert json.loads(cmd[cmd.index("--limit-mm-per-prompt") + 1]) == {"image": 2}
    with pytest.raises(ValueError, match="unknown option.*max_modle_len"):
        VLLMComparator("/m", max_modle_len=512)
    with pytest.raises(ValueError, match="prompt 'rating' shows 1 image.s.; a comparison needs 2"):
        VLLMComparator("/m", prompt="rating")
    with pytest.raises(ValueError, match=r"engine_options \['dtype'\] are options of their own"):
        VLLMComparator("/m", engine_options={"dtype": "float16"})


class WordTokenizer:
    """A stand-in tokenizer: each word with its leading whitespace is one token (' bad'), ids
    handed out in order of first sight; counts its encode calls."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.encodes = 0

    def encode(self, text, add_special_tokens=False):
        self.encodes += 1
        return [self.vocab.setdefault(w, 1000 + len(self.vocab)) for w in re.findall(r"\s*\S+", text)]

    def convert_ids_to_tokens(self, ids):
        inverse = {i: w for w, i in self.vocab.items()}
        return [inverse[i] for i in ids]


class StandInEngine:
    """Answers like `vllm.LLM.chat` for the requested ids (log-probs -1, -2, ... in their order),
    and, like vLLM, rejects a whole batch when one prompt is invalid (a 48x48 image here stands
    for a prompt over max_model_len). Records what each call showed."""

    def __init__(self):
        self.batches, self.shown, self.ids, self.tokenizer = [], [], [], WordTokenizer()
        self.tokenizer_calls = 0

    def get_tokenizer(self):
        self.tokenizer_calls += 1
        return self.tokenizer

    def chat(self, convs, params, **kw):
        from types import SimpleNamespace

        assert params["max_tokens"] == 1 and kw["continue_final_message"] and not kw["add_generation_prompt"]
        ids = params["logprob_token_ids"]
        self.batches.append(len(convs))
        self.ids.append(ids)
        shown = [[c["image_pil"] for c in conv[0]["content"] if c["type"] == "image_pil"] for conv in convs]
        self.shown.append((shown, [conv[-1] for conv in convs]))
        if any(im.size == (48, 48) for ims in shown for im in ims):
            raise ValueError("prompt longer than max_model_len")
        step = {i: SimpleNamespace(logprob=-1.0 - j) for j, i in enumerate(ids)}
        return [SimpleNamespace(outputs=[SimpleNamespace(logprobs=[step])]) for _ in convs]


def stand_in_vllm_comparator(monkeypatch, **options):
    """A VLLMComparator built by its own constructor on a StandInEngine (a stand-in `vllm` module);
    the pair levels' ids are then set to LEVEL_IDS."""
    import sys
    from types import SimpleNamespace

    from adapters.level_tokens import LevelTokens
    from adapters.vllm import VLLMComparator
    from harness.data.images import ImageStore

    engines = []

    def engine(model, **kw):
        engines.append(kw)
        return StandInEngine()

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=engine, SamplingParams=lambda **kw: kw,
                                                             __version__="stand-in"))
    comp = VLLMComparator("/m", image_store=ImageStore(), **options)
    comp.engine_kwargs = engines[0]
    comp.levels = LevelTokens(LEVEL_IDS, [str(i) for i in LEVEL_IDS], "single")
    comp.llm.tokenizer_calls = 0
    return comp


def test_vllm_rejected_batch_fails_only_the_offending_pair(monkeypatch, images, tmp_path):
    """The offline adapter's fallback: the engine rejects the whole batch, pairs go one by one."""
    big = tmp_path / "big.png"
    rgb(48, 48).save(big)
    comp = stand_in_vllm_comparator(monkeypatch)
    pairs = [Pair(images[0], images[1]), Pair(images[0], str(big)), Pair(images[0], images[2]),
             Pair(images[0], images[0] + ".missing")]
    res = compare_batch(comp, pairs)
    assert comp.llm.batches == [3, 1, 1, 1]  # one batch, then each pair alone after the rejection
    assert comp.llm.ids == [LEVEL_IDS] * 4
    assert [e is None for e in res.errors] == [True, False, True, False]
    assert "prompt longer than max_model_len" in res.errors[1] and "missing file" in res.errors[3]
    expected = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    np.testing.assert_allclose(res.logprobs[[0, 2]], np.tile(expected - np.log(np.exp(expected).sum()), (2, 1)))
    assert res.meta[0]["level_mass"] == pytest.approx(np.exp(expected).sum())


# --------------------------------------------------------------------------- single-image rating
def shown_index(kw) -> int:
    """Which fixture image a rating request shows (its only image)."""
    [part] = [c for c in kw["messages"][0]["content"] if c["type"] == "image_url"]
    px = np.asarray(decode(part["image_url"]["url"])[1])
    return next(k for k in range(5) if np.array_equal(px, np.asarray(rgb(32, 32, k))))


def test_token_id_mode_names_missing_rating_words():
    top = [(f"token_id:{i}", -1.0) for i in RATING_IDS[:-1]]
    with pytest.raises(PairFailure, match=r"no log-prob for level\(s\) excellent"):
        levels_from_token_ids(completion(top), RATING_IDS, ("bad", "poor", "fair", "good", "excellent"))


def test_generic_mode_maps_rating_words_and_only_them():
    from harness.core.levels import RATING_LEVELS

    top = [("Good", math.log(0.30)), (" good", math.log(0.10)), ("Better", math.log(0.25)), ("exc", math.log(0.05)),
           ("FAIR", math.log(0.20)), ("The", math.log(0.05))]
    lp, meta = levels_from_strings(completion(top), RATING_LEVELS)
    seen = 0.30 + 0.10 + 0.05 + 0.20  # 'Better' is a comparison word, not a rating word
    np.testing.assert_allclose(np.exp(lp), [0.0, 0.0, 0.20 / seen, 0.40 / seen, 0.05 / seen], atol=1e-12)
    assert meta["levels_missing"] == ["bad", "poor"] and meta["missing_mass"] == pytest.approx(1 - seen)
    assert level_of("po", RATING_LEVELS) is None and level_of("poo", RATING_LEVELS) == 1


def test_vllm_mode_rates_one_image_per_request_with_the_rating_prefill(images):
    def reply(kw):
        k = shown_index(kw)
        if k == 2:
            raise status_error(400)
        return completion([(f"token_id:{i}", -1.0 - j * k) for j, i in enumerate(RATING_IDS)])

    fake = FakeClient(reply, gate=2)
    comp = OpenAIComparator("served", server="vllm", client=fake, level_token_ids=LEVEL_IDS,
                            rating_token_ids=RATING_IDS, concurrency=2, max_attempts=2, base_delay=0.0)
    res = rate_batch(comp, images + [images[0] + ".missing"])
    assert len(fake.requests) == 5 and fake.max_in_flight == 2  # the missing image never reaches the API
    for kw in fake.requests:
        user, assistant = kw["messages"]
        assert [c["type"] for c in user["content"]] == ["text", "image_url"]
        assert user["content"][0]["text"] == "How would you rate the quality of this image?"
        assert assistant == {"role": "assistant", "content": [{"type": "text", "text": "The quality of the image is"}]}
        assert kw["extra_body"]["logprob_token_ids"] == RATING_IDS and kw["top_logprobs"] == 5
        assert kw["extra_body"]["continue_final_message"] is True
    for k in (0, 1, 3, 4):
        expected = np.array([-1.0 - j * k for j in range(5)])
        np.testing.assert_allclose(res.logprobs[k], expected - np.log(np.exp(expected).sum()))
        assert res.errors[k] is None and res.meta[k]["level_mass"] == pytest.approx(np.exp(expected).sum())
    assert "HTTP 400" in res.errors[2] and np.isnan(res.logprobs[2]).all()
    assert "missing file" in res.errors[5]
    # pairs still use the comparison levels and wording on the same comparator
    comp.compare_detailed([Pair(images[0], images[1])])
    assert fake.requests[-1]["extra_body"]["logprob_token_ids"] == LEVEL_IDS


def test_generic_mode_rating_asks_for_one_word_and_accounts_missing_mass(images):
    def reply(kw):
        k = shown_index(kw)
        return completion([("good", -0.4), ("Fair", -2.0), ("The", -1.5)] if k % 2 else [("better", -0.1)])

    comp = OpenAIComparator("gpt-x", server="generic", client=FakeClient(reply), top_logprobs=7)
    res = comp.rate_detailed(images[:2])
    kw = comp._endpoints.all[0].client.requests[0]
    assert [m["role"] for m in kw["messages"]] == ["user"] and "extra_body" not in kw and kw["top_logprobs"] == 7
    seen = math.exp(-0.4) + math.exp(-2.0)
    np.testing.assert_allclose(np.exp(res.logprobs[1]), [0, 0, math.exp(-2.0) / seen, math.exp(-0.4) / seen, 0])
    assert res.meta[1]["missing_mass"] == pytest.approx(1 - seen)
    assert res.meta[1]["levels_missing"] == ["bad", "poor", "excellent"]
    assert "no level word among the top 1 tokens" in res.errors[0]  # a comparison word is no rating


def test_rating_words_are_resolved_once_at_the_first_rate_and_keep_the_cache_key(images, monkeypatch):
    import transformers

    from harness.run.judging import prompt_key
    from prompts import load_prompt

    tok, loads = WordTokenizer(), []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda src: loads.append(src) or tok)
    reply_ids = {}

    def reply(kw):
        ids = kw["extra_body"]["logprob_token_ids"]
        reply_ids[len(reply_ids)] = ids
        return completion([(f"token_id:{i}", -1.0) for i in ids])

    comp = OpenAIComparator("served", base_url="http://127.0.0.1:9/v1", tokenizer="/tok", api_key_env=None,
                            client=FakeClient(reply))
    fp = comp.fingerprint()
    encodes = tok.encodes
    assert comp._rating is None and loads == ["/tok"]
    assert prompt_key(fp, rating=True) == "rating:" + load_prompt("rating").sha256
    comp.rate_detailed(images[:2])
    comp.rate_detailed(images[2:3])
    assert loads == ["/tok"] and tok.encodes == encodes + 10  # one tokenizer, rating words resolved once
    expected = [tok.vocab[" " + w] for w in ("bad", "poor", "fair", "good", "excellent")]
    assert list(reply_ids.values()) == [expected] * 3 and comp._rating.levels["strings"][0] == " bad"
    assert comp.fingerprint() == fp  # resolving the rating words does not move the cache key


def test_rating_configuration_errors_and_fingerprint(images, tmp_path):
    from harness.run.judging import prompt_key

    comp = OpenAIComparator("remote", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS,
                            api_key_env=None)  # pair-only use needs no tokenizer
    with pytest.raises(ValueError, match="pass -o tokenizer=PATH.*rating_token_ids"):
        comp.rate_detailed(images[:1])
    res = rate_batch(comp, images[:2])  # the runner's path records it for every image
    assert all("rating_token_ids" in e for e in res.errors) and np.isnan(res.logprobs).all()
    with pytest.raises(ValueError, match="rating_token_ids must be 5 distinct ids in the order bad, poor"):
        OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS,
                         rating_token_ids=[1, 2, 3], api_key_env=None)
    with pytest.raises(ValueError, match="prompt 'official' shows 2 image.*a rating needs 1"):
        OpenAIComparator("m", server="generic", rating_prompt="official", api_key_env=None)
    no_prefill = tmp_path / "bare_rating.j2"
    no_prefill.write_text("{% block question %}{{ image(1) }}Rate this image: {{ rating_levels | join(', ') }}."
                          "{% endblock %}{% block prefill %}{% endblock %}")
    with pytest.raises(ValueError, match="'bare_rating' has no prefill"):
        OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS, rating_prompt=str(no_prefill),
                         api_key_env=None)
    # generic mode takes it (no prefill is sent there); its text and hash reach the request and the key
    fake = FakeClient(lambda kw: completion([("good", -0.1)]))
    custom = OpenAIComparator("gpt-x", server="generic", rating_prompt=str(no_prefill), client=fake)
    default = OpenAIComparator("gpt-x", server="generic", client=fake)
    fp = custom.fingerprint()
    assert fp["rating_prompt"]["name"] == "bare_rating" and fp["rating_prompt"]["prefill"] is None
    assert fp["rating_prompt"]["levels"]["words"] == ["bad", "poor", "fair", "good", "excellent"]
    assert prompt_key(fp, rating=True) != prompt_key(default.fingerprint(), rating=True)
    assert prompt_key(fp) == prompt_key(default.fingerprint())  # the pair wording is unchanged
    custom.rate_detailed(images[:1])
    assert fake.requests[-1]["messages"][0]["content"][-1]["text"] == "Rate this image: bad, poor, fair, good, excellent."


def test_vllm_offline_rating_shares_the_batch_fallback(monkeypatch, images, tmp_path):
    big = tmp_path / "big.png"
    rgb(48, 48).save(big)
    comp = stand_in_vllm_comparator(monkeypatch)
    res = rate_batch(comp, [images[0], str(big), images[1], images[0] + ".missing"])
    res2 = comp.rate_detailed([images[2]])
    assert comp.llm.tokenizer_calls == 1  # rating words resolved once, lazily
    rating_ids = [comp.llm.tokenizer.vocab[" " + w] for w in ("bad", "poor", "fair", "good", "excellent")]
    assert comp.llm.batches == [3, 1, 1, 1, 1] and comp.llm.ids == [rating_ids] * 5
    shown, last_turns = comp.llm.shown[0]
    assert [len(ims) for ims in shown] == [1, 1, 1]  # one image per prompt
    assert last_turns[0] == {"role": "assistant", "content": [{"type": "text", "text": "The quality of the image is"}]}
    assert [e is None for e in res.errors] == [True, False, True, False]
    assert "prompt longer than max_model_len" in res.errors[1] and "missing file" in res.errors[3]
    expected = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    np.testing.assert_allclose(res.logprobs[[0, 2]], np.tile(expected - np.log(np.exp(expected).sum()), (2, 1)))
    assert res.meta[0]["level_mass"] == pytest.approx(np.exp(expected).sum()) and res2.errors == [None]


def test_vllm_offline_rating_prompt_checked_before_the_engine_starts():
    from adapters.vllm import VLLMComparator

    with pytest.raises(ValueError, match="prompt 'official' shows 2 image.s.; a rating needs 1"):
        VLLMComparator("/m", rating_prompt="official")


def test_vllm_subprocess_job_runs_pairs_and_ratings(monkeypatch, tmp_path):
    """The `python -m adapters.vllm` job format, with a stand-in comparator in place of the engine."""
    import adapters.vllm as vllm_mod
    from adapters.base import Comparisons

    class Stub:
        def __init__(self, model, **options):
            self.options = options

        def fingerprint(self):
            return {"model": "m", **self.options}

        def prefix_cache_stats(self):
            return {"queries": 0, "hits": 0}

        def compare_detailed(self, pairs):
            assert all(isinstance(p, Pair) for p in pairs)
            return Comparisons(np.full((len(pairs), 5), -1.0))

        def rate_detailed(self, paths):
            lp = np.array([[-2.0] * 5 if p != "gone" else [math.nan] * 5 for p in paths])
            return Comparisons(lp, [None if p != "gone" else "gone: missing file" for p in paths])

    monkeypatch.setattr(vllm_mod, "VLLMComparator", Stub)
    job, answer = tmp_path / "job.json", tmp_path / "answer.json"
    job.write_text(json.dumps({"model": "m", "options": {"dtype": "float32"}, "batches": [[["a", "b"]]],
                               "rating_batches": [["a", "gone"], ["b"]]}))
    assert vllm_mod.main([str(job), str(answer)]) == 0
    out = json.loads(answer.read_text())
    assert out["fingerprint"] == {"model": "m", "dtype": "float32"}
    assert out["batches"][0]["logprobs"] == [[-1.0] * 5]
    assert [b["logprobs"] for b in out["rating_batches"]] == [[[-2.0] * 5, [None] * 5], [[-2.0] * 5]]
    assert out["rating_batches"][0]["errors"] == [None, "gone: missing file"]
    job.write_text(json.dumps({"model": "m", "options": {}, "rating_batches": [["a"]]}))  # a rating-only job
    vllm_mod.main([str(job), str(answer)])
    assert json.loads(answer.read_text())["batches"] == []


def test_generic_mode_rates_with_a_wording_that_names_the_rating_words():
    """An API that cannot continue the assistant turn must be told the answer vocabulary."""
    comp = OpenAIComparator("gpt-x", server="generic", client=FakeClient(lambda **kw: None))
    assert comp.fingerprint()["rating_prompt"]["name"] == "generic_rating"
    exact = OpenAIComparator("served", server="vllm", client=FakeClient(lambda **kw: None),
                             level_token_ids=LEVEL_IDS)
    assert exact.fingerprint()["rating_prompt"]["name"] == "rating"


def test_vllm_offline_engine_options_and_fingerprint(monkeypatch):
    """Typed engine options reach vllm.LLM only when set; engine_options pass the rest through."""
    from tests.test_base import assert_fingerprint_shape

    comp = stand_in_vllm_comparator(monkeypatch, max_model_len="512", enforce_eager=True,
                                    engine_options={"swap_space": 1})
    assert comp.engine_kwargs == {"disable_log_stats": False, "dtype": "auto", "max_model_len": 512,
                                  "limit_mm_per_prompt": {"image": 2},
                                  "enforce_eager": True, "swap_space": 1}
    fp = comp.fingerprint()
    assert_fingerprint_shape(fp)
    assert fp["backend"] == "vllm" and fp["model"]["id"] == "/m" and fp["dtype"] == "auto"
    assert fp["level_tokens"]["ids"] == LEVEL_IDS and fp["prompt"]["prefill"] == "The quality of the second image is"
    assert "enforce_eager" not in fp["extra"]["engine"]  # memory settings do not change the numbers


def test_openai_fingerprint_shape_and_deadline(monkeypatch):
    from tests.test_base import assert_fingerprint_shape

    comp = OpenAIComparator("served", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS, api_key_env=None,
                            deadline="90", client=FakeClient(lambda kw: None))
    assert comp.retry.deadline == 90.0
    fp = comp.fingerprint()
    assert_fingerprint_shape(fp)
    assert fp["backend"] == "openai" and fp["model"]["id"] == "served" and fp["dtype"] is None
    assert fp["level_tokens"]["ids"] == LEVEL_IDS and fp["extra"]["server"] == "vllm"


def test_the_fingerprint_names_no_server_and_no_credentials():
    """The pair cache's key holds no endpoint: a server restarted on another port, another host or a list
    of servers of the same model hit the same cache (docs/scale-out.md); only OpenAI's own API differs."""
    from adapters.fingerprint import fingerprint_hash

    def fp(url, **kw):
        return OpenAIComparator("m", base_url=url, level_token_ids=LEVEL_IDS, api_key_env=None, **kw).fingerprint()

    first = fp("http://ann:pw9Q@127.0.0.1:8000/v1?api_key=kq1z")
    assert first["extra"]["endpoint"] == "self-hosted"
    assert "pw9Q" not in json.dumps(first) and "kq1z" not in json.dumps(first) and "8000" not in json.dumps(first)
    for other in ("http://127.0.0.1:8001/v1", "http://127.0.0.2:8000/v1",
                  ["http://127.0.0.1:8001/v1", "http://10.0.0.7:9000/v1"]):
        assert fingerprint_hash(fp(other)) == fingerprint_hash(first), other
    assert fingerprint_hash(fp(None, server="vllm", client=object())) != fingerprint_hash(first)
