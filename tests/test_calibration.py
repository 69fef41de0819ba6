"""--calibrate anchors: the maximum-likelihood fit against an independent optimiser, recovery of a planted
temperature on the simulator, scores that do not get worse, the calibrated prior, calibration inside active
designs (every round, rescore, resume), and the command line (run, report, rescore)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import ndtr, softmax

from adapters.base import load_comparator
from harness.cli import main
from harness.core.anchors import AnchorSet, anchor_pairs, select_anchors
from harness.core.calibration import (
    _objective,
    binary_nll,
    calibrate_on_anchors,
    calibrated_prior_var,
    expected_calibration_error,
    fit_calibration,
)
from harness.core.profiles import get_profile
from harness.data.datasets import load_plain_csv
from harness.run.record import read_run
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, rescore, run
from harness.tools.planted import write_planted_dataset
from tests.planted_support import DiesAfter, Killed

SIM = "py:harness.tools.planted:PlantedThurstone"
WEIGHTS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def independent_nll(temperature, beta, logprobs, targets):
    """The calibration objective written again, row by row: softmax(l / T + beta (k - 2)) . w, cross-entropy."""
    total = 0.0
    if not 1e-6 < temperature < 1e6:  # the optimiser wandering far off: no need for a number there
        return 1e6
    for row, t in zip(logprobs, targets):
        p = softmax(row / temperature + beta * (np.arange(5) - 2)) @ WEIGHTS
        if not 0 < p < 1:  # a certain verdict: where the optimiser only passes by
            return 1e6
        total -= t * np.log(p) + (1 - t) * np.log(1 - p)
    return total / len(targets)


def _problem(seed, n=30):
    """Level logits leaning with a latent difference d, and targets Phi(d + noise): an interior optimum."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 1.5, n)
    logits = rng.normal(0, 1, (n, 5)) + np.outer(2.0 * d, np.arange(5) - 2)
    return logits, ndtr(d + rng.normal(0, 0.5, n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_fit_is_the_optimum_of_an_independent_objective(seed):
    lp, t = _problem(seed)
    cal = fit_calibration(lp, t)
    best = min((minimize(lambda u: independent_nll(np.exp(u[0]), 0.0, lp, t), [u0], method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-14}) for u0 in (-3.0, 0.0, 3.0)), key=lambda r: r.fun)
    assert cal.nll_after == pytest.approx(best.fun, abs=1e-10)
    assert cal.nll_after <= best.fun + 1e-12
    assert cal.temperature == pytest.approx(np.exp(best.x[0]), rel=1e-4)
    assert cal.nll_before == pytest.approx(independent_nll(1.0, 0.0, lp, t), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_and_bias_fit_is_the_optimum_of_an_independent_objective(seed):
    lp, t = _problem(seed)
    lp[:, 3:] += 0.8  # a lean towards "second better" for the bias to find
    cal = fit_calibration(lp, t, fit_bias=True, temperature_before=2.0)
    best = min((minimize(lambda v: independent_nll(np.exp(v[0]), v[1], lp, t), x0, method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
                for x0 in ([-1.0, 0.0], [0.0, 1.0], [1.0, -1.0])), key=lambda r: r.fun)
    assert cal.nll_after == pytest.approx(best.fun, abs=1e-9)
    assert cal.temperature == pytest.approx(np.exp(best.x[0]), rel=1e-3)
    assert cal.bias == pytest.approx(best.x[1], abs=1e-3)
    assert cal.nll_before == pytest.approx(independent_nll(2.0, 0.0, lp, t), rel=1e-12)
    assert cal.nll_after < fit_calibration(lp, t).nll_after  # the bias earns its parameter here


def test_gradient_is_the_objectives():
    lp, t = _problem(4)
    lp[0, 1] = -np.inf  # a level an API gave no probability
    h = 1e-5
    for fit_bias, x in ((False, [0.3]), (True, [-0.4, 0.7])):
        x = np.array(x)
        central = [(_objective(x + h * e, lp, t, fit_bias)[0] - _objective(x - h * e, lp, t, fit_bias)[0]) / (2 * h)
                   for e in np.eye(x.size)]
        np.testing.assert_allclose(_objective(x, lp, t, fit_bias)[1], central, rtol=1e-6, atol=1e-9)


def test_nll_and_ece_by_hand():
    p, t = np.array([0.05, 0.15, 0.95, 0.99]), np.array([0.0, 0.35, 1.0, 0.9])
    assert binary_nll(p, t) == pytest.approx(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
    # bins [0, .1): 0.05 vs 0; [.1, .2): 0.15 vs 0.35; [.9, 1]: (0.95 + 0.99) / 2 vs 0.95
    assert expected_calibration_error(p, t) == pytest.approx((0.05 + 0.2 + 2 * 0.02) / 4)
    assert expected_calibration_error(t, t) == 0.0


def test_failed_rows_are_left_out_and_no_rows_is_an_error():
    lp, t = _problem(5)
    with_failed = np.vstack([lp, np.full((1, 5), np.nan)])
    assert fit_calibration(with_failed, np.append(t, 0.5)).temperature == fit_calibration(lp, t).temperature
    with pytest.raises(ValueError, match="no judged anchor pair"):
        fit_calibration(np.full((2, 5), np.nan), np.array([0.1, 0.9]))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    manifest = write_planted_dataset(folder, n=300, seed=11)
    return folder, manifest


@pytest.mark.parametrize("confidence", [3.0, 1 / 3])
def test_recovers_a_planted_temperature_within_ten_percent(planted, confidence):
    folder, manifest = planted
    ds = load_plain_csv(manifest, folder)
    mos, std = np.array([r.mos for r in ds.records]), np.array([r.std for r in ds.records])
    idx = select_anchors(mos, std, 5, 1)
    anchors = AnchorSet([str(ds.abspath(ds.records[i])) for i in idx], mos[idx], std[idx])
    pairs = anchor_pairs(anchors.images)
    for seed in range(3):
        with load_comparator(SIM, noise=0.05, confidence=confidence, seed=seed) as sim:
            cal = calibrate_on_anchors(pairs, sim.compare(pairs), anchors)
        assert abs(cal.temperature / confidence - 1) < 0.10, (seed, cal)
        assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before


def _run(folder, manifest, out, calibrate, **sim):
    cfg = RunConfig(model=SIM, model_options=sim, datasets=[DatasetSpec("planted", str(manifest), str(folder))],
                    anchors=AnchorSpec("select", dataset="planted"), cache=str(out / "cache.sqlite"), out_dir=str(out),
                    reports=False, profile_overrides={"calibrate": calibrate})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (path,) = run(cfg, progress=False)
    return read_run(path)


def _plcc(rec):
    return rec.metrics.datasets["planted"].summary["plcc_logistic"].median


def test_calibration_undoes_a_planted_confidence_on_the_simulator(planted, tmp_path):
    """Calibrated, the 3x over- and 3x under-confident simulators give the same scores (the fit depends on T / c
    only), and the over-confident one's PLCC does not drop. The under-confident one's may, by a few 1e-4
    (bench/calibration.py and docs/method.md, "Calibration": the per-image rating std, which the Case V MAP
    cannot represent), so no such claim is made for it."""
    folder, manifest = planted
    sim = {"noise": 0.1, "seed": 2}
    over, under = (_run(folder, manifest, tmp_path, "anchors", confidence=c, **sim) for c in (3.0, 1 / 3))
    plain = _run(folder, manifest, tmp_path, "none", confidence=3.0, **sim)
    assert plain.manifest.calibration is None and over.manifest.calibration["method"] == "anchors"
    t_over, t_under = (r.manifest.calibration["temperature"] for r in (over, under))
    assert t_over / 3 == pytest.approx(t_under * 3, rel=1e-6) and abs(t_over / 3 - 1) < 0.1
    np.testing.assert_allclose([s.score for s in over.scores], [s.score for s in under.scores], rtol=1e-5, atol=1e-8)
    assert _plcc(over) >= _plcc(plain)
    assert over.manifest.run_id != plain.manifest.run_id


def test_calibrate_is_checked_with_the_profile():
    assert get_profile("paper", calibrate="anchors").as_dict()["calibrate"] == "anchors"
    assert "calibrate" not in get_profile("paper").as_dict()  # uncalibrated runs keep their ids
    with pytest.raises(ValueError, match="calibrate must be one of"):
        get_profile("paper", calibrate="test")
    with pytest.raises(ValueError, match="float16"):
        get_profile("official", calibrate="anchors", logit_dtype="float16")


def _cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_run_report_and_rescore(planted, tmp_path, capsys):
    folder, manifest = planted
    common = ["--dataset", f"planted={manifest}", "--root", str(folder), "--anchors", "select",
              "--anchors-dataset", "planted", "--cache", "", "--out", str(tmp_path / "runs")]
    code, out, _ = _cli(capsys, "run", "--model", "classical", "--calibrate", "anchors", *common)
    assert code == 0 and "calibration: method anchors" in out
    code, out, _ = _cli(capsys, "run", "--model", SIM, "-o", "confidence=3", "-o", "noise=0.1", "--calibrate",
                        "anchors+bias", *common)
    assert code == 0
    (calibrated,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("py-")]
    report = (calibrated / "report.md").read_text()
    assert "## Calibration" in report and "level bias beta" in report and "prior variance of the MAP" in report
    first = read_run(calibrated)
    # rescoring the calibrated run refits the same calibration from its recorded comparisons
    code, out, _ = _cli(capsys, "rescore", str(calibrated), "--no-report")
    assert code == 0
    again = read_run(Path(out.split()[0]))
    assert again.manifest.calibration == first.manifest.calibration
    assert [s.score for s in again.scores] == [s.score for s in first.scores]
    # ... and without calibration it scores the same comparisons at T = 1
    code, out, _ = _cli(capsys, "rescore", str(calibrated), "--calibrate", "none", "--no-report")
    plain = read_run(Path(out.split()[0]))
    assert code == 0 and plain.manifest.calibration is None
    assert [s.score for s in plain.scores] != [s.score for s in first.scores]
    prefs = json.loads((calibrated / "manifest.json").read_text())["calibration"]
    assert prefs["temperature"] == first.manifest.calibration["temperature"]


@pytest.mark.parametrize("extra, message", [
    (["--mode", "count"], "applies to --mode soft only"),
    (["--logit-dtype", "float16", "--profile", "official"], "float16"),
])
def test_cli_refuses_calibration_where_it_cannot_apply(planted, tmp_path, capsys, extra, message):
    folder, manifest = planted
    code, _, err = _cli(capsys, "run", "--model", "classical", "--calibrate", "anchors", "--dataset",
                        f"planted={manifest}", "--root", str(folder), "--anchors", "select", "--anchors-dataset",
                        "planted", "--cache", "", "--out", str(tmp_path), *extra)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("c2s run: error:")


def test_cli_refuses_anchors_without_std(tmp_path, capsys):
    folder = tmp_path / "nostd"
    write_planted_dataset(folder, n=20, seed=1)
    text = (folder / "manifest.csv").read_text().splitlines()
    (folder / "mos.csv").write_text("\n".join(",".join(line.split(",")[:2]) for line in text) + "\n")
    code, _, err = _cli(capsys, "run", "--model", "classical", "--calibrate", "anchors", "--dataset",
                        f"p={folder / 'mos.csv'}", "--root", str(folder), "--anchors", "select", "--cache", "",
                        "--out", str(tmp_path / "runs"))
    assert code == 2 and "carry no std" in err and err.count("\n") == 1


def test_calibrated_prior_is_wide_against_the_anchors_calibrated_spread():
    anchors = AnchorSet(["a", "b", "c"], np.array([1.0, 2.0, 4.0]), np.array([0.3, 0.4, 0.5]))
    by_hand = 100 * np.var([1.0, 2.0, 4.0]) / (2 * np.mean([0.09, 0.16, 0.25]))
    assert calibrated_prior_var(anchors, 1.0) == pytest.approx(by_hand, rel=1e-12)
    assert calibrated_prior_var(anchors, 1e6) == 1e6  # never narrower than the profile's prior


def test_calibrated_scores_are_the_map_at_the_fitted_temperature_and_prior(planted, tmp_path):
    """A second route to the calibrated scores: the same comparisons rescored without calibration at the recorded
    temperature and prior variance."""
    folder, manifest = planted
    rec = _run(folder, manifest, tmp_path, "anchors", confidence=3.0, noise=0.1, seed=4)
    cal = rec.manifest.calibration
    anchors = rec.anchor_set()
    assert cal["prior_var"] == calibrated_prior_var(anchors, 1.0) > 1.0
    again = read_run(rescore(rec.run_dir, calibrate="none", temperature=cal["temperature"],
                             anchor_temperature=cal["temperature"], prior_var=cal["prior_var"]))
    np.testing.assert_allclose([s.score for s in again.scores], [s.score for s in rec.scores], rtol=0, atol=1e-12)


def _active(folder, manifest, out, cache, calibrate, comparator=None, **sim):
    cfg = RunConfig(model=SIM, model_options=sim, datasets=[DatasetSpec("planted", str(manifest), str(folder))],
                    anchors=AnchorSpec("select", dataset="planted"), cache=str(cache), out_dir=str(out),
                    reports=False, profile_overrides={"calibrate": calibrate}, design="active", budget=2,
                    round_size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (path,) = run(cfg, comparator=comparator, progress=False)
    return path


def _chosen(folder):
    return [(Path(r.first).name, Path(r.second).name) for r in read_run(folder).comparisons if r.role == "test"]


def test_active_design_calibrates_every_round(planted, tmp_path):
    """Calibrated, a 3x over- and a 3x under-confident simulator (no noise: T / c = 1 exactly) choose the same pairs
    in every round and give the same scores: the rounds' joint MAP, hence the EIG, runs on calibrated log-probs.
    The temperature is recovered, recorded as the anchor design records it, and a rescore repeats the scores."""
    folder, manifest = planted
    over, under = (_active(folder, manifest, tmp_path / f"r{c:.3f}", tmp_path / f"c{c:.3f}.sqlite", "anchors",
                           confidence=c) for c in (3.0, 1 / 3))
    rec = read_run(over)
    assert rec.manifest.design["name"] == "active" and rec.manifest.design["comparisons"] == 600
    assert rec.manifest.calibration["method"] == "anchors"
    assert abs(rec.manifest.calibration["temperature"] / 3 - 1) < 0.10
    assert _chosen(over) == _chosen(under)
    np.testing.assert_allclose([s.score for s in rec.scores], [s.score for s in read_run(under).scores],
                               rtol=1e-6, atol=1e-8)
    plain = _active(folder, manifest, tmp_path / "plain", tmp_path / "c3.000.sqlite", "none", confidence=3.0)
    assert _chosen(plain) != _chosen(over)  # uncalibrated, the over-confident simulator's rounds differ
    again = read_run(rescore(over))
    assert again.manifest.calibration == rec.manifest.calibration
    np.testing.assert_allclose([s.score for s in again.scores], [s.score for s in rec.scores], rtol=0, atol=1e-12)


def test_a_resumed_calibrated_active_run_replays_its_rounds(planted, tmp_path):
    folder, manifest = planted
    sim = {"confidence": 3.0, "noise": 0.1}
    whole = _active(folder, manifest, tmp_path / "a", tmp_path / "a.sqlite", "anchors", **sim)
    with pytest.raises(Killed):  # dies in the third round
        _active(folder, manifest, tmp_path / "b", tmp_path / "b.sqlite", "anchors", DiesAfter(300, **sim), **sim)
    resumed = _active(folder, manifest, tmp_path / "b", tmp_path / "b.sqlite", "anchors", **sim)
    assert _chosen(resumed) == _chosen(whole)
    assert [s.score for s in read_run(resumed).scores] == [s.score for s in read_run(whole).scores]
    assert read_run(resumed).manifest.counts.pairs_cached > 0
