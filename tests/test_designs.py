"""Active comparison designs: the EIG against numerical integration, the pair selection on hand-made
posteriors, and active runs end to end (CLI, budget accounting, both orders, kill and resume, rescore)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import integrate, stats

from adapters.base import Comparisons
from harness.cli import main
from harness.core.designs import (_BatchPosterior, candidate_pairs, expected_curvature, expected_information_gain,
                                  select_pairs)
from harness.run.record import read_run
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, rescore, run
from harness.tools.planted import PlantedThurstone, write_planted_dataset
from tests.planted_support import DiesAfter, Killed


def _mi_by_quad(mu, var, link):
    """I(y; d) = h(E F(d)) - E h(F(d)), d ~ N(mu, var), by adaptive quadrature with scipy's CDFs."""
    F = stats.norm.cdf if link == "probit" else stats.logistic.cdf
    pdf = stats.norm(mu, np.sqrt(var)).pdf

    def h(p):
        return 0.0 if p <= 0 or p >= 1 else -(p * np.log(p) + (1 - p) * np.log(1 - p))

    lim = (mu - 12 * np.sqrt(var), mu + 12 * np.sqrt(var))
    pbar = integrate.quad(lambda d: F(d) * pdf(d), *lim, limit=200)[0]
    return h(pbar) - integrate.quad(lambda d: h(F(d)) * pdf(d), *lim, limit=200)[0]


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_eig_matches_numerical_integration(link):
    cases = [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0), (0.4, 2.0), (3.0, 0.05), (0.0, 1e-4)]
    got = expected_information_gain([c[0] for c in cases], [c[1] for c in cases], link)
    want = [_mi_by_quad(mu, var, link) for mu, var in cases]
    np.testing.assert_allclose(got, want, atol=1e-8)


def test_eig_grows_with_uncertainty_and_shrinks_with_the_gap():
    var = np.array([0.1, 0.5, 1.0, 2.0])
    assert np.all(np.diff(expected_information_gain(0.0, var)) > 0)
    assert np.all(np.diff(expected_information_gain(np.array([0.0, 0.5, 1.0, 2.0]), 1.0)) < 0)
    np.testing.assert_allclose(expected_information_gain(0.7, 1.3), expected_information_gain(-0.7, 1.3))


def _brute_best(mean, sd, fixed, excluded=()):
    pairs = [(i, j) for i, j in itertools.combinations(range(len(mean)), 2)
             if not (fixed[i] and fixed[j]) and (i, j) not in excluded]
    gains = [expected_information_gain(mean[j] - mean[i], sd[i] ** 2 + sd[j] ** 2) for i, j in pairs]
    return pairs[int(np.argmax(gains))]


@pytest.mark.parametrize("seed", range(5))
def test_selection_picks_the_most_informative_pair(seed):
    rng = np.random.default_rng(seed)
    n, m = 12, 3
    fixed = np.r_[np.zeros(n, bool), np.ones(m, bool)]
    mean = rng.normal(0, 1, n + m)
    sd = np.where(fixed, 0.0, rng.uniform(0.1, 1.0, n + m))
    (a, b), = select_pairs(mean, sd, fixed, 1, neighbours=2 * n, seed=seed)
    assert tuple(sorted((a, b))) == _brute_best(mean, sd, fixed)
    # with that pair judged, the next best
    done = {tuple(sorted((a, b)))}
    (c, d), = select_pairs(mean, sd, fixed, 1, judged=done, neighbours=2 * n, seed=seed)
    assert tuple(sorted((c, d))) == _brute_best(mean, sd, fixed, done)


