"""Comparison designs (docs/method.md, "Comparison designs"): which pairs a run judges and how they become scores.

`anchors` (the default, the paper's protocol): every test image against every anchor, one small MAP per image
(`harness.run.scoring.score_tests`). `active`: rounds of pairs chosen by expected information gain
(`harness.core.designs.select_pairs`) under the joint MAP's Laplace posterior, until `budget` comparisons per
test image are spent; the scores are the joint MAP over every judged comparison (`score_active`). Each round
goes through the pair cache like any other pairs, and the choice of a round is a function of the seed and the
judgements before it, so a killed run re-run replays its rounds from the cache and carries on where it stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from adapters.base import Pair
from harness.core.anchors import AnchorSet
from harness.core.designs import select_pairs
from harness.core.joint_map import solve_joint_map
from harness.core.profiles import Profile
from harness.core.scaling import fit_mos_map, minmax_0_100, solve_map
from harness.core.vocabulary import DEFAULT_DESIGN, DESIGNS
from harness.run.judging import Judged
from harness.run.scoring import Scored, anchor_matrix_for, calibrated_judged, calibration_for, pair_preference

ANCHORS, ACTIVE = DESIGNS


def check_design(design: str, budget: float | None, round_size: int | None, modes, profiles) -> None:
    """One clear error for a design setting that cannot run, before any model work."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {design!r} (--design)")
    if design == ANCHORS:
        given = [k for k, v in (("budget", budget), ("round_size", round_size)) if v is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} (--budget, --round-size) apply only to --design active")
        return
    if budget is None or not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 1):
        raise ValueError(f"design active needs --budget K >= 1 (comparisons per test image, may be fractional; "
                         f"budget: in YAML), got {budget!r}")
    if round_size is not None and round_size < 1:
        raise ValueError(f"round_size (--round-size) must be >= 1 pairs per active round, got {round_size}")
    if all(m == "rating" for m in modes):
        raise ValueError("design active chooses pairs to compare: it needs --mode soft or count, not rating alone")
    for p in profiles:
        if p.solver != "exact":
            raise ValueError(f"design active scores with the joint MAP: profile {p.name!r} uses solver {p.solver!r}; "
                             "use a profile with solver exact (e.g. --profile paper)")


@dataclass
class Design:
    """The design of a run as its manifest records it; `rounds` and `comparisons` are filled in by the run."""

    name: str = DEFAULT_DESIGN
    budget: float | None = None
    round_size: int | None = None
    seed: int = 0
    rounds: int = 0
    comparisons: int = 0

    def record(self) -> dict:
        if self.name == ANCHORS:
            return {"name": ANCHORS}
        return {"name": self.name, "budget": self.budget, "round_size": self.round_size, "seed": self.seed,
                "rounds": self.rounds, "comparisons": self.comparisons}


def total_comparisons(budget: float, n_tests: int) -> int:
    """The test comparisons (unordered pairs; both orders of one count once) an active run judges: round(K N)."""
    return int(round(budget * n_tests))


def default_round_size(n_tests: int) -> int:
    """Pairs per round unless given: about one comparison per test image every two rounds."""
    return max(1, math.ceil(n_tests / 2))


@dataclass
class _Problem:
    """Items (test images, then anchors), the fixed anchor values, the folded comparisons. A test image that is
    also an anchor is that anchor's item (`alias`): placed by the anchor block, never a free candidate."""

    n: int
    fixed: dict
    comparisons: np.ndarray
    alias: np.ndarray  # the item of each test image
    used: np.ndarray  # usable comparisons per test image
    anchor_latent: np.ndarray
    C: np.ndarray
    source: str
    usable: np.ndarray


def _problem(tests, anchors: AnchorSet, judged_pairs, prefs, profile: Profile, mode: str, lookup) -> _Problem:
    N, m = len(tests), len(anchors.images)
    item = item_index(tests, anchors)
    alias = np.array([item[x] for x in tests], dtype=np.intp)
    C, source = anchor_matrix_for(profile, mode, anchors, lookup)
    usable = (np.isfinite(C) & ~np.eye(m, dtype=bool)).any(axis=1) if m > 1 else np.ones(m, dtype=bool)
    anchor_latent = np.full(m, np.nan)
    if usable.sum() > 1:
        sub = C[np.ix_(usable, usable)]
        anchor_latent[usable] = solve_map(sub, ~np.isnan(sub), link=profile.link, prior_var=profile.prior_var,
                                          allow_disconnected=True).scores[0]
    elif usable.any():
        anchor_latent[usable] = 0.0
    # both orders of a pair fold into one comparison of weight 1, as score_tests folds them
    total, count = {}, {}
    for pair, p in zip(judged_pairs, prefs):
        i, j = item[pair.first], item[pair.second]
        if not np.isfinite(p) or i == j or (i >= N and not usable[i - N]) or (j >= N and not usable[j - N]):
            continue
        key, q = ((i, j), p) if i < j else ((j, i), 1.0 - p)
        total[key] = total.get(key, 0.0) + q
        count[key] = count.get(key, 0) + 1
    comps = np.array([[i, j, total[k] / count[k], 1.0] for k in total for i, j in [k]]).reshape(-1, 4)
    used = np.bincount(comps[:, :2].astype(np.intp).ravel(), minlength=N + m)[alias]
    fixed = {N + k: float(anchor_latent[k]) for k in np.flatnonzero(usable)}
    return _Problem(N + m, fixed, comps, alias, used, anchor_latent, C, source, usable)


def item_index(tests: list[str], anchors: AnchorSet) -> dict[str, int]:
    """The item of each image: test images 0..N-1, anchors N..N+m-1 (an image that is both: the anchor)."""
    N = len(tests)
    return {x: k for k, x in enumerate(tests)} | {a: N + k for k, a in enumerate(anchors.images)}


