"""Run reports: one readable page (Markdown and HTML) per run folder, from the files the runner wrote.

The report is built only from the run folder (`manifest.json`, `metrics.json`, `scores.csv`), so
it can be regenerated at any time, e.g. after `c2s rescore`. Failures are shown at the top and per
dataset: a number that silently excludes images would be misleading.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.core.metrics import aggregate
from harness.core.vocabulary import ALL

TEMPLATES = Path(__file__).resolve().parent / "templates"

MANIFEST = "manifest.json"
METRICS = "metrics.json"
SCORES = "scores.csv"
PLOTS_DIR = "plots"
#: the split name of a whole dataset (and of a dataset without splits)

_MANIFEST_KEYS = ("run_id", "created", "model", "profile", "mode", "anchors", "datasets", "counts")
_METRICS_KEYS = ("run_id", "model_label", "profile", "mode", "datasets")
_DATASET_KEYS = ("higher_is_better", "n_images", "n_failed", "splits")
_NUMERIC_SCORE_COLUMNS = ("mos", "score", "latent", "sd", "n_anchors_ok")
SCORES_COLUMNS = ("dataset", "split", "image", "mos", "score", "latent", "sd", "n_anchors_ok", "status", "error")
#: (key in a split's correlation dict, column title), in report order
METRIC_COLUMNS = (("srcc", "SRCC"), ("krcc", "KRCC"), ("plcc", "PLCC"),
                  ("plcc_logistic", "PLCC (logistic)"), ("rmse_logistic", "RMSE (logistic)"))
#: failed images listed by name in a report; the total is always given
MAX_FAILED_LISTED = 50


@dataclass
class RunRecord:
    """The JSON files of one run folder, checked against the data contract."""

    run_dir: Path
    manifest: dict
    metrics: dict


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path.parent}: missing {path.name}; is this a run folder (results/runs/<run-id>/)?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _require(data: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")


def read_run(run_dir) -> RunRecord:
    """Load and check `manifest.json` and `metrics.json` of a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder not found: {run_dir}")
    manifest = _read_json(run_dir / MANIFEST)
    metrics = _read_json(run_dir / METRICS)
    _require(manifest, _MANIFEST_KEYS, str(run_dir / MANIFEST))
    _require(metrics, _METRICS_KEYS, str(run_dir / METRICS))
    if manifest["run_id"] != metrics["run_id"]:
        raise ValueError(f"{run_dir}: manifest.json is run {manifest['run_id']!r} but metrics.json is run "
                         f"{metrics['run_id']!r}; re-run `c2s rescore` to rebuild the metrics")
    for name, ds in metrics["datasets"].items():
        where = f"{run_dir / METRICS}: dataset {name!r}"
        _require(ds, _DATASET_KEYS, where)
        if ds["splits"]:
            try:
                summary_splits(ds)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
    return RunRecord(run_dir, manifest, metrics)


