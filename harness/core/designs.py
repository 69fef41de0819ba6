"""Active comparison designs: which pairs to judge next (docs/method.md, "Comparison designs").

The value of comparing items i and j is the mutual information between the comparison's binary outcome y
(P(y = 1 | d) = F(d), d = s_j - s_i, F the link) and d under the current Gaussian (Laplace) posterior
d ~ N(mu, var):

    EIG(mu, var) = h( E[F(d)] ) - E[ h(F(d)) ],     h(p) = -p log p - (1 - p) log(1 - p)  (nats)

the quantity ASAP (Mikhailiuk et al., 2020) and BALD (Houlsby et al., 2011) maximise. Both expectations are
computed by Gauss-Hermite quadrature, for the probit and the logit link alike (no closed-form approximation).
"""
from __future__ import annotations

import math

import numpy as np

from harness.core.scaling import log_F

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
                 neighbours: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """The `n_pairs` candidate pairs (`candidate_pairs`; `linked`: the items with a chain of comparisons to a
    fixed item, fixed items included; None: all) not in `judged` (unordered (i, j), i < j): first those that link
    a not yet linked item (every image gets its first comparison before any gets a further one), then by EIG;
    each free item in at most ceil(2 n_pairs / n_free) of them where enough pairs allow (a batch that spreads
    over the items, not n_pairs comparisons of the one most uncertain item). Ties go by a random key drawn from
    `seed`, so the choice is a function of the posterior and the seed. Each pair comes back in presentation
    order: a fixed item first; of two free items, the one of smaller key."""
    mean, sd, fixed = np.asarray(mean, float), np.asarray(sd, float), np.asarray(fixed, bool)
    linked = np.ones(mean.size, bool) if linked is None else np.asarray(linked, bool) | fixed
    rng = np.random.default_rng(seed)
    key = rng.permutation(mean.size)
    cand = candidate_pairs(mean, fixed, key, linked, neighbours)
    if judged:
        done = np.array(sorted(judged), dtype=np.intp).reshape(-1, 2)
        width = mean.size
        cand = cand[~np.isin(cand[:, 0] * width + cand[:, 1], done[:, 0] * width + done[:, 1])]
    i, j = cand[:, 0], cand[:, 1]
    gain = expected_information_gain(mean[j] - mean[i], sd[i] ** 2 + sd[j] ** 2, link)
    first = ~linked[i] | ~linked[j]
    ranked = cand[np.lexsort((rng.permutation(len(cand)), -gain, ~first))]
    n_free = max(int((~fixed).sum()), 1)
    cap = max(1, math.ceil(2 * n_pairs / n_free))
    uses = np.zeros(mean.size, dtype=np.int64)
    chosen: list[tuple[int, int]] = []
    taken = np.zeros(len(ranked), dtype=bool)
    for limit in (cap, None):  # a second pass without the cap fills what the cap left short
        for k, (a, b) in enumerate(ranked):
            if len(chosen) == n_pairs:
                break
            if taken[k] or (limit is not None and max(uses[a], uses[b]) >= limit):
                continue
            taken[k] = True
            uses[a] += not fixed[a]  # fixed items (anchors) are never capped
            uses[b] += not fixed[b]
            chosen.append((int(a), int(b)))
    return [_presentation(a, b, fixed, key) for a, b in chosen]


def _presentation(a: int, b: int, fixed: np.ndarray, key: np.ndarray) -> tuple[int, int]:
    if fixed[a] != fixed[b]:
        return (a, b) if fixed[a] else (b, a)
    return (a, b) if key[a] < key[b] else (b, a)
