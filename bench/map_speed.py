"""Exact batched MAP vs the official per-image Adam loop: N test images x the 5 KonIQ anchors.

Prints the wall time of each, the ratio, and the worst max |gradient| of each on the same objective
(the exact MAP objective; the official loss adds only a clamp at 1e-6 that is inactive here).
The official loop runs with torch when it is importable (as the official code does), else with the
project's NumPy replica run one image at a time; the output says which. The torch loop costs tens
of milliseconds per image, so by default it runs on the first --loop-images images and the total
for N is extrapolated linearly (each image is an independent, identical-cost loop); --loop-images N
measures it in full.

    python bench/map_speed.py [--n 10000] [--loop-images 500] [--link logit] [--steps 100]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from harness.core.anchors import koniq_default
from harness.core.official import official_scores, official_scores_torch
from harness.core.scaling import build_matrices, map_gradient, score_against_anchors


def _timed(fn, repeats=1):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _worst_grad(A, b, latent, link):
    C, observed = build_matrices(A, b)
    return float(np.max(np.abs(map_gradient(C, latent, observed, link=link))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="test images")
    ap.add_argument("--loop-images", type=int, default=500, help="images the per-image loop really runs")
    ap.add_argument("--link", choices=["logit", "probit"], default="logit")
    ap.add_argument("--steps", type=int, default=100, help="Adam steps of the official loop")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    A = koniq_default().matrix
    rng = np.random.default_rng(args.seed)
    # half near 0.5 (the official T = 100 regime), half spread over [0, 1] (the paper's T = 1 regime)
    b = np.concatenate([rng.uniform(0.4, 0.6, size=(args.n - args.n // 2, 5)),
                        rng.uniform(0.0, 1.0, size=(args.n // 2, 5))])
    b = b[rng.permutation(args.n)]
    print(f"{args.n} test images x 5 anchors (KonIQ default matrix), link={args.link}, "
          f"official loop: Adam lr 0.1, {args.steps} steps")

    score_against_anchors(A, b[:100], link=args.link)  # warm-up: imports, first-call allocations
    t_exact, exact = _timed(lambda: score_against_anchors(A, b, link=args.link, scale="minmax"), 3)
    print(f"exact batched Newton MAP : {t_exact:8.3f} s (median of 3)  worst max_grad {np.max(exact.max_grad):.2e}"
          f"  converged {int(exact.converged.sum())}/{args.n}")

    k = min(args.loop_images, args.n)
    try:
        import torch  # noqa: F401
        loop, backend = official_scores_torch, "torch (autograd + torch.optim.Adam, as the official code)"
    except ImportError:
        backend = "NumPy replica, one image per call (torch not importable)"

        def loop(bb, AA, **kw):
            rows = [official_scores(bb[i:i + 1], AA, **kw) for i in range(len(bb))]
            return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    t_loop, (loop_scores, loop_latent) = _timed(lambda: loop(b[:k], A, link=args.link, steps=args.steps))
    t_loop_n = t_loop * args.n / k
    how = "measured" if k == args.n else f"measured on {k} images, x{args.n / k:.1f} extrapolated"
    print(f"official per-image loop  : {t_loop_n:8.3f} s ({how}; {1e3 * t_loop / k:.2f} ms/image)  "
          f"worst max_grad {_worst_grad(A, b[:k], loop_latent, args.link):.2e}  [{backend}]")

    t_rep, (rep_scores, rep_latent) = _timed(lambda: official_scores(b, A, link=args.link, steps=args.steps))
    print(f"official, NumPy batched  : {t_rep:8.3f} s (all {args.n})  "
          f"worst max_grad {_worst_grad(A, b, rep_latent, args.link):.2e}")

    print(f"ratio loop / exact       : {t_loop_n / t_exact:8.1f}x")
    print(f"ratio NumPy batched Adam / exact: {t_rep / t_exact:.1f}x")
    err = np.abs(loop_scores - exact.score[:k])
    print(f"0-100 score, official loop vs exact optimum: max |diff| {err.max():.3f}, mean {err.mean():.3f} "
          f"(first {k} images); NumPy replica vs loop: max |diff| {np.max(np.abs(rep_scores[:k] - loop_scores)):.1e}")


if __name__ == "__main__":
    main()
