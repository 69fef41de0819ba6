"""The exact MAP solver (Eqn. 6) against an independent scipy optimisation, its Laplace sd against a
finite-difference Hessian, a planted world, the score's properties, and bad input."""
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit

from harness.core.scaling import build_matrices, score_against_anchors, solve_map

SIZES = [2, 3, 5, 6, 10, 25, 50]


def random_matrix(rng, n, extreme=False):
    """C[i, j] + C[j, i] = 1, diagonal 0.5; `extreme` pushes entries towards 0 and 1."""
    upper = rng.uniform(size=(n, n))
    if extreme:
        upper = expit(12 * (upper - 0.5))
    C = np.triu(upper, 1)
    C = C + np.tril(1 - C.T, -1)
    np.fill_diagonal(C, 0.5)
    return C


def random_mask(rng, n):
    """A sparse symmetric design kept connected by a chain through all items."""
    obs = rng.uniform(size=(n, n)) < 0.3
    obs = np.triu(obs, 1)
    obs[np.arange(n - 1), np.arange(1, n)] = True
    obs = obs | obs.T
    return obs


class Reference:
    """The same objective written independently: pair terms via scipy.stats, explicit weights."""

    def __init__(self, C, obs, link, prior_var=1.0):
        self.W = np.where(obs, C, 0.0)
        np.fill_diagonal(self.W, 0.0)
        self.link, self.v = link, prior_var

    def f(self, s):
        d = np.subtract.outer(s, s)
        logF = stats.norm.logcdf(d) if self.link == "probit" else stats.logistic.logcdf(d)
        return -np.sum(self.W * logF) + s @ s / (2 * self.v)

    def grad(self, s):
        d = np.subtract.outer(s, s)
        if self.link == "probit":
            r = np.exp(stats.norm.logpdf(d) - stats.norm.logcdf(d))
        else:
            r = stats.logistic.sf(d)
        T = self.W * r
        return -T.sum(axis=1) + T.sum(axis=0) + s / self.v

    def minimize(self, n):
        res = optimize.minimize(self.f, np.zeros(n), jac=self.grad, method="BFGS",
                                options={"gtol": 1e-11, "maxiter": 10000})
        return res.x


@pytest.mark.parametrize("link", ["probit", "logit"])
@pytest.mark.parametrize("masked", [False, True])
def test_agrees_with_scipy_minimize(link, masked):
    rng = np.random.default_rng(11 if masked else 12)
    for n in SIZES:
        for extreme in (False, True):
            C = random_matrix(rng, n, extreme)
            obs = random_mask(rng, n) if masked else ~np.eye(n, dtype=bool)
            res = solve_map(C, obs if masked else None, link=link)
            ref = Reference(C, obs, link).minimize(n)
            assert res.converged[0] and res.max_grad[0] < 1e-8, (n, extreme)
            assert np.max(np.abs(res.scores[0] - ref)) < 1e-6, (n, extreme)
            assert abs(res.scores[0].sum()) < 1e-9  # the paper's constraint holds at the optimum


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_batch_equals_one_at_a_time_and_prior_variance(link):
    rng = np.random.default_rng(3)
    Cs = np.stack([random_matrix(rng, 6) for _ in range(8)])
    batch = solve_map(Cs, link=link, prior_var=2.5)
    for k in range(8):
        single = solve_map(Cs[k], link=link, prior_var=2.5)
        assert np.allclose(batch.scores[k], single.scores[0], atol=1e-12)
        ref = Reference(Cs[k], ~np.eye(6, dtype=bool), link, prior_var=2.5).minimize(6)
        assert np.max(np.abs(single.scores[0] - ref)) < 1e-6


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_laplace_sd_matches_finite_difference_hessian(link):
    rng = np.random.default_rng(5)
    for n, masked in ((4, False), (7, True)):
        C = random_matrix(rng, n)
        obs = random_mask(rng, n) if masked else ~np.eye(n, dtype=bool)
        res = solve_map(C, obs, link=link)
        ref = Reference(C, obs, link)
        s, h = res.scores[0], 1e-4
        H = np.empty((n, n))
        for i in range(n):  # central second differences of the objective itself
            for j in range(n):
                ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
                H[i, j] = (ref.f(s + ei + ej) - ref.f(s + ei - ej) - ref.f(s - ei + ej)
                           + ref.f(s - ei - ej)) / (4 * h * h)
        sd_fd = np.sqrt(np.diag(np.linalg.inv(H)))
        assert np.allclose(res.sd[0], sd_fd, rtol=1e-5)


