"""Active comparison designs: which pairs to judge next (docs/method.md, "Comparison designs").

The value of comparing items i and j is the mutual information between the comparison's binary outcome y
(P(y = 1 | d) = F(d), d = s_j - s_i, F the link) and d under the current Gaussian (Laplace) posterior
d ~ N(mu, var):

    EIG(mu, var) = h( E[F(d)] ) - E[ h(F(d)) ],     h(p) = -p log p - (1 - p) log(1 - p)  (nats)

the quantity ASAP (Mikhailiuk et al., 2020) and BALD (Houlsby et al., 2011) maximise. Both expectations are
computed by Gauss-Hermite quadrature, for the probit and the logit link alike (no closed-form approximation).
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from harness.core.scaling import log_F, log_F_derivatives

#: quadrature nodes: the integrands are smooth; 48 nodes agree with adaptive integration to 1e-9 for var <= 4
#: and 1e-5 at var 9 (tests/test_designs.py), far below the gaps between candidates that matter
GH_NODES = 48
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(GH_NODES)  # weight exp(-x^2 / 2)
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)
#: test items each test item is paired with as candidates: its nearest neighbours by current score
NEIGHBOURS = 10


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-300, 1.0)
    r = np.clip(1.0 - p, 1e-300, 1.0)
    return -(p * np.log(q) + (1.0 - p) * np.log(r))


def expected_information_gain(mu, var, link: str = "probit") -> np.ndarray:
    """EIG (nats) of one comparison whose score difference d ~ N(mu, var) (module docstring)."""
    mu, sd = np.broadcast_arrays(np.asarray(mu, dtype=np.float64), np.sqrt(np.asarray(var, dtype=np.float64)))
    F = np.exp(log_F(mu[..., None] + sd[..., None] * _NODES, link))
    return _entropy(F @ _WEIGHTS) - _entropy(F) @ _WEIGHTS


def expected_curvature(mu, var, link: str = "probit") -> np.ndarray:
    """E[kappa(d)], d ~ N(mu, var): the curvature one comparison adds to -log posterior along d when its
    preference is p = F(d), kappa(d) = -(F(d) (log F)''(d) + F(-d) (log F)''(-d)) (the joint MAP's Hessian
    term, equal to the outcome's Fisher information), averaged by the same quadrature as the EIG."""
    mu, sd = np.broadcast_arrays(np.asarray(mu, dtype=np.float64), np.sqrt(np.asarray(var, dtype=np.float64)))
    d = mu[..., None] + sd[..., None] * _NODES
    (_, a2), (_, b2) = log_F_derivatives(d, link), log_F_derivatives(-d, link)
    kappa = -(np.exp(log_F(d, link)) * a2 + np.exp(log_F(-d, link)) * b2)
    return kappa @ _WEIGHTS


def candidate_pairs(mean: np.ndarray, fixed: np.ndarray, key: np.ndarray, linked: np.ndarray,
                    neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Unordered candidate pairs (k, 2), smaller index first: every free item with every fixed item, and each
    free item with the `neighbours` nearest `linked` free items in the order of (score, key) (informative
    test-vs-test pairs have close scores; `key` breaks ties, e.g. among items still at the prior mean). A pair
    of two items not linked to a fixed item is never a candidate: it would leave both off the anchors' scale."""
    free = np.flatnonzero(~fixed)
    anchors = np.flatnonzero(fixed)
    parts = [np.column_stack([np.repeat(free, anchors.size), np.tile(anchors, free.size)])]
    ranked = free[np.lexsort((key[free], mean[free]))]
    rank = np.empty(mean.size, dtype=np.intp)
    rank[ranked] = np.arange(ranked.size)
    near = ranked[linked[ranked]]
    if near.size and neighbours > 0:
        half = max(1, neighbours // 2)
        pos = np.searchsorted(rank[near], rank[free])
        idx = pos[:, None] + np.arange(-half, half + 1)
        ok = (idx >= 0) & (idx < near.size)
        partner = near[np.clip(idx, 0, near.size - 1)]
        ok &= partner != free[:, None]
        parts.append(np.column_stack([np.broadcast_to(free[:, None], idx.shape)[ok], partner[ok]]))
    pairs = np.concatenate(parts).astype(np.intp)
    return np.unique(np.sort(pairs, axis=1), axis=0)


def select_pairs(mean, sd, fixed, n_pairs: int, *, judged=frozenset(), linked=None, link: str = "probit", seed=0,
                 neighbours: int = NEIGHBOURS, difference_var=None) -> list[tuple[int, int]]:
    """The `n_pairs` candidate pairs (`candidate_pairs`; `linked`: the items with a chain of comparisons to a
    fixed item, fixed items included; None: all) not in `judged` (unordered (i, j), i < j), chosen greedily:
    first pairs that link a not yet linked item (every image gets its first comparison before any gets a
    further one; a linked free item is the partner of at most one of them, else a round's new items all hang on
    the few items nearest the prior mean and share their error), then the pair of highest EIG, where each chosen
    pair lowers the variances of its two items as its judgement would (`_BatchPosterior`): a batch spreads over
    the items as far as their remaining uncertainty says, not n_pairs comparisons of the one most uncertain
    item. `difference_var(i, j)`: the posterior variance of s_j - s_i (e.g. `JointMapResult.difference_var`,
    covariance included); None: sd_i^2 + sd_j^2. Ties go by a random key drawn from `seed`, so the choice is a
    function of the posterior and the seed. Each pair comes back in presentation order: a fixed item first; of
    two free items, the one of smaller key."""
    mean, sd, fixed = np.asarray(mean, float), np.asarray(sd, float), np.asarray(fixed, bool)
    linked = np.ones(mean.size, bool) if linked is None else np.asarray(linked, bool) | fixed
    rng = np.random.default_rng(seed)
    key = rng.permutation(mean.size)
    cand = candidate_pairs(mean, fixed, key, linked, neighbours)
    if judged:
        done = np.array(sorted(judged), dtype=np.intp).reshape(-1, 2)
        width = mean.size
        cand = cand[~np.isin(cand[:, 0] * width + cand[:, 1], done[:, 0] * width + done[:, 1])]
    post = _BatchPosterior(mean, sd, cand, difference_var, link)
    tie = rng.permutation(len(cand))
    linked, lent = linked.copy(), np.zeros(mean.size, dtype=bool)

    def first(a, b) -> bool:  # links an unlinked item, through an anchor or a test item not yet lent this round
        return bool((~linked[a] | ~linked[b]) & ~(lent[a] | lent[b]))

    heap = [(-first(a, b), -g, int(t), k, 0) for k, ((a, b), g, t) in
            enumerate(zip(cand, post.gain(np.arange(len(cand))), tie))]
    heapq.heapify(heap)
    chosen: list[tuple[int, int]] = []
    while heap and len(chosen) < n_pairs:
        prio, _, t, k, stamp = heapq.heappop(heap)
        a, b = cand[k]
        fresh = (-first(a, b), post.stamp(k))
        if (prio, stamp) != fresh:  # priority and gain only fall: re-rank a stale entry
            heapq.heappush(heap, (fresh[0], -float(post.gain(np.array([k]))[0]), t, k, fresh[1]))
            continue
        if prio:
            lent[[a, b]] = linked[[a, b]] & ~fixed[[a, b]]
        linked[[a, b]] = True
        post.judge(k)
        chosen.append((int(a), int(b)))
    return [_presentation(a, b, fixed, key) for a, b in chosen]


class _BatchPosterior:
    """The posterior of a batch in the making. Judging candidate (a, b), with the expected curvature
    kbar = E[kappa(d)] (`expected_curvature`) is a rank-one update of the Laplace precision along e_b - e_a;
    its effect on the two marginal variances is exact,

        var_a' = var_a - kbar (var_a - cov_ab)^2 / (1 + kbar v_ab),   v_ab = var_a + var_b - 2 cov_ab

    (and likewise for b), while other covariances are carried at their correlation coefficient: the
    difference variance of a candidate (i, j) is var_i + var_j - 2 rho_ij sd_i sd_j, rho_ij from the posterior
    before the batch. Means are not moved (the outcome is unknown)."""

    def __init__(self, mean, sd, cand, difference_var, link):
        self.mean, self.link = mean, link
        self.var = sd ** 2
        self.i, self.j = cand[:, 0], cand[:, 1]
        if difference_var is None or not len(cand):
            self.rho = np.zeros(len(cand))
        else:
            sds = sd[self.i] * sd[self.j]
            cov = 0.5 * (self.var[self.i] + self.var[self.j] - difference_var(self.i, self.j))
            self.rho = np.where(sds > 0, cov / np.where(sds > 0, sds, 1.0), 0.0)
        self.version = np.zeros(mean.size, dtype=np.int64)

    def _moments(self, k):
        i, j = self.i[k], self.j[k]
        cov = self.rho[k] * np.sqrt(self.var[i] * self.var[j])
        return i, j, self.mean[j] - self.mean[i], np.maximum(self.var[i] + self.var[j] - 2 * cov, 0.0), cov

    def gain(self, k):
        _, _, mu, v, _ = self._moments(k)
        return expected_information_gain(mu, v, self.link)

    def stamp(self, k) -> int:
        return int(self.version[self.i[k]] + self.version[self.j[k]])

    def judge(self, k):
        a, b, mu, v, cov = (np.asarray(x).item() for x in self._moments(k))
        moved = [self.var[a] > 0, self.var[b] > 0]
        kbar = float(expected_curvature(mu, v, self.link))
        shrink = kbar / (1.0 + kbar * v)
        self.var[a], self.var[b] = (self.var[a] - shrink * (self.var[a] - cov) ** 2,
                                    self.var[b] - shrink * (self.var[b] - cov) ** 2)
        self.version[[a, b]] += moved  # a fixed item (var 0) never moves: its candidates stay fresh


def _presentation(a: int, b: int, fixed: np.ndarray, key: np.ndarray) -> tuple[int, int]:
    if fixed[a] != fixed[b]:
        return (a, b) if fixed[a] else (b, a)
    return (a, b) if key[a] < key[b] else (b, a)
