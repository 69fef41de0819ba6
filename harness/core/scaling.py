"""From level log-probabilities to quality scores: preferences, probability matrices, exact MAP.

Orientation (docs/method.md, "Eqn. 5: one matrix per test image"): C[i, j] = P(item i beats item j),
anchors first in ascending MOS, the test image last. The MAP problem is the paper's Eqn. 6,

    minimise  f(s) = -sum_{i != j observed} C_ij log F(s_i - s_j) + sum_i s_i^2 / (2 prior_var),

with F the normal CDF (probit, Thurstone Case V) or the logistic sigmoid (logit, the official
scorer). f is strictly convex, so Newton's method with a backtracking line search reaches the exact
optimum in a handful of steps; every step is batched over problems. The likelihood only depends on
differences, so at the optimum sum(s) = 0: the paper's constraint holds without being imposed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from harness.core.levels import LEVEL_WEIGHTS, N_LEVELS
from harness.core.vocabulary import LINKS, SCALES

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


# --- preferences ------------------------------------------------------------------------------

def _level_rows(logprobs) -> np.ndarray:
    x = np.asarray(logprobs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_LEVELS:
        raise ValueError(f"level log-probabilities must have shape (n, {N_LEVELS}), got {x.shape}")
    return x


def _check_weights(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (N_LEVELS,) or not np.all(np.isfinite(w)) or np.any((w < 0) | (w > 1)):
        raise ValueError(f"weights must be {N_LEVELS} finite values in [0, 1], got {weights!r}")
    return w


def preference(logprobs, temperature: float = 1.0, weights=LEVEL_WEIGHTS) -> np.ndarray:
    """p = P(second beats first) = softmax(logprobs / T) . w per row (Eqn. 3).

    Subtracting the row maximum makes it exact for any per-row constant and any logit size; a row
    with NaN (a failed pair) or with no finite maximum gives NaN instead of raising.
    """
    x = _level_rows(logprobs)
    w = _check_weights(weights)
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    z = x / temperature
    with np.errstate(invalid="ignore"):
        z = z - np.max(z, axis=1, keepdims=True)
        e = np.exp(z)
        p = (e @ w) / e.sum(axis=1)
    return np.where(np.isnan(x).any(axis=1), np.nan, p)


#: The count variant's verdict per level: a loss, a tie or a win for the second image.
HARD_VALUES = np.array([0.0, 0.0, 0.5, 1.0, 1.0])


def hard_preference(logprobs) -> np.ndarray:
    """The paper's "count" matrix entry: the arg-max level counted as a loss (0), tie (0.5) or win (1).

    Levels tied for the maximum share the verdict (their mean), so the rule stays symmetric when
    the roles of the two images are swapped. A NaN row gives NaN.
    """
    x = _level_rows(logprobs)
    bad = np.isnan(x).any(axis=1) | ~np.isfinite(np.max(x, axis=1))
    safe = np.where(bad[:, None], 0.0, x)
    top = safe == np.max(safe, axis=1, keepdims=True)
    p = (top @ HARD_VALUES) / top.sum(axis=1)
    return np.where(bad, np.nan, p)


# --- matrices -----------------------------------------------------------------------------------

def build_matrices(anchor_matrix, b) -> tuple[np.ndarray, np.ndarray]:
    """Stack one (m+1, m+1) matrix per test image: anchors first, the test image last.

    b[k, a] = P(test k beats anchor a), so C[test, a] = b and C[a, test] = 1 - b. NaN entries (in b:
    a failed comparison; in the anchor matrix: an anchor pair never judged) become unobserved.
    b may be one row (m,). Returns (C, observed); unobserved entries of C hold 0.5 and carry no weight.
    """
    A = np.asarray(anchor_matrix, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise ValueError(f"anchor matrix must be square (m, m), got shape {A.shape}")
    m = A.shape[0]
    B = np.asarray(b, dtype=np.float64)
    if B.ndim == 1:
        B = B[None, :]
    if B.ndim != 2 or B.shape[1] != m:
        raise ValueError(f"b must have shape (N, {m}) to match the {m} anchors, got {np.shape(b)}")
    n = m + 1
    C = np.full((B.shape[0], n, n), 0.5)
    C[:, :m, :m] = A
    C[:, m, :m] = B
    C[:, :m, m] = 1.0 - B
    observed = ~np.isnan(C)
    observed[:, np.arange(n), np.arange(n)] = False
    C[~observed] = 0.5
    return C, observed


# --- the MAP problem ------------------------------------------------------------------------------

@dataclass
class MapResult:
    """Exact MAP scores, Laplace posterior sd, and convergence per problem (B problems of n items)."""

    scores: np.ndarray
    sd: np.ndarray
    converged: np.ndarray
    max_grad: np.ndarray
    n_iter: int


def log_F(x: np.ndarray, link: str) -> np.ndarray:
    """log F(x) of the link's CDF (Thurstone probit or Bradley-Terry logit), stable in both tails; shared with
    the joint MAP (harness.core.joint_map), so both estimators have one likelihood."""
    return log_ndtr(x) if link == "probit" else -np.logaddexp(0.0, -x)


def log_F_derivatives(x: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of log F(x), stable in both tails."""
    if link == "probit":
        d1 = np.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_ndtr(x))  # phi / Phi
        d2 = -d1 * (x + d1)
    else:
        d1 = np.exp(-np.logaddexp(0.0, x))  # sigmoid(-x)
        d2 = -d1 * np.exp(-np.logaddexp(0.0, -x))  # -sigmoid(-x) sigmoid(x)
    return d1, d2


