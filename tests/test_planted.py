"""The planted Thurstone simulator follows its planted model, and its dataset loads in the harness."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import binom

from adapters.base import Pair, check_model_options, load_comparator
from harness.core.levels import LEVEL_WEIGHTS
from harness.core.scaling import preference
from harness.data.datasets import load_plain_csv
from harness.tools.planted import binomial_level_logprobs, planted_truth, write_planted_dataset

SPEC = "py:harness.tools.planted:PlantedThurstone"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    manifest = write_planted_dataset(folder, n=60, seed=3)
    return folder, load_plain_csv(manifest, folder)


def _pairs(ds, n_pairs, seed=0):
    rng = np.random.default_rng(seed)
    recs = ds.records
    idx = rng.integers(0, len(recs), size=(n_pairs, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    pairs = [Pair(ds.abspath(recs[a]), ds.abspath(recs[b])) for a, b in idx]
    gap = np.array([recs[b].mos - recs[a].mos for a, b in idx])
    scale = np.array([np.hypot(recs[a].std, recs[b].std) for a, b in idx])
    return pairs, gap, scale


def test_binomial_levels_match_scipy_and_average_to_phi():
    z = np.linspace(-4, 4, 17)
    lp = binomial_level_logprobs(z)
    np.testing.assert_allclose(np.exp(lp), binom.pmf(np.arange(5), 4, ndtr(z)[:, None]), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.exp(lp) @ LEVEL_WEIGHTS, ndtr(z), rtol=1e-12)


def test_dataset_manifest_matches_the_png_truth(planted):
    folder, ds = planted
    assert len(ds) == 60 and ds.has_scores
    for rec in ds.records[:10]:
        q, s = planted_truth(ds.abspath(rec))
        assert (q, s) == (rec.mos, rec.std)
    ds.validate()  # every file opens under the loader's limits


def test_noiseless_preference_is_the_mos_thurstone_probability(planted):
    _, ds = planted
    pairs, gap, scale = _pairs(ds, 200)
    with load_comparator(SPEC) as sim:
        p = preference(sim.compare(pairs))
    np.testing.assert_allclose(p, ndtr(gap / scale), atol=1e-12)


def test_noisy_preference_follows_phi_on_average(planted):
    """E[Phi((gap + eps) / S)] = Phi(gap / sqrt(S^2 + nu^2)): averaged over many seeds per pair."""
    _, ds = planted
    pairs, gap, scale = _pairs(ds, 40)
    nu = 0.7
    ps = []
    for seed in range(300):
        with load_comparator(SPEC, noise=nu, seed=seed) as sim:
            ps.append(preference(sim.compare(pairs)))
    mean = np.mean(ps, axis=0)
    np.testing.assert_allclose(mean, ndtr(gap / np.hypot(scale, nu)), atol=0.05)
    assert np.std(np.array(ps)[:, 0]) > 0.01  # the noise is real


def test_confidence_is_undone_by_that_temperature_and_repeats(planted):
    _, ds = planted
    pairs, gap, scale = _pairs(ds, 50)
    for c in (3.0, 1 / 3):
        with load_comparator(SPEC, confidence=c, noise=0.3, seed=1) as sim:
            lp = sim.compare(pairs)
            again = sim.compare(pairs)
        with load_comparator(SPEC, noise=0.3, seed=1) as calibrated:
            base = preference(calibrated.compare(pairs))
        np.testing.assert_array_equal(lp, again)
        np.testing.assert_allclose(preference(lp, temperature=c), base, atol=1e-12)
        raw = preference(lp)
        informative = np.abs(base - 0.5) > 0.05
        sharper = np.abs(raw - 0.5)[informative] > np.abs(base - 0.5)[informative]
        assert sharper.all() if c > 1 else not sharper.any()


def test_a_file_without_planted_truth_fails_per_pair(planted, tmp_path):
    from PIL import Image
    folder, ds = planted
    plain = tmp_path / "plain.png"
    Image.new("RGB", (16, 16)).save(plain)
    good = ds.abspath(ds.records[0])
    with load_comparator(SPEC) as sim:
        out = sim.compare_detailed([Pair(good, plain), Pair(good, ds.abspath(ds.records[1]))])
    assert out.ok.tolist() == [False, True]
    assert "no planted quality" in out.errors[0] and np.isnan(out.logprobs[0]).all()


def test_options_are_declared_and_checked():
    assert check_model_options(SPEC, {"confidence": "3"})["confidence"] == 3.0
    with pytest.raises(ValueError, match="confidence"):
        check_model_options(SPEC, {"confidence": 0})
    with pytest.raises(ValueError, match="valid options"):
        check_model_options(SPEC, {"temperature": 2})
