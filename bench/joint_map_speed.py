"""The sparse joint MAP on designs of N test images: 5 fixed anchors + k random test-vs-test links each.

Per N it prints: the joint solve (time, Newton steps, max |gradient|, peak memory of its arrays by
tracemalloc, and SRCC against the planted truth); as baselines in the same run, the per-image dense solver
(`score_against_anchors`, batched Newton) and the joint solver on the anchors-only design, with ratios;
where it fits (N <= --dense-max), the dense solver on the whole design as one matrix (anchors free, their
block included) against the joint solver on that identical problem, and the sd approximation's error.
Preferences come from a planted Thurstone world: p = F(q_j - q_i + noise), q ~ N(0, 1).

    python bench/joint_map_speed.py [--sizes 1000 10000 100000] [--links 5] [--link probit] [--noise 0.5]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy import stats

from harness.core.anchors import koniq_default
from harness.core.joint_map import comparisons_from_matrix, solve_joint_map
from harness.core.scaling import score_against_anchors, solve_map


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def design(rng, N, k, anchor_values, link, noise):
    """Items 0..4 the anchors, 5.. the test images: rows (i, j, p), the anchor rows first."""
    F = stats.norm.cdf if link == "probit" else stats.logistic.cdf
    m = anchor_values.size
    q = np.r_[anchor_values, rng.normal(0, 1, N)]
    tests = np.arange(m, m + N)
    i = np.r_[np.tile(np.arange(m), N), rng.integers(m, m + N, k * N)]
    j = np.r_[np.repeat(tests, m), rng.integers(m, m + N, k * N)]
    keep = i != j
    i, j = i[keep], j[keep]
    p = F(q[j] - q[i] + rng.normal(0, noise, i.size))
    return np.column_stack([i, j, p]), q


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--links", type=int, default=5, help="random test-vs-test links per test image")
    ap.add_argument("--link", choices=["probit", "logit"], default="probit")
    ap.add_argument("--noise", type=float, default=0.5, help="sd of the planted judgement noise")
    ap.add_argument("--dense-max", type=int, default=1000, help="largest N for the dense whole-design baseline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    A = koniq_default().matrix
    m = len(A)
    anchors = solve_map(A, link=args.link).scores[0]
    fixed = dict(enumerate(anchors))
    solve_joint_map(100, [(0, 1, 0.5)], link=args.link)  # warm-up: imports
    print(f"5 fixed anchors (KonIQ matrix, anchor-only MAP) + {args.links} test-vs-test links per image, "
          f"link={args.link}, noise sd {args.noise}")
    for N in args.sizes:
        comps, q = design(rng, N, args.links, anchors, args.link, args.noise)
        n = m + N
        t_joint, joint = _timed(lambda: solve_joint_map(n, comps, fixed, link=args.link, sd="none"))
        t_sd, joint = _timed(lambda: solve_joint_map(n, comps, fixed, link=args.link))
        mem = _peak_mib(lambda: solve_joint_map(n, comps, fixed, link=args.link))
        srcc = stats.spearmanr(joint.scores[m:], q[m:])[0]
        print(f"N={N:>7}: {len(comps):>9} comparisons  joint sparse MAP {t_joint:7.2f} s  {joint.n_iter} Newton "
              f"steps ({joint.linear})  max_grad {joint.max_grad:.1e}  with sd ({joint.sd_method}) {t_sd:7.2f} s  peak "
              f"{mem:7.1f} MiB  SRCC {srcc:.4f}")
        b = comps[:m * N, 2].reshape(N, m)  # the anchor links: b[t, a] = P(test t beats anchor a)
        t_dense, per_image = _timed(lambda: score_against_anchors(A, b, link=args.link))
        t_anch, only = _timed(lambda: solve_joint_map(n, comps[:m * N], fixed, link=args.link, sd="none"))
        print(f"           anchors-only design: per-image dense MAP (with sd) {t_dense:7.2f} s, joint sparse MAP {t_anch:7.2f} s (no sd)"
              f" (ratio dense/sparse {t_dense / t_anch:.2f}); whole design (no sd) / per-image dense {t_joint / t_dense:.2f}x;"
              f" SRCC per-image {stats.spearmanr(per_image.latent, q[m:])[0]:.4f}, "
              f"anchors-only joint {stats.spearmanr(only.scores[m:], q[m:])[0]:.4f}")
        if N <= args.dense_max:
            i, j = comps[:, 0].astype(int), comps[:, 1].astype(int)
            C, obs = np.full((n, n), 0.5), np.zeros((n, n), dtype=bool)
            C[j, i], C[i, j] = comps[:, 2], 1 - comps[:, 2]  # a pair drawn twice keeps its last judgement
            obs[i, j] = obs[j, i] = True
            C[:m, :m], obs[:m, :m] = A, ~np.eye(m, dtype=bool)
            t_sp, sp = _timed(lambda: solve_joint_map(n, comparisons_from_matrix(C, obs), link=args.link, sd="none"))
            t_d, dense = _timed(lambda: solve_map(C, obs, link=args.link, allow_disconnected=True))
            approx = solve_joint_map(n, comps, fixed, link=args.link, sd="approx")
            exact = solve_joint_map(n, comps, fixed, link=args.link, sd="exact")
            rel = (exact.sd - approx.sd)[m:] / exact.sd[m:]
            print(f"           whole design as one dense matrix ({n}x{n}, anchors free): dense MAP with sd {t_d:7.2f} s, "
                  f"joint sparse without {t_sp:7.3f} s, ratio {t_d / t_sp:.0f}x, max |score diff| "
                  f"{np.max(np.abs(dense.scores[0] - sp.scores)):.1e}; sd approximation: max {rel.max():.2%} low, "
                  f"median {np.median(rel):.2%}")


if __name__ == "__main__":
    main()
