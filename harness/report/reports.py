"""Run reports: one readable page (Markdown and HTML) per run folder, from the files the runner wrote.

The report is built only from the run folder (read through `harness.run.record`), so it can be
regenerated at any time, e.g. after `c2s rescore`. Failures and the dataset items dropped as bad
(`--drop-bad`) are counted at the top and listed: a number that silently excludes images would be
misleading.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.core.metrics import constant
from harness.core.vocabulary import ALL, SUMMARIES
from harness.data.composite import protocol_of
from harness.run.evaluation import SUMMARY_METRICS, summarise, summary_splits
from harness.run.record import Aggregate, DatasetMetrics, Manifest, RunRecord, ScoreRow, leftover_of, read_run

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: the script and style files of the HTML pages (the viewer's site, the leaderboard's and reports' sorting)
SITE = Path(__file__).resolve().parent / "site"


def site_asset(name: str) -> str:
    """The text of one of the pages' own script or style files, to inline into a page."""
    return (SITE / name).read_text(encoding="utf-8")

#: (key in a split's correlations, column title), in report order
METRIC_COLUMNS = tuple(zip(SUMMARY_METRICS, ("SRCC", "KRCC", "PLCC", "PLCC (logistic)", "RMSE (logistic)")))
#: failed images (and dropped items) listed by name in a report; the total is always given
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
    """The 95% bootstrap interval of a dataset's headline `key`, where the run computed one."""
    return _ci(ds, ds.over, key)


def _ci(ds: DatasetMetrics, over: list[str], key: str) -> tuple[float, float] | None:
    """An interval only when the number is one group of images (a median over splits has its sd over
    splits instead), and only for the metrics bootstrapped (SRCC and raw PLCC, not the logistic PLCC)."""
    return getattr(ds.splits[over[0]], f"{key}_ci95", None) if len(over) == 1 else None


def summaries(ds: DatasetMetrics) -> list[dict]:
    """A dataset's numbers both ways, the headline first: over all images, and the median over its named
    splits (where it has any). Which one is the headline is the run's `--summary`; showing both means
    that adding a split column to a manifest can never change the headline unnoticed."""
    out = []
    for over in (ds.summary_over, *(o for o in SUMMARIES if o != ds.summary_over)):
        if not ds.splits or (over == ALL and ALL not in ds.splits):
            continue
        names = summary_splits(ds.splits, over)
        if any(e["splits"] == names for e in out):
            continue
        stats = ds.summary if names == ds.over else {
            k: Aggregate.model_validate(v)
            for k, v in summarise({n: c.model_dump() for n, c in ds.splits.items()}, over).items()}
        out.append({"splits": names, "headline": not out, "stats": stats,
                    "what": "all images" if names == [ALL] else f"median over {len(names)} splits",
                    "ci95": {k: _ci(ds, names, k) for k in SUMMARY_METRICS}})
    return out


def summary_line(entry: dict, digits: int = 3) -> str:
    """"SRCC x [lo, hi], PLCC (logistic) y" of one `summaries` entry."""
    return ", ".join(f"{title} {summary_text(entry['stats'][k], digits)}{ci_text(entry['ci95'][k], digits)}"
                     for k, title in (("srcc", "SRCC"), ("plcc_logistic", "PLCC (logistic)")))


def ci_text(ci, digits: int = 3) -> str:
    """" [low, high]" for an interval, "" for none (or one undefined at both ends); an undefined end is "n/a"."""
    if ci is None or not any(math.isfinite(v) for v in ci):
        return ""
    return f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


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
    env.filters["ci"] = ci_text
    env.filters["summary_line"] = summary_line
    return env


def _failed_images(scores: list[ScoreRow]) -> tuple[int, list[dict]]:
    """Unique failed (dataset, image) with the first error seen; the total and the listed part."""
    failed: dict[tuple[str, str], str] = {}
    for r in scores:
        if r.status == "failed":
            failed.setdefault((r.dataset, r.image), r.error or "(no reason recorded)")
    listed = [{"dataset": d, "image": i, "error": e} for (d, i), e in list(failed.items())[:MAX_FAILED_LISTED]]
    return len(failed), listed


def _dropped_items(m: Manifest) -> tuple[int, list[dict]]:
    """Dataset items left out as bad before scoring (--drop-bad), every one counted; the total and the listed part."""
    items = [{"dataset": d.name, "item": text} for d in m.datasets for text in d.dropped]
    return len(items), items[:MAX_FAILED_LISTED]


#: a share of images with the same score from which predictions count as near-constant
TIED_SHARE = 0.5


def _prediction_flags(name: str, scores: list[ScoreRow]) -> list[tuple[str, str]]:
    """Constant (red) or near-constant (amber) predictions of one dataset, from its scored images."""
    values = {}
    for r in scores:
        if r.dataset == name and r.status == "ok" and math.isfinite(r.score):
            values.setdefault(r.image, r.score)
    v = list(values.values())
    if len(v) < 2:
        return []
    if constant(v):
        return [("red", f"{name}: every image has the same score ({v[0]:.6g}): the predictions carry no ranking")]
    top = Counter(v).most_common(1)[0][1]
    if len(v) >= 5 and (len(set(v)) < 3 or top >= TIED_SHARE * len(v)):  # a few images may well tie
        return [("amber", f"{name}: near-constant predictions: {len(set(v))} distinct scores over {len(v)} images, "
                          f"{top} images share one score")]
    return []


