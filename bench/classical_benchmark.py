"""The weight-free classical comparator on the embedded benchmark, through the whole pipeline.

    .venv/bin/python bench/classical_benchmark.py [--size 256] [--sources a,b,...] [--sigma 1.0]

Builds the benchmark fresh in a temporary folder (timed; then timed again as a cache hit, the
baseline for the ratio), selects anchors with Eqn. 4 from the benchmark itself, computes the
anchor matrix with the comparator, scores every image (preference -> matrix -> exact MAP, the
`paper` profile) and prints SRCC/PLCC overall and per distortion family. For reference it also
prints the correlations of the comparator's raw quality index (no anchors, no MAP).

The demo has no subjective std, so Eqn. 4's "lowest std" is a tie everywhere (std = 0) and the
first image of each MOS interval, in manifest order, becomes its anchor.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import Pair, compare_batch, load_comparator  # noqa: E402
from harness.core.anchors import selection_report  # noqa: E402
from harness.run.judging import matrix_from_comparator  # noqa: E402
from harness.data.demo_data import DEFAULT_SIZE, DEFAULT_SOURCES, FAMILIES, build_demo_benchmark  # noqa: E402
from harness.core.metrics import correlations  # noqa: E402
from harness.core.scaling import preference, score_against_anchors  # noqa: E402


def _row(label: str, pred, mos) -> str:
    c = correlations(pred, mos, higher_is_better=True)
    return f"{label:16s} n={c['n']:4d}  SRCC={c['srcc']:.4f}  PLCC={c['plcc']:.4f}  PLCC(logistic)={c['plcc_logistic']:.4f}"


def score_benchmark(comp, ds, alpha: int = 5, beta: int = 1) -> dict:
    """Eqn. 4 anchors from `ds` itself (std 0: no subjective std), anchor matrix from `comp`,
    every image against the anchors (anchor first, test second; docs/method.md, "Presentation order"),
    exact probit MAP."""
    paths = [str(ds.abspath(r)) for r in ds.records]
    mos = np.array([r.mos for r in ds.records])
    rep = selection_report(mos, np.zeros_like(mos), alpha=alpha, beta=beta)
    anchors = [paths[i] for i in rep.indices]
    A = matrix_from_comparator(comp, anchors)
    pairs = [Pair(a, x) for x in paths for a in anchors]
    res = compare_batch(comp, pairs)
    b = preference(res.logprobs).reshape(len(paths), len(anchors))
    scored = score_against_anchors(A, b, link="probit", scale="latent")
    return {"paths": paths, "mos": mos, "selection": rep, "anchor_matrix": A, "scored": scored,
            "n_comparisons": len(pairs) + len(anchors) * (len(anchors) - 1), "n_failed": int((~res.ok).sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--sources", default=",".join(DEFAULT_SOURCES))
    ap.add_argument("--sigma", type=float, default=1.0, help="the comparator's index uncertainty (level units)")
    args = ap.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s]

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = build_demo_benchmark(tmp, size=args.size, sources=sources)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = build_demo_benchmark(tmp, size=args.size, sources=sources)
        t_hit = time.perf_counter() - t0
        print(f"benchmark: {len(ds)} images ({len(sources)} photos x (1 pristine + {len(FAMILIES)} families x 5 levels)), "
              f"longest side {args.size} px, {os.cpu_count()} CPUs visible")
        print(f"generation (fresh): {t_gen:.2f} s   cache hit: {t_hit:.3f} s   ratio fresh/hit: {t_gen / t_hit:.0f}x")

        comp = load_comparator("classical", sigma=args.sigma)
        t0 = time.perf_counter()
        run = score_benchmark(comp, ds)
        t_pipe = time.perf_counter() - t0
        mos, scored, rep = run["mos"], run["scored"], run["selection"]
        paths = run["paths"]

        print("anchors (Eqn. 4, alpha=5, beta=1): " + ", ".join(
            f"{ds.records[i].path} (MOS {mos[i]:g})" for i in rep.indices))
        print(f"pipeline: {run['n_comparisons']} comparisons, {run['n_failed']} failed, "
              f"MAP converged {int(scored.converged.sum())}/{len(paths)}, {t_pipe:.2f} s "
              f"(image measures: {comp.n_measured} computed once each)")
        print("\nfull pipeline (anchors + exact MAP, paper profile):")
        print(_row("overall", scored.score, mos))
        index = np.array([comp.quality_index(p) for p in paths])
        for fam in FAMILIES:
            keep = np.array([fam in r.splits for r in ds.records])
            print(_row(fam, scored.score[keep], mos[keep]))
        print("\nreference: raw quality index, no anchors:")
        print(_row("overall", index, mos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