def read_scores(run_dir) -> pd.DataFrame:
    """`scores.csv` of a run folder with its columns checked (image names kept as text)."""
    path = Path(run_dir) / SCORES
    if not path.is_file():
        raise ValueError(f"{path.parent}: missing {SCORES}")
    # text columns stay text ("NA" or "null" can be an image name); numbers are parsed explicitly
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SCORES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    for col in _NUMERIC_SCORE_COLUMNS:
        try:
            df[col] = np.asarray(df[col].replace("", "nan").to_numpy(), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: column {col!r} holds a non-number: {exc}") from exc
    bad = sorted(set(df["status"]) - {"ok", "failed"})
    if bad:
        raise ValueError(f"{path}: status must be 'ok' or 'failed', found {bad}")
    return df


def summary_splits(ds: dict) -> list[str]:
    """The splits a dataset's headline numbers aggregate (a dataset entry of metrics.json).

    The named splits (the paper's median over splits), unless the run asked for the whole
    dataset (`summary_over: "all"`) or there are no named splits: then the group "all".
    """
    over = ds.get("summary_over", "splits")
    if over not in ("splits", ALL):
        raise ValueError(f"summary_over must be 'splits' or 'all', got {over!r}")
    named = [s for s in ds["splits"] if s != ALL]
    if named and over == "splits":
        return named
    if ALL not in ds["splits"]:
        raise ValueError(f"the summary is over the whole dataset but there is no {ALL!r} split")
    return [ALL]


def dataset_summary(ds: dict, key: str) -> dict:
    """`harness.core.metrics.aggregate` of one metric over the dataset's summary splits (median, sd, n, ...).

    A split missing the metric counts as non-finite (in `n_dropped`), never as a value.
    """
    return aggregate([ds["splits"][s].get(key, math.nan) for s in summary_splits(ds)])


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


def summary_text(stats: dict, digits: int = 3) -> str:
    """One metric over splits as shown everywhere: "median ± sd", with undefined splits counted."""
    out = fmt(stats["median"], digits)
    if stats["n"] > 1:
        out += f" ± {fmt(stats['sd'], digits)}"
    if stats["n_dropped"]:
        out += f" ({stats['n_dropped']} undefined split{'s' if stats['n_dropped'] > 1 else ''})"
    return out


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


def _failed_images(scores: pd.DataFrame) -> tuple[int, list[dict]]:
    """Unique failed (dataset, image) with the first error seen; the total and the listed part."""
    failed = scores[scores["status"] == "failed"].drop_duplicates(["dataset", "image"])
    listed = [{"dataset": r.dataset, "image": r.image, "error": r.error or "(no reason recorded)"}
              for r in failed.head(MAX_FAILED_LISTED).itertuples()]
    return len(failed), listed


def _over_text(over: list[str]) -> str:
    if not over:
        return "-"
    return ALL if over == [ALL] else f"{len(over)} split{'s' if len(over) > 1 else ''}"


def _datasets_context(metrics: dict, plots: dict) -> list[dict]:
    out = []
    for name, ds in metrics["datasets"].items():
        over = summary_splits(ds) if ds["splits"] else []
        summary = {key: dataset_summary(ds, key) for key, _ in METRIC_COLUMNS} if over else {}
        splits = [{"name": s, **{key: corr.get(key) for key, _ in METRIC_COLUMNS},
                   "n": corr.get("n"), "n_dropped": corr.get("n_dropped"), "logistic_ok": corr.get("logistic_ok")}
                  for s, corr in ds["splits"].items()]
        plot = plots.get(name)
        out.append({"name": name, "higher_is_better": ds["higher_is_better"], "n_images": ds["n_images"],
                    "n_failed": ds["n_failed"], "summary": summary, "splits": splits,
                    "summary_over": _over_text(over),
                    "plot": plot.as_posix() if plot else None})
    return out


def report_context(run: RunRecord, scores: pd.DataFrame, plots: dict) -> dict:
    """Everything the report templates show, as plain values (`plots`: dataset -> relative PNG path)."""
    m = run.manifest
    n_failed_images, failed_listed = _failed_images(scores)
    counts = m["counts"]
    anchors = m["anchors"]
    anchor_rows = [{"image": img, "mos": mos, "std": std}
                   for img, mos, std in zip(anchors.get("images", []), anchors.get("mos", []), anchors.get("std", []))]
    total = counts.get("pairs_total", "?")
    pairs_failed, images_failed = counts.get("pairs_failed", 0), counts.get("images_failed", 0)
    if pairs_failed or images_failed or n_failed_images:
        failure_line = (f"FAILURES: {pairs_failed} of {total} pairs failed; {images_failed} images failed "
                        f"({n_failed_images} failed images in scores.csv). Failed images are left out of the "
                        "correlations below; see \"Failed images\".")
    else:
        failure_line = f"No failures: 0 of {total} pairs failed, 0 images failed."
    return {
        "failure_line": failure_line, "has_failures": bool(pairs_failed or images_failed or n_failed_images),
        "run_id": m["run_id"], "created": m["created"], "mode": m["mode"],
        "model": m["model"], "profile": m["profile"], "profile_name": m["profile"].get("name", "?"),
        "anchors": anchors, "anchor_rows": anchor_rows,
        "datasets": _datasets_context(run.metrics, plots),
        "metric_columns": METRIC_COLUMNS,
        "counts": counts,
        "failed_in_scores": n_failed_images, "failed_listed": failed_listed,
        "timings": m.get("timings", {}), "versions": m.get("versions", {}), "seeds": m.get("seeds", {}),
        "git_revision": m.get("git_revision"),
        "fingerprint_json": json.dumps(m["model"].get("fingerprint", {}), indent=2, sort_keys=True, default=str),
    }


def write_report(run_dir) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (with the scatter plots) into a run folder."""
    # imported here: plots needs this module's readers, and matplotlib only loads when plotting
    from harness.report.plots import dataset_plots

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    scores = read_scores(run_dir)
    plots = {ds: p.relative_to(run_dir) for ds, p in dataset_plots(run, scores).items()}
    ctx = report_context(run, scores, plots)
    md = run_dir / "report.md"
    html = run_dir / "report.html"
    md.write_text(template_env(False).get_template("report.md.j2").render(**ctx), encoding="utf-8")
    html.write_text(template_env(True).get_template("report.html.j2").render(**ctx), encoding="utf-8")
    return md, html
