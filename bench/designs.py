"""Comparison designs against the truth: SRCC vs comparisons per test image, the paper's anchors vs active.

Two worlds, each through the real runner (pair cache, rounds, joint MAP), one fresh cache per world:
- the planted Thurstone simulator (`py:harness.tools.planted:PlantedThurstone`) on `--n` planted images
  (truth: the planted quality), with per-pair and per-image perception noise;
- the embedded benchmark (`harness.data.demo_data`, 260 images) with the classical comparator (truth: the
  objective ordering, the benchmark's MOS).
Anchors: Eqn. 4 on the dataset itself (5 anchors). Per design it prints comparisons per test image (the anchor
block, m(m-1) pairs shared by every design, not counted), SRCC against the truth, seconds; and writes a plot.
The planted world is drawn `--seeds` times (dataset and perception noise); its lines are each draw's figure,
the plot shows their mean (bars: min to max). `--ablation` adds, on the planted world, the same active loop with
the EIG replaced by a seeded random score (same candidates, coverage rule, greedy batch and joint MAP): what the choice
by information gain adds over random pairs of the same kind.

    python bench/designs.py [--n 1000] [--budgets 1 2 2.5 3 5 8] [--noise 0.5] [--image-noise 0.2] [--seeds 3] \\
                            [--plot docs/img/designs.png] [--work /tmp/designs-bench]
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

import harness.core.designs as core_designs
from harness.run.record import read_run
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run
from harness.tools.planted import write_planted_dataset

PLANTED = "py:harness.tools.planted:PlantedThurstone"


def srcc_of(folder: Path) -> tuple[float, int]:
    """SRCC of the run's scores against its dataset's MOS (the truth in both worlds), and failed images."""
    rows = read_run(folder).scores
    score = np.array([np.nan if r.score is None else r.score for r in rows], dtype=np.float64)
    mos = np.array([r.mos for r in rows], dtype=np.float64)
    ok = np.isfinite(score)
    return float(stats.spearmanr(score[ok], mos[ok])[0]), int((~ok).sum())


@contextlib.contextmanager
def random_gain(seed: int):
    """The ablation: the selection's EIG replaced by a random score (drawn from `seed`, fresh per round)."""
    rng = np.random.default_rng(seed)
    real = core_designs.expected_information_gain
    core_designs.expected_information_gain = lambda mu, var, link="probit": rng.random(np.shape(mu))
    try:
        yield
    finally:
        core_designs.expected_information_gain = real


def curve(name, model, options, dataset: DatasetSpec, budgets, work: Path, round_size=None, anchors=True):
    cache = work / f"{name.split('/')[0]}-{name.split('/')[-1]}.sqlite"
    out = []
    for design, budget in [("anchors", None)] * anchors + [("active", b) for b in budgets]:
        cfg = RunConfig(model=model, model_options=dict(options), datasets=[dataset], cache=str(cache),
                        anchors=AnchorSpec("select", dataset=dataset.name), out_dir=str(work / "runs" / name.replace("/", "-")),
                        reports=False, design=design, budget=budget, round_size=round_size if budget else None)
        t0 = time.perf_counter()
        folder = run(cfg, progress=False)[0]
        seconds = time.perf_counter() - t0
        rho, failed = srcc_of(folder)
        manifest = read_run(folder).manifest
        n_tests = manifest.counts.images_total
        spent = manifest.design["comparisons"] if budget else 5 * n_tests
        per_image = spent / n_tests
        print(f"{name:10s} {design:8s} budget {budget if budget else '-':>4}  comparisons/image {per_image:5.2f}  "
              f"SRCC {rho:.4f}  failed {failed}  rounds {manifest.design.get('rounds', '-')}  {seconds:6.1f} s",
              flush=True)
        out.append((design if anchors else "random", per_image, rho))
    return out


