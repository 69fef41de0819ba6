"""The exact MAP over a whole comparison design at once: sparse Newton, fixed anchors, Laplace sd.

docs/method.md, "Joint MAP over a design". n items; a comparison (i, j, p, w) says that item j (shown
second) beat item i (shown first) with probability p, judged w times (w = 1 for one soft preference;
for counts p = wins / total and w = total): the same vocabulary as `preference` and the dense solver
(`comparisons_from_matrix` converts its matrices). Some items are fixed at known latent values (anchors
placed by their own block); the free ones minimise

    f(s) = - sum_c w_c [p_c log F(s_j - s_i) + (1 - p_c) log F(s_i - s_j)] + sum_{i free} s_i^2 / (2 prior_var)

with F the normal CDF (probit) or the logistic sigmoid (logit), as in `harness.core.scaling`. Both
CDFs are log-concave, and p_c, 1 - p_c and w_c are >= 0, so every comparison's term is convex in s;
the prior makes f strictly convex and coercive in the free scores. Hence there is one optimum, the
Hessian H >= I / prior_var is SPD, every Newton (or truncated-CG) direction descends, and Newton with
a backtracking line search converges from s = 0 on every design. p of 0 or 1 is a valid weight, as in
the dense solver: the prior keeps the optimum finite, so nothing is clipped.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as splinalg

from harness.core.scaling import check_link_options, log_F, log_F_derivatives

#: Up to this many free items the Newton system is solved by sparse LU (exact); beyond, by CG with a
#: Jacobi preconditioner: random test-vs-test links make LU fill in almost completely (3,000 items with
#: 3 links each: LU 7.7 s, CG 0.03 s), while H's diagonal (prior, anchor links) keeps CG well conditioned.
DIRECT_MAX = 500
#: Up to this many free items sd comes from a dense inverse of H (exact); beyond, from `_neumann_sd`.
SD_EXACT_MAX = 2000


@dataclass
class JointMapResult:
    """Scores and Laplace sd per item (a fixed item: its value, sd 0); `anchored`: linked to some fixed
    item by a chain of comparisons (else centred by the prior alone, not comparable with the rest)."""

    scores: np.ndarray
    sd: np.ndarray
    free: np.ndarray
    anchored: np.ndarray
    converged: bool
    max_grad: float
    n_iter: int
    linear: str
    sd_method: str
    #: the Laplace covariances of item pairs (`difference_var`), by the same method as `sd`
    _cov: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def difference_var(self, i, j) -> np.ndarray:
        """Laplace variance of s_j - s_i for item arrays i, j: sd_i^2 + sd_j^2 - 2 cov_ij, the covariance
        from the same H^-1 as sd (exact: the dense inverse; approx: `_neumann_cov`); a fixed item has none,
        and an item against itself 0."""
        i, j = np.asarray(i, dtype=np.intp), np.asarray(j, dtype=np.intp)
        if self._cov is None:
            raise ValueError("difference_var needs the Laplace covariance: solve with sd other than 'none'")
        return np.where(i == j, 0.0, np.maximum(self.sd[i] ** 2 + self.sd[j] ** 2 - 2.0 * self._cov(i, j), 0.0))


def comparisons_from_matrix(C, observed=None) -> np.ndarray:
    """The dense solver's matrix C[i, j] = P(i beats j) as comparisons (k, 4): one per observed pair i < j,
    with w = C_ij + C_ji and p = C_ij / w (pairs whose two entries are both 0 carry no weight)."""
    C = np.asarray(C, dtype=np.float64)
    obs = ~np.eye(len(C), dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    i, j = np.nonzero(np.triu(obs & obs.T, 1))
    w = C[i, j] + C[j, i]
    keep = w > 0
    i, j, w = i[keep], j[keep], w[keep]
    return np.column_stack([j, i, C[i, j] / w, w])


def _parse(n: int, comparisons, fixed):
    """Validated (first, second, p, w) arrays and the fixed values (NaN for free items)."""
    c = np.asarray(comparisons, dtype=np.float64)
    if c.size == 0:
        c = c.reshape(0, 3)
    if c.ndim != 2 or c.shape[1] not in (3, 4):
        raise ValueError(f"comparisons must be rows (i, j, p) or (i, j, p, w), got shape {np.shape(comparisons)}")
    w = c[:, 3] if c.shape[1] == 4 else np.ones(len(c))
    checks = [
        (np.isnan(c[:, 2]), "p is NaN; leave failed comparisons out"),
        (~((c[:, 2] >= 0) & (c[:, 2] <= 1)), "p must be a probability in [0, 1]"),
        (~(np.isfinite(w) & (w > 0)), "w (the number of judgements) must be positive and finite"),
        (~(np.isfinite(c[:, :2]) & (c[:, :2] == np.round(c[:, :2])) & (c[:, :2] >= 0) & (c[:, :2] < n)).all(axis=1),
         f"items must be integers in [0, {n})"),
        (c[:, 0] == c[:, 1], "an item cannot be compared with itself"),
    ]
    for bad, why in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"comparison {k} (i={c[k, 0]:g}, j={c[k, 1]:g}, p={c[k, 2]:g}, w={w[k]:g}): {why}")
    values = np.full(n, np.nan)
    for item, value in (fixed or {}).items():
        if not (0 <= item < n and float(value) == float(value) and np.isfinite(value)):
            raise ValueError(f"fixed item {item!r} = {value!r}: items are integers in [0, {n}), values finite")
        values[item] = value
    return c[:, 0].astype(np.intp), c[:, 1].astype(np.intp), c[:, 2], w, values


class _Problem:
    """f, its gradient and Hessian over the free items, for the comparisons that touch one."""

    def __init__(self, n, first, second, p, w, values, link, prior_var):
        free = np.isnan(values)
        keep = free[first] | free[second]  # a comparison of two fixed items is a constant
        self.first, self.second, self.p, self.w = first[keep], second[keep], p[keep], w[keep]
        self.link, self.prior_var = link, prior_var
        self.base = np.where(free, 0.0, values)
        self.free_idx = np.flatnonzero(free)
        rows = np.arange(keep.sum())
        B = sparse.csr_matrix((np.r_[np.ones(rows.size), -np.ones(rows.size)],
                               (np.r_[rows, rows], np.r_[self.second, self.first])), shape=(rows.size, n))
        self.B = B.tocsc()[:, self.free_idx].tocsr()  # d = s_second - s_first = B x + constant
        self.B_abs = abs(self.B)

    def scores(self, x):
        s = self.base.copy()
        s[self.free_idx] = x
        return s

    def _d(self, x):
        s = self.scores(x)
        return s[self.second] - s[self.first]

    def f(self, x):
        d = self._d(x)
        like = self.p * log_F(d, self.link) + (1 - self.p) * log_F(-d, self.link)
        return -np.sum(self.w * like) + x @ x / (2 * self.prior_var)

    def grad_curv(self, x):
        """Gradient, and each comparison's curvature (the Hessian is B' diag(curv) B + I / prior_var)."""
        d = self._d(x)
        (a1, b1), (a2, b2) = log_F_derivatives(np.stack([d, -d]), self.link)
        g_d = -self.w * (self.p * a1 - (1 - self.p) * b1)
        curv = -self.w * (self.p * a2 + (1 - self.p) * b2)
        return self.B.T @ g_d + x / self.prior_var, curv

    def hessian(self, curv):
        return (self.B.T @ sparse.diags(curv) @ self.B + sparse.identity(self.B.shape[1]) / self.prior_var).tocsc()

    def hessian_diag(self, curv):
        return self.B_abs.T @ curv + 1.0 / self.prior_var

    def newton_step(self, grad, curv, linear, rtol):
        if linear == "direct":
            return -splinalg.spsolve(self.hessian(curv), grad)
        B, v = self.B, self.prior_var
        H = splinalg.LinearOperator((grad.size, grad.size), matvec=lambda y: B.T @ (curv * (B @ y)) + y / v,
                                    dtype=np.float64)
        M = sparse.diags(1.0 / self.hessian_diag(curv))
        # CG from 0 on an SPD system: every iterate is a descent direction, so truncation is safe
        step, _ = splinalg.cg(H, -grad, rtol=rtol, atol=0.0, maxiter=max(50, grad.size), M=M)
        return step


def _neumann_sd(H_diag: np.ndarray, H: sparse.csc_matrix) -> np.ndarray:
    """diag(H^-1) to second order of the Neumann series: H = D - L (L >= 0 off the diagonal), so
    (H^-1)_ii = (1 + sum_j L_ij^2 / (D_i D_j) + ...) / D_i, every dropped term >= 0: a lower bound
    whose error (cycles of length 3 and paths of length 4) is small while each item's own curvature
    (prior and fixed links) dominates its links to other free items; tests/test_joint_map.py measures it."""
    L = -(H - sparse.diags(H_diag)).tocoo()
    second = np.bincount(L.row, L.data ** 2 / H_diag[L.col], minlength=H_diag.size)
    return np.sqrt((1.0 + second / H_diag) / H_diag)


def _neumann_cov(H_diag: np.ndarray, H: sparse.csc_matrix):
    """(H^-1)_ij, i != j, to the same order as `_neumann_sd`: H^-1 ~ D^-1 + D^-1 L D^-1 + D^-1 L D^-1 L D^-1,
    i.e. (L_ij + sum_k L_ik L_kj / D_k) / (D_i D_j) (direct links and paths of length 2). Written with
    A = D^-1/2 L D^-1/2 the truncation is D^-1/2 (I + A + A^2) D^-1/2, positive definite (1 + x + x^2 > 0),
    so every variance of a difference it gives is positive. Returns a function of free-position arrays."""
    L = (sparse.diags(H_diag) - H).tocsr()
    L.eliminate_zeros()
    U = sparse.diags(1.0 / H_diag) @ L  # U_ik = L_ik / D_i
    V = (U @ sparse.diags(1.0 / H_diag)).tocsr()  # V_jk = L_jk / (D_j D_k)
    U = U.tocsr()

    def cov(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        direct = np.asarray(L[a, b]).ravel() / (H_diag[a] * H_diag[b])
        return direct + np.asarray(U[a].multiply(V[b]).sum(axis=1)).ravel()

    return cov


def solve_joint_map(n: int, comparisons, fixed: Mapping[int, float] | None = None, *, link: str = "probit",
                    prior_var: float = 1.0, tol: float = 1e-10, max_iter: int = 100, linear: str = "auto",
                    sd: str = "auto") -> JointMapResult:
    """The exact MAP of f (module docstring) from s = 0: Newton steps with Armijo backtracking, stopping
    once the largest |gradient| over the free items is <= tol (as `solve_map`).

    linear: "direct" (sparse LU), "cg" (Jacobi-preconditioned CG, relative residual min(0.1, max|g|):
    inexact early, exact at the end), or "auto" (direct up to DIRECT_MAX free items).
    sd: "exact" (dense inverse of H), "approx" (`_neumann_sd`), "auto" (exact up to SD_EXACT_MAX), "none".
    """
    check_link_options(link, prior_var)
    if linear not in ("auto", "direct", "cg") or sd not in ("auto", "exact", "approx", "none"):
        raise ValueError(f"linear must be auto|direct|cg and sd auto|exact|approx|none, got {linear!r}, {sd!r}")
    first, second, p, w, values = _parse(n, comparisons, fixed)
    prob = _Problem(n, first, second, p, w, values, link, prior_var)
    n_free = prob.free_idx.size
    linear = ("direct" if n_free <= DIRECT_MAX else "cg") if linear == "auto" else linear
    x = np.zeros(n_free)
    f = prob.f(x)
    grad, curv = prob.grad_curv(x)
    max_grad = float(np.abs(grad).max(initial=0.0))
    n_iter = 0
    while max_grad > tol and n_iter < max_iter:
        n_iter += 1
        step = prob.newton_step(grad, curv, linear, rtol=min(0.1, max_grad))
        slope = grad @ step
        t = 1.0
        for _ in range(60):
            trial = x + t * step
            f_trial = prob.f(trial)
            # near the optimum f changes below rounding; the full Newton step is then safe (convex)
            if f_trial <= f + 1e-4 * t * slope or (t == 1.0 and max_grad < 1e-6):
                break
            t *= 0.5
        else:
            break  # no decrease found: stalled at rounding level
        x, f = trial, f_trial
        grad, curv = prob.grad_curv(x)
        max_grad = float(np.abs(grad).max(initial=0.0))
    sd_free, sd_method, cov_free = _laplace_sd(prob, curv, sd)
    sd_all = np.zeros(n)
    sd_all[prob.free_idx] = sd_free
    return JointMapResult(scores=prob.scores(x), sd=sd_all, free=np.isnan(values), anchored=_anchored(n, first, second, values),
                          converged=max_grad <= tol, max_grad=max_grad, n_iter=n_iter, linear=linear,
                          sd_method=sd_method, _cov=_item_cov(n, prob.free_idx, cov_free))


def _laplace_sd(prob: _Problem, curv: np.ndarray, sd: str):
    """sd over the free items, the method, and the covariance of two free positions (None for sd none)."""
    n_free = prob.free_idx.size
    if sd == "none":
        return np.full(n_free, np.nan), "none", None
    if sd == "exact" or (sd == "auto" and n_free <= SD_EXACT_MAX):
        inv = np.linalg.inv(prob.hessian(curv).toarray())
        return np.sqrt(np.diag(inv)), "exact", lambda a, b: inv[a, b]
    H_diag, H = prob.hessian_diag(curv), prob.hessian(curv)
    return _neumann_sd(H_diag, H), "approx", _neumann_cov(H_diag, H)


def _item_cov(n: int, free_idx: np.ndarray, cov_free):
    """The covariance of two items from that of two free positions; 0 where either item is fixed."""
    if cov_free is None:
        return None
    pos = np.full(n, -1, dtype=np.intp)
    pos[free_idx] = np.arange(free_idx.size)

    def cov(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        a, b = pos[i], pos[j]
        ok = (a >= 0) & (b >= 0)
        out = np.zeros(np.broadcast(a, b).shape)
        if ok.any():
            out[ok] = cov_free(a[ok], b[ok])
        return out

    return cov


def _anchored(n, first, second, values) -> np.ndarray:
    """Items with a chain of comparisons to a fixed item (fixed items included)."""
    graph = sparse.coo_matrix((np.ones(first.size), (first, second)), shape=(n, n))
    _, label = csgraph.connected_components(graph, directed=False)
    return np.isin(label, label[~np.isnan(values)])