def test_hand_made_posterior():
    # items 0..2 free, 3 and 4 anchors at -1 and 1; item 1 is the uncertain one, close to anchor 4
    mean = np.array([0.0, 0.9, -3.0, -1.0, 1.0])
    sd = np.array([0.1, 1.0, 0.1, 0.0, 0.0])
    fixed = np.array([False, False, False, True, True])
    # the uncertain item against its nearest: item 0 (var 1.01, gap 0.9) loses to anchor 4 (var 1, gap 0.1)
    assert select_pairs(mean, sd, fixed, 1) == [(4, 1)]  # the anchor shown first
    # item 1 stays by far the most uncertain after one judgement (var 1 -> ~0.7 against 0.01): a batch of 3
    # gives it all three, no pair twice
    many = select_pairs(mean, sd, fixed, 3)
    assert many[0] == (4, 1) and all(1 in p for p in many) and len(set(map(frozenset, many))) == 3


def test_a_batch_spreads_over_equally_uncertain_items():
    # four free items alike (mean 0, sd 1) and one anchor: the free-free pairs (var 2) beat the anchor pairs
    # (var 1); once a pair is chosen its items' variances fall, so the second pair takes the other two items
    fixed = np.r_[np.zeros(4, bool), True]
    chosen = select_pairs(np.zeros(5), np.r_[np.ones(4), 0.0], fixed, 2)
    assert sorted(i for p in chosen for i in p) == [0, 1, 2, 3]


def test_a_linked_image_is_the_first_partner_of_one_new_image_per_round():
    # item 0 linked, near the new items 1-3 (all at the prior mean); the anchor is far: by EIG alone all three
    # would be compared with item 0, which would then carry the three of them
    fixed = np.r_[np.zeros(4, bool), True]
    linked = np.array([True, False, False, False, True])
    chosen = select_pairs(np.r_[0.0, 0.0, 0.0, 0.0, 2.0], np.r_[0.5, 1.0, 1.0, 1.0, 0.0], fixed, 3, linked=linked)
    assert sorted(i for p in chosen for i in p if i in (1, 2, 3)) == [1, 2, 3]
    assert sum(0 in p for p in chosen) == 1 and sum(4 in p for p in chosen) == 2