def _test_prefs(judged: Judged, profile: Profile, mode: str, raw: bool) -> tuple[list[Pair], np.ndarray]:
    sel = [k for k, r in enumerate(judged.roles) if r == "test"]
    rows = judged.rows(raw)[sel]
    return [judged.pairs[k] for k in sel], pair_preference(rows, mode, profile.temperature, profile.logit_dtype)


def score_active(tests: list[str], anchors: AnchorSet, judged: Judged, raw: bool, profile: Profile,
                 mode: str) -> Scored:
    """Scores from the joint MAP over every judged test comparison (test-vs-anchor and test-vs-test), the anchors
    fixed at their anchor block's MAP; the profile's scale applied as in `score_against_anchors` (mos: the affine
    map through the anchors' fixed latents; minmax: each image over the anchors and itself)."""
    if profile.solver != "exact":
        raise ValueError(f"an active design's run is scored by the joint MAP: profile {profile.name!r} uses solver "
                         f"{profile.solver!r}; use a profile with solver exact (e.g. --profile paper)")
    pairs, prefs = _test_prefs(judged, profile, mode, raw)
    prob = _problem(tests, anchors, pairs, prefs, profile, mode, judged.lookup(raw))
    N = len(tests)
    res = solve_joint_map(prob.n, prob.comparisons, prob.fixed, link=profile.link, prior_var=profile.prior_var)
    at = prob.alias
    ok = ((prob.used > 0) | ~res.free[at]) & res.anchored[at] & bool(prob.fixed)
    latent = np.where(ok, res.scores[at], np.nan)
    sd = np.where(ok, res.sd[at], np.nan)
    if profile.scale == "mos":
        a, b = fit_mos_map(prob.anchor_latent[prob.usable], anchors.mos[prob.usable])
        score = a + b * latent
    elif profile.scale == "minmax":
        fixed = prob.anchor_latent[prob.usable]
        score = minmax_0_100(np.column_stack([np.tile(fixed, (N, 1)), latent]))
    else:
        score = latent
    why: dict[str, str] = {}
    for p, e in judged.error_of().items():
        why.setdefault(p.first, e)
        why.setdefault(p.second, e)
    errs = [None if good else why.get(x) or ("no usable comparison" if not prob.used[k] else
                                             "no chain of comparisons to an anchor")
            for k, (x, good) in enumerate(zip(tests, ok))]
    unusable = [anchors.images[k] for k in np.flatnonzero(~prob.usable)]
    return Scored(score, latent, sd, prob.used, errs, prob.C, prob.source, float(res.converged), unusable)


def judge_active(judge_round, tests: list[str], anchors: AnchorSet, block: Judged, design: Design, *,
                 profile: Profile, mode: str, order: str) -> Judged:
    """The active loop: `block` holds the judged anchor block; each round scores what is judged so far with the
    joint MAP, picks `design.round_size` pairs of highest EIG (`select_pairs`, seeded by (seed, round)), and
    judges them with `judge_round(pairs, roles) -> Judged` (through the pair cache), until round(budget x N)
    test comparisons are spent or no candidate is left. Selection runs under the run's first profile and
    comparison mode, calibrated as `finish_run` scores it (`calibrated_judged`). Returns every judged pair (block
    first) and fills in `design.rounds` and `comparisons`."""
    N = len(tests)
    target = total_comparisons(design.budget, N)
    size = design.round_size or default_round_size(N)
    paths = list(tests) + list(anchors.images)
    m = len(anchors.images)
    # never candidates: a test image that is also an anchor (its anchor item stands for it), an anchor with no
    # usable block
    item = item_index(tests, anchors)
    excluded = {tuple(sorted((k, j))) for k, x in enumerate(tests) if item[x] != k for j in range(N + m) if j != k}
    judged, done = block, set()
    # a calibrating profile is fitted once on the anchor block; every round's joint MAP scores calibrated log-probs
    calibration = calibration_for(profile, mode, anchors, block.pairs, block.roles, block.logprobs)
    while len(done) < target:
        view, scoring = calibrated_judged(judged, profile, calibration)
        pairs, prefs = _test_prefs(view, scoring, mode, raw=False)
        prob = _problem(tests, anchors, pairs, prefs, scoring, mode, view.lookup())
        res = solve_joint_map(prob.n, prob.comparisons, prob.fixed, link=profile.link, prior_var=scoring.prior_var)
        fixed = np.r_[np.zeros(N, dtype=bool), np.ones(len(anchors.images), dtype=bool)]
        excluded |= {(t, N + k) for k in np.flatnonzero(~prob.usable) for t in range(N)}
        chosen = select_pairs(res.scores, res.sd, fixed, min(size, target - len(done)), judged=frozenset(done | excluded),
                              linked=res.anchored, link=profile.link, seed=[design.seed, design.rounds],
                              difference_var=res.difference_var)
        if not chosen:
            break
        new = []
        for i, j in chosen:
            done.add((min(i, j), max(i, j)))
            new.append(Pair(paths[i], paths[j]))
            if order == "both":
                new.append(Pair(paths[j], paths[i]))
        judged = concat(judged, judge_round(new, ["test"] * len(new)))
        design.rounds += 1
    design.comparisons = len(done)
    return judged


def concat(a: Judged, b: Judged) -> Judged:
    """Two judged sets of pairs as one, in order."""
    return Judged(a.pairs + b.pairs, a.roles + b.roles, np.concatenate([a.logprobs, b.logprobs]), a.errors + b.errors,
                  np.concatenate([a.cached, b.cached]), a.cache_invalid + b.cache_invalid,
                  np.concatenate([a.shift, b.shift]))
