"""The float16 official path on the raw level logits (docs/method.md, item 7).

Adapters that see the model's logits report, per pair, the log-sum-exp they subtracted (meta
"logsumexp"), so raw level logits = log-probs + it; the shift travels through judging, the pair cache
and comparisons.csv, and `logit_dtype: float16` runs the official float16 arithmetic on the raw logits.
The float16 reference is `tests.test_fp16_official.reference_fp16` (numpy scalars, step by step); the raw
logits come from the tiny model's own forward, outside the adapter's scoring code.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adapters.hf import HFComparator, level_rows  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.core.anchors import anchor_pairs, matrix_from_preferences  # noqa: E402
from harness.core.official import official_scores  # noqa: E402
from harness.core.pairs import Pair  # noqa: E402
from harness.run.record import read_run  # noqa: E402
from harness.tools.tiny_vlm import build_tiny_vlm  # noqa: E402
from tests.test_fp16_official import _tiny_manifest, reference_fp16  # noqa: E402

T = 100.0
#: the official profile's temperature per role: T for test pairs, 1 for the anchor block
TEMPERATURE = {"test": T, "anchor": 1.0}


@pytest.mark.parametrize("scale", [0.01, 3.0, 40.0, 3000.0])
def test_logprobs_plus_logsumexp_round_back_to_the_float16_logits(scale):
    """Float16 logits of every size (subnormal to 60000): log-probs + log-sum-exp, in float64, give
    back exactly the float16 numbers, and the mass is the five's share of the vocabulary."""
    rng = np.random.default_rng(int(scale * 7))
    logits = torch.tensor(rng.normal(0, scale, size=(6, 50)), dtype=torch.float32).clamp(-60000, 60000).half()
    logits[0, :5] = torch.tensor([6e-8, -6e-8, 1e-5, 0.0, 2.0 ** -14], dtype=torch.float16)
    ids = [3, 17, 0, 42, 9]
    lp, mass, lse = level_rows(logits, ids)
    raw = (lp + np.array(lse)[:, None]).astype(np.float16)
    np.testing.assert_array_equal(raw, logits[:, ids].numpy())
    full = torch.softmax(logits.double(), dim=-1)[:, ids].sum(dim=-1).numpy()
    np.testing.assert_allclose(mass, full, rtol=1e-5)  # the vocabulary sum runs in float32
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-12)


def test_the_worker_reports_the_shift_to_its_float16_logits(tmp_path):
    """The Compare2Score worker (in process, float16 on CPU): log-probs + logsumexp are its model's
    float16 level logits, bit for bit."""
    from adapters import c2s_worker
    from adapters.compare2score import _rgb_payload, mplug_prompt
    from harness.core.levels import LEVELS
    from harness.data.images import load_image
    from tests.conftest import noise_pngs
    from tests.test_compare2score import build_double

    folder = build_double(sys.executable, tmp_path / "double")
    paths = noise_pngs(tmp_path, [(40, 24), (32, 32), (20, 50)], seed=4, prefix="w")
    w = c2s_worker.Worker()
    w.load({"model": str(folder), "prompt": mplug_prompt("official"), "levels": list(LEVELS), "device": "cpu",
            "dtype": "float16"})
    images = [_rgb_payload(load_image(p)) for p in paths]
    pairs = [[0, 1], [1, 2], [2, 0]]
    reply = w.compare({"images": images, "pairs": pairs, "batch_size": 1})  # as the forward below
    pixels = w.pixels(images).to(torch.float16)
    for (i, j), lp, lse in zip(pairs, reply["logprobs"], reply["logsumexp"]):
        with torch.inference_mode():
            logits = w.model(w.input_ids, images=pixels[[i, j]])["logits"][0, -1, w.level_ids]
        assert logits.dtype == torch.float16
        np.testing.assert_array_equal((np.array(lp) + lse).astype(np.float16), logits.numpy())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_vlm("idefics3", tmp_path_factory.mktemp("tiny") / "idefics3", seed=0)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny):
    """(its folder's parent, the run folder) of one tiny hf run under logit_dtype float16, with a cache."""
    where = tmp_path_factory.mktemp("fp16run")
    return where, _run(where, tiny, "runs")


def _run(tmp_path, model, out, *extra):
    manifest = tmp_path / "mine.csv"
    if not manifest.exists():
        _tiny_manifest(tmp_path, n=6)
    args = ["run", "--model", f"hf:{model}", "-o", "batch_size=1", "--dataset", f"mine={manifest}", "--anchors",
            "select", "--anchors-dataset", "mine", "--alpha", "3", "--beta", "1", "--profile", "official",
            "--logit-dtype", "float16", "--no-report", "--cache", str(tmp_path / "pairs.sqlite"),
            "--out", str(tmp_path / out), *extra]
    assert main(args) == 0
    (run_dir,) = (tmp_path / out).iterdir()
    return run_dir