def _differences(s: np.ndarray) -> np.ndarray:
    return s[:, :, None] - s[:, None, :]


def _objective(W: np.ndarray, s: np.ndarray, link: str, prior_var: float) -> np.ndarray:
    return -np.sum(W * log_F(_differences(s), link), axis=(1, 2)) + np.sum(s * s, axis=1) / (2.0 * prior_var)


def _gradient_hessian(W, s, link, prior_var, hessian=True):
    d1, d2 = log_F_derivatives(_differences(s), link)
    G = W * d1
    grad = G.sum(axis=1) - G.sum(axis=2) + s / prior_var
    if not hessian:
        return grad, None
    K = W * d2
    K = -(K + np.swapaxes(K, 1, 2))  # curvature of each pair, symmetric, >= 0
    H = -K
    n = s.shape[1]
    H[:, np.arange(n), np.arange(n)] = K.sum(axis=2) + 1.0 / prior_var
    return grad, H


def _as_batch(C, observed) -> tuple[np.ndarray, np.ndarray]:
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 2:
        C = C[None]
    if C.ndim != 3 or C.shape[1] != C.shape[2] or C.shape[1] < 2:
        raise ValueError(f"C must have shape (n, n) or (B, n, n) with n >= 2, got {np.shape(C)}")
    n = C.shape[1]
    off = ~np.eye(n, dtype=bool)
    if observed is None:
        obs = np.broadcast_to(off, C.shape).copy()
    else:
        obs = np.asarray(observed)
        if obs.dtype != bool:
            raise ValueError(f"observed must be a boolean mask, got dtype {obs.dtype}")
        if obs.ndim == 2:
            obs = obs[None]
        if obs.shape[1:] != C.shape[1:] or obs.shape[0] not in (1, C.shape[0]):
            raise ValueError(f"observed has shape {np.shape(observed)}, C has shape {C.shape}")
        obs = np.broadcast_to(obs, C.shape) & off
    return C, obs


def _first_problem(mask: np.ndarray) -> str:
    k, i, j = np.argwhere(mask)[0]
    return f"problem {k}, entry ({i}, {j})"


def validate_matrices(C, observed=None, allow_disconnected: bool = False):
    """Check a batch of comparison matrices; return (C, observed) as (B, n, n) arrays.

    Raises ValueError naming the first offending problem and entry. A comparison between i and j
    fills both C[i, j] and C[j, i], so the mask must be symmetric; the diagonal is ignored.
    """
    C, obs = _as_batch(C, observed)
    if np.any(obs & np.isnan(C)):
        raise ValueError(f"C is NaN where observed ({_first_problem(obs & np.isnan(C))}); "
                         "mark failed comparisons as unobserved")
    if np.any(obs & ~np.isfinite(C)) or np.any(obs & ((C < 0) | (C > 1))):
        bad = obs & (~np.isfinite(C) | (C < 0) | (C > 1))
        raise ValueError(f"C must hold probabilities in [0, 1] where observed ({_first_problem(bad)})")
    if np.any(obs != np.swapaxes(obs, 1, 2)):
        raise ValueError(f"observed must be symmetric: a comparison fills C[i, j] and C[j, i] "
                         f"({_first_problem(obs != np.swapaxes(obs, 1, 2))})")
    if not allow_disconnected:
        lonely = ~connected_to_first(obs)
        if np.any(lonely):
            k, i = np.argwhere(lonely)[0]
            raise ValueError(
                f"disconnected design: in problem {k} item {i} has no chain of observed comparisons to "
                "item 0. The prior still defines a MAP, but it centres each connected group at 0 on "
                "its own, so scores in different groups are not comparable. From c2s: run again (failed pairs "
                "are retried) or use --anchor-matrix mos; in Python, allow_disconnected=True accepts it")
    return C, obs


