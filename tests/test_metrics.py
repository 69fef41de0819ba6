"""Correlation metrics, the VQEG logistic fit, bootstrap intervals and split aggregation."""
import math

import numpy as np
import pytest
from scipy import stats

from harness.core.metrics import aggregate, bootstrap_ci, correlations, fit_logistic, undefined_reason

RNG = np.random.default_rng(21)


def _logistic_world(n=400, noise=0.1):
    x = RNG.normal(loc=5.0, scale=3.0, size=n)  # predictions on an arbitrary scale
    mos = 1.0 + 4.0 / (1.0 + np.exp(-(x - 4.0) / 1.5)) + RNG.normal(scale=noise, size=n)
    return x, mos


def test_correlations_match_scipy():
    x, y = _logistic_world()
    r = correlations(x, y)
    assert r["srcc"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert r["krcc"] == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-12)
    assert r["plcc"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert r["n"] == 400 and r["n_dropped"] == 0 and r["logistic_ok"]
    # the logistic straightens a sigmoidal relation: PLCC rises, RMSE near the noise level
    assert r["plcc_logistic"] > r["plcc"] and r["plcc_logistic"] > 0.99
    assert 0.08 < r["rmse_logistic"] < 0.12


def test_logistic_fit_recovers_the_curve_and_handles_decreasing_relations():
    x, y = _logistic_world(noise=0.0)
    fit = fit_logistic(x, y)
    assert fit.ok and np.allclose(fit.predict(x), y, atol=1e-5)
    dec = fit_logistic(-x, y)  # same data, prediction negated: a decreasing logistic fits as well
    assert dec.ok and np.allclose(dec.predict(-x), y, atol=1e-5)


def test_failed_fit_is_reported_not_hidden():
    fit = fit_logistic(np.ones(10), np.arange(10.0))
    assert not fit.ok and "constant" in fit.message and np.isnan(fit.predict([1.0])).all()
    r = correlations(np.ones(10), np.arange(10.0))
    assert not r["logistic_ok"] and np.isnan(r["plcc_logistic"]) and np.isnan(r["rmse_logistic"])
    assert "constant" in r["logistic_message"]
    assert not fit_logistic(np.arange(4.0), np.arange(4.0)).ok


def test_lower_is_better_ground_truth_flips_the_sign():
    x, y = _logistic_world()
    dmos = 100 - 20 * y
    r = correlations(x, dmos, higher_is_better=False)
    plain = correlations(x, y)
    assert r["srcc"] == pytest.approx(plain["srcc"]) and r["srcc"] > 0.9
    assert r["krcc"] == pytest.approx(plain["krcc"]) and r["plcc"] == pytest.approx(plain["plcc"])
    assert r["plcc_logistic"] == pytest.approx(plain["plcc_logistic"], abs=1e-6)
    assert r["rmse_logistic"] == pytest.approx(20 * plain["rmse_logistic"], rel=1e-4)  # DMOS units
    assert correlations(x, dmos)["srcc"] < -0.9


def test_non_finite_predictions_are_counted_and_excluded():
    x, y = _logistic_world()
    x2 = x.copy()
    x2[[3, 7, 11]] = [np.nan, np.inf, -np.inf]
    r = correlations(x2, y)
    keep = np.isfinite(x2)
    assert r["n"] == 397 and r["n_dropped"] == 3
    assert r["srcc"] == pytest.approx(stats.spearmanr(x[keep], y[keep])[0])
    empty = correlations(np.full(5, np.nan), np.arange(5.0))
    assert empty["n"] == 0 and empty["n_dropped"] == 5 and np.isnan(empty["srcc"]) and not empty["logistic_ok"]


def test_bad_ground_truth_and_shapes():
    with pytest.raises(ValueError, match="finite"):
        correlations(np.arange(3.0), np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="equal length"):
        correlations(np.arange(3.0), np.arange(4.0))


@pytest.mark.parametrize("metric", ["srcc", "krcc", "plcc"])
def test_bootstrap_ci_is_seeded_and_covers_the_estimate(metric):
    x, y = _logistic_world(n=200, noise=0.5)
    lo, hi = bootstrap_ci(x, y, metric=metric, n_boot=300, seed=1)
    assert (lo, hi) == bootstrap_ci(x, y, metric=metric, n_boot=300, seed=1)
    assert (lo, hi) != bootstrap_ci(x, y, metric=metric, n_boot=300, seed=2)
    point = correlations(x, y)[metric]
    assert lo < point < hi and hi - lo < 0.2
    narrow = bootstrap_ci(x, y, metric=metric, n_boot=300, seed=1, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi


def test_bootstrap_srcc_matches_scipy_on_the_same_resamples():
    x, y = _logistic_world(n=50, noise=0.5)
    lo, hi = bootstrap_ci(x, y, n_boot=200, seed=4)
    idx = np.random.default_rng(4).integers(0, 50, size=(200, 50))
    vals = [stats.spearmanr(x[i], y[i])[0] for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(vals, [0.025, 0.975])), abs=1e-12)
    with pytest.raises(ValueError, match="metric"):
        bootstrap_ci(x, y, metric="rmse")


def test_aggregate_over_splits():
    a = aggregate([0.91, 0.95, 0.93, np.nan, 0.90])
    assert a["median"] == pytest.approx(0.92) and a["mean"] == pytest.approx(0.9225)
    assert a["sd"] == pytest.approx(np.std([0.91, 0.95, 0.93, 0.90], ddof=1))
    assert (a["min"], a["max"], a["n"], a["n_dropped"]) == (0.90, 0.95, 4, 1)
    assert aggregate([])["n"] == 0 and np.isnan(aggregate([0.5])["sd"])


def test_constant_ground_truth_defines_no_metric():
    from harness.core.metrics import correlations

    out = correlations([0.1, 0.5, 0.9], [3.0, 3.0, 3.0])
    assert not out["logistic_ok"] and "constant" in out["logistic_message"]
    assert all(np.isnan(out[k]) for k in ("srcc", "plcc", "plcc_logistic", "rmse_logistic"))


# --- undefined metrics (issue 10): scores without information have no correlation ----------------

@pytest.mark.parametrize("pred, mos, why", [
    ([1.0, 2.0], [1.0, 2.0], "only 2 scored image(s)"),
    ([1.0, np.nan, 2.0, np.nan], [1.0, 2.0, 3.0, 4.0], "only 2 scored image(s)"),
    ([np.nan] * 4, [1.0, 2.0, 3.0, 4.0], "only 0 scored image(s)"),
    ([1.0, 2.0, 3.0, 4.0], [3.0] * 4, "constant ground truth"),
    ([5.0] * 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "constant predictions"),
    ([3.0 + 1e-15 * k for k in range(6)], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "constant predictions"),
])
def test_scores_without_information_have_no_correlation(pred, mos, why):
    assert undefined_reason(pred, mos).startswith(why)
    out = correlations(pred, mos)
    assert out["undefined"].startswith(why) and out["logistic_message"] == out["undefined"]
    assert all(math.isnan(out[k]) for k in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic"))


def test_an_outside_reason_makes_informative_scores_undefined_and_three_images_are_enough():
    pred, mos = [1.0, 2.0, 3.0], [1.0, 2.5, 2.0]
    assert correlations(pred, mos)["undefined"] == "" and correlations(pred, mos)["srcc"] == pytest.approx(0.5)
    out = correlations(pred, mos, undefined="the anchors' MOS are all equal")
    assert math.isnan(out["srcc"]) and out["undefined"] == "the anchors' MOS are all equal"
    assert all(math.isnan(v) for v in bootstrap_ci([1.0, 2.0], [1.0, 2.0], "srcc", 50))