def _column(run_dir, name, table="scores.csv"):
    with open(run_dir / table, newline="") as f:
        return [r[name] for r in csv.DictReader(f)]


def test_a_tiny_hf_run_scores_the_float16_path_on_the_raw_logits(first_run, tiny):
    tmp_path, run_dir = first_run
    rec = read_run(run_dir)
    rows = rec.comparisons
    assert all(r.logsumexp is not None for r in rows)
    assert rec.manifest.counts.pairs_raw_logits == len(rows) == rec.manifest.counts.pairs_total
    # the raw logits, from the model's own forward of each pair (outside the adapter's level_rows)
    comp = HFComparator(str(tiny), batch_size=1)
    ids = comp.pair_prompt.tokens.ids
    raws = {}
    try:
        for r in rows:
            inputs = comp.processed_inputs([(r.first, r.second)])
            with torch.inference_mode():
                raw = comp.model(**inputs, logits_to_keep=1).logits[0, -1, ids].numpy()
            assert raw.dtype == np.float32
            np.testing.assert_array_equal((np.array(r.logprobs) + r.logsumexp).astype(np.float32), raw)
            assert r.preference == reference_fp16(raw, TEMPERATURE[r.role])  # bit for bit
            raws[Pair(r.first, r.second)] = (raw, TEMPERATURE[r.role])
    finally:
        comp.close()
    # on the log-probs the float16 numbers differ: the raw logits are what changes them
    assert any(reference_fp16(np.array(r.logprobs), TEMPERATURE[r.role]) != r.preference for r in rows)
    # the scores: the official scorer on the reference preferences and the matrix they make
    anchors = rec.manifest.anchors.images
    pref = {p: reference_fp16(raw, t) for p, (raw, t) in raws.items()}
    block = anchor_pairs(anchors)
    C = matrix_from_preferences(block, np.array([pref[p] for p in block]), anchors)
    np.testing.assert_array_equal(np.array(rec.manifest.anchors.matrix), C)
    tests = [s.path for s in rec.scores]
    b = np.array([[pref[Pair(a, x)] for a in anchors] for x in tests])
    expected, _ = official_scores(b, C)
    np.testing.assert_array_equal(np.array([s.score for s in rec.scores]), expected)

    # rescore from the folder gives the same numbers
    assert main(["rescore", str(run_dir), "--out", str(tmp_path / "re"), "--no-report"]) == 0
    (re_dir,) = (tmp_path / "re").iterdir()
    assert _column(re_dir, "score") == _column(run_dir, "score")
    assert _column(re_dir, "logsumexp", "comparisons.csv") == _column(run_dir, "logsumexp", "comparisons.csv")

    # a second run from the cache: every pair cached, the shift with it, identical scores
    again = _run(tmp_path, tiny, "again")
    m = json.loads((again / "manifest.json").read_text())
    assert m["counts"]["pairs_cached"] == m["counts"]["pairs_raw_logits"] == len(rows)
    assert _column(again, "score") == _column(run_dir, "score")
    assert _column(again, "preference", "comparisons.csv") == _column(run_dir, "preference", "comparisons.csv")

    # a folder without the column (an older run, or an API's): read, and scored on the log-probs, as said
    old = tmp_path / "old" / run_dir.name
    shutil.copytree(run_dir, old)
    with open(run_dir / "comparisons.csv", newline="") as f:
        table = list(csv.reader(f))
    k = table[0].index("logsumexp")
    with open(old / "comparisons.csv", "w", newline="") as f:
        csv.writer(f).writerows([row[:k] + row[k + 1:] for row in table])
    assert all(r.logsumexp is None for r in read_run(old).comparisons)
    assert main(["rescore", str(old), "--out", str(tmp_path / "re_old"), "--no-report"]) == 0
    (re_old,) = (tmp_path / "re_old").iterdir()
    m = json.loads((re_old / "manifest.json").read_text())
    assert m["counts"]["pairs_raw_logits"] == 0
    assert "logsumexp" not in _column_names(re_old)
    on_lp = [float(v) for v in _column(re_old, "preference", "comparisons.csv")]
    assert on_lp == [reference_fp16(np.array(r.logprobs), TEMPERATURE[r.role]) for r in rows]
    # float32 ignores the shift: the same numbers from the folder with and without it (the tiny model's
    # float32 scores are constant here, exit code 4: no correlation; the folder is written all the same)
    for src, out in ((run_dir, "f32_new"), (old, "f32_old")):
        assert main(["rescore", str(src), "--logit-dtype", "float32", "--out", str(tmp_path / out), "--no-report"]) in (0, 4)
    (a,), (b32,) = (tmp_path / "f32_new").iterdir(), (tmp_path / "f32_old").iterdir()
    assert _column(a, "score") == _column(b32, "score")
    assert _column(a, "preference", "comparisons.csv") == _column(b32, "preference", "comparisons.csv")


