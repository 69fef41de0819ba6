"""Scatter plots of predicted score vs MOS with the fitted logistic, one PNG per dataset.

Each point has a horizontal error bar (the posterior sd, where it is on the plotted scale) and a
colour per group (the image's manifest group, else its one split), and the title is wrapped, never
cut. Drawn on an explicit Agg canvas (no pyplot, no display, no global backend switch), so plots
can be made on headless machines and from any thread.
"""
from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.core.metrics import fit_logistic
from harness.core.vocabulary import ALL
from harness.run.record import RunRecord, SplitMetrics, read_run

#: the folder of a run folder the plots go into
PLOTS_DIR = "plots"
#: characters per title line (the figure is 5.5 inches wide at font size 9)
TITLE_WIDTH = 70
POINT_ALPHA, BAR_ALPHA = 0.7, 0.35
#: point colours by group, in order of first appearance; more groups than colours share "other"
GROUP_COLOURS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def scatter_plot(pred, mos, fit, title: str, out_png, *, sd=None, groups=None) -> Path:
    """Predicted score vs MOS, with `fit` (a `harness.core.metrics.LogisticFit`) drawn when it succeeded,
    horizontal error bars of `sd` (the posterior sd on the prediction's scale) and a colour per group.

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
    sd = None if sd is None else np.asarray(sd, dtype=np.float64)[keep]
    groups = [""] * pred.size if groups is None else [g for g, k in zip(groups, keep) if k]
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(5.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(groups))
    for k, name in enumerate(names):
        at = np.array([g == name for g in groups])
        colour = GROUP_COLOURS[min(k, len(GROUP_COLOURS) - 1)]
        label = f"{name or 'no group'} (n = {at.sum()})" if len(names) > 1 else f"images (n = {pred.size})"
        if k >= len(GROUP_COLOURS) - 1 and len(names) > len(GROUP_COLOURS):
            label = "other groups" if k == len(GROUP_COLOURS) - 1 else None
        if sd is not None and np.isfinite(sd[at]).any():
            ax.errorbar(pred[at], mos[at], xerr=np.where(np.isfinite(sd[at]), sd[at], 0.0), fmt="none",
                        ecolor=colour, alpha=BAR_ALPHA, lw=0.8)
        ax.scatter(pred[at], mos[at], s=12, alpha=POINT_ALPHA, color=colour, edgecolors="none", label=label)
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
    ax.set_title(wrap_title(title), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(out_png, format="png")
    return out_png


def wrap_title(title: str) -> str:
    """Each line of a title wrapped to TITLE_WIDTH characters: a long model name is never cut off."""
    return "\n".join(textwrap.fill(line, TITLE_WIDTH) for line in title.splitlines())


def score_sd(rows) -> np.ndarray | None:
    """The posterior sd on the scale of `score`: the latent sd times |slope| where score is an affine map
    of latent across the images (latent and mos scales), None where it is not (the official min-max)."""
    score = np.array([r.score for r in rows], dtype=np.float64)
    latent = np.array([r.latent for r in rows], dtype=np.float64)
    sd = np.array([r.sd for r in rows], dtype=np.float64)
    ok = np.isfinite(score) & np.isfinite(latent)
    if ok.sum() < 2 or np.ptp(latent[ok]) == 0:
        return None
    slope, icept = np.polyfit(latent[ok], score[ok], 1)
    if np.max(np.abs(slope * latent[ok] + icept - score[ok])) > 1e-6 * max(1.0, float(np.ptp(score[ok]))):
        return None
    return np.abs(slope) * sd


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


def _groups(run: RunRecord, name: str, rows) -> list[str]:
    """Each plotted image's colour group: its manifest group; without any in the dataset, its one named
    split (e.g. a demo distortion family), else none."""
    if any(r.group for r in rows):
        return [r.group for r in rows]
    splits: dict[str, set] = {}
    for r in run.scores:
        if r.dataset == name and r.split != ALL:
            splits.setdefault(r.image, set()).add(r.split)
    return [next(iter(splits[r.image])) if len(splits.get(r.image, ())) == 1 else "" for r in rows]


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
        sd = score_sd(rows)
        sd = None if sd is None else sd[keep]
        groups = [g for g, k in zip(_groups(run, name, rows), keep) if k]
        pred, mos = pred[keep], mos[keep]
        stem = f"scatter_{_slug(name)}_{_slug(split)}"
        while stem in used:
            stem += "_"
        used.add(stem)
        fit = fit_logistic(pred, mos)
        title = _title(run, name, split, ds.splits[split])
        out[name] = scatter_plot(pred, mos, fit, title, run.run_dir / PLOTS_DIR / f"{stem}.png", sd=sd,
                                 groups=groups)
    return out


def write_plots(run_dir) -> list[Path]:
    """Write the scatter plots of a run folder into its `plots/` folder."""
    return list(dataset_plots(read_run(run_dir)).values())


#: panels of a per-split (or per-group) figure at most; the title says how many more there were
MAX_PANELS = 16


def facet_plots(run: RunRecord) -> dict[str, Path]:
    """Per dataset with named splits or groups: one figure of small scatter plots, one per group (the
    manifest's `group` column) or else per split, each point with its posterior-sd error bar; dataset -> PNG."""
    out: dict[str, Path] = {}
    for name, ds in run.metrics.datasets.items():
        rows = [r for r in run.scores if r.dataset == name and r.status == "ok" and r.mos is not None
                and math.isfinite(r.score)]
        by_group = any(r.group for r in rows)
        panels: dict[str, dict] = {}
        for r in rows:
            key = r.group if by_group else r.split
            if key and key != ALL:
                panels.setdefault(key, {})[r.image] = r  # an image once per panel
        if len(panels) < 2:
            continue
        names = list(panels)[:MAX_PANELS]
        ncols = min(4, len(names))
        nrows = math.ceil(len(names) / ncols)
        fig = Figure(figsize=(2.6 * ncols, 2.3 * nrows + 0.5), dpi=90, layout="constrained")
        FigureCanvasAgg(fig)
        for k, panel in enumerate(names):
            ax = fig.add_subplot(nrows, ncols, k + 1)
            prs = list(panels[panel].values())
            x = np.array([r.score for r in prs])
            y = np.array([r.mos for r in prs])
            sd = score_sd(prs)
            if sd is not None and np.isfinite(sd).any():
                ax.errorbar(x, y, xerr=np.where(np.isfinite(sd), sd, 0.0), fmt="none", ecolor=GROUP_COLOURS[0],
                            alpha=BAR_ALPHA, lw=0.8)
            ax.scatter(x, y, s=8, alpha=POINT_ALPHA, color=GROUP_COLOURS[0], edgecolors="none")
            corr = (ds.groups or {}).get(panel) if by_group else ds.splits.get(panel)
            srcc = f", SRCC {corr.srcc:.3f}" if corr is not None and math.isfinite(corr.srcc) else ""
            ax.set_title(f"{panel} (n = {len(prs)}{srcc})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        more = f" (first {MAX_PANELS} of {len(panels)})" if len(panels) > MAX_PANELS else ""
        fig.suptitle(wrap_title(f"{name}: predicted score (x, ± posterior sd) vs MOS (y) per "
                                f"{'group' if by_group else 'split'}{more}: {run.metrics.model_label}"), fontsize=9)
        path = run.run_dir / PLOTS_DIR / f"facets_{_slug(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        out[name] = path
    return out
