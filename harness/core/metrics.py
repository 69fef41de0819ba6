"""Agreement of predicted scores with subjective scores: SRCC, KRCC, PLCC raw and after the VQEG
logistic, RMSE, bootstrap intervals, and aggregation over splits.

Non-finite predictions (failed images) are excluded and counted, never hidden. Ground truth that is
lower-is-better (DMOS) is negated first, so a good model reports positive correlations everywhere.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from harness.core.levels import LEVELS, level_from_mos

METRICS = ("srcc", "krcc", "plcc")
#: the most bootstrap resamples a run may ask for: 10^4 already pin a 95% interval down, and the resamples
#: are drawn at once (resamples x images indices)
MAX_BOOTSTRAP = 100_000


def _paired(pred, mos, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Finite predictions and the oriented ground truth, plus how many predictions were dropped."""
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(mos, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"pred and mos must be 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("ground-truth scores must be finite")
    keep = np.isfinite(x)
    y = y if higher_is_better else -y
    return x[keep], y[keep], int(np.count_nonzero(~keep))


def constant(x) -> bool:
    """Predictions equal up to floating-point noise: their correlations with anything are noise too
    (a count-mode run with one verdict everywhere gives scores that differ in the 12th digit)."""
    x = np.asarray(x, dtype=np.float64)
    return x.size == 0 or float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.max(np.abs(x))))


def _logistic(x, b1, b2, b3, b4):
    # expit: the same 1 / (1 + exp(-z)), without overflow warnings when the optimiser tries steep slopes
    return b2 + (b1 - b2) * expit((x - b3) / np.abs(b4))


@dataclass
class LogisticFit:
    """VQEG 4-parameter logistic from prediction to MOS: mos ~ b2 + (b1 - b2) / (1 + exp(-(x - b3)/|b4|)).

    Fitted on standardised predictions (x - center) / scale, so the start values work on any scale.
    When the fit fails ok is False, message says why, and predict returns NaN.
    """

    params: np.ndarray
    center: float
    scale: float
    ok: bool
    message: str = ""

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if not self.ok:
            return np.full(x.shape, np.nan)
        return _logistic((x - self.center) / self.scale, *self.params)