def _column_names(run_dir):
    with open(run_dir / "comparisons.csv", newline="") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("shift", [1200.0, 2000.0, -1e5])
def test_extreme_raw_logits_fail_the_image_with_the_reason(tmp_path, first_run, shift):
    """A recorded shift that puts the raw logits out of float16's exponential range: the float16 softmax
    gives NaN (as the official code's would), the images with such a pair fail with the reason."""
    run_dir = tmp_path / "runs" / first_run[1].name
    shutil.copytree(first_run[1], run_dir)
    table = list(csv.reader(open(run_dir / "comparisons.csv", newline="")))
    k, second, role = (table[0].index(c) for c in ("logsumexp", "second", "role"))
    victim = next(row[second] for row in table[1:] if row[role] == "test")
    for row in table[1:]:
        if row[second] == victim and row[role] == "test":
            row[k] = repr(shift)
    with open(run_dir / "comparisons.csv", "w", newline="") as f:
        csv.writer(f).writerows(table)
    assert main(["rescore", str(run_dir), "--out", str(tmp_path / "re"), "--no-report"]) == 3  # partial result
    (re_dir,) = (tmp_path / "re").iterdir()
    by_path = {r.path: r for r in read_run(re_dir).scores}
    assert by_path[victim].status == "failed" and "float16 softmax" in by_path[victim].error
    assert sum(r.status == "failed" for r in by_path.values()) == 1


def test_the_cache_returns_each_rows_shift_and_ignores_a_bad_one(tmp_path):
    from harness.run.cache import PairCache

    lp = np.log(np.full(5, 0.2))
    metas = [{"logsumexp": 12.5}, {"logsumexp": -3}, {"level_mass": 0.5}, {"logsumexp": "12"}, {"logsumexp": True},
             {"logsumexp": None}, {"logsumexp": 1e308}]
    with PairCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("fp", "pr", [(f"a{k}", "b", lp, m) for k, m in enumerate(metas)])
        hits = cache.get_many("fp", "pr", [(f"a{k}", "b") for k in range(len(metas))])
    assert len(hits.found) == len(metas) and not hits.invalid
    assert hits.shifts == {("a0", "b"): 12.5, ("a1", "b"): -3.0, ("a6", "b"): 1e308}


def test_judged_rows_add_the_shift_only_where_it_is_known():
    from harness.run.judging import Judged

    lp = np.log(np.array([[0.1, 0.2, 0.3, 0.2, 0.2]] * 3))
    lp[2] = np.nan  # a failed pair
    j = Judged([Pair("a", "x"), Pair("a", "y"), Pair("a", "z")], ["test"] * 3, lp, [None, None, "boom"],
               np.zeros(3, dtype=bool), shift=np.array([20.25, np.nan, 5.0]))
    assert j.has_raw().tolist() == [True, False, False]
    raw = j.rows(raw=True)
    np.testing.assert_array_equal(raw[0], (lp[0] + 20.25).astype(np.float32))
    np.testing.assert_array_equal(raw[1], lp[1])
    assert np.isnan(raw[2]).all() and j.rows() is lp
    # no shift given (an older run, an API): nothing is raw
    assert Judged([Pair("a", "x")], ["test"], lp[:1], [None], np.zeros(1, bool)).has_raw().tolist() == [False]


@pytest.mark.integration
def test_worker_environment_reports_the_shift(tmp_path):
    """The worker under transformers 4.37 (C2S_WORKER_PYTHON, as tests/test_compare2score.py's legacy
    test): every pair carries a finite logsumexp, and log-probs + it are float32 numbers (CPU: float32)."""
    from adapters.compare2score import Compare2ScoreComparator
    from tests.conftest import noise_pngs
    from tests.test_compare2score import build_double

    py = os.environ.get("C2S_WORKER_PYTHON")
    if not py:
        pytest.fail("set C2S_WORKER_PYTHON to the worker environment's python (make test-integration does)")
    folder = build_double(py, tmp_path / "double_old")
    paths = noise_pngs(tmp_path, [(40, 24), (32, 32), (20, 50)], seed=5, prefix="o")
    c = Compare2ScoreComparator(str(folder), python=py)
    try:
        res = c.compare_detailed([Pair(paths[0], paths[1]), Pair(paths[2], paths[0])])
        assert c.info["transformers"].startswith("4.3")
    finally:
        c.close()
    lse = np.array([m["logsumexp"] for m in res.meta])
    assert np.isfinite(lse).all() and res.errors == [None, None]
    raw = res.logprobs + lse[:, None]
    np.testing.assert_allclose(raw.astype(np.float32), raw, rtol=1e-12, atol=1e-12)