def connected_to_first(observed: np.ndarray) -> np.ndarray:
    """(B, n) bool: which items are linked to item 0 by a chain of observed comparisons."""
    n = observed.shape[1]
    reach = (observed | np.eye(n, dtype=bool)).astype(np.float64)
    for _ in range(max(1, int(np.ceil(np.log2(n))))):
        reach = np.minimum(reach @ reach, 1.0)
    return reach[:, 0, :] > 0


def check_link_options(link: str, prior_var: float) -> None:
    """The link and prior every MAP estimator accepts (this one and the joint MAP)."""
    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    if not (np.isfinite(prior_var) and prior_var > 0):
        raise ValueError(f"prior_var must be a positive finite number, got {prior_var!r}")


def map_gradient(C, s, observed=None, link: str = "probit", prior_var: float = 1.0) -> np.ndarray:
    """Gradient of the MAP objective at s (B, n): how far any estimate (e.g. Adam's) is from the optimum."""
    check_link_options(link, prior_var)
    C, obs = _as_batch(C, observed)
    s = np.asarray(s, dtype=np.float64).reshape(C.shape[0], C.shape[1])
    return _gradient_hessian(np.where(obs, C, 0.0), s, link, prior_var, hessian=False)[0]


def solve_map(C, observed=None, link: str = "probit", prior_var: float = 1.0, *,
              allow_disconnected: bool = False, tol: float = 1e-10, max_iter: int = 100) -> MapResult:
    """Solve Eqn. 6 exactly for one (n, n) or many (B, n, n) matrices at once.

    Newton steps with Armijo backtracking from s = 0, batched over problems; a problem stops once
    its largest |gradient| is <= tol. sd is the Laplace approximation: sqrt(diag(H^-1)) at the
    optimum, H the Hessian of the negative log posterior. Output arrays are always (B, ...).
    """
    check_link_options(link, prior_var)
    C, obs = validate_matrices(C, observed, allow_disconnected)
    W = np.where(obs, C, 0.0)
    Bn, n = C.shape[:2]
    s = np.zeros((Bn, n))
    f = _objective(W, s, link, prior_var)
    grad, H = _gradient_hessian(W, s, link, prior_var)
    max_grad = np.abs(grad).max(axis=1)
    active = np.flatnonzero(max_grad > tol)
    n_iter = 0
    while active.size and n_iter < max_iter:
        n_iter += 1
        Wa, sa, fa, ga = W[active], s[active], f[active], grad[active]
        step = -np.linalg.solve(H[active], ga[:, :, None])[:, :, 0]
        slope = np.sum(ga * step, axis=1)
        t = np.ones(active.size)
        pending = np.ones(active.size, dtype=bool)
        s_new, f_new = sa.copy(), fa.copy()
        for _ in range(60):
            idx = np.flatnonzero(pending)
            trial = sa[idx] + t[idx, None] * step[idx]
            f_trial = _objective(Wa[idx], trial, link, prior_var)
            # Near the optimum f changes below rounding; the full Newton step is then safe (convex).
            ok = (f_trial <= fa[idx] + 1e-4 * t[idx] * slope[idx]) | (
                (t[idx] == 1.0) & (np.abs(ga[idx]).max(axis=1) < 1e-6))
            s_new[idx[ok]], f_new[idx[ok]] = trial[ok], f_trial[ok]
            pending[idx[ok]] = False
            t[idx[~ok]] *= 0.5
            if not pending.any():
                break
        s[active], f[active] = s_new, f_new
        g_new, H_new = _gradient_hessian(W[active], s_new, link, prior_var)
        grad[active], H[active] = g_new, H_new
        max_grad[active] = np.abs(g_new).max(axis=1)
        # a problem whose line search found no decrease has stalled at rounding level: stop it
        active = active[(max_grad[active] > tol) & ~pending]
    sd = np.sqrt(np.diagonal(np.linalg.inv(H), axis1=1, axis2=2))
    return MapResult(scores=s, sd=sd, converged=max_grad <= tol, max_grad=max_grad, n_iter=n_iter)