def quality_flags(run: RunRecord) -> list[tuple[str, str]]:
    """(level, text) for every degenerate result: "red" when a headline number is undefined or the
    predictions are constant, "amber" for near-constant predictions or a failed logistic fit."""
    flags = []
    for name, ds in run.metrics.datasets.items():
        flags += _prediction_flags(name, run.scores)
        if not ds.splits:
            continue
        headline_undefined = False
        for key, title in METRIC_COLUMNS[:1] + METRIC_COLUMNS[3:4]:
            if not math.isfinite(ds.summary[key].median):
                headline_undefined = True
                reasons = sorted({ds.splits[s].logistic_message or "undefined" for s in ds.over})
                flags.append(("red", f"{name}: headline {title} is n/a ({'; '.join(reasons)})"))
        undefined = [s for s, c in ds.splits.items() if c.undefined]  # every metric null there, with its reason
        if undefined and not headline_undefined:
            reasons = sorted({ds.splits[s].undefined for s in undefined})
            flags.append(("amber", f"{name}: no metric is defined in {len(undefined)} of {len(ds.splits)} group(s) "
                                   f"({'; '.join(reasons)})"))
        failed = [s for s, c in ds.splits.items() if not c.logistic_ok and not c.undefined]
        if failed:
            reasons = sorted({ds.splits[s].logistic_message or "no reason recorded" for s in failed})
            flags.append(("amber", f"{name}: logistic fit failed in {len(failed)} of {len(ds.splits)} group(s) "
                                   f"({'; '.join(reasons)}): PLCC (logistic) and RMSE are n/a there, no curve drawn"))
    cal = run.manifest.calibration
    if cal and cal.get("at_bound"):
        flags.append(("amber", f"calibration: the fitted temperature or level bias ended on its bound (T = "
                               f"{cal['temperature']:.4g}); the anchor block does not pin it down"))
    return flags


def calibration_rows(m: Manifest) -> list[tuple[str, str]]:
    """The run's calibration (--calibrate) as (what, value) rows; [] when it has none."""
    cal = m.calibration
    if not cal:
        return []
    rows = [("method", cal["method"]), ("anchor pairs fitted on", str(cal["n_pairs"])),
            ("temperature", f"{fmt(cal['temperature_before'], 4)} -> {fmt(cal['temperature'], 4)}")]
    if cal["method"] == "anchors+bias":
        rows.append(("level bias beta (logits + beta (k - 2))", f"0 -> {fmt(cal['bias'], 4)}"))
    if cal.get("prior_var") is not None:  # runs recorded before the calibrated prior scored with the profile's
        rows.append(("prior variance of the MAP", f"{fmt(m.profile.prior_var, 4)} -> {fmt(cal['prior_var'], 4)}"))
    rows += [("NLL of P(better), anchor block", f"{fmt(cal['nll_before'], 4)} -> {fmt(cal['nll_after'], 4)} "
                                                f"(floor {fmt(cal['nll_floor'], 4)})"),
             ("ECE of P(better), anchor block", f"{fmt(cal['ece_before'], 4)} -> {fmt(cal['ece_after'], 4)}")]
    return rows


def _over_text(over: list[str]) -> str:
    if not over:
        return "-"
    return ALL if over == [ALL] else f"{len(over)} split{'s' if len(over) > 1 else ''}"


#: the pairwise-accuracy table's value columns: (field, title); each cell is "value (pairs behind it)"
PAIR_COLUMNS = (("binary", "Binary"), ("binary_similar", "Binary, similar band"),
                ("binary_outside", "Binary, outside"), ("five_level", "Five-level"),
                ("five_level_similar", "Five-level, similar band"), ("five_level_outside", "Five-level, outside"))


def pair_table(ds: DatasetMetrics) -> list[dict]:
    """The pairwise accuracy per split (docs/method.md, "Pairwise accuracy"), as shown cells; [] when the
    run has none (rating mode, folders written before it existed)."""
    return [{"name": split, "cells": [f"{fmt(getattr(acc, k))} ({getattr(acc, 'n_' + k)})" for k, _ in PAIR_COLUMNS],
             "n_pairs": acc.n_pairs, "n_mos_ties": acc.n_mos_ties, "n_no_std": acc.n_no_std, "n_failed": acc.n_failed}
            for split, acc in (ds.pair_accuracy or {}).items()]


