"""Calibrating a comparator's level probabilities on the anchor block (docs/method.md, "Calibration").

Why: a model that is over- or under-confident makes every soft preference too sharp or too flat, and the
MAP turns that into distorted scores (the official code divides the logits by 100 for this, unexplained).
The anchors' MOS and std say what the preferences between anchors should be (Thurstone Case V, the
paper's own construction), so the anchor block the model judged is a small labelled calibration set:
fit a temperature T (and optionally a level bias beta) by maximum likelihood,

    p(T, beta) = softmax(l / T + beta (k - 2)) . w,     NLL = -mean[t log p + (1 - t) log(1 - p)],

t = Phi((q_second - q_first) / sqrt(s_first^2 + s_second^2)), and score the test images with them, under a
prior that is wide against the anchors' calibrated spread (`calibrated_prior_var`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import minimize

from harness.core.anchors import AnchorSet, matrix_from_mos
from harness.core.levels import LEVEL_WEIGHTS, N_LEVELS
from harness.core.pairs import Pair
from harness.core.scaling import preference

#: the fitted temperature stays in [1e-3, 1e3]; a fit at a bound says the anchors carry no scale for it
LOG_T_BOUNDS = (float(np.log(1e-3)), float(np.log(1e3)))
#: the level bias tilts the logits linearly, beta (k - 2) for level k = 0 (inferior) .. 4 (superior): one
#: number, a lean towards the second image (beta > 0) or the first, which the anchor block (both orders,
#: one target per pair) can identify; a free bias per level is not, on a handful of anchor pairs
BIAS_DIRECTION = np.arange(N_LEVELS) - (N_LEVELS - 1) / 2.0
#: the bias stays in [-10, 10]
BIAS_BOUND = 10.0
#: under a calibration the MAP's prior only fixes the gauge: its sd is this many times the anchors' sd in calibrated
#: latent units (docs/method.md, "Calibration": with the paper's N(0, 1) the prior outweighs the soft-count
#: likelihood beyond the outer anchors and bends the scores there; factors 1 and 100 measured worse)
PRIOR_SD_FACTOR = 10.0
#: equal-width bins of the expected calibration error
ECE_BINS = 10
_EPS = 1e-12


def anchor_targets(pairs, anchors: AnchorSet) -> np.ndarray:
    """P(second beats first) for pairs of anchors, from their MOS and std (`matrix_from_mos`)."""
    index = {name: k for k, name in enumerate(anchors.images)}
    target = matrix_from_mos(anchors.mos, anchors.std)
    return np.array([target[index[p.second], index[p.first]] for p in pairs], dtype=np.float64)


def calibration_problem(anchors: AnchorSet) -> str:
    """Why these anchors cannot calibrate a model, or "": without any std every MOS-derived preference is
    0, 1 or 0.5, and the likelihood then drives the temperature to a bound instead of measuring it."""
    if np.all(anchors.std == 0):
        return (f"the anchors {anchors.name!r} carry no std, so their MOS-derived preferences are all 0 or 1: "
                "there is no scale to calibrate against; use anchors with std (e.g. --anchors select on a dataset "
                "with a std column) or drop --calibrate")
    return ""


def anchor_spread(anchors: AnchorSet) -> float:
    """sd_a^2: the variance of the anchors' Thurstone positions q_a / sqrt(2 mean s_a^2), the units a calibrated
    preference puts them in (`anchor_targets`); 0 for anchors without any std."""
    q, s = np.asarray(anchors.mos, dtype=np.float64), np.asarray(anchors.std, dtype=np.float64)
    return float(np.var(q) / (2.0 * np.mean(s * s))) if np.any(s > 0) else 0.0


def calibrated_prior_var(anchors: AnchorSet, prior_var: float) -> float:
    """The prior variance that scores calibrated preferences: max(prior_var, (PRIOR_SD_FACTOR sd_a)^2)
    (`anchor_spread`); never narrower than the profile's own prior."""
    return max(float(prior_var), PRIOR_SD_FACTOR ** 2 * anchor_spread(anchors))


def shifted_logprobs(logprobs, temperature: float, bias: float) -> np.ndarray:
    """l + T beta (k - 2): Eqn. 3's preference of these rows at temperature T is softmax(l / T + beta (k - 2)) . w,
    so scoring applies a fitted calibration with its temperature and no other change."""
    return np.asarray(logprobs, dtype=np.float64) + temperature * bias * BIAS_DIRECTION


