"""Scatter plots of predicted score vs MOS with the fitted logistic, one PNG per dataset.

Drawn on an explicit Agg canvas (no pyplot, no display, no global backend switch), so plots can
be made on headless machines and from any thread.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.core.metrics import fit_logistic
from harness.core.vocabulary import ALL
from harness.run.record import RunRecord, SplitMetrics, read_run

#: the folder of a run folder the plots go into
PLOTS_DIR = "plots"


def scatter_plot(pred, mos, fit, title: str, out_png) -> Path:
    """Predicted score vs MOS, with `fit` (a `harness.core.metrics.LogisticFit`) drawn when it succeeded.

    A failed fit is said on the plot rather than drawn, so a flat or wrong curve never passes
    for a result.
    """
    pred = np.asarray(pred, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    if pred.shape != mos.shape or pred.ndim != 1:
        raise ValueError(f"scatter_plot: pred and mos must be 1-D of equal length, got {pred.shape} and {mos.shape}")
    keep = np.isfinite(pred) & np.isfinite(mos)
    if not keep.any():
        raise ValueError(f"scatter_plot: no finite (prediction, MOS) pair to plot for {title!r}")
    pred, mos = pred[keep], mos[keep]
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(5.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(pred, mos, s=12, alpha=0.6, color="#1f77b4", edgecolors="none", label=f"images (n = {pred.size})")
    if fit is not None and fit.ok:
        lo, hi = float(pred.min()), float(pred.max())
        pad = 0.02 * (hi - lo) if hi > lo else 0.5
        grid = np.linspace(lo - pad, hi + pad, 200)
        ax.plot(grid, fit.predict(grid), color="#d62728", lw=2, label="fitted logistic")
    else:
        ax.text(0.02, 0.98, f"logistic fit failed: {fit.message if fit is not None else 'no fit given'}",
                transform=ax.transAxes, va="top", fontsize=8, color="#444444", wrap=True)
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(out_png, format="png")
    return out_png


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "dataset"


def plot_split(splits: dict) -> str:
    """The split a dataset's plot shows: the whole dataset ("all") where present, else the first split."""
    return ALL if ALL in splits else next(iter(splits))


def _title(run: RunRecord, name: str, split: str, corr: SplitMetrics) -> str:
    m = run.metrics

    def num(v):
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    return (f"{name} (split {split}): {m.model_label}, {m.profile}, {m.mode}\n"
            f"SRCC {num(corr.srcc)}, PLCC (logistic) {num(corr.plcc_logistic)}; "
            f"{corr.n_dropped} failed images not shown")


def dataset_plots(run: RunRecord) -> dict[str, Path]:
    """One scatter plot per dataset that has at least one scored image; dataset -> PNG path."""
    out: dict[str, Path] = {}
    used: set[str] = set()
    for name, ds in run.metrics.datasets.items():
        if not ds.splits:          # no ground truth: nothing to plot against
            continue
        split = plot_split(ds.splits)
        rows = [r for r in run.scores if r.dataset == name and r.status == "ok"]
        if split == ALL:  # scores.csv has one row per image and split it belongs to: here every image once
            first: dict[str, object] = {}
            for r in rows:
                first.setdefault(r.image, r)
            rows = list(first.values())
        else:
            rows = [r for r in rows if r.split == split]
        pred = np.array([r.score for r in rows], dtype=np.float64)
        mos = np.array([np.nan if r.mos is None else r.mos for r in rows], dtype=np.float64)
        keep = np.isfinite(pred) & np.isfinite(mos)
        if not keep.any():
            continue
        pred, mos = pred[keep], mos[keep]
        stem = f"scatter_{_slug(name)}_{_slug(split)}"
        while stem in used:
            stem += "_"
        used.add(stem)
        fit = fit_logistic(pred, mos)
        title = _title(run, name, split, ds.splits[split])
        out[name] = scatter_plot(pred, mos, fit, title, run.run_dir / PLOTS_DIR / f"{stem}.png")
    return out


def write_plots(run_dir) -> list[Path]:
    """Write the scatter plots of a run folder into its `plots/` folder."""
    return list(dataset_plots(read_run(run_dir)).values())