def test_batch_variance_update_is_the_rank_one_update():
    """The marginal variances after judging (a, b) equal those of the dense posterior covariance updated by
    Sigma - k Sigma u u' Sigma / (1 + k u' Sigma u), u = e_b - e_a, k the expected curvature."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 6))
    Sigma = X @ X.T / 6 + 0.1 * np.eye(6)
    sd, mean = np.sqrt(np.diag(Sigma)), rng.normal(size=6)
    cand = np.array([[1, 4], [0, 2]])
    post = _BatchPosterior(mean, sd, cand, lambda i, j: Sigma[i, i] + Sigma[j, j] - 2 * Sigma[i, j], "probit")
    u = np.zeros(6)
    u[4], u[1] = 1.0, -1.0
    k = expected_curvature(mean[4] - mean[1], u @ Sigma @ u)
    after = Sigma - k * np.outer(Sigma @ u, Sigma @ u) / (1 + k * u @ Sigma @ u)
    post.judge(0)
    np.testing.assert_allclose(post.var[[1, 4]], np.diag(after)[[1, 4]], rtol=1e-12)
    np.testing.assert_allclose(np.delete(post.var, [1, 4]), np.delete(np.diag(Sigma), [1, 4]), rtol=1e-14)


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_expected_curvature_matches_numerical_integration(link):
    """E[kappa(d)], kappa the Fisher information of one outcome, f^2 / (F (1 - F)), by adaptive quadrature
    (48 Gauss-Hermite nodes: 1e-7 relative at var 4, far below what ranks candidates)."""
    dist = stats.norm if link == "probit" else stats.logistic
    for mu, var in [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0), (0.4, 1e-4)]:
        fisher = lambda d: dist.pdf(d) ** 2 / (dist.cdf(d) * dist.sf(d))  # noqa: E731
        sd = np.sqrt(var)
        want = integrate.quad(lambda d: fisher(d) * stats.norm.pdf(d, mu, sd), mu - 12 * sd, mu + 12 * sd,
                              limit=200)[0]
        assert expected_curvature(mu, var, link) == pytest.approx(want, rel=1e-6)  # 48 nodes


def test_unlinked_items_get_their_first_comparison_first_and_never_with_each_other():
    mean = np.zeros(6)
    sd = np.r_[np.full(4, 1.0), 0.0, 0.0]
    fixed = np.r_[np.zeros(4, bool), True, True]
    linked = np.array([True, True, False, False, True, True])
    sd[:2] = 0.2  # two linked, precise items: a pair between them is worth little
    chosen = select_pairs(mean, sd, fixed, 2, linked=linked)
    covered = {i for pair in chosen for i in pair}
    assert {2, 3} <= covered  # each unlinked item compared
    assert all(not ({2, 3} <= set(p)) for p in chosen)  # never with each other
    cand = candidate_pairs(mean, fixed, np.arange(6), linked | fixed)
    assert not any(set(p) == {2, 3} for p in cand.tolist())


def test_selection_is_a_function_of_the_seed():
    mean, sd = np.zeros(40), np.ones(40)
    fixed = np.r_[np.zeros(35, bool), np.ones(5, bool)]
    sd[fixed] = 0
    a = select_pairs(mean, sd, fixed, 10, seed=[7, 0])
    assert a == select_pairs(mean, sd, fixed, 10, seed=[7, 0])
    assert a != select_pairs(mean, sd, fixed, 10, seed=[8, 0])


# --- active runs through the runner and the CLI -------------------------------------------------------------

SPEC = "py:harness.tools.planted:PlantedThurstone"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    return folder, write_planted_dataset(folder, n=40, seed=5)


def _config(planted, tmp_path, cache, **kw):
    folder, manifest = planted
    return RunConfig(model=SPEC, model_options={"noise": 0.3}, cache=str(cache), out_dir=str(tmp_path / "runs"),
                     datasets=[DatasetSpec("planted", source=str(manifest), root=str(folder))],
                     anchors=AnchorSpec("select", dataset="planted"), reports=False, design="active",
                     **{"budget": 2.5, "round_size": 13, **kw})


def _scores(folder):
    rows = read_run(folder).scores
    return np.array([r.score for r in rows], dtype=np.float64)


def _test_rows(folder):
    return [r for r in read_run(folder).comparisons if r.role == "test"]


@pytest.mark.parametrize("order", ["anchor_first", "both"])
def test_budget_accounting_and_orders(planted, tmp_path, order):
    folder = run(_config(planted, tmp_path, tmp_path / "c.sqlite", order=order), progress=False)[0]
    m = read_run(folder).manifest
    assert m.design == {"name": "active", "budget": 2.5, "round_size": 13, "seed": 0, "rounds": 8,
                        "comparisons": 100}  # round(2.5 x 40) in rounds of 13 (the last one of 9)
    rows = _test_rows(folder)
    unordered = {frozenset((r.first, r.second)) for r in rows}
    assert len(unordered) == 100
    assert len(rows) == (200 if order == "both" else 100)
    if order == "both":  # each chosen pair judged in both orders
        assert {(r.first, r.second) for r in rows} == {(r.second, r.first) for r in rows}
    assert np.isfinite(_scores(folder)).all()
    anchors = set(m.anchors.images)
    assert any(r.first not in anchors and r.second not in anchors for r in rows)  # test-vs-test pairs too


def test_kill_and_resume_gives_the_uninterrupted_scores(planted, tmp_path):
    whole = run(_config(planted, tmp_path / "a", tmp_path / "a.sqlite"), progress=False)[0]
    cfg = _config(planted, tmp_path / "b", tmp_path / "b.sqlite", batch_size=4)
    with pytest.raises(Killed):  # dies in the middle of the active rounds
        run(cfg, comparator=DiesAfter(50, noise=0.3), progress=False)
    resumed = run(cfg, progress=False)[0]
    np.testing.assert_array_equal(_scores(resumed), _scores(whole))
    assert [(r.first, r.second) for r in _test_rows(resumed)] == [(r.first, r.second) for r in _test_rows(whole)]
    c = read_run(resumed).manifest.counts
    assert 0 < c.pairs_cached < c.pairs_total and c.pairs_cached + c.pairs_computed == c.pairs_total
    again = run(cfg, progress=False)[0]  # everything is reused: nothing judged the third time
    assert read_run(again).manifest.counts.pairs_computed == 0


def test_rescore_repeats_the_joint_map(planted, tmp_path):
    folder = run(_config(planted, tmp_path, tmp_path / "c.sqlite"), progress=False)[0]
    again = rescore(folder)
    np.testing.assert_allclose(_scores(again), _scores(folder), rtol=0, atol=1e-12)
    assert read_run(again).manifest.design["name"] == "active"


def test_active_cli_end_to_end_with_the_classical_comparator(tmp_path, capsys):
    args = ["run", "--model", "classical", "--dataset", "demo", "--limit", "30", "--anchors", "select",
            "--anchors-dataset", "demo", "--out", str(tmp_path / "runs"), "--cache", str(tmp_path / "c.sqlite"),
            "--no-report", "--design", "active", "--budget", "1.5", "--round-size", "10"]
    assert main(args + ["--dry-run"]) == 0
    assert "design active: 45 test comparisons (budget 1.5 x 30 images) in rounds of 10" in capsys.readouterr().out
    assert main(args) == 0
    folder, = (tmp_path / "runs").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["design"]["name"] == "active" and manifest["design"]["comparisons"] == 45
    srcc = json.loads((folder / "metrics.json").read_text())
    assert "demo" in json.dumps(srcc)
    # the anchor design of the same configuration is another run (its own id), reusing the anchor block
    assert main(args[:-6]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2
    # and its own leaderboard row
    assert main(["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    table = "\n".join(p.read_text() for p in (tmp_path / "lb").glob("*.md"))
    assert "classical [limited to first 30] [active, budget 1.5]" in table
    assert "classical [limited to first 30] |" in table


@pytest.mark.parametrize("extra, message", [
    (["--design", "active"], "needs --budget K >= 1"),
    (["--design", "active", "--budget", "0.5"], "needs --budget K >= 1"),
    (["--budget", "3"], "apply only to --design active"),
    (["--design", "active", "--budget", "2", "--profile", "official"], "solver 'official-adam'"),
    (["--design", "active", "--budget", "2", "--round-size", "0"], "round_size"),
])
def test_bad_design_settings_are_one_line_errors(tmp_path, capsys, extra, message):
    code = main(["run", "--model", "classical", "--dataset", "demo", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_active_needs_a_comparison_mode():
    from harness.core.profiles import get_profile
    from harness.run.designs import check_design

    with pytest.raises(ValueError, match="not rating alone"):
        check_design("active", 2, None, ["rating"], [get_profile("paper")])
    check_design("active", 2, None, ["rating", "soft"], [get_profile("paper")])


def test_yaml_keys(tmp_path):
    from harness.run.config import configs_from_dict

    cfg, = configs_from_dict({"model": "classical", "datasets": ["demo"], "design": "active", "budget": 2.5,
                              "round_size": 7})
    assert (cfg.design, cfg.budget, cfg.round_size) == ("active", 2.5, 7)
    with pytest.raises(ValueError, match="budget"):
        configs_from_dict({"model": "classical", "datasets": ["demo"], "design": "active"})


def test_a_failed_pair_is_spent_and_never_chosen_again(planted, tmp_path):
    class FailsSome(PlantedThurstone):
        def compare_detailed(self, pairs):
            res = super().compare_detailed(pairs)
            bad = [k % 7 == 0 for k in range(len(pairs))]
            return Comparisons(np.where(np.array(bad)[:, None], np.nan, res.logprobs),
                               ["planted failure" if b else e for b, e in zip(bad, res.errors)])

    folder = run(_config(planted, tmp_path, tmp_path / "c.sqlite"), comparator=FailsSome(noise=0.3),
                 progress=False)[0]
    rows = _test_rows(folder)
    assert len({frozenset((r.first, r.second)) for r in rows}) == len(rows) == 100
    assert any(r.status == "failed" for r in rows)
