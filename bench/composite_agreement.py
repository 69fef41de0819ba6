"""Composite vs two-image: do the two protocols of one two-image family agree in direction?

On the embedded benchmark (the classical comparator's images), the same pairs are judged by one
tiny two-image family twice, with both images in the prompt (pairing=two-image) and side by side in one
image (pairing=composite), and by the classical comparator. Printed: the share of pairs where the
two protocols prefer the same image (P(second better) on the same side of 1/2), the Spearman
correlation of their preferences, and each protocol's direction agreement with the classical
comparator and with the MOS order.

    PYTHONPATH=$PWD python bench/composite_agreement.py [--family qwen2_vl] [--pairs 64] [--size 128]

What the figure measures: the tiny models are RANDOM, so their agreement with the MOS order or the
classical comparator is chance (~0.5), and the two-image/composite agreement says how much the
protocol change alone moves a random model's verdicts (same weights, same level words, different
prompt and pixels); it is a sanity check of the plumbing, not a claim about real models. The same
command with a real checkpoint (--model PATH) measures the real thing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import Pair, compare_batch, load_comparator  # noqa: E402
from harness.core.scaling import preference  # noqa: E402
from harness.data.demo_data import build_demo_benchmark  # noqa: E402
from harness.tools.tiny_vlm import build_tiny_vlm  # noqa: E402


def direction_agreement(p, q) -> float:
    """Share of pairs (both finite, neither exactly 1/2) where p and q prefer the same image."""
    ok = np.isfinite(p) & np.isfinite(q) & (p != 0.5) & (q != 0.5)
    return float(np.mean((p[ok] > 0.5) == (q[ok] > 0.5)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="qwen2_vl", help="a tiny two-image family (harness.tools.tiny_vlm)")
    ap.add_argument("--model", help="a real checkpoint folder instead of the tiny family")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--size", type=int, default=128, help="the benchmark's image size (longest side)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from scipy.stats import spearmanr

    with tempfile.TemporaryDirectory(prefix="c2s-composite-") as tmp:
        ds = build_demo_benchmark(Path(tmp) / "demo", size=a.size)
        recs = [r for r in ds.records if r.mos is not None]
        rng = np.random.default_rng(a.seed)
        picks = [rng.choice(len(recs), 2, replace=False) for _ in range(a.pairs)]
        pairs = [Pair(str(ds.abspath(recs[i])), str(ds.abspath(recs[j]))) for i, j in picks]
        mos_dir = np.array([recs[j].mos - recs[i].mos for i, j in picks])
        model = a.model or str(build_tiny_vlm(a.family, Path(tmp) / a.family))
        prefs, secs = {}, {}
        runs = (("two-image", f"hf:{model}", {}), ("composite", f"hf:{model}", {"pairing": "composite"}),
                ("classical", "classical", {}))
        for name, spec, opts in runs:
            comp = load_comparator(spec, **opts)
            t0 = time.perf_counter()
            prefs[name] = preference(compare_batch(comp, pairs).logprobs)
            secs[name] = time.perf_counter() - t0
        mos = np.where(mos_dir > 0, 1.0, np.where(mos_dir < 0, 0.0, 0.5))
    two, comp_ = prefs["two-image"], prefs["composite"]
    print(f"{len(pairs)} pairs of the embedded benchmark ({a.size} px), model {a.model or 'tiny ' + a.family}")
    print(f"two-image vs composite: direction agreement {direction_agreement(two, comp_):.3f}, "
          f"Spearman {spearmanr(two, comp_).statistic:.3f}")
    for name in ("two-image", "composite", "classical"):
        p = prefs[name]
        vs = "" if name == "classical" else f"vs classical {direction_agreement(p, prefs['classical']):.3f}   "
        # the base rate: a model that always prefers one side agrees with another such model trivially
        print(f"{name:10s} {vs}vs MOS order {direction_agreement(p, mos):.3f}   "
              f"prefers the second in {np.mean(p > 0.5):.3f} of pairs   ({secs[name]:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
