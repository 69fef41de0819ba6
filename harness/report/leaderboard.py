"""Paper-style leaderboards merged from run folders: rows are (model label, profile, mode, anchor set,
scope), columns datasets, cells the headline SRCC and logistic PLCC (± sd over splits where several,
the 95% bootstrap interval where the run computed one), best marked.

The anchor set (name and digest) is part of a row, so an ablation over anchors gives rows side by
side; so is the scope: a run limited to the first N images of each dataset (`--limit`) is its own
row, labelled, never merged with the full run of the same model. Runs of the same row covering
different datasets merge into one row; the same row and dataset twice is a conflict (which number
would be right?) and raises unless the caller asks to keep the newest run. Each cell carries its
failed and dropped counts, shown in every format: images that could not be scored, and dataset items
left out as bad (`--drop-bad`), so a number over fewer images never passes for the whole dataset.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from harness.core.vocabulary import LEADERBOARD_FORMATS
from harness.core.jsontext import strict_json
from harness.core.metrics import aggregate
from harness.data.composite import protocol_of
from harness.report.reports import ci_text, headline_ci, site_asset, summary_text, template_env
from harness.run.record import Aggregate, DatasetMetrics, RunRecord, check_outputs, read_run

FORMATS = LEADERBOARD_FORMATS
#: decimals shown; "best" is decided on the shown values so ties in print are ties in bold
DIGITS = 3
#: (metric key in a split's correlation dict, column title)
CELL_METRICS = (("srcc", "SRCC"), ("plcc_logistic", "PLCC"))
#: optional column groups (`c2s leaderboard --columns`): name -> (cell key, column title); "accuracy" is the
#: pairwise accuracy's headline, binary direction and five-level Eqn. 2 agreement (docs/method.md, "Pairwise accuracy")
COLUMN_SETS = {"accuracy": (("pair_binary", "Pair acc."), ("pair_five_level", "5-level acc."))}
#: where a cell key of a column group is read: the dataset's `pair_accuracy_summary`
PAIR_KEYS = {"pair_binary": "binary", "pair_five_level": "five_level"}
#: a column group's value where a run has none
NO_VALUE = Aggregate(**aggregate([]))
ACCURACY_NOTE = ("Pair acc. / 5-level acc.: pairwise accuracy of the judged pairs against the MOS order (binary "
                 "direction) and against the Eqn. 2 labels (five levels, needs std), median over the same splits; "
                 "n/a where the run has none (rating mode, no std, anchors from another dataset, older folders).")
NOTES = (f"SRCC and PLCC (after the 4-parameter logistic fit): median over each dataset's splits (one value where "
         f"the run summarises the whole dataset), ± sample sd (ddof 1) where there are several; best per column in "
         f"bold (compared at {DIGITS} decimals). "
         "[low, high]: 95% percentile bootstrap interval (runs with --bootstrap N, where the headline is one "
         "group of images). Anchors: the anchor set's name and digest (runs differing only in anchors are separate "
         "rows). \"limited to first N\": a --limit run, never merged with a full one. "
         "\"failed / dropped\": images of the dataset that could not be scored / dataset items left out as bad "
         "(--drop-bad; listed in the run's report). –: not evaluated.")


@dataclass(frozen=True)
class RowKey:
    model_label: str
    profile: str
    mode: str
    #: the anchor set, "name (digest)": an anchor ablation is a row of its own
    anchors: str
    #: images per dataset of a --limit run (None: the whole dataset)
    limit: int | None = None
    #: an active design's settings, e.g. "active, budget 3" (None: the anchor design): a row of its own
    design: str | None = None
    #: how pairs reached the model (harness/data/composite.py): a composite run is a row of its own
    protocol: str = "two-image"

    @property
    def model_text(self) -> str:
        """The model as shown in a table: a composite-protocol run, a limited run and an active design say so."""
        return (self.model_label + (" [composite]" if self.protocol == "composite" else "")
                + (f" [limited to first {self.limit}]" if self.limit else "")
                + (f" [{self.design}]" if self.design else ""))

    def describe(self) -> str:
        return f"{self.model_text} ({self.profile}, {self.mode}, anchors {self.anchors})"


@dataclass
class Cell:
    """One (row, dataset) result. `stats` maps a metric key to its summary over splits (median, sd, n)."""

    run_id: str
    run_dir: str
    created: str
    n_images: int
    n_failed: int
    #: dataset items left out as bad before scoring (--drop-bad)
    n_dropped: int
    n_splits: int
    stats: dict[str, Aggregate]
    #: metric key -> 95% bootstrap interval of the headline, where there is one
    ci95: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    best: dict = field(default_factory=dict)

    def text(self, key: str) -> str:
        return summary_text(self.stats[key], DIGITS) + ci_text(self.ci95.get(key), DIGITS)

    def failed_text(self) -> str:
        return f"{self.n_failed} / {self.n_dropped}"


@dataclass
class Leaderboard:
    rows: list[RowKey]
    datasets: list[str]
    cells: dict[tuple[RowKey, str], Cell]
    #: (row, dataset) scored without ground truth: listed under the table, not ranked
    unranked: list = field(default_factory=list)
    #: the run folders read (never written over by `write_leaderboard`)
    run_dirs: list[Path] = field(default_factory=list)
    #: the (cell key, title) columns shown per dataset: CELL_METRICS plus the column groups asked for
    metrics: tuple = CELL_METRICS

    def cell(self, row: RowKey, dataset: str) -> Cell | None:
        return self.cells.get((row, dataset))

    def records(self) -> list[dict]:
        """One flat record per filled cell (the CSV and JSON rows); undefined numbers are None."""
        out = []
        for row in self.rows:
            for ds in self.datasets:
                c = self.cell(row, ds)
                if c is None:
                    continue
                rec = {**asdict(row), "dataset": ds}
                for key, _ in self.metrics:
                    s = c.stats[key]
                    lo, hi = c.ci95.get(key) or (None, None)
                    rec.update({f"{key}_median": s.median, f"{key}_sd": s.sd, f"{key}_n_splits": s.n,
                                f"{key}_ci95_low": lo, f"{key}_ci95_high": hi, f"{key}_best": c.best[key]})
                rec.update({"n_splits": c.n_splits, "n_images": c.n_images, "n_failed": c.n_failed,
                            "n_dropped": c.n_dropped, "run_id": c.run_id, "run_dir": c.run_dir,
                            "created": c.created})
                out.append(strict_json(rec))  # no portable NaN in CSV or JSON: empty / null
        return out


def _cell(run: RunRecord, name: str, ds: DatasetMetrics) -> Cell:
    dropped = sum(len(d.dropped) for d in run.manifest.datasets if d.name == name)
    return Cell(run_id=run.metrics.run_id, run_dir=str(run.run_dir), created=run.manifest.created,
                n_images=ds.n_images, n_failed=ds.n_failed, n_dropped=dropped, n_splits=len(ds.over),
                stats={**{key: ds.summary[key] for key, _ in CELL_METRICS},
                       **{key: (ds.pair_accuracy_summary or {}).get(name, NO_VALUE) for key, name in PAIR_KEYS.items()}},
                ci95={key: headline_ci(ds, key) for key, _ in CELL_METRICS})


def row_key(run: RunRecord) -> RowKey:
    m, a = run.metrics, run.manifest.anchors
    d = run.manifest.design or {}
    design = f"active, budget {d.get('budget'):g}" if d.get("name") == "active" else None
    return RowKey(m.model_label, m.profile, m.mode, f"{a.name} ({a.digest[:8]})", run.manifest.limit, design,
                  protocol_of(run.manifest.model.fingerprint))


def _mark_best(lb: Leaderboard) -> None:
    for ds in lb.datasets:
        cells = [c for (_, d), c in lb.cells.items() if d == ds]
        for key, _ in lb.metrics:
            shown = [round(c.stats[key].median, DIGITS) for c in cells]
            top = max((v for v in shown if math.isfinite(v)), default=None)
            for c, v in zip(cells, shown):
                c.best[key] = v == top


def collect(run_dirs, keep_latest: bool = False, row_of=None, column_of=None) -> Leaderboard:
    """Merge run folders into rows and cells, best not yet marked: `row_of(run)` names a run's row
    (default `row_key`), `column_of(dataset name)` its column (default the name). A (row, column) given
    twice raises unless `keep_latest`."""
    row_of = row_of or row_key
    column_of = column_of or str
    # the same folder named twice (e.g. overlapping shell globs) is one run, not a conflict
    unique: dict[Path, Path] = {}
    for p in run_dirs:
        unique.setdefault(Path(p).resolve(), Path(p))
    run_dirs = list(unique.values())
    if not run_dirs:
        raise ValueError("build_leaderboard: no run folders given")
    rows: list = []
    datasets: list[str] = []
    cells: dict[tuple, Cell] = {}
    created: dict[tuple, datetime] = {}
    unranked: list[tuple] = []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        m = run.metrics
        row = row_of(run)
        when = run.manifest.created_at
        if row not in rows:
            rows.append(row)
        for name, ds in m.datasets.items():
            if not ds.splits:
                unranked.append((row, name))
                continue
            column = column_of(name)
            if column not in datasets:
                datasets.append(column)
            key = (row, column)
            if key in cells:
                old = cells[key]
                where = f"{row.describe()} on {column!r} appears in two runs: {old.run_dir} and {run_dir}"
                if not keep_latest:
                    raise ValueError(f"{where}; add --keep-latest to keep the newer one, or leave one out")
                if when == created[key]:
                    raise ValueError(f"{where}, both created at {when.isoformat()}: cannot tell which is newer")
                if when < created[key]:
                    continue
            cells[key] = _cell(run, name, ds)
            created[key] = when
    if not cells:
        raise ValueError(f"build_leaderboard: the runs {[str(p) for p in run_dirs]} hold no dataset with "
                         "ground-truth scores to rank")
    return Leaderboard(rows, datasets, cells, unranked, run_dirs)


def build_leaderboard(run_dirs, keep_latest: bool = False, columns=()) -> Leaderboard:
    """Merge run folders into one table; a (row, dataset) given twice raises unless `keep_latest`.
    `columns`: names of COLUMN_SETS shown after SRCC and PLCC."""
    unknown = [c for c in columns if c not in COLUMN_SETS]
    if unknown:
        raise ValueError(f"--columns {','.join(unknown)}: not a column group; choose from {', '.join(COLUMN_SETS)}")
    lb = collect(run_dirs, keep_latest)
    lb.metrics = CELL_METRICS + tuple(m for c in dict.fromkeys(columns) for m in COLUMN_SETS[c])
    _mark_best(lb)
    return lb


def _context(lb: Leaderboard) -> dict:
    notes = NOTES + (" " + ACCURACY_NOTE if lb.metrics != CELL_METRICS else "")
    return {"rows": lb.rows, "datasets": lb.datasets, "cell": lb.cell, "metrics": lb.metrics, "notes": notes,
            "unranked": [f"{r.describe()} on {ds}" for r, ds in lb.unranked],
            "runs": sorted({(c.run_id, c.run_dir) for c in lb.cells.values()})}


def _html_context(lb: Leaderboard, out_dir: Path, viewer) -> dict:
    """What the HTML page adds: a 95% interval column where some run computed one, each row's runs linked
    to their reports (and to the viewer site `viewer`, a folder written by `c2s view`, if given), the
    values of the row filters, and the sorting script (docs/viewer.md)."""
    def href(path: Path) -> str:
        return Path(os.path.relpath(path, out_dir)).as_posix()

    ci_keys = {ds: [k for k, _ in lb.metrics if any(c.ci95.get(k) for r in lb.rows if (c := lb.cell(r, ds)))]
               for ds in lb.datasets}
    def row_links(row: RowKey) -> list[dict]:
        runs = dict.fromkeys((c.run_id, c.run_dir) for c in map(partial(lb.cell, row), lb.datasets) if c)
        return [{"run_id": run_id, "report": href(Path(run_dir) / "report.html"),
                 "viewer": href(Path(viewer) / "index.html") + f"#/run/{run_id}" if viewer else None}
                for run_id, run_dir in runs]

    links = {row: row_links(row) for row in lb.rows}
    filters = {name: sorted({_filter_value(r, name) for r in lb.rows}) for name in FILTERS}
    return {**_context(lb), "ci_keys": ci_keys, "links": links, "filters": filters, "filter_value": _filter_value,
            "sortable_js": site_asset("sortable.js")}


#: the row properties the HTML page filters by
FILTERS = ("profile", "mode", "anchors", "scope")


def _filter_value(row: RowKey, name: str) -> str:
    return (f"first {row.limit}" if row.limit else "all images") if name == "scope" else getattr(row, name)


def write_leaderboard(lb: Leaderboard, out_dir, formats=FORMATS, viewer=None) -> list[Path]:
    """Write `leaderboard.<fmt>` for each requested format into `out_dir`; returns the paths. A table
    is never written over or into one of the run folders read. `viewer`: a site of `c2s view` the HTML
    rows link to."""
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"write_leaderboard: unknown format(s) {unknown}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    check_outputs([out_dir / f"leaderboard.{f}" for f in formats], lb.run_dirs, fix="choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    records = lb.records()
    for f in formats:
        path = out_dir / f"leaderboard.{f}"
        if f in ("md", "html"):
            ctx = _html_context(lb, out_dir, viewer) if f == "html" else _context(lb)
            text = template_env(f == "html").get_template(f"leaderboard.{f}.j2").render(**ctx)
            path.write_text(text, encoding="utf-8")
        elif f == "csv":
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)
        else:
            doc = {"datasets": lb.datasets, "rows": [asdict(r) for r in lb.rows],
                   "unranked": [{**asdict(r), "dataset": ds} for r, ds in lb.unranked],
                   "cells": records}
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