def planted_world(rng, noise, n_test=60, m=5):
    """Latent qualities; soft comparisons Phi(q_i - q_j + noise) among anchors and tests, all pairs."""
    q_anchor = np.linspace(-1.5, 1.5, m)
    q_test = rng.normal(size=n_test)
    q = np.concatenate([q_anchor, q_test])
    n = q.size
    eps = rng.normal(scale=noise, size=(n, n))
    eps = np.triu(eps, 1) - np.triu(eps, 1).T
    C = stats.norm.cdf(np.subtract.outer(q, q) / np.sqrt(2) + eps)
    np.fill_diagonal(C, 0.5)
    return q_test, C


def test_planted_world_recovers_ranking_and_degrades_gracefully():
    noises = [0.05, 0.3, 1.0, 3.0]
    full, anchors_only = [], []
    for noise in noises:
        rs_full, rs_anchor = [], []
        for seed in range(3):
            q_test, C = planted_world(np.random.default_rng(seed), noise)
            m = 5
            joint = solve_map(C, link="probit")  # anchors + tests, full pairwise
            assert joint.converged.all()
            rs_full.append(stats.spearmanr(joint.scores[0, m:], q_test)[0])
            res = score_against_anchors(C[:m, :m], C[m:, :m], link="probit")
            assert res.converged.all()
            rs_anchor.append(stats.spearmanr(res.latent, q_test)[0])
        full.append(np.mean(rs_full))
        anchors_only.append(np.mean(rs_anchor))
    assert full[0] > 0.99 and anchors_only[0] > 0.95
    for series in (full, anchors_only):
        assert all(a >= b - 0.02 for a, b in zip(series, series[1:]))  # no better with more noise
        assert series[-1] > 0.3  # still informative at noise 3 (logit units of ~1)
    assert full[-1] > anchors_only[-1]  # more comparisons, more robust


def test_higher_preference_never_lowers_the_score():
    rng = np.random.default_rng(9)
    A = stats.norm.cdf(np.subtract.outer(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)))
    b = rng.uniform(size=(200, 5))
    for link in ("probit", "logit"):
        base = score_against_anchors(A, b, link=link).latent
        for k in range(5):
            up = b.copy()
            up[:, k] = np.minimum(1.0, up[:, k] + rng.uniform(0, 0.5, size=200))
            raised = score_against_anchors(A, up, link=link).latent
            assert np.all(raised >= base - 1e-12)
            assert np.all(raised[up[:, k] > b[:, k] + 1e-3] > base[up[:, k] > b[:, k] + 1e-3])


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_swapping_roles_mirrors_the_score(link):
    rng = np.random.default_rng(2)
    C = random_matrix(rng, 7)
    obs = random_mask(rng, 7)
    res = solve_map(C, obs, link=link)
    assert np.allclose(solve_map(C.T, obs, link=link).scores, -res.scores, atol=1e-12)
    # relabelling items permutes the scores
    perm = rng.permutation(7)
    assert np.allclose(solve_map(C[np.ix_(perm, perm)], obs[np.ix_(perm, perm)], link=link).scores[0],
                       res.scores[0, perm], atol=1e-12)
    # in the runner's form: every preference p -> 1 - p turns every score into its negative
    A = random_matrix(rng, 5)
    b = rng.uniform(size=(20, 5))
    fwd = score_against_anchors(A, b, link=link)
    back = score_against_anchors(1 - A, 1 - b, link=link)
    assert np.allclose(back.latent, -fwd.latent, atol=1e-12)
    assert np.allclose(back.anchor_latent, -fwd.anchor_latent, atol=1e-12)


def test_all_half_gives_the_anchors_centre():
    q = np.array([-2.0, -0.7, 0.0, 0.7, 2.0])  # symmetric anchors: the centre is exact
    A = stats.norm.cdf(np.subtract.outer(q, q) / np.sqrt(2))
    mos = 3.0 + q
    for link in ("probit", "logit"):
        res = score_against_anchors(A, np.full((1, 5), 0.5), link=link, scale="mos", anchor_mos=mos)
        assert abs(res.latent[0] - res.anchor_latent[0].mean()) < 1e-10
        assert res.score[0] == pytest.approx(mos.mean(), abs=1e-9)
    # any anchor set: the test lands between the anchors, at (nearly) their mean latent
    from harness.core.anchors import koniq_default
    K = koniq_default().matrix
    res = score_against_anchors(K, np.full(5, 0.5))
    lat = res.anchor_latent[0]
    assert lat[1] < res.latent[0] < lat[3]
    assert abs(res.latent[0] - lat.mean()) < 0.01 * (lat.max() - lat.min())


