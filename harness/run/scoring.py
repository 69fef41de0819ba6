"""Scoring: judged pairs -> per-image scores under a profile and mode (soft, count, rating), with
the anchor block from the user's anchors file, the paper's KonIQ matrix, MOS, or the model's own judgements."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from adapters.base import Pair
from harness.core.anchors import (
    AnchorSet,
    anchor_pairs,
    koniq_default,
    matrix_from_mos,
    matrix_from_preferences,
)
from harness.core.calibration import Calibration, calibrate_on_anchors, shifted_logprobs
from harness.core.levels import N_LEVELS
from harness.core.official import official_scores, preference_fp16
from harness.core.profiles import Profile
from harness.core.scaling import hard_preference, preference, score_against_anchors
from harness.run.judging import Judged


#: why a soft preference under `logit_dtype: float16` is NaN although its log-probs are finite
FP16_FAILURE = ("the float16 softmax (logit_dtype float16, as the official code) overflowed or underflowed on "
                "these logits, giving NaN; use logit_dtype float32 for an exact preference")


def on_raw_logits(profile: Profile, mode: str) -> bool:
    """Whether scoring runs on the raw level logits where a pair has them (log-probs + its shift): only
    the float16 soft preference tells them apart (its softmax subtracts no maximum), and the official
    code feeds it raw logits (docs/method.md, item 7). Every other preference is shift-invariant."""
    return mode == "soft" and profile.logit_dtype == "float16"


def pair_preference(lp: np.ndarray, mode: str, temperature: float, logit_dtype: str = "float32") -> np.ndarray:
    """P(second better) per row of level log-probs: the arg-max verdict (count), softmax(lp / T) . w
    (soft; in the official code's float16 arithmetic under `logit_dtype` float16), or the expected
    rating on [0, 1] at T = 1 (rating: levels bad .. excellent)."""
    if mode == "count":
        return hard_preference(lp)
    if mode == "soft" and logit_dtype == "float16":
        return preference_fp16(lp, temperature)
    return preference(lp, 1.0 if mode == "rating" else temperature)


def is_paper_koniq(anchors: AnchorSet) -> bool:
    """Whether an anchor set is the paper's five KonIQ anchors (same files by name, same MOS and std), the
    only set the official hard-coded matrix belongs to."""
    ref = koniq_default()
    return ([Path(i).name for i in anchors.images] == [Path(i).name for i in ref.images]
            and np.array_equal(anchors.mos, ref.mos) and np.array_equal(anchors.std, ref.std))


def matrix_source(profile: Profile, anchors: AnchorSet) -> str:
    """The profile's anchor-matrix source with `auto` resolved: the official solver takes the fixed matrix the
    anchor set carries (`official` for the paper's KonIQ set, `file` for a user's anchors file), every other
    profile the comparator."""
    source = profile.anchor_matrix
    if source != "auto":
        return source
    if profile.solver == "official-adam" and anchors.matrix is not None:
        return "official" if is_paper_koniq(anchors) else "file"
    return "comparator"


def fixed_matrix(source: str, anchors: AnchorSet) -> np.ndarray | None:
    """The anchor block that needs no model (`file`, `official`, `mos`), None for `comparator`; a source the
    anchor set cannot give is an error naming the ones it can."""
    if source == "file":
        if anchors.matrix is None:
            raise ValueError(f"--anchor-matrix file: the anchor set {anchors.name!r} carries no matrix (add "
                             "\"matrix\" to the anchors file, e.g. with c2s anchors matrix); or use --anchor-matrix "
                             "comparator or mos (anchor_matrix: in YAML)")
        return anchors.matrix
    if source == "official":
        if not is_paper_koniq(anchors):
            raise ValueError(f"--anchor-matrix official is the paper's KonIQ matrix and belongs to the paper's KonIQ "
                             f"anchors (--anchors koniq), not to {anchors.name!r}; use --anchor-matrix file for the "
                             "matrix in your anchors file, or comparator or mos (anchor_matrix: in YAML)")
        return koniq_default().matrix
    if source == "mos":
        return matrix_from_mos(anchors.mos, anchors.std)
    return None


def anchor_matrix_for(profile: Profile, mode: str, anchors: AnchorSet, lookup: dict) -> tuple[np.ndarray, str]:
    """The anchor block for a profile: a fixed matrix (the user's file, the paper's KonIQ one, Thurstone from
    MOS) or the model's own judgements (both orders averaged: C[i, j] = mean of P(i beats j) over the pairs
    that show it)."""
    source = matrix_source(profile, anchors)
    fixed = fixed_matrix(source, anchors)
    if fixed is not None:
        return fixed, source
    block = anchor_pairs(anchors.images)
    missing = [p for p in block if p not in lookup]
    if missing:
        raise ValueError(f"the anchor block was not judged ({len(missing)} pairs missing); this run used a fixed "
                         "anchor matrix, so re-run with the model to use --anchor-matrix comparator")
    p = pair_preference(np.array([lookup[q] for q in block]), mode, profile.anchor_temperature, profile.logit_dtype)
    return matrix_from_preferences(block, p, anchors.images), source


@dataclass
class Scored:
    score: np.ndarray
    latent: np.ndarray
    sd: np.ndarray
    n_ok: np.ndarray
    errors: list
    anchor_matrix: np.ndarray | None
    matrix_source: str | None
    converged_frac: float | None = None
    #: anchors left out because every judgement of them in the anchor block failed
    unusable_anchors: list = field(default_factory=list)


def score_tests(tests: list[str], anchors: AnchorSet, lookup: dict, errors: dict, profile: Profile,
                mode: str, order: str) -> Scored:
    """Scores for every test image from the judged pairs; an image with no usable pair is NaN
    and carries the first reason one of its pairs failed.

    `order == "both"` is THE place where the two presentation orders meet (no adapter folds them):
    b[x, a] = mean over the orders judged of P(x better), the swapped pair (x shown first)
    contributing 1 - P(a better) (docs/method.md, "Presentation order")."""
    N = len(tests)
    if mode == "rating":  # no anchors (a rating-only run has none)
        lp = np.array([lookup.get(Pair(x, x), np.full(N_LEVELS, np.nan)) for x in tests]).reshape(N, N_LEVELS)
        s = pair_preference(lp, mode, 1.0)  # the expected rating on [0, 1] (Q-Align style)
        errs = [None if np.isfinite(v) else errors.get(Pair(x, x), "no rating") for x, v in zip(tests, s)]
        return Scored(s, s, np.full(N, np.nan), np.isfinite(s).astype(int), errs, None, None)
    m = len(anchors.images)
    nan_row = np.full(N_LEVELS, np.nan)
    fwd = np.array([[lookup.get(Pair(a, x), nan_row) for a in anchors.images] for x in tests]).reshape(N * m, N_LEVELS)
    b = pair_preference(fwd, mode, profile.temperature, profile.logit_dtype).reshape(N, m)
    # a NaN from finite log-probs: only the float16 arithmetic makes one; the image's reason says so
    fp16_failed = (np.isnan(b) & np.isfinite(fwd).all(axis=1).reshape(N, m)).any(axis=1)
    if order == "both":
        rev = np.array([[lookup.get(Pair(x, a), nan_row) for a in anchors.images] for x in tests]).reshape(N * m, N_LEVELS)
        b_rev = 1.0 - pair_preference(rev, mode, profile.temperature, profile.logit_dtype).reshape(N, m)
        fp16_failed |= (np.isnan(b_rev) & np.isfinite(rev).all(axis=1).reshape(N, m)).any(axis=1)
        b = _nanmean2(b, b_rev)
    C, source = anchor_matrix_for(profile, mode, anchors, lookup)
    # an anchor whose every anchor-block judgement failed is linked to nothing: score without it
    usable = (np.isfinite(C) & ~np.eye(m, dtype=bool)).any(axis=1) if m > 1 else np.ones(m, dtype=bool)
    unusable = [anchors.images[k] for k in np.flatnonzero(~usable)]
    note = f"anchor(s) with no usable anchor-block judgement: {unusable}" if unusable else None
    n_ok = np.isfinite(b[:, usable]).sum(axis=1)
    converged = None
    if profile.solver == "official-adam":  # the official code needs the full matrix: no anchor dropped
        score, latent_all = official_scores(b, C, link=profile.link, steps=profile.steps)
        latent, sd = latent_all[:, -1].astype(np.float64), np.full(N, np.nan)
        score = score.astype(np.float64)
    elif not usable.any():  # every anchor judgement failed: every image fails, with its pairs' reasons
        score, latent, sd = np.full(N, np.nan), np.full(N, np.nan), np.full(N, np.nan)
    else:
        res = score_against_anchors(C[np.ix_(usable, usable)], b[:, usable], link=profile.link,
                                    prior_var=profile.prior_var, scale=profile.scale, anchor_mos=anchors.mos[usable])
        score, latent, sd = res.score, res.latent, res.sd
        converged = float(np.mean(res.converged[~res.failed])) if (~res.failed).any() else None
    errs = []
    for i, x in enumerate(tests):
        if np.isfinite(score[i]):
            errs.append(None)
            continue
        reasons = [errors.get(Pair(a, x)) for a in anchors.images] + [errors.get(Pair(x, a)) for a in anchors.images]
        reasons = [r for r in reasons if r] + ([FP16_FAILURE] if fp16_failed[i] else []) + ([note] if note else [])
        errs.append(reasons[0] if reasons else "no usable comparison")
    return Scored(score, latent, sd, n_ok, errs, C, source, converged, unusable)


def _nanmean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise mean of two arrays ignoring NaN (NaN only where both are)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    total = np.where(fa, a, 0.0) + np.where(fb, b, 0.0)
    count = fa.astype(int) + fb.astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def anchor_matrix_needs_model(profile: Profile, anchors: AnchorSet) -> bool:
    return matrix_source(profile, anchors) == "comparator"


def anchor_block_needed(profile: Profile, anchors: AnchorSet) -> bool:
    """Whether the model must judge the anchor block: for the matrix, or to calibrate on it."""
    return anchor_matrix_needs_model(profile, anchors) or profile.calibrate != "none"


def calibration_for(profile: Profile, mode: str, anchors: AnchorSet, pairs: list, roles: list,
                    logprobs: np.ndarray) -> Calibration | None:
    """The calibration the profile asks for, fitted on the judged anchor block (roles "anchor"); None
    without one. Soft mode only: count mode reads the arg-max level, where a temperature changes nothing."""
    if profile.calibrate == "none":
        return None
    if mode != "soft":
        raise ValueError(f"--calibrate {profile.calibrate} applies to --mode soft only (count reads the arg-max "
                         f"level, rating has no anchors), not to mode {mode!r}; score that mode without --calibrate")
    block = [i for i, role in enumerate(roles) if role == "anchor"]
    if not block:
        raise ValueError(f"--calibrate {profile.calibrate}: the anchor block was not judged (this run used a fixed "
                         "anchor matrix); run again with the model and --calibrate to judge it")
    return calibrate_on_anchors([pairs[i] for i in block], logprobs[block], anchors,
                                fit_bias=profile.calibrate == "anchors+bias", temperature_before=profile.temperature,
                                prior_var=profile.prior_var)


def apply_calibration(rows: np.ndarray, profile: Profile, calibration: Calibration | None) -> tuple[np.ndarray, Profile]:
    """The level rows and profile to score with: a calibration shifts each row by T b, sets both temperatures to
    its T and the prior variance to its own (docs/method.md, "Calibration"); None leaves both as they are."""
    if calibration is None:
        return rows, profile
    t = calibration.temperature
    prior_var = profile.prior_var if calibration.prior_var is None else calibration.prior_var
    return shifted_logprobs(rows, t, calibration.bias), replace(profile, temperature=t, anchor_temperature=t,
                                                                prior_var=prior_var)


def calibrated_judged(judged: Judged, profile: Profile, calibration: Calibration | None) -> tuple[Judged, Profile]:
    """`apply_calibration` on every judged pair at once: what an active design's rounds and its joint MAP score
    (a calibrating profile never reads raw logits: float16 is refused with it)."""
    rows, scoring = apply_calibration(judged.logprobs, profile, calibration)
    return (judged if calibration is None else replace(judged, logprobs=rows)), scoring
