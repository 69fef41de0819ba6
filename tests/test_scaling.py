"""Preferences, hard verdicts, matrix assembly and the runner's anchor scoring (harness.core.scaling)."""
import numpy as np
import pytest
from scipy.special import softmax

from harness.core.levels import LEVEL_WEIGHTS
from harness.core.scaling import (build_matrices, hard_preference, preference, score_against_anchors,
                             solve_map)

RNG = np.random.default_rng(7)


def _anchor_matrix(m=5):
    """A consistent anchor matrix: Thurstone probabilities of evenly spaced qualities."""
    from scipy.stats import norm
    q = np.linspace(-1.5, 1.5, m)
    return norm.cdf((q[:, None] - q[None, :]) / np.sqrt(2))


def test_preference_is_softmax_dot_weights():
    x = RNG.normal(scale=3, size=(50, 5))
    expected = softmax(x / 2.5, axis=1) @ LEVEL_WEIGHTS
    assert np.allclose(preference(x, temperature=2.5), expected, atol=1e-14)


def test_preference_ignores_row_constants_and_survives_huge_logits():
    x = RNG.normal(size=(20, 5))
    shifted = x + RNG.normal(scale=1e6, size=(20, 1))
    assert np.allclose(preference(shifted), preference(x), atol=1e-9)
    huge = np.array([[0.0, 0.0, 0.0, 0.0, 1e300], [1e5, 0.0, 0.0, 0.0, 0.0], [-1e300, -1e300, 0, -1e300, -1e300]])
    assert np.allclose(preference(huge), [1.0, 0.0, 0.5])


def test_preference_temperature_and_weights():
    x = np.array([[0.0, 0.0, 0.0, 0.0, 10.0]])
    assert preference(x, temperature=1e9)[0] == pytest.approx(0.5)
    assert preference(x, weights=[0, 0, 0, 0, 0.8])[0] == pytest.approx(0.8 * softmax(x[0])[4])


def test_failed_rows_are_nan_not_errors():
    x = RNG.normal(size=(4, 5))
    x[1, 2] = np.nan
    x[2] = -np.inf
    p = preference(x)
    assert np.isnan(p[1]) and np.isnan(p[2]) and np.all(np.isfinite(p[[0, 3]]))
    h = hard_preference(x)
    assert np.isnan(h[1]) and np.isnan(h[2]) and np.all(np.isfinite(h[[0, 3]]))


@pytest.mark.parametrize("bad, kwargs, match", [
    (np.zeros((3, 4)), {}, "shape"),
    (np.zeros(5), {}, "shape"),
    (np.zeros((3, 5)), {"temperature": 0.0}, "temperature"),
    (np.zeros((3, 5)), {"weights": [0, .25, .5, .75]}, "weights"),
    (np.zeros((3, 5)), {"weights": [0, .25, .5, .75, 1.5]}, "weights"),
])
def test_preference_bad_input(bad, kwargs, match):
    with pytest.raises(ValueError, match=match):
        preference(bad, **kwargs)


def test_hard_preference_counts_the_arg_max_verdict():
    eye = np.eye(5) * 3.0
    assert hard_preference(eye).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    # worse and better tied: the shared verdict is a tie, so swapping the images mirrors it
    assert hard_preference(np.array([[0.0, 2.0, 0.0, 2.0, 0.0]]))[0] == 0.5
    assert hard_preference(np.array([[0.0, 2.0, 2.0, 0.0, 0.0]]))[0] == 0.25


def test_build_matrices_orientation_and_mask():
    A = _anchor_matrix(3)
    b = np.array([[0.9, 0.6, np.nan], [0.1, 0.2, 0.3]])
    C, observed = build_matrices(A, b)
    assert C.shape == observed.shape == (2, 4, 4)
    assert np.allclose(C[:, :3, :3], A)
    # test last; C[test, a] = P(test beats anchor a) = b, and the complement in the column
    assert C[1, 3, 0] == 0.1 and C[1, 0, 3] == 0.9 and C[0, 3, 1] == 0.6
    assert not observed[0, 3, 2] and not observed[0, 2, 3] and C[0, 3, 2] == 0.5
    assert not observed[:, np.arange(4), np.arange(4)].any()
    assert observed[1].sum() == 12
    # a NaN in the anchor matrix is an unobserved anchor pair
    A2 = A.copy()
    A2[0, 2] = A2[2, 0] = np.nan
    _, obs2 = build_matrices(A2, b[1])
    assert not obs2[0, 0, 2] and not obs2[0, 2, 0] and obs2[0, 0, 1]


def test_build_matrices_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        build_matrices(np.zeros((3, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="b must have shape"):
        build_matrices(_anchor_matrix(3), np.zeros((2, 4)))


def test_score_against_anchors_equals_solve_map_and_handles_failures():
    A = _anchor_matrix(5)
    b = RNG.uniform(size=(30, 5))
    b[3, 1] = np.nan
    b[4] = np.nan
    res = score_against_anchors(A, b, link="logit")
    C, obs = build_matrices(A, b)
    ok = np.arange(30) != 4
    direct = solve_map(C[ok], obs[ok], link="logit")
    assert np.allclose(res.latent[ok], direct.scores[:, -1], atol=1e-12)
    assert np.allclose(res.anchor_latent[ok], direct.scores[:, :-1], atol=1e-12)
    assert np.allclose(res.sd[ok], direct.sd[:, -1], atol=1e-12)
    assert np.isnan(res.score[4]) and np.isnan(res.latent[4]) and res.failed[4] and not res.converged[4]
    assert res.failed.sum() == 1 and res.converged[ok].all() and np.nanmax(res.max_grad) < 1e-8
    assert res.n_anchors_used[3] == 4 and res.n_anchors_used[0] == 5 and res.n_anchors_used[4] == 0
    assert np.array_equal(res.score, res.latent, equal_nan=True)


def test_minmax_and_mos_scales():
    A = _anchor_matrix(5)
    b = RNG.uniform(size=(40, 5))
    lat = score_against_anchors(A, b)
    mm = score_against_anchors(A, b, scale="minmax")
    full = np.column_stack([lat.anchor_latent, lat.latent])
    lo, hi = full.min(axis=1), full.max(axis=1)
    assert np.allclose(mm.score, 100 * (lat.latent - lo) / (hi - lo))
    assert np.all((mm.score >= 0) & (mm.score <= 100))
    mos = np.array([1.2, 2.0, 3.0, 3.9, 4.6])
    ms = score_against_anchors(A, b, scale="mos", anchor_mos=mos)
    order = np.argsort(lat.latent)
    assert np.all(np.diff(ms.score[order]) > 0)  # strictly monotone in the latent score
    intercept, slope = ms.mos_map
    anchors_alone = solve_map(A, link="probit").scores[0]
    assert np.allclose(intercept + slope * anchors_alone, np.polyval(np.polyfit(anchors_alone, mos, 1), anchors_alone))
    assert slope > 0 and 1.0 < ms.score.min() and ms.score.max() < 5.0


def test_mos_scale_refuses_an_anchor_matrix_that_ranks_against_mos():
    A = _anchor_matrix(4).T  # best anchor judged worst
    with pytest.raises(ValueError, match="latent"):
        score_against_anchors(A, np.full((2, 4), 0.5), scale="mos", anchor_mos=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="anchor_mos"):
        score_against_anchors(_anchor_matrix(4), np.full((2, 4), 0.5), scale="mos")
    with pytest.raises(ValueError, match="scale"):
        score_against_anchors(_anchor_matrix(4), np.full((2, 4), 0.5), scale="0-100")