def _dataset_context(name: str, ds: DatasetMetrics, plot: Path | None, n_dropped: int) -> dict:
    splits = [{"name": s, **corr.model_dump(include={"n", "n_dropped", "logistic_ok", "logistic_message",
                                                     "srcc_ci95", "plcc_ci95", *SUMMARY_METRICS})}
              for s, corr in ds.splits.items()]
    return {"name": name, "higher_is_better": ds.higher_is_better, "n_images": ds.n_images,
            "n_failed": ds.n_failed, "n_dropped": n_dropped, "summary": ds.summary, "splits": splits, "summary_over": _over_text(ds.over),
            "ci95": {k: headline_ci(ds, k) for k in SUMMARY_METRICS}, "summaries": summaries(ds),
            "groups": [{"name": g, **corr.model_dump(include={"n", "n_dropped", "logistic_ok", "logistic_message",
                                                             "srcc_ci95", "plcc_ci95", *SUMMARY_METRICS})}
                       for g, corr in (ds.groups or {}).items()],
            "pairs": pair_table(ds), "pairs_summary": ds.pair_accuracy_summary or {},
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
    n_dropped, dropped_listed = _dropped_items(m)
    dropped = {d.name: len(d.dropped) for d in m.datasets}
    flags = quality_flags(run)
    return {
        "quality_flags": flags, "quality_level": "red" if any(lv == "red" for lv, _ in flags) else
        "amber" if flags else None, "limit": m.limit,
        "failure_line": failure_line, "has_failures": bool(c.pairs_failed or c.images_failed or n_failed_images),
        "dropped_line": f"DROPPED: {n_dropped} dataset item(s) left out as bad (--drop-bad) before scoring; they are "
                        "in no number below; see \"Dropped items\"." if n_dropped else None,
        "dropped_total": n_dropped, "dropped_listed": dropped_listed,
        "run_id": m.run_id, "created": m.created, "mode": m.mode,
        "model": m.model, "profile": m.profile.as_dict(), "profile_name": m.profile.name,
        "protocol": protocol_of(m.model.fingerprint),
        "calibration": calibration_rows(m),
        "anchors": m.anchors, "anchor_rows": [{"image": i, "mos": mos, "std": std}
                                              for i, mos, std in zip(m.anchors.images, m.anchors.mos, m.anchors.std)],
        "datasets": [_dataset_context(name, ds, plots.get(name), dropped.get(name, 0))
                     for name, ds in run.metrics.datasets.items()],
        "metric_columns": METRIC_COLUMNS, "pair_columns": PAIR_COLUMNS,
        "counts": c.model_dump(),
        "failed_in_scores": n_failed_images, "failed_listed": failed_listed,
        "timings": m.timings, "versions": m.versions, "seeds": m.seeds.model_dump(),
        "git_revision": m.git_revision,
        "fingerprint_json": json.dumps(m.model.fingerprint, indent=2, sort_keys=True, default=str),
    }


#: worst and best images by |residual| shown per dataset in the HTML report
K_EXTREMES = 6
#: the run's files the HTML report links to
LINKED_FILES = ("scores.csv", "comparisons.csv", "manifest.json", "metrics.json", "report.md")
#: where the HTML report says how to browse the run; `c2s view` replaces it by a link in its copy
VIEWER_MARKERS = ("<!-- viewer-link -->", "<!-- /viewer-link -->")


def gallery_context(run: RunRecord) -> dict:
    """The HTML report's images: anchor thumbnails, the worst and best images per dataset (thumbnails in
    the run's `thumbs/` folder, None where an image cannot be read now) and the per-split figures."""
    from harness.report.gallery import Thumbnails, extremes
    from harness.report.plots import facet_plots

    thumbs = Thumbnails(run.run_dir / "thumbs")
    picks = {ds: {side: [{**item, "thumb": thumbs(item["path"])} for item in items] for side, items in e.items()}
             for ds, e in extremes(run, K_EXTREMES).items()}
    return {"anchor_thumbs": [thumbs(p) for p in run.manifest.anchors.images], "extremes": picks,
            "facets": {ds: p.relative_to(run.run_dir).as_posix() for ds, p in facet_plots(run).items()},
            "files": [name for name in LINKED_FILES if (run.run_dir / name).is_file()],
            "run_dir": str(final_dir(run.run_dir)), "viewer_markers": VIEWER_MARKERS}


def final_dir(run_dir: Path) -> Path:
    """Where a run folder will be: a report is written into the hidden folder `write_run` fills first."""
    run_id = leftover_of(run_dir)
    return run_dir if run_id is None else run_dir.parent / run_id


def write_report(run_dir) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (with the scatter plots and thumbnails) into a run folder."""
    # imported here so that matplotlib loads only when a report is written (not for leaderboards)
    from harness.report.plots import dataset_plots

    run = read_run(run_dir)
    plots = {ds: p.relative_to(run.run_dir) for ds, p in dataset_plots(run).items()}
    ctx = report_context(run, plots)
    md = run.run_dir / "report.md"
    html = run.run_dir / "report.html"
    md.write_text(template_env(False).get_template("report.md.j2").render(**ctx), encoding="utf-8")
    html.write_text(template_env(True).get_template("report.html.j2").render(**ctx, **gallery_context(run)),
                    encoding="utf-8")
    return md, html
