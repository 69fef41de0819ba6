"""One "both orders" mechanism: the runner plans the swapped pair and folds the two verdicts in one
place (harness.run.scoring), so the result does not depend on which backend judged the pairs."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from adapters.classical import ClassicalComparator
from harness.core.anchors import AnchorSet
from harness.core.levels import LEVELS
from harness.core.pairs import Pair
from harness.core.profiles import get_profile
from harness.data.demo_data import build_demo_benchmark
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run
from harness.run.scoring import score_tests


class PlainComparator:
    """A user's comparator with nothing but `compare` and `fingerprint` (loaded through `py:`):
    the classical verdicts, computed without the classical adapter's own batch path."""

    def __init__(self, model=None):
        self._inner = ClassicalComparator()

    def compare(self, pairs):
        return np.array([self._inner.compare_detailed([p]).logprobs[0] for p in pairs])

    def fingerprint(self):
        return {"backend": "plain-test-double", "wraps": "classical"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    ds = build_demo_benchmark(tmp_path_factory.mktemp("bench"), size=48, sources=["camera"])
    return ds.root / "manifest.json"


def _scores(run_dir) -> dict:
    with open(Path(run_dir) / "scores.csv", newline="") as f:
        return {(r["image"], r["split"]): float(r["score"]) for r in csv.DictReader(f)}


def _config(model, bench, tmp_path, order):
    return RunConfig(model=model, datasets=[DatasetSpec("bench", source=str(bench))],
                     anchors=AnchorSpec(source="select", dataset="bench"), order=order,
                     out_dir=str(tmp_path / "runs"), cache=str(tmp_path / f"{model.replace(':', '_')}.sqlite"),
                     batch_size=7, reports=False)


def test_both_orders_give_the_same_scores_whichever_backend_judged(bench, tmp_path):
    both = {}
    for model in ("classical", "py:tests.test_orders:PlainComparator"):
        (run_dir,) = run(_config(model, bench, tmp_path, "both"), progress=False)
        both[model] = _scores(run_dir)
    a, b = both.values()
    assert a.keys() == b.keys() and len(a) > 20
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=0, atol=1e-12)
    (first,) = run(_config("classical", bench, tmp_path, "anchor_first"), progress=False)
    assert _scores(first) != a  # the swapped pairs were judged and used


def test_the_fold_is_the_mean_of_p_test_better_over_both_orders():
    """At T = 1 the fold equals showing one verdict whose level distribution is the mean of the
    forward one and the reversed backward one (preference is linear in the level probabilities)."""
    rng = np.random.default_rng(3)
    anchors = AnchorSet(images=["a0", "a1", "a2"], mos=np.array([1.0, 2.0, 3.0]), std=np.array([0.5, 0.5, 0.5]))
    tests = ["x0", "x1", "x2", "x3"]
    profile = get_profile("paper", anchor_matrix="mos")

    def dist():
        return rng.dirichlet(np.ones(len(LEVELS)))

    split, folded = {}, {}
    for x in tests:
        for a in anchors.images:
            fwd, bwd = dist(), dist()  # verdict on x given a first; verdict on a given x first
            split[Pair(a, x)], split[Pair(x, a)] = np.log(fwd), np.log(bwd)
            folded[Pair(a, x)] = np.log((fwd + bwd[::-1]) / 2)
    s_both = score_tests(tests, anchors, split, {}, profile, "soft", "both")
    s_one = score_tests(tests, anchors, folded, {}, profile, "soft", "anchor_first")
    np.testing.assert_allclose(s_both.score, s_one.score, atol=1e-9)
    # a missing backward verdict leaves the forward one alone (mean over the orders that exist)
    del split[Pair("x0", "a1")]
    folded[Pair("a1", "x0")] = split[Pair("a1", "x0")]
    np.testing.assert_allclose(score_tests(tests, anchors, split, {}, profile, "soft", "both").score,
                               score_tests(tests, anchors, folded, {}, profile, "soft", "anchor_first").score,
                               atol=1e-9)