def binary_nll(p, t) -> float:
    """Mean cross-entropy of predicted probabilities p against target probabilities t."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    t = np.asarray(t, dtype=np.float64)
    return float(-np.mean(t * np.log(p) + (1.0 - t) * np.log1p(-p)))


def expected_calibration_error(p, t, bins: int = ECE_BINS) -> float:
    """sum over equal-width bins of p of (n_bin / n) |mean p - mean t| (t a probability, not an outcome)."""
    p = np.asarray(p, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    gap = np.bincount(which, weights=p - t, minlength=bins)
    return float(np.sum(np.abs(gap)) / p.size)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and level bias, and how well the anchor block is predicted before and after."""

    method: str
    temperature: float
    #: beta, the level bias (0 unless fitted)
    bias: float
    n_pairs: int
    temperature_before: float
    nll_before: float
    nll_after: float
    #: the NLL of perfectly calibrated predictions (p = t): the mean binary entropy of the targets
    nll_floor: float
    ece_before: float
    ece_after: float
    #: the temperature or the bias ended on its bound (the anchor block does not pin it down)
    at_bound: bool
    #: the prior variance of the exact MAP that scores the calibrated preferences (`calibrated_prior_var`);
    #: None: the profile's own
    prior_var: float | None = None

    def as_record(self) -> dict:
        return asdict(self)


def _objective(theta: np.ndarray, lp: np.ndarray, t: np.ndarray, fit_bias: bool) -> tuple[float, np.ndarray]:
    """NLL and its gradient in (log T[, beta])."""
    inv_t = np.exp(-theta[0])
    z = lp * inv_t + (theta[1] * BIAS_DIRECTION if fit_bias else 0.0)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    pi = e / e.sum(axis=1, keepdims=True)
    p = np.clip(pi @ LEVEL_WEIGHTS, _EPS, 1.0 - _EPS)
    nll = -np.mean(t * np.log(p) + (1.0 - t) * np.log1p(-p))
    dp_dz = pi * (LEVEL_WEIGHTS - p[:, None])  # d p / d z_k
    g = ((p - t) / (p * (1.0 - p)))[:, None] * dp_dz / t.size
    finite_lp = np.where(pi > 0, lp, 0.0)  # a level of log-prob -inf has pi = 0 and no gradient
    grad = [-np.sum(g * finite_lp) * inv_t]
    if fit_bias:
        grad.append(np.sum(g * BIAS_DIRECTION))
    return float(nll), np.array(grad)


def fit_calibration(logprobs, targets, *, fit_bias: bool = False, temperature_before: float = 1.0) -> Calibration:
    """Maximum-likelihood temperature (and level bias) of level log-probs (n, 5) against target preferences.

    The NLL need not be convex in T, so a grid over log T (bias 0) picks the start and L-BFGS-B with the
    analytic gradient refines it (temperature within LOG_T_BOUNDS, beta within +-BIAS_BOUND). Rows with
    a NaN (failed pairs) are left out.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] != N_LEVELS or t.shape != (lp.shape[0],):
        raise ValueError(f"calibration needs (n, {N_LEVELS}) log-probs and n targets, got {lp.shape} and {t.shape}")
    ok = ~np.isnan(lp).any(axis=1) & np.isfinite(lp.max(axis=1)) & np.isfinite(t)
    lp, t = lp[ok], t[ok]
    if t.size == 0:
        raise ValueError("calibration: no judged anchor pair to fit on (every anchor-block judgement failed)")
    grid = np.linspace(*LOG_T_BOUNDS, 61)
    start = grid[int(np.argmin([_objective(np.array([u]), lp, t, False)[0] for u in grid]))]
    theta0 = np.array([start, 0.0] if fit_bias else [start])
    bounds = [LOG_T_BOUNDS] + [(-BIAS_BOUND, BIAS_BOUND)] * (theta0.size - 1)
    res = minimize(_objective, theta0, args=(lp, t, fit_bias), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000})
    theta = res.x if res.fun <= _objective(theta0, lp, t, fit_bias)[0] else theta0
    temperature, bias = float(np.exp(theta[0])), float(theta[1]) if fit_bias else 0.0
    before = preference(lp, temperature_before)
    after = preference(shifted_logprobs(lp, temperature, bias), temperature)
    lows, highs = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    return Calibration(
        method="anchors+bias" if fit_bias else "anchors", temperature=temperature,
        bias=bias, n_pairs=int(t.size), temperature_before=float(temperature_before),
        nll_before=binary_nll(before, t), nll_after=binary_nll(after, t), nll_floor=binary_nll(t, t),
        ece_before=expected_calibration_error(before, t), ece_after=expected_calibration_error(after, t),
        at_bound=bool(np.any(np.isclose(theta, lows, rtol=0, atol=1e-6) | np.isclose(theta, highs, rtol=0, atol=1e-6))))


def calibrate_on_anchors(pairs: list[Pair], logprobs, anchors: AnchorSet, *, fit_bias: bool = False,
                         temperature_before: float = 1.0, prior_var: float = 1.0) -> Calibration:
    """`fit_calibration` on judged anchor pairs against the anchors' MOS-derived preferences, with the prior
    variance (`calibrated_prior_var` of the profile's `prior_var`) that scores them."""
    problem = calibration_problem(anchors)
    if problem:
        raise ValueError(f"--calibrate: {problem}")
    fitted = fit_calibration(logprobs, anchor_targets(pairs, anchors), fit_bias=fit_bias,
                             temperature_before=temperature_before)
    return replace(fitted, prior_var=calibrated_prior_var(anchors, prior_var))
