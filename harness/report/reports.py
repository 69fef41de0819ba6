"""Run reports: one readable page (Markdown and HTML) per run folder, from the files the runner wrote.

The report is built only from the run folder (read through `harness.run.record`), so it can be
regenerated at any time, e.g. after `c2s rescore`. Failures are shown at the top and per dataset:
a number that silently excludes images would be misleading.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.core.vocabulary import ALL
from harness.run.evaluation import SUMMARY_METRICS
from harness.run.record import Aggregate, DatasetMetrics, RunRecord, ScoreRow, read_run

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: (key in a split's correlations, column title), in report order
METRIC_COLUMNS = tuple(zip(SUMMARY_METRICS, ("SRCC", "KRCC", "PLCC", "PLCC (logistic)", "RMSE (logistic)")))
#: failed images listed by name in a report; the total is always given
MAX_FAILED_LISTED = 50


def fmt(value, digits: int = 3) -> str:
    """A number as shown in reports: fixed decimals, 'n/a' for missing or undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_text(stats: Aggregate, digits: int = 3) -> str:
    """One metric over splits as shown everywhere: "median ± sd", with undefined splits counted."""
    out = fmt(stats.median, digits)
    if stats.n > 1:
        out += f" ± {fmt(stats.sd, digits)}"
    if stats.n_dropped:
        out += f" ({stats.n_dropped} undefined split{'s' if stats.n_dropped > 1 else ''})"
    return out


def headline_ci(ds: DatasetMetrics, key: str) -> tuple[float, float] | None:
    """The 95% bootstrap interval of a dataset's headline `key`, where the run computed one: only when
    the headline is one group of images (a median over splits has its sd over splits instead), and
    only for the metrics bootstrapped (SRCC and raw PLCC; not the logistic PLCC)."""
    over = ds.over
    if len(over) != 1:
        return None
    return getattr(ds.splits[over[0]], f"{key}_ci95", None)


def ci_text(ci, digits: int = 3) -> str:
    """" [low, high]" for an interval, "" for none; an undefined end is "n/a"."""
    return "" if ci is None else f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def md_cell(value) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, no line breaks)."""
    return re.sub(r"\s*\n\s*", " ", str(value)).replace("|", "\\|")


def template_env(autoescape: bool) -> Environment:
    """The Jinja2 environment for report and leaderboard templates (HTML ones autoescaped)."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=autoescape, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["md"] = md_cell
    env.filters["summary"] = summary_text
    return env


def _failed_images(scores: list[ScoreRow]) -> tuple[int, list[dict]]:
    """Unique failed (dataset, image) with the first error seen; the total and the listed part."""
    failed: dict[tuple[str, str], str] = {}
    for r in scores:
        if r.status == "failed":
            failed.setdefault((r.dataset, r.image), r.error or "(no reason recorded)")
    listed = [{"dataset": d, "image": i, "error": e} for (d, i), e in list(failed.items())[:MAX_FAILED_LISTED]]
    return len(failed), listed


def _over_text(over: list[str]) -> str:
    if not over:
        return "-"
    return ALL if over == [ALL] else f"{len(over)} split{'s' if len(over) > 1 else ''}"


def _dataset_context(name: str, ds: DatasetMetrics, plot: Path | None) -> dict:
    splits = [{"name": s, **corr.model_dump(include={"n", "n_dropped", "logistic_ok", *SUMMARY_METRICS})}
              for s, corr in ds.splits.items()]
    return {"name": name, "higher_is_better": ds.higher_is_better, "n_images": ds.n_images,
            "n_failed": ds.n_failed, "summary": ds.summary, "splits": splits, "summary_over": _over_text(ds.over),
            "plot": plot.as_posix() if plot else None}


def report_context(run: RunRecord, plots: dict) -> dict:
    """Everything the report templates show, as plain values (`plots`: dataset -> relative PNG path)."""
    m = run.manifest
    n_failed_images, failed_listed = _failed_images(run.scores)
    c = m.counts
    if c.pairs_failed or c.images_failed or n_failed_images:
        failure_line = (f"FAILURES: {c.pairs_failed} of {c.pairs_total} pairs failed; {c.images_failed} images "
                        f"failed ({n_failed_images} failed images in scores.csv). Failed images are left out of the "
                        "correlations below; see \"Failed images\".")
    else:
        failure_line = f"No failures: 0 of {c.pairs_total} pairs failed, 0 images failed."
    return {
        "failure_line": failure_line, "has_failures": bool(c.pairs_failed or c.images_failed or n_failed_images),
        "run_id": m.run_id, "created": m.created, "mode": m.mode,
        "model": m.model, "profile": m.profile.as_dict(), "profile_name": m.profile.name,
        "anchors": m.anchors, "anchor_rows": [{"image": i, "mos": mos, "std": std}
                                              for i, mos, std in zip(m.anchors.images, m.anchors.mos, m.anchors.std)],
        "datasets": [_dataset_context(name, ds, plots.get(name)) for name, ds in run.metrics.datasets.items()],
        "metric_columns": METRIC_COLUMNS,
        "counts": c.model_dump(),
        "failed_in_scores": n_failed_images, "failed_listed": failed_listed,
        "timings": m.timings, "versions": m.versions, "seeds": m.seeds.model_dump(),
        "git_revision": m.git_revision,
        "fingerprint_json": json.dumps(m.model.fingerprint, indent=2, sort_keys=True, default=str),
    }


def write_report(run_dir) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (with the scatter plots) into a run folder."""
    # imported here so that matplotlib loads only when a report is written (not for leaderboards)
    from harness.report.plots import dataset_plots

    run = read_run(run_dir)
    plots = {ds: p.relative_to(run.run_dir) for ds, p in dataset_plots(run).items()}
    ctx = report_context(run, plots)
    md = run.run_dir / "report.md"
    html = run.run_dir / "report.html"
    md.write_text(template_env(False).get_template("report.md.j2").render(**ctx), encoding="utf-8")
    html.write_text(template_env(True).get_template("report.html.j2").render(**ctx), encoding="utf-8")
    return md, html