def test_speed_shape_10000_problems():
    """Correctness at the benchmark's size (speed itself is measured in bench/map_speed.py)."""
    rng = np.random.default_rng(0)
    from harness.core.anchors import koniq_default
    res = score_against_anchors(koniq_default().matrix, rng.uniform(size=(10000, 5)))
    assert res.converged.all() and res.max_grad.max() < 1e-8


@pytest.mark.parametrize("C, kwargs, match", [
    (np.full((3, 3), np.nan), {}, "NaN where observed"),
    (np.full((3, 3), 1.2), {}, r"\[0, 1\]"),
    (np.full((3, 3), -0.1), {}, r"\[0, 1\]"),
    (np.full((3, 3), np.inf), {}, r"\[0, 1\]"),
    (np.full((3, 4), 0.5), {}, "shape"),
    (np.full(3, 0.5), {}, "shape"),
    (np.full((1, 1), 0.5), {}, "n >= 2"),
    (np.full((2, 3, 3, 3), 0.5), {}, "shape"),
    (np.full((3, 3), 0.5), {"observed": np.ones((3, 3))}, "boolean"),
    (np.full((3, 3), 0.5), {"observed": np.ones((4, 4), bool)}, "observed has shape"),
    (np.full((3, 3), 0.5), {"observed": np.triu(np.ones((3, 3), bool), 1)}, "symmetric"),
    (np.full((3, 3), 0.5), {"link": "cauchit"}, "link"),
    (np.full((3, 3), 0.5), {"prior_var": 0.0}, "prior_var"),
    (np.full((3, 3), 0.5), {"prior_var": np.inf}, "prior_var"),
])
def test_bad_input_raises_a_named_value_error(C, kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_map(C, **kwargs)


def test_nan_is_fine_where_unobserved_and_error_names_the_problem():
    C = np.full((2, 3, 3), 0.5)
    C[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match=r"problem 1, entry \(0, 2\)"):
        solve_map(C)
    obs = np.ones((2, 3, 3), bool)
    obs[1, 0, 2] = obs[1, 2, 0] = False
    assert np.all(np.isfinite(solve_map(C, obs).scores))


def test_disconnected_design():
    C = random_matrix(np.random.default_rng(4), 5)
    obs = np.zeros((5, 5), bool)
    obs[0, 1] = obs[1, 0] = True          # group {0, 1}
    obs[2, 3] = obs[3, 2] = obs[3, 4] = obs[4, 3] = True  # group {2, 3, 4}
    with pytest.raises(ValueError, match="disconnected design: in problem 0 item 2"):
        solve_map(C, obs)
    res = solve_map(C, obs, allow_disconnected=True)
    # with the prior each group is centred at 0 on its own and equals solving it alone
    assert abs(res.scores[0, :2].sum()) < 1e-9 and abs(res.scores[0, 2:].sum()) < 1e-9
    alone = solve_map(C[2:, 2:], obs[2:, 2:])
    assert np.allclose(res.scores[0, 2:], alone.scores[0], atol=1e-12)
    # a test image whose every comparison failed is the runner's per-item failure, not an error
    A, b = C[:4, :4], np.array([[np.nan] * 4, [0.3, 0.5, np.nan, 0.9]])
    C2, obs2 = build_matrices(A, b)
    with pytest.raises(ValueError, match="disconnected"):
        solve_map(C2, obs2)
    res2 = score_against_anchors(A, b)
    assert res2.failed.tolist() == [True, False] and np.isfinite(res2.latent[1])


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_map_gradient_matches_the_reference_gradient(link):
    rng = np.random.default_rng(8)
    C = random_matrix(rng, 6)
    obs = random_mask(rng, 6)
    s = rng.normal(size=6)
    from harness.core.scaling import map_gradient
    assert np.allclose(map_gradient(C, s, obs, link=link)[0], Reference(C, obs, link).grad(s), atol=1e-12)
    opt = solve_map(C, obs, link=link).scores
    assert np.max(np.abs(map_gradient(C, opt, obs, link=link))) < 1e-8
