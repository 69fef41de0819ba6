"""Why calibrated preferences are scored under a wide prior, and what calibration still cannot promise
(docs/method.md, "Calibration"): direct computations on the planted images and anchors of bench/calibration.py.

The simulator judges every test image against the five Eqn. 4 anchors (anchor first, as a run does) and the anchor
block; the same log-probs are then scored several ways, SRCC and PLCC (after the logistic; raw in brackets) against
the planted truth:
- the calibrated simulator (confidence 1, i.e. the exact temperature) through the runner's scoring
  (`score_tests`, paper profile) with prior_var 1 (the paper's), sd_a^2 (the anchors' spread in calibrated units,
  empirical Bayes), (10 sd_a)^2 (what --calibrate uses) and (100 sd_a)^2;
- the 3x under-confident simulator, uncalibrated, prior_var 1 (the comparison calibration is judged against);
- oracles that place the anchors at their true MOS and score each image alone in MOS units with the pair scale
  sqrt(s_x^2 + s_a^2): the soft-count MLE and least squares on probits Phi^-1(p), each with every image's own
  rating std (which no scorer knows) and with one common std, the mean (Thurstone Case V, what a scorer can do).

    python bench/calibration_prior.py [--n 1000] [--noise 0 0.3] [--std-spread 0.2] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_ndtr, ndtri

from adapters.base import Pair
from harness.core.anchors import AnchorSet, anchor_pairs, select_anchors
from harness.core.calibration import PRIOR_SD_FACTOR, anchor_spread, calibrated_prior_var
from harness.core.metrics import correlations
from harness.core.profiles import get_profile
from harness.data.datasets import load_plain_csv
from harness.run.scoring import pair_preference, score_tests
from harness.tools.planted import PlantedThurstone, write_planted_dataset

#: probabilities are kept this far from 0 and 1 before Phi^-1 (least squares on probits only)
PROBIT_FLOOR = 1e-12


def judge(paths, anchors: AnchorSet, confidence: float, noise: float, seed: int) -> dict:
    pairs = [Pair(a, x) for x in paths for a in anchors.images] + anchor_pairs(anchors.images)
    sim = PlantedThurstone(confidence=confidence, noise=noise, seed=seed)
    return dict(zip(pairs, sim.compare_detailed(pairs).logprobs))


def map_scores(paths, anchors, lookup, prior_var: float) -> np.ndarray:
    profile = get_profile("paper", prior_var=prior_var)
    return score_tests(list(paths), anchors, lookup, {}, profile, "soft", "anchor_first").score


def oracle(b: np.ndarray, anchors: AnchorSet, rating_std: np.ndarray, how: str) -> np.ndarray:
    """Each image's MOS-unit estimate against anchors fixed at their MOS, pair scale h = hypot(s_x, s_a)."""
    q_a = anchors.mos
    h = np.hypot(rating_std[:, None], anchors.std[None, :])
    if how == "probit":
        return np.mean(q_a + h * ndtri(np.clip(b, PROBIT_FLOOR, 1 - PROBIT_FLOOR)), axis=1)
    out = np.empty(len(b))
    for k, (row, hk) in enumerate(zip(b, h)):
        def nll(x, row=row, hk=hk):
            z = (x - q_a) / hk
            return -np.sum(row * log_ndtr(z) + (1 - row) * log_ndtr(-z))
        out[k] = minimize_scalar(nll, bounds=(q_a.min() - 20, q_a.max() + 20), method="bounded",
                                 options={"xatol": 1e-10}).x
    return out


def row(label: str, score, truth) -> str:
    c = correlations(score, truth)
    return f"| {label} | {c['srcc']:.4f} | {c['plcc_logistic']:.4f} ({c['plcc']:.4f}) |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3])
    ap.add_argument("--std-spread", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_planted_dataset(Path(tmp), a.n, seed=0, std_spread=a.std_spread)
        ds = load_plain_csv(manifest, tmp)
        paths = [str(ds.abspath(r)) for r in ds.records]
        mos = np.array([r.mos for r in ds.records])
        std = np.array([r.std for r in ds.records])
        idx = select_anchors(mos, std, 5, 1)
        anchors = AnchorSet([paths[i] for i in idx], mos[idx], std[idx])
        wide, sd2 = calibrated_prior_var(anchors, 1.0), anchor_spread(anchors)
        print(f"{a.n} planted images, rating std spread {a.std_spread:g}, anchors at MOS {np.round(anchors.mos, 2)}; "
              f"sd_a^2 = {sd2:.3g}; simulator seed {a.seed}\n")
        for noise in a.noise:
            calibrated = judge(paths, anchors, 1.0, noise, a.seed)
            under = judge(paths, anchors, 1 / 3, noise, a.seed)
            b = pair_preference(np.array([calibrated[Pair(x_a, x)] for x in paths for x_a in anchors.images]),
                                "soft", 1.0).reshape(len(paths), -1)
            common = np.full(len(paths), std.mean())
            print(f"noise {noise:g}\n\n| scoring | SRCC | PLCC (raw) |\n|---|---:|---:|")
            for label, pv in (("prior_var 1 (the paper's)", 1.0), ("prior_var sd_a^2", sd2),
                              (f"prior_var ({PRIOR_SD_FACTOR:g} sd_a)^2 (--calibrate)", wide),
                              (f"prior_var ({10 * PRIOR_SD_FACTOR:g} sd_a)^2", 100 * wide)):
                print(row(f"calibrated, {label}", map_scores(paths, anchors, calibrated, pv), mos))
            print(row("3x under-confident, uncalibrated, prior_var 1", map_scores(paths, anchors, under, 1.0), mos))
            for how, name in (("soft", "soft-count MLE"), ("probit", "least squares on probits")):
                print(row(f"oracle {name}, each image's own std", oracle(b, anchors, std, how), mos))
                print(row(f"oracle {name}, one common std (Case V)", oracle(b, anchors, common, how), mos))
            print()


if __name__ == "__main__":
    main()