def summary(title: str, draws: list) -> None:
    """Per draw: the anchor design's SRCC, active's gain at the anchor design's budget, and the fewest
    comparisons per image at which active reaches the anchor design (ratio to its budget); then the mean."""
    print(f"{title}: per draw")
    rows = []
    for seed, pts in enumerate(draws):
        (_, x_anchor, rho_anchor), = [p for p in pts if p[0] == "anchors"]
        active = [(x, rho) for design, x, rho in pts if design == "active"]
        equal = [rho for x, rho in active if abs(x - x_anchor) < 1e-9]
        gain = equal[0] - rho_anchor if equal else float("nan")
        match = min((x for x, rho in active if rho >= rho_anchor), default=float("nan"))
        rows.append((rho_anchor, gain, match / x_anchor))
        print(f"  draw {seed}: anchors {rho_anchor:.4f}  active gain at {x_anchor:g}/image {gain:+.4f}  "
              f"matches from {match:g}/image (ratio {match / x_anchor:.2f})")
    mean = np.nanmean(np.array(rows), axis=0)
    print(f"  mean: anchors {mean[0]:.4f}  gain {mean[1]:+.4f}  (min {np.nanmin([r[1] for r in rows]):+.4f})  "
          f"ratio {mean[2]:.2f} (max {np.nanmax([r[2] for r in rows]):.2f})")


def plot(curves: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8))
    for ax, (title, draws) in zip(np.atleast_1d(axes), curves.items()):
        for design, style in (("active", dict(fmt="o-", label="active (EIG, joint MAP)")),
                              ("random", dict(fmt="^--", color="C7", label="ablation: random pairs, joint MAP")),
                              ("anchors", dict(fmt="s", color="C3", markersize=9, label="5 anchors (the paper)"))):
            if not any(p[0] == design for pts in draws for p in pts):
                continue
            x = np.array([[p[1] for p in pts if p[0] == design] for pts in draws]).mean(axis=0)
            y = np.array([[p[2] for p in pts if p[0] == design] for pts in draws])
            mean = y.mean(axis=0)
            ax.errorbar(x, mean, yerr=[mean - y.min(axis=0), y.max(axis=0) - mean], capsize=3, **style)
        ax.set_xlabel("comparisons per test image")
        ax.set_ylabel("SRCC against the truth")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def ablation(a, seed: int, manifest: Path):
    with random_gain(seed):
        return curve(f"random/{seed}", PLANTED, {"noise": a.noise, "image_noise": a.image_noise, "seed": seed},
                     DatasetSpec("planted", source=str(manifest), root=str(manifest.parent)), a.budgets, a.work,
                     a.round_size, anchors=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="planted images")
    ap.add_argument("--budgets", type=float, nargs="+", default=[1, 2, 2.5, 3, 5, 8])
    ap.add_argument("--seeds", type=int, default=3, help="draws of the planted world")
    ap.add_argument("--noise", type=float, default=0.5, help="planted per-pair perception noise (quality units)")
    ap.add_argument("--image-noise", type=float, default=0.2, help="planted per-image perception noise")
    ap.add_argument("--round-size", type=int, default=None, help="pairs per active round (default: the runner's)")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="also random pairs in the same loop (planted world)")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/designs-bench"))
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # Eqn. 4 picks anchors among the test images: the runner says so each run
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    title = f"planted Thurstone, {a.n} images (noise {a.noise:g}, image noise {a.image_noise:g}), {a.seeds} draws"
    curves = {title: []}
    for seed in range(a.seeds):
        manifest = write_planted_dataset(a.work / f"planted{seed}", a.n, seed=seed)
        curves[title].append(curve(f"planted/{seed}", PLANTED,
                                   {"noise": a.noise, "image_noise": a.image_noise, "seed": seed},
                                   DatasetSpec("planted", source=str(manifest), root=str(a.work / f"planted{seed}")),
                                   a.budgets, a.work, a.round_size)
                               + (ablation(a, seed, manifest) if a.ablation else []))
    summary("planted", curves[title])
    if not a.skip_demo:
        curves["embedded benchmark (260 images), classical comparator"] = [curve(
            "demo", "classical", {}, DatasetSpec("demo", root=str(a.work / "demo")), a.budgets, a.work, a.round_size)]
    if a.plot:
        plot(curves, a.plot)
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