# --- the runner's case: every test image against one fixed anchor set ------------------------------

@dataclass
class ScoreResult:
    """Per test image: the score on the requested scale, the latent MAP score and its sd, convergence,
    the anchors' latent positions in that image's problem, and how many anchors it was compared with.
    Images with no usable comparison are NaN with failed = True (the runner records them)."""

    score: np.ndarray
    latent: np.ndarray
    sd: np.ndarray
    converged: np.ndarray
    max_grad: np.ndarray
    anchor_latent: np.ndarray
    n_anchors_used: np.ndarray
    failed: np.ndarray
    scale: str
    mos_map: tuple[float, float] | None = None


def minmax_0_100(latent_all: np.ndarray) -> np.ndarray:
    """The official output scale: the test entry (last) min-max scaled over anchors + test to 0-100."""
    lo, hi = np.min(latent_all, axis=-1), np.max(latent_all, axis=-1)
    return 100.0 * (latent_all[..., -1] - lo) / (hi - lo)


def fit_mos_map(anchor_latent: np.ndarray, anchor_mos) -> tuple[float, float]:
    """Least-squares affine map latent -> MOS through the anchors: (intercept, slope).

    Affine keeps the map strictly monotone and defined for any latent value (also beyond the
    anchors); the slope must be positive, i.e. the model must rank the anchors broadly as MOS does.
    """
    x = np.asarray(anchor_latent, dtype=np.float64)
    y = np.asarray(anchor_mos, dtype=np.float64)
    if y.shape != x.shape or not np.all(np.isfinite(y)):
        raise ValueError(f"anchor_mos must hold {x.size} finite values (one per anchor), got {np.shape(anchor_mos)}")
    slope, intercept = np.polyfit(x, y, 1)
    if not slope > 0:
        raise ValueError("scale='mos' needs anchors whose latent scores rise with their MOS; this anchor "
                         f"matrix ranks them against MOS (fitted slope {slope:.3g}); use scale='latent'")
    return float(intercept), float(slope)


def score_against_anchors(anchor_matrix, b, *, link: str = "probit", prior_var: float = 1.0,
                          scale: str = "latent", anchor_mos=None, tol: float = 1e-10) -> ScoreResult:
    """Score N test images from their preferences b (N, m) against m anchors.

    NaN entries of b are failed comparisons: the remaining anchors are used; a row with no finite
    entry gives NaN and failed = True. Scales: "latent" (the MAP score), "minmax" (official 0-100
    over anchors + test), "mos" (an affine map fitted once from the anchors' latent scores in the
    anchor-only problem to anchor_mos, applied to every test image: comparable across images).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == "mos" and anchor_mos is None:
        raise ValueError("scale='mos' needs anchor_mos (the anchors' MOS, in anchor order)")
    C, obs = build_matrices(anchor_matrix, b)
    N, n = C.shape[:2]
    m = n - 1
    n_used = obs[:, m, :m].sum(axis=1)
    failed = n_used == 0
    latent_all = np.full((N, n), np.nan)
    sd_all = np.full((N, n), np.nan)
    converged = np.zeros(N, dtype=bool)
    max_grad = np.full(N, np.nan)
    ok = np.flatnonzero(~failed)
    if ok.size:
        res = solve_map(C[ok], obs[ok], link=link, prior_var=prior_var, tol=tol)
        latent_all[ok], sd_all[ok] = res.scores, res.sd
        converged[ok], max_grad[ok] = res.converged, res.max_grad
    latent = latent_all[:, m]
    mos_map = None
    if scale == "latent":
        score = latent
    elif scale == "minmax":
        score = minmax_0_100(latent_all)
    else:
        A = np.asarray(anchor_matrix, dtype=np.float64)
        anchors_only = solve_map(A, ~np.isnan(A), link=link, prior_var=prior_var, tol=tol)
        mos_map = fit_mos_map(anchors_only.scores[0], anchor_mos)
        score = mos_map[0] + mos_map[1] * latent
    return ScoreResult(score=score, latent=latent, sd=sd_all[:, m], converged=converged,
                       max_grad=max_grad, anchor_latent=latent_all[:, :m], n_anchors_used=n_used,
                       failed=failed, scale=scale, mos_map=mos_map)
