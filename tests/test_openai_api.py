"""OpenAI-compatible adapter, without any server: retries, log-prob mapping, images, keys.

The real HTTP path (a vLLM server, a fault-injecting proxy) is covered by tests/integration/.
"""
from __future__ import annotations

import base64
import io
import json
import math
import random
import threading
import time
from email.utils import formatdate

import numpy as np
import openai
import pytest
from PIL import Image

from adapters.base import Pair, compare_batch
from adapters.openai_api import (UNSEEN_LEVEL_LOGPROB, ImageEncoding, OpenAIComparator, PairFailure, RetryPolicy,
                                 call_with_retries, image_data_url, level_of, levels_from_strings,
                                 levels_from_token_ids, parse_retry_after, redact_url)

try:  # the transport the installed openai client is built on
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

LEVEL_IDS = [101, 102, 103, 104, 105]


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


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def run_faults(faults, policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0)):
    """Drive call_with_retries through a scripted sequence of exceptions; record the sleeps."""
    calls, sleeps = [], []

    def send():
        calls.append(1)
        if len(calls) <= len(faults):
            raise faults[len(calls) - 1]
        return "ok"

    result = call_with_retries(send, policy, rng=random.Random(1), sleep=sleeps.append)
    return result, sleeps


def test_transient_errors_are_retried_and_retry_after_is_waited():
    req = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    faults = [status_error(429, {"retry-after": "2"}), status_error(500), openai.APITimeoutError(request=req)]
    (result, attempts), sleeps = run_faults(faults)
    assert (result, attempts) == ("ok", 4)
    assert len(sleeps) == 3 and sleeps[0] >= 2.0 and all(s < 1.0 for s in sleeps[1:])


def test_permanent_errors_fail_at_once_and_retries_give_up():
    with pytest.raises(PairFailure, match=r"HTTP 400.*not retryable"):
        run_faults([status_error(400)])
    with pytest.raises(PairFailure, match=r"HTTP 500.*gave up after 4 attempts"):
        run_faults([status_error(500)] * 10)
    with pytest.raises(PairFailure, match="retry after 600 s, more than max_delay"):
        run_faults([status_error(429, {"retry-after": "600"})])


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


def test_redact_url_drops_credentials():
    assert redact_url("http://user:pw@127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


# --------------------------------------------------------------------------- the adapter
class FakeClient:
    """Stands in for openai.OpenAI: answers from `reply(pair_index)`, tracks requests in flight."""

    def __init__(self, reply, delay=0.02):
        self.reply, self.delay = reply, delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.requests = []
        self.chat = self
        self.completions = self

    def create(self, **kw):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requests.append(kw)
        try:
            time.sleep(self.delay)
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

    fake = FakeClient(reply)
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

    comp = OpenAIComparator("gpt-x", server="generic", client=FakeClient(reply, 0.0))
    res = comp.compare_detailed([Pair(images[0], images[1]), Pair(images[0], images[2])])
    req_msgs = comp._client.requests[0]["messages"]
    assert [m["role"] for m in req_msgs] == ["user"] and "one word" in req_msgs[0]["content"][-1]["text"]
    assert "extra_body" not in comp._client.requests[0] and comp._client.requests[0]["top_logprobs"] == 20
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
    assert comp._client.api_key == secret
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
    comp._client = FakeClient(reply, 0.0)
    comp._client.api_key = secret
    res = comp.compare_detailed([Pair(images[0], images[1])])
    assert "HTTP 401" in res.errors[0] and "Incorrect API key" in res.errors[0]
    assert secret not in res.errors[0] and "zzzz" not in res.errors[0]


def test_configuration_errors_are_specific():
    with pytest.raises(ValueError, match="needs base_url"):
        OpenAIComparator("m", server="vllm", level_token_ids=LEVEL_IDS, api_key_env=None)
    assert OpenAIComparator("gpt-x", api_key_env=None).server == "generic"  # OpenAI itself
    assert OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=LEVEL_IDS,
                            api_key_env=None).server == "vllm"
    with pytest.raises(ValueError, match="server must be one of"):
        OpenAIComparator("m", server="tgi", api_key_env=None)
    with pytest.raises(ValueError, match="top_logprobs must be in 1..20"):
        OpenAIComparator("m", server="generic", top_logprobs=21, api_key_env=None)
    with pytest.raises(ValueError, match="pass tokenizer=PATH"):
        OpenAIComparator("remote-model", base_url="http://127.0.0.1:9/v1", api_key_env=None)
    with pytest.raises(ValueError, match="5 distinct ids"):
        OpenAIComparator("m", base_url="http://127.0.0.1:9/v1", level_token_ids=[1, 1, 2, 3, 4], api_key_env=None)
    with pytest.raises(ValueError, match="a comparison needs 2"):
        OpenAIComparator("m", server="generic", prompt="rating", api_key_env=None)


