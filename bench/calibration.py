"""--calibrate on the planted Thurstone simulator: SRCC and PLCC against the planted truth with and without it.

A planted dataset of --n images (harness.tools.planted, rating std 0.5 times exp(N(0, --std-spread^2)) per
image) is scored by the simulator at confidence 3 (three times over-confident), 1/3 (three times
under-confident) and 1 (calibrated, the control), per-pair perception noise --noise, under the paper
profile with Eqn. 4 anchors (--alpha, beta 1),
each with --calibrate none, anchors and anchors+bias (one judging per simulator: the pair cache serves the
other two). Printed per row, median over --seeds simulator seeds: SRCC, PLCC (after the logistic; NaN where
the VQEG logistic fails, as on scores exactly linear in the truth) and raw PLCC, the
fitted temperature over the planted one, and P(better)'s NLL and ECE on the anchor block (fitted on) and
on the test-vs-anchor pairs (held out: targets from the test images' planted MOS and std).

--std-spread 0 gives every image the same rating std: Thurstone Case V, the scoring model, then holds exactly.

    python bench/calibration.py [--n 1000] [--noise 0.1 0.3] [--image-noise 0] [--alpha 5] [--seeds 3]
                                [--std-spread 0.2]
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from harness.core.calibration import binary_nll, expected_calibration_error
from harness.run.record import read_run
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run
from harness.tools.planted import write_planted_dataset

SIM = "py:harness.tools.planted:PlantedThurstone"
CONFIDENCES = ((3.0, "3x over"), (1 / 3, "3x under"), (1.0, "calibrated"))
METHODS = ("none", "anchors", "anchors+bias")


def held_out(rec, truth: dict) -> tuple[float, float]:
    """NLL and ECE of the recorded (calibrated) P(better) of the test-vs-anchor pairs against Thurstone from
    the planted MOS and std of both images."""
    rows = [r for r in rec.comparisons if r.role == "test" and r.first != r.second]
    p = np.array([r.preference for r in rows])
    t = np.array([ndtr((truth[r.second][0] - truth[r.first][0]) / np.hypot(truth[r.first][1], truth[r.second][1]))
                  for r in rows])
    return binary_nll(p, t), expected_calibration_error(p, t)


def one(folder: Path, manifest: Path, out: Path, cache: Path, method: str, alpha: int, **sim) -> dict:
    cfg = RunConfig(model=SIM, model_options=sim, datasets=[DatasetSpec("planted", str(manifest), str(folder))],
                    anchors=AnchorSpec("select", dataset="planted", alpha=alpha), cache=str(cache), out_dir=str(out),
                    reports=False, profile_overrides={"calibrate": method})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the anchors are test images too (Eqn. 4 on the scored dataset)
        (path,) = run(cfg, progress=False)
    rec = read_run(path)
    summary = rec.metrics.datasets["planted"].summary
    ds = rec.dataset_runs()[0][0].dataset
    truth = {str(ds.abspath(r)): (r.mos, r.std) for r in ds.records}
    cal = rec.manifest.calibration or {}
    nll, ece = held_out(rec, truth)
    return {"srcc": summary["srcc"].median, "plcc": summary["plcc_logistic"].median,
            "plcc_raw": summary["plcc"].median,
            "t_ratio": cal.get("temperature", np.nan) / sim["confidence"], "bias": cal.get("bias", np.nan),
            "nll_anchor": cal.get("nll_after", np.nan), "ece_anchor": cal.get("ece_after", np.nan),
            "nll_anchor_before": cal.get("nll_before", np.nan), "ece_anchor_before": cal.get("ece_before", np.nan),
            "nll_test": nll, "ece_test": ece}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--image-noise", type=float, default=0.0, help="sd of each image's persistent perception error")
    ap.add_argument("--alpha", type=int, default=5, help="anchors: Eqn. 4's MOS intervals (one anchor each)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--std-spread", type=float, default=0.2, help="sd of log(rating std) across images")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = write_planted_dataset(tmp / "data", a.n, seed=0, std_spread=a.std_spread)
        print(f"planted dataset: {a.n} images, quality ~ N(0, 1), rating std 0.5 exp(N(0, {a.std_spread:g}^2)); "
              f"anchors: Eqn. 4 (alpha {a.alpha}, beta 1); paper profile; image noise {a.image_noise:g}; "
              f"median over {a.seeds} simulator seeds\n")
        print("| simulator | noise | --calibrate | SRCC | PLCC | PLCC raw | fitted T / planted | NLL anchors "
              "| ECE anchors | NLL test pairs | ECE test pairs |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for noise in a.noise:
            for confidence, name in CONFIDENCES:
                results = {m: [] for m in METHODS}
                for seed in range(a.seeds):
                    for m in METHODS:
                        results[m].append(one(tmp / "data", manifest, tmp / "runs", tmp / "cache.sqlite", m, a.alpha,
                                              noise=noise, image_noise=a.image_noise,
                                              confidence=confidence, seed=seed))
                for m in METHODS:
                    med = {k: float(np.median([r[k] for r in results[m]])) for k in results[m][0]}
                    if m == "none":  # the anchor block's numbers before any fit, from the anchors fit's record
                        med["nll_anchor"] = float(np.median([r["nll_anchor_before"] for r in results["anchors"]]))
                        med["ece_anchor"] = float(np.median([r["ece_anchor_before"] for r in results["anchors"]]))
                    ratio = "-" if m == "none" else f"{med['t_ratio']:.3f}"
                    print(f"| {name} | {noise:g} | {m} | {med['srcc']:.4f} | {med['plcc']:.4f} | "
                          f"{med['plcc_raw']:.4f} | {ratio} | {med['nll_anchor']:.4f} | {med['ece_anchor']:.4f} | {med['nll_test']:.4f} | "
                          f"{med['ece_test']:.4f} |")


if __name__ == "__main__":
    main()