def fit_logistic(pred, mos) -> LogisticFit:
    """Least-squares VQEG logistic, tried from an increasing and a decreasing start; the better fit wins."""
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(mos, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_logistic needs two finite 1-D arrays of equal length")
    center, scale = float(np.mean(x)), float(np.std(x))
    nan4 = np.full(4, np.nan)
    if x.size < 5:
        return LogisticFit(nan4, center, 1.0, False, f"need >= 5 points for a 4-parameter fit, got {x.size}")
    if constant(x):
        return LogisticFit(nan4, center, 1.0, False, "predictions are constant")
    z = (x - center) / scale
    lo, hi = float(np.min(y)), float(np.max(y))
    best, best_sse, reasons = None, np.inf, []
    for b1, b2 in ((hi, lo), (lo, hi)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = optimize.curve_fit(_logistic, z, y, p0=[b1, b2, 0.0, 1.0], maxfev=20000)
        except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
            reasons.append(str(exc))
            continue
        sse = float(np.sum((_logistic(z, *params) - y) ** 2))
        if np.all(np.isfinite(params)) and sse < best_sse:
            best, best_sse = params, sse
    if best is None:
        return LogisticFit(nan4, center, scale, False, "logistic fit failed: " + "; ".join(reasons))
    # a curve that leaves the MOS range by more than the range itself within the predictions' range
    # fits noise (e.g. a near-step through two clusters): not a mapping to report or draw
    curve = _logistic(np.linspace(float(z.min()), float(z.max()), 200), *best)
    if curve.min() < lo - (hi - lo) or curve.max() > hi + (hi - lo):
        return LogisticFit(nan4, center, scale, False, f"logistic fit unusable: the curve spans {curve.min():.3g} "
                           f"to {curve.max():.3g}, far outside the MOS range {lo:.3g} to {hi:.3g}")
    return LogisticFit(np.asarray(best), center, scale, True)


#: fewer scored images than this give no evidence: two points always correlate perfectly (+-1)
MIN_IMAGES = 3


def undefined_reason(pred, mos, *, higher_is_better: bool = True) -> str:
    """Why correlations of these predictions with the ground truth would carry no information, or ""
    when they are defined: too few scored images, a constant ground truth or constant predictions."""
    x, y, _ = _paired(pred, mos, higher_is_better)
    if x.size < MIN_IMAGES:
        return f"only {x.size} scored image(s): a correlation needs at least {MIN_IMAGES}"
    if np.ptp(y) == 0:
        return "constant ground truth: no correlation is defined"
    if constant(x):
        return "constant predictions: no correlation is defined"
    return ""


def correlations(pred, mos, *, higher_is_better: bool = True, undefined: str = "") -> dict:
    """SRCC, KRCC, PLCC (raw), PLCC and RMSE after the logistic fit, with n used and n dropped.

    RMSE is in ground-truth units. When the scores carry no information (`undefined_reason`, or the
    caller's own `undefined` reason, e.g. anchors that give the scores no scale) every metric is NaN
    (null in metrics.json, never a number) and `undefined` and `logistic_message` say why.
    """
    x, y, dropped = _paired(pred, mos, higher_is_better)
    reason = undefined or undefined_reason(x, y)
    out: dict[str, Any] = {"n": int(x.size), "n_dropped": dropped}
    nan = float("nan")
    if reason:
        out.update(srcc=nan, krcc=nan, plcc=nan, plcc_logistic=nan, rmse_logistic=nan, logistic_ok=False,
                   logistic_message=reason, undefined=reason)
        return out
    fit = fit_logistic(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties everywhere but one value give NaN from scipy: reported as such
        out["srcc"] = float(stats.spearmanr(x, y)[0])
        out["krcc"] = float(stats.kendalltau(x, y)[0])
        out["plcc"] = float(np.corrcoef(x, y)[0, 1])
        fitted = fit.predict(x)
        out["plcc_logistic"] = float(np.corrcoef(fitted, y)[0, 1]) if fit.ok else nan
        out["rmse_logistic"] = float(np.sqrt(np.mean((fitted - y) ** 2))) if fit.ok else nan
    out["logistic_ok"] = fit.ok
    out["logistic_message"] = fit.message
    out["undefined"] = ""
    return out


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(a * b, axis=1) / np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))


def bootstrap_ci(pred, mos, metric: str = "srcc", n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, *, higher_is_better: bool = True) -> tuple[float, float]:
    """Percentile bootstrap interval of srcc, krcc or plcc, resampling (pred, mos) pairs with a seeded
    generator. Non-finite predictions are excluded first (as in `correlations`)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not 0 < level < 1 or not 1 <= int(n_boot) <= MAX_BOOTSTRAP:
        raise ValueError(f"level must be in (0, 1) and n_boot between 1 and {MAX_BOOTSTRAP}")
    x, y, _ = _paired(pred, mos, higher_is_better)
    if x.size < 3:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(int(n_boot), x.size))
    xs, ys = x[idx], y[idx]
    if metric == "srcc":
        vals = _row_pearson(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1))
    elif metric == "plcc":
        vals = _row_pearson(xs, ys)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vals = np.array([stats.kendalltau(a, b)[0] for a, b in zip(xs, ys)])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [tail, 1.0 - tail])
    return float(lo), float(hi)


def aggregate(values) -> dict:
    """Summary over splits: median (what the paper reports), mean, sample sd, min, max, n finite values,
    and how many values were non-finite (failed splits, counted not hidden)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    nan = float("nan")
    if finite.size == 0:
        return {"median": nan, "mean": nan, "sd": nan, "min": nan, "max": nan, "n": 0,
                "n_dropped": int(v.size)}
    return {"median": float(np.median(finite)), "mean": float(np.mean(finite)),
            "sd": float(np.std(finite, ddof=1)) if finite.size > 1 else nan,
            "min": float(np.min(finite)), "max": float(np.max(finite)), "n": int(finite.size),
            "n_dropped": int(v.size - finite.size)}


def pair_accuracy(mos_first, std_first, mos_second, std_second, preference, level) -> dict:
    """Pairwise prediction accuracy of judged pairs against their images' MOS (docs/method.md, "Pairwise accuracy").

    Two readings of the paper's Table 4: `binary`, the share of pairs whose preference P(second better)
    > 0.5 agrees with MOS(second) > MOS(first) (equal MOS excluded, counted in `n_mos_ties`; a preference
    of exactly 0.5 counts as wrong), and `five_level`, the share whose predicted level (`level`, 0..4, the
    arg-max of the model's level distribution) equals the Eqn. 2 label (`levels.level_from_mos`). MOS must
    be oriented higher-is-better. The "similar" band is Eqn. 2's own: |MOS difference| <= sqrt(std_first^2 +
    std_second^2), i.e. the label is "similar"; both readings are also given inside it (`*_similar`) and
    outside it (`*_outside`). Pairs with a NaN preference (failed) are counted in `n_failed`; pairs with a
    NaN std have no Eqn. 2 label: in `binary` only, counted in `n_no_std`. Accuracies with no pair are NaN.
    """
    q1, s1, q2, s2, p, lv = (np.asarray(a, dtype=np.float64).ravel() for a in
                             (mos_first, std_first, mos_second, std_second, preference, level))
    if not (q1.shape == s1.shape == q2.shape == s2.shape == p.shape == lv.shape):
        raise ValueError("pair_accuracy: all inputs must have one value per pair")
    if not (np.all(np.isfinite(q1)) and np.all(np.isfinite(q2))):
        raise ValueError("pair_accuracy: MOS must be finite")
    ok = np.isfinite(p)
    has_std = ok & np.isfinite(s1) & np.isfinite(s2)
    label = np.full(q1.shape, -1, dtype=np.int64)
    label[has_std] = level_from_mos(q1[has_std], s1[has_std], q2[has_std], s2[has_std])
    similar = label == LEVELS.index("similar")
    untied = ok & (q1 != q2)
    hit2 = np.where(q2 > q1, p > 0.5, p < 0.5)  # a preference of 0.5 picks no side: wrong either way
    hit5 = lv == label

    def share(hit: np.ndarray, sel: np.ndarray) -> float:
        return float(np.mean(hit[sel])) if sel.any() else float("nan")

    out: dict[str, Any] = {"n_pairs": int(ok.sum()), "n_failed": int((~ok).sum()),
                           "n_mos_ties": int((ok & (q1 == q2)).sum()), "n_no_std": int((ok & ~has_std).sum())}
    for name, hit, base in (("binary", hit2, untied), ("five_level", hit5, has_std)):
        out[name] = share(hit, base)
        out[f"n_{name}"] = int(base.sum())
        for band, sel in (("similar", base & similar), ("outside", base & has_std & ~similar)):
            out[f"{name}_{band}"] = share(hit, sel)
            out[f"n_{name}_{band}"] = int(sel.sum())
    return out
