"""Does the weight-free classical comparator generalise? Its SRCC on a held-out set against the demo's.

    .venv/bin/python bench/heldout_classical.py [--size 256]

The held-out set (`harness.data.heldout_data`) has photographs the demo does not test on and six
distortion families the demo does not use (pixelation, quantisation, ringing, chromatic aberration,
motion blur, colour saturation); its "MOS" is the synthetic severity proxy 5 - level, not human opinion.
Both sets go through the same pipeline as bench/classical_benchmark.py (Eqn. 4 anchors from the set
itself, alpha 5, beta 1, the comparator's own anchor matrix, exact probit MAP) and print SRCC and PLCC
overall and per family, and the raw quality index's (no anchors, no MAP) for reference. Goal: SRCC >= 0.75
overall on the held-out set.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import load_comparator  # noqa: E402
from bench.classical_benchmark import _row, score_benchmark  # noqa: E402
from harness.data.demo_data import DEFAULT_SIZE, build_demo_benchmark  # noqa: E402
from harness.data.heldout_data import HELDOUT_SOURCES, build_heldout_benchmark  # noqa: E402


def report(name: str, ds) -> None:
    comp = load_comparator("classical")
    run = score_benchmark(comp, ds)
    mos, scored = run["mos"], run["scored"]
    index = np.array([comp.quality_index(p) for p in run["paths"]])
    print(f"\n{name}: {len(ds)} images; anchors (Eqn. 4): "
          + ", ".join(ds.records[i].path for i in run["selection"].indices))
    print("  anchors + exact MAP (paper profile):")
    print("  " + _row("overall", scored.score, mos))
    for fam in ds.splits:
        keep = np.array([fam in r.splits for r in ds.records])
        print("  " + _row(fam, scored.score[keep], mos[keep]))
    print("  raw quality index, no anchors:")
    print("  " + _row("overall", index, mos))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report("demo (the set the constants were read off)", build_demo_benchmark(Path(tmp) / "demo", size=a.size))
        report(f"held-out ({', '.join(HELDOUT_SOURCES)}; severity proxy, synthetic)",
               build_heldout_benchmark(Path(tmp) / "heldout", size=a.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