# --------------------------------------------------------------------------- parity report, vLLM plumbing
# (harness/parity.py and adapters/vllm.py pieces that need no vLLM; the real runs are in tests/integration)
def test_parity_report_flags_deviations_and_one_sided_failures():
    from adapters.base import Comparisons
    from harness.parity import compare_backends

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
    from harness.parity import check_parity

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
    with pytest.raises(ValueError, match="must show 2 images"):
        VLLMComparator("/m", prompt="rating")


def test_vllm_rejected_batch_fails_only_the_offending_pair(monkeypatch, images, tmp_path):
    """The offline adapter's fallback, with a stand-in engine that, like vLLM, rejects a whole
    batch when one prompt is invalid (e.g. over max_model_len)."""
    import sys
    from types import SimpleNamespace

    from adapters.level_tokens import LevelTokens
    from adapters.vllm import VLLMComparator
    from harness.images import ImageStore
    from prompts import load_prompt

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(SamplingParams=lambda **kw: kw))
    big = tmp_path / "big.png"
    rgb(48, 48).save(big)

    class Engine:
        def __init__(self):
            self.batches = []

        def chat(self, convs, params, **kw):
            assert params["logprob_token_ids"] == LEVEL_IDS and params["max_tokens"] == 1
            assert kw["continue_final_message"] and not kw["add_generation_prompt"]
            self.batches.append(len(convs))
            shown = [[c["image_pil"] for c in conv[0]["content"] if c["type"] == "image_pil"] for conv in convs]
            if any(im.size == (48, 48) for ims in shown for im in ims):
                raise ValueError("prompt longer than max_model_len")
            step = {i: SimpleNamespace(logprob=-1.0 - j) for j, i in enumerate(LEVEL_IDS)}
            return [SimpleNamespace(outputs=[SimpleNamespace(logprobs=[step])]) for _ in convs]

    comp = object.__new__(VLLMComparator)  # everything but the engine start
    comp.rendered, comp._store, comp.llm = load_prompt("official").render(), ImageStore(), Engine()
    comp.levels = LevelTokens(LEVEL_IDS, [str(i) for i in LEVEL_IDS], "single")
    pairs = [Pair(images[0], images[1]), Pair(images[0], str(big)), Pair(images[0], images[2]),
             Pair(images[0], images[0] + ".missing")]
    res = compare_batch(comp, pairs)
    assert comp.llm.batches == [3, 1, 1, 1]  # one batch, then each pair alone after the rejection
    assert [e is None for e in res.errors] == [True, False, True, False]
    assert "prompt longer than max_model_len" in res.errors[1] and "missing file" in res.errors[3]
    expected = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    np.testing.assert_allclose(res.logprobs[[0, 2]], np.tile(expected - np.log(np.exp(expected).sum()), (2, 1)))
    assert res.meta[0]["level_mass"] == pytest.approx(np.exp(expected).sum())
