"""The run folder: its schema, its one writer and its one reader (docs/architecture.md, "Run folder").

A run folder holds `manifest.json` (what ran, with what, how it went), `metrics.json` (correlations
per dataset and split, and the headline summary), `scores.csv` (one row per image and split) and
`comparisons.csv` (every judged pair, exactly as judged). The runner writes through `write_run`;
rescore, reports, plots, leaderboards and the CLI read through `read_run`. Nothing else parses them.

Format versions: `manifest.json` carries `format_version` (FORMAT_VERSION). A folder without one is
version 1 (the same files, written before versions existed; its JSON may hold NaN): it is upgraded
in memory and read. A folder from a newer version is refused. Any change to the files bumps
FORMAT_VERSION and adds an upgrade step from the version before to `_UPGRADES`.

Writing is atomic: the whole folder (reports and plots included, through `write_run`'s `complete`)
is written into a hidden sibling and renamed into place, so a crash or a full disk never leaves new
and old files mixed. A run id names exactly one folder inside the output folder (`check_run_id`). JSON is strict (no NaN or Infinity: null instead);
CSV floats are written as repr, the shortest text that parses back to the same bits (rescore
reproduces a run's metrics bit for bit from them).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from harness import __version__
from harness.core.anchors import AnchorSet
from harness.core.jsontext import parse_json, strict_json
from harness.core.levels import LEVELS, N_LEVELS
from harness.core.pairs import Pair
from harness.core.profiles import Profile
from harness.core.vocabulary import ALL, MODES, ORDERS, SUMMARIES
from harness.data.datasets import Dataset, Problem, Record, ValidationReport
from harness.run.evaluation import SUMMARY_METRICS, DatasetRun, summary_splits
from harness.run.judging import Judged
from harness.run.scoring import apply_calibration, on_raw_logits, pair_preference

FORMAT_VERSION = 2
MANIFEST, METRICS, SCORES, COMPARISONS = "manifest.json", "metrics.json", "scores.csv", "comparisons.csv"


class RunFolderError(ValueError):
    """A run folder that cannot be read: missing, malformed, or of another format version."""


# --- run identity and provenance ------------------------------------------------------------------

def slug(text: str) -> str:
    """A file-name-safe fragment; no leading dot (a hidden folder is not a run)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lstrip(".")[:60] or "run"


#: the longest run id, in UTF-8 bytes: the hidden temporary name beside it must fit in a file name (255)
MAX_RUN_ID = 200


def check_run_id(run_id) -> str:
    """A run id names exactly one folder inside the output folder: no path separator, no leading dot
    (".", ".." and hidden names), no control character, not empty, at most MAX_RUN_ID bytes."""
    why = ("is not text" if not isinstance(run_id, str) else "is empty" if not run_id
           else "holds a path separator" if "/" in run_id or "\\" in run_id
           else "starts with a dot" if run_id.startswith(".")
           else "holds a control character" if any(ord(c) < 32 or ord(c) == 127 for c in run_id)
           else f"is {len(run_id.encode('utf-8', 'replace'))} bytes long (at most {MAX_RUN_ID})"
           if len(run_id.encode("utf-8", "replace")) > MAX_RUN_ID else None)
    if why:
        raise ValueError(f"run id {run_id!r} {why}: a run id names one folder inside --out (e.g. letters, digits, "
                         f"'.', '-', '_'; no leading dot, at most {MAX_RUN_ID} bytes); choose another --run-id "
                         "(run_id: in YAML)")
    return run_id


def short_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def versions() -> dict:
    """Versions of what computed the numbers; heavy libraries only if this process imported them."""
    out = {"python": sys.version.split()[0], "c2s-harness": __version__}
    for name in ("numpy", "scipy", "pandas", "PIL", "torch", "transformers", "vllm", "openai", "skimage"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


def git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) if rev else None


# --- the schema ----------------------------------------------------------------------------------

#: a JSON number that may be undefined: NaN, written as null (strict JSON has no NaN)
Real = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]
#: a CSV number that may be absent (the MOS of an unlabelled image): an empty cell
OptionalNumber = Annotated[float | None, BeforeValidator(lambda v: None if v == "" else v)]
Status = Literal["ok", "failed"]


class _Schema(BaseModel):
    # a field the schema does not know is an error, not silently dropped data
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Schema):
    spec: str
    label: str
    options: dict[str, Any]
    fingerprint: dict[str, Any]
    fingerprint_hash: str


class AnchorsInfo(_Schema):
    name: str
    source: str
    images: list[str]
    mos: list[float]
    std: list[float]
    digest: str
    #: the anchor set's own fixed matrix (the official one), if it carries one
    fixed_matrix: list[list[Real]] | None
    #: where the matrix used came from (comparator, mos, official), and the matrix itself
    matrix_source: str | None
    matrix: list[list[Real]] | None


class DatasetInfo(_Schema):
    name: str
    root: str
    n_images: int
    higher_is_better: bool
    splits: list[str]
    summary_over: Literal[SUMMARIES]
    #: items left out as broken (--drop-bad)
    dropped: list[str]


class Counts(_Schema):
    pairs_total: int
    pairs_cached: int
    pairs_computed: int
    pairs_failed: int
    images_total: int
    images_failed: int
    #: pairs whose cached row was invalid and were judged again (harness.run.cache); 0 in older folders
    pairs_cache_invalid: int = 0
    #: judged pairs whose float16 preference (logit_dtype float16, mode soft) ran on the raw level logits;
    #: the other judged pairs ran on their log-probs (docs/method.md, item 7); 0 otherwise and in older folders
    pairs_raw_logits: int = 0


class Seeds(_Schema):
    bootstrap: int
    official_adam: int


class RescoredFrom(_Schema):
    run_id: str
    same_settings: bool


class Manifest(_Schema):
    """What ran, with what, and how it went (manifest.json)."""

    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    run_id: str
    #: ISO 8601 time; one without a zone is read as UTC
    created: str
    model: ModelInfo
    order: Literal[ORDERS]
    batch_size: int
    anchors_in_test: list[str]
    #: the run's configuration as given (dataset and anchor specs)
    datasets_config: list[dict[str, Any]]
    anchors_config: dict[str, Any]
    seeds: Seeds
    bootstrap: int
    cache: str | None
    profile: Profile
    mode: Literal[MODES]
    anchors: AnchorsInfo
    datasets: list[DatasetInfo]
    versions: dict[str, str]
    git_revision: str | None
    #: seconds per stage
    timings: dict[str, float]
    counts: Counts
    map_converged_fraction: float | None
    anchors_unusable: list[str]
    rescored_from: RescoredFrom | None = None
    #: --calibrate: the fitted temperature and bias and the anchor block's NLL and ECE before and after
    #: (harness.core.calibration.Calibration); None when the profile does not calibrate
    calibration: dict[str, Any] | None = None
    #: --limit: only the first N images of each dataset (manifest order) were scored; None: all of them
    limit: int | None = None
    #: the comparison design (harness.run.designs.Design.record); None in folders written before designs
    design: dict[str, Any] | None = None
    #: where judging ran (harness.run.executors.ExecutorSpec.recorded): no part of the run's identity
    executor: dict[str, Any] | None = None

    @field_validator("created")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        _parse_time(value)
        return value

    @property
    def created_at(self) -> datetime:
        return _parse_time(self.created)


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class SplitMetrics(_Schema):
    """The correlations of one split (`harness.core.metrics.correlations`); NaN where undefined."""

    n: int
    n_dropped: int
    srcc: Real
    krcc: Real
    plcc: Real
    plcc_logistic: Real
    rmse_logistic: Real
    logistic_ok: bool
    logistic_message: str = ""
    #: why every metric above is undefined (null), e.g. constant predictions; "" when they are defined
    undefined: str = ""
    #: percentile bootstrap intervals, with --bootstrap only
    srcc_ci95: tuple[Real, Real] | None = None
    plcc_ci95: tuple[Real, Real] | None = None


class PairAccuracy(_Schema):
    """Pairwise prediction accuracy of one split (`harness.core.metrics.pair_accuracy`; docs/method.md,
    "Pairwise accuracy"): the binary direction and the five-level Eqn. 2 agreement, each overall, inside
    the "similar" band and outside it, with the pairs each counts; NaN (null) where no pair counts."""

    n_pairs: int
    n_failed: int
    n_mos_ties: int
    n_no_std: int
    binary: Real
    n_binary: int
    binary_similar: Real
    n_binary_similar: int
    binary_outside: Real
    n_binary_outside: int
    five_level: Real
    n_five_level: int
    five_level_similar: Real
    n_five_level_similar: int
    five_level_outside: Real
    n_five_level_outside: int


class Aggregate(_Schema):
    """One metric over the summary splits (`harness.core.metrics.aggregate`)."""

    median: Real
    mean: Real
    sd: Real
    min: Real
    max: Real
    n: int
    n_dropped: int


class DatasetMetrics(_Schema):
    higher_is_better: bool
    n_images: int
    n_failed: int
    summary_over: Literal[SUMMARIES]
    #: split -> correlations ("all": every image); empty when the dataset has no MOS
    splits: dict[str, SplitMetrics]
    #: metric -> aggregate over the summary splits; empty when the dataset has no MOS
    summary: dict[str, Aggregate]
    #: the manifest's `group` column -> correlations of that group (never part of the headline)
    groups: dict[str, SplitMetrics] | None = None
    #: split -> pairwise accuracy; absent in rating runs and in folders written before it existed
    pair_accuracy: dict[str, PairAccuracy] | None = None
    #: "binary" / "five_level" -> aggregate over the summary splits, beside `pair_accuracy`
    pair_accuracy_summary: dict[str, Aggregate] | None = None

    @model_validator(mode="after")
    def _summary_complete(self):
        if self.splits:
            summary_splits(self.splits, self.summary_over)
            missing = [m for m in SUMMARY_METRICS if m not in self.summary]
            if missing:
                raise ValueError(f"summary lacks {missing}")
        return self

    @property
    def over(self) -> list[str]:
        """The splits the summary aggregates (none without MOS)."""
        return summary_splits(self.splits, self.summary_over) if self.splits else []


class Metrics(_Schema):
    """The numbers of a run (metrics.json)."""

    run_id: str
    model_label: str
    #: the profile's label, overridden settings included (`harness.core.profiles.profile_label`)
    profile: str
    mode: Literal[MODES]
    datasets: dict[str, DatasetMetrics]


class ScoreRow(_Schema):
    """One image in one split it belongs to (scores.csv); score, latent and sd are NaN when failed."""

    dataset: str
    split: str
    image: str
    path: str
    mos: OptionalNumber
    #: the manifest's std of the MOS (Eqn. 2 labels of the pairwise accuracy, so rescore recomputes them);
    #: absent in folders written before it existed and where the manifest has none
    std: OptionalNumber = None
    score: float
    latent: float
    sd: float
    n_anchors_ok: int
    status: Status
    error: str
    #: the manifest's `group` column (e.g. a distortion family): per-group tables and plot colours,
    #: never the headline; absent in folders written before it existed
    group: str = ""
    #: the manifest's other columns, as written there (a `meta:NAME` column each in the CSV file)
    extra: dict[str, str] = {}


class ComparisonRow(_Schema):
    """One judged pair (comparisons.csv): the level log-probs (NaN when failed) and the preference."""

    first: str
    second: str
    role: Literal["test", "anchor"]
    #: one per level, in LEVELS order (a column each in the CSV file)
    logprobs: Annotated[list[float], Field(min_length=N_LEVELS, max_length=N_LEVELS)]
    preference: float
    status: Status
    error: str
    cached: bool
    #: what the backend subtracted from its raw level logits (raw = log-probs + this; the float16 path runs
    #: on them); absent where unknown (APIs, failed pairs) and in folders written before it existed
    logsumexp: OptionalNumber = None


# --- CSV tables ----------------------------------------------------------------------------------

#: the CSV column of a key of a table's `extra` field (a manifest column carried into scores.csv)
EXTRA_PREFIX = "meta:"


class _Table:
    """How rows of one model lie in a CSV file: a column per field, except the fields `spread` over
    several (the log-probs, one column per level) and the `extra` dict field (one `meta:KEY` column
    per key any row has). A field with a default is written only when some row differs from it, and
    may be absent from a file (so folders written before it existed read, and rescore to, the same text)."""

    def __init__(self, model: type, spread: dict[str, list[str]], extra: str | None = None):
        self.extra = extra
        self.names = tuple(f for f in model.model_fields if f != extra)
        self.optional = {f: model.model_fields[f].get_default(call_default_factory=True) for f in self.names
                         if not model.model_fields[f].is_required()}
        self.spread = spread
        self.columns = [c for f in self.names for c in spread.get(f, [f])]
        self.rows = TypeAdapter(list[model])

    def layout(self, rows: list[BaseModel]) -> tuple[list[str], list[str]]:
        """The fields written for these rows (optional ones only where used) and the extra keys."""
        names = [f for f in self.names
                 if f not in self.optional or any(getattr(r, f) != self.optional[f] for r in rows)]
        keys = list(dict.fromkeys(k for r in rows for k in getattr(r, self.extra))) if self.extra else []
        return names, keys

    def header(self, names: list[str], keys: list[str]) -> list[str]:
        return [c for f in names for c in self.spread.get(f, [f])] + [EXTRA_PREFIX + k for k in keys]

    def cells(self, row: BaseModel, names: list[str], keys: list[str]) -> list[str]:
        out = []
        for f in names:
            value = getattr(row, f)
            out += [_cell(v) for v in value] if f in self.spread else [_cell(value)]
        return out + [getattr(row, self.extra).get(k, "") for k in keys]

    def column_of(self, loc: tuple) -> str:
        """The column of an error location within a row (field[, item])."""
        f = str(loc[0]) if loc else "?"
        return self.spread[f][loc[1]] if f in self.spread and len(loc) > 1 else f


_TABLES = {SCORES: _Table(ScoreRow, {}, extra="extra"), COMPARISONS: _Table(ComparisonRow, {"logprobs": list(LEVELS)})}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def _write_csv(path: Path, rows: list[BaseModel]) -> None:
    table = _TABLES[path.name]
    names, keys = table.layout(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(table.header(names, keys))
        w.writerows(table.cells(r, names, keys) for r in rows)
        _sync(f)


def _read_csv(path: Path) -> list:
    """The typed rows of a CSV table; a bad cell is an error naming its line and column."""
    table = _TABLES[path.name]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            missing = [c for c in table.columns if c not in header and c not in table.optional]
            extra = {i: c[len(EXTRA_PREFIX):] for i, c in enumerate(header)
                     if table.extra and c.startswith(EXTRA_PREFIX)}
            unknown = [c for i, c in enumerate(header) if c not in table.columns and i not in extra]
            if missing:
                raise RunFolderError(f"{path}: missing column(s) {missing}")
            if unknown:
                raise RunFolderError(f"{path}: unknown column(s) {unknown}")
            at = {c: header.index(c) for c in table.columns if c in header}
            where = [(f, [at[c] for c in table.spread[f]] if f in table.spread else at[f]) for f in table.names
                     if f in table.spread or f in at]
            fields, lines = [], []
            for cells in reader:
                if len(cells) != len(header):
                    raise RunFolderError(f"{path} line {reader.line_num}: {len(cells)} cells, {len(header)} expected")
                fields.append({f: [cells[i] for i in k] if isinstance(k, list) else cells[k] for f, k in where})
                if extra:
                    fields[-1][table.extra] = {key: cells[i] for i, key in extra.items() if cells[i] != ""}
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise RunFolderError(f"{path.parent}: missing {path.name}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RunFolderError(f"{path}: not a readable CSV file ({exc})") from None
    try:
        return table.rows.validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]  # loc: (row index, field[, item])
        raise RunFolderError(f"{path} line {lines[first['loc'][0]]}: column {table.column_of(first['loc'][1:])!r}: "
                             + _message(first)) from None


# --- JSON ----------------------------------------------------------------------------------------

def _write_json(path: Path, doc: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(strict_json(doc), indent=1, allow_nan=False))
        _sync(f)


def _read_json(path: Path) -> dict:
    """A JSON object; NaN tokens are accepted (version 1 wrote them)."""
    if not path.is_file():
        raise RunFolderError(f"{path.parent}: missing {path.name}; is this a run folder (results/runs/<run-id>/)?")
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _validate(model: type, doc: dict, path: Path):
    """Parsed JSON checked against the schema, strictly: "1.5" is not a number, 1 is not a bool."""
    try:
        return model.model_validate_json(json.dumps(doc), strict=True)
    except ValidationError as exc:
        raise RunFolderError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """The first few problems of a validation error, each naming its field."""
    parts = [f"field {'.'.join(map(str, e['loc'])) or '(top level)'!r}: {_message(e)}" for e in exc.errors()[:3]]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more problem(s)" if more > 0 else "")


def _message(error: dict) -> str:
    msg = {"missing": "missing", "extra_forbidden": "unknown field"}.get(error["type"], error["msg"])
    msg = msg.removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] not in ("missing", "value_error") and isinstance(value, (str, int, float, bool, type(None))):
        msg += f" (got {value!r:.80})"
    return msg


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


# --- format versions -----------------------------------------------------------------------------

def _from_v1(manifest: dict, metrics: dict) -> tuple[dict, dict]:
    """Version 1 is version 2 without the version field (NaN in its JSON is read by json.loads)."""
    return {**manifest, "format_version": 2}, metrics


#: version -> the step that turns its (manifest, metrics) into the next version's
_UPGRADES = {1: _from_v1}


def _format_version(manifest: dict, path: Path) -> int:
    version = manifest.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunFolderError(f"{path}: field 'format_version' must be a whole number >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise RunFolderError(f"{path.parent}: run folder format version {version} is newer than this c2s-harness "
                             f"reads (versions 1 to {FORMAT_VERSION}); upgrade c2s-harness to read it")
    return version


# --- the record ----------------------------------------------------------------------------------

@dataclass
class RunRecord:
    """One run folder, read and checked: the JSON files at once, the CSV tables when first used."""

    run_dir: Path
    manifest: Manifest
    metrics: Metrics
    #: the format version found on disk (older versions are upgraded in memory)
    source_version: int = FORMAT_VERSION

    @cached_property
    def scores(self) -> list[ScoreRow]:
        return _read_csv(self.run_dir / SCORES)

    @cached_property
    def comparisons(self) -> list[ComparisonRow]:
        rows = _read_csv(self.run_dir / COMPARISONS)
        expected = self.manifest.counts.pairs_total
        if len(rows) != expected:  # a truncated table would quietly rescore with pairs missing
            raise RunFolderError(f"{self.run_dir / COMPARISONS}: {len(rows)} rows, but {MANIFEST} field "
                                 f"'counts.pairs_total' says {expected}")
        return rows

    def anchor_set(self) -> AnchorSet:
        a = self.manifest.anchors
        try:
            return AnchorSet(images=a.images, mos=a.mos, std=a.std, matrix=a.fixed_matrix, name=a.name,
                             source=a.source)
        except ValueError as exc:
            raise RunFolderError(f"{self.run_dir / MANIFEST}: field 'anchors': {exc}") from None

    def judged(self) -> Judged:
        """The recorded comparisons, exactly as judged."""
        rows = self.comparisons
        return Judged([Pair(r.first, r.second) for r in rows], [r.role for r in rows],
                      np.array([r.logprobs for r in rows], dtype=np.float64).reshape(-1, N_LEVELS),
                      [r.error or None for r in rows], np.array([r.cached for r in rows], dtype=bool),
                      shift=np.array([np.nan if r.logsumexp is None else r.logsumexp for r in rows], dtype=np.float64))

    def dataset_runs(self) -> tuple[list[DatasetRun], list[str]]:
        """The datasets of the run, rebuilt from scores.csv and the manifest (no image is opened; the items
        dropped as bad stay listed), and the test images in the order they were scored."""
        info = {d.name: d for d in self.manifest.datasets}
        recs: dict[str, dict[str, Record]] = {name: {} for name in info}
        tests: dict[str, None] = {}
        for i, row in enumerate(self.scores, start=1):
            if row.dataset not in recs:
                raise RunFolderError(f"{self.run_dir / SCORES} line {i + 1}: dataset {row.dataset!r} is not in "
                                     f"{MANIFEST} (it lists {sorted(info)})")
            expected = str(Path(info[row.dataset].root) / row.image)
            if row.path != expected:  # the scores would be matched to no image (or another one)
                raise RunFolderError(f"{self.run_dir / SCORES} line {i + 1}: column 'path': {row.path!r} is not image "
                                     f"{row.image!r} under the root of dataset {row.dataset!r} ({expected})")
            old = recs[row.dataset].get(row.image)
            tag = frozenset() if row.split == ALL else frozenset([row.split])
            recs[row.dataset][row.image] = Record(row.image, row.mos, row.std, tag if old is None else old.splits | tag,
                                                  row.group, tuple(row.extra.items()))
            tests[row.path] = None
        dsruns = [DatasetRun(Dataset(name=name, root=Path(d.root), records=list(recs[name].values()),
                                     higher_is_better=d.higher_is_better,
                                     report=ValidationReport(name, len(recs[name]), [], list(map(_problem, d.dropped)),
                                                             checked_files=False)), d.summary_over)
                  for name, d in info.items()]
        return dsruns, list(tests)


def _problem(text: str) -> Problem:
    """A dropped item as recorded (`str(Problem)`: "kind: where: detail"), back as a Problem of the same text."""
    kind, where, detail = text.split(": ", 2) if text.count(": ") >= 2 else ("dropped", "-", text)
    return Problem(kind, where, detail)


def read_run(run_dir) -> RunRecord:
    """Read and check a run folder's manifest and metrics (the CSV tables are read when first used);
    anything wrong is one RunFolderError naming the file and the field."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder not found: {run_dir}")
    manifest = _read_json(run_dir / MANIFEST)
    version = _format_version(manifest, run_dir / MANIFEST)
    metrics = _read_json(run_dir / METRICS)
    for v in range(version, FORMAT_VERSION):
        manifest, metrics = _UPGRADES[v](manifest, metrics)
    record = RunRecord(run_dir, _validate(Manifest, manifest, run_dir / MANIFEST),
                       _validate(Metrics, metrics, run_dir / METRICS), version)
    if record.manifest.run_id != record.metrics.run_id:
        raise RunFolderError(f"{run_dir}: {MANIFEST} is run {record.manifest.run_id!r} but {METRICS} is run "
                             f"{record.metrics.run_id!r}; run `c2s rescore` on the run to rebuild its metrics")
    return record


def is_run_dir(path) -> bool:
    """A finished run folder: one with a manifest, not hidden (folders being written are hidden)."""
    path = Path(path)
    return not path.name.startswith(".") and (path / MANIFEST).is_file()


def run_dirs_in(folder) -> list[Path]:
    """The finished run folders directly inside `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_run_dir(p))


#: the hidden folders `write_run` works in: `.ID.tmp-PID-HEX` (being written) and `.ID.old-PID-HEX`
#: (the previous folder, moved aside until the new one is in place)
_WORK_DIR = re.compile(r"\.(?P<run>.+)\.(?P<kind>tmp|old)-\d+-[0-9a-f]{8}")


def leftover_of(path) -> str | None:
    """The run id whose write left this hidden working folder (a killed or failing writer), else None."""
    m = _WORK_DIR.fullmatch(Path(path).name)
    return m["run"] if m else None


def leftovers_in(folder) -> list[Path]:
    """Working folders of `write_run` directly inside `folder`: never runs; left by an interrupted write
    (or belonging to one in progress), to delete once no c2s process writes there."""
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and leftover_of(p))


def _real_paths(paths) -> list[str]:
    """Each path with every symbolic link resolved; a folder is resolved once however many files it holds
    (a dataset's thousands of images sit in a few folders)."""
    folders: dict[str, str] = {}
    out = []
    for path in paths:
        head, tail = os.path.split(os.path.abspath(path))
        if head not in folders:
            folders[head] = os.path.realpath(head)
        real = os.path.join(folders[head], tail)
        out.append(os.path.realpath(real) if os.path.islink(real) else real)
    return out


def _nested(a: str, b: str) -> bool:
    """The same path, or one inside the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def check_outputs(outputs, inputs, fix: str = "choose an output outside the inputs", what: str = "--out") -> None:
    """Refuse outputs that would write over an input (inputs are never written): an output (a file, or a
    folder replaced as a whole) that is an input, through a symbolic or hard link too, holds an input, or
    lies inside an input folder (a run folder, a dataset folder)."""
    inputs = list(inputs)
    real = _real_paths(inputs)
    for output, out in zip(outputs, _real_paths(outputs)):
        hit = next((given for given, r in zip(inputs, real) if _nested(out, r)), None)
        if hit is None and os.path.isfile(out) and os.stat(out).st_nlink > 1:  # a hard link: another name of it
            ino = os.stat(out)
            hit = next((given for given, r in zip(inputs, real)
                        if os.path.exists(r) and os.path.samestat(ino, os.stat(r))), None)
        if hit is not None:
            raise ValueError(f"{what} {output} would write over the input {hit}: inputs are never written; {fix}")


def check_not_leftover(path) -> None:
    """Refuse to read a working folder of `write_run` as a run (`leftover_of`)."""
    run_id = leftover_of(path)
    if run_id is not None:
        raise RunFolderError(f"{path} is an unfinished folder of an interrupted write of run {run_id!r}, not a run: "
                             f"use {Path(path).parent / run_id} instead, and delete {Path(path).name} once no c2s "
                             "process writes there")


def check_replaceable(run_dir, fix: str = "choose another --run-id (run_id: in YAML) or --out") -> None:
    """Only a run folder (or nothing, or an empty folder) is ever replaced by `write_run`: a file, a symbolic
    link or a folder of anything else under a run's name is the user's, never deleted."""
    run_dir = Path(run_dir)
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if run_dir.is_symlink() or not run_dir.is_dir() or not ((run_dir / MANIFEST).is_file() or
                                                           not any(run_dir.iterdir())):
        raise ValueError(f"{run_dir} exists and is not a run folder: c2s never replaces it; {fix}")


def write_run(run_dir, manifest: Manifest, metrics: Metrics, scores: list[ScoreRow],
              comparisons: list[ComparisonRow], *, complete=None) -> Path:
    """Write a whole run folder atomically: into a hidden sibling first, then renamed into place (an
    existing folder of the same run is replaced only once the new one is complete). `complete(folder)`,
    if given, adds to the folder before it appears (the caller's report and plots: this layer does not
    know them)."""
    run_dir = Path(run_dir)
    if manifest.run_id != metrics.run_id:
        raise ValueError(f"manifest run {manifest.run_id!r} and metrics run {metrics.run_id!r} differ")
    check_replaceable(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _write_csv(tmp / SCORES, scores)
        _write_csv(tmp / COMPARISONS, comparisons)
        _write_json(tmp / METRICS, metrics.model_dump(exclude_none=True))
        _write_json(tmp / MANIFEST, manifest.model_dump())
        if complete is not None:
            complete(tmp)
        _replace_dir(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an old `target` is moved aside first and removed only afterwards."""
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        if aside is not None and not target.exists():  # (another writer of the same run may have won)
            os.rename(aside, target)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


# --- from the runner's objects -------------------------------------------------------------------

def comparison_rows(judged: Judged, profile: Profile, mode: str, calibration=None) -> list[ComparisonRow]:
    """comparisons.csv rows: each pair's log-probs as judged and its preference under the profile and mode
    (and the run's calibration, `harness.run.scoring.apply_calibration`)."""
    roles = np.array(judged.roles)
    prefs = np.full(len(judged.pairs), np.nan)
    rows, profile = apply_calibration(judged.rows(raw=on_raw_logits(profile, mode)), profile, calibration)
    for role, temperature in (("test", profile.temperature), ("anchor", profile.anchor_temperature)):
        sel = roles == role
        prefs[sel] = pair_preference(rows[sel], mode, temperature, profile.logit_dtype)
    known = judged.has_raw()
    return [ComparisonRow(first=p.first, second=p.second, role=role, logprobs=judged.logprobs[i].tolist(),
                          preference=float(prefs[i]), status="ok" if judged.errors[i] is None else "failed",
                          error=judged.errors[i] or "", cached=bool(judged.cached[i]),
                          logsumexp=float(judged.shift[i]) if known[i] else None)
            for i, (p, role) in enumerate(zip(judged.pairs, judged.roles))]


#: the anchors of a rating-only run, which compares nothing
NO_ANCHORS = "none (rating mode)"


def anchors_info(anchors: AnchorSet | None, matrix: np.ndarray | None, source: str | None) -> AnchorsInfo:
    if anchors is None:
        return AnchorsInfo(name=NO_ANCHORS, source="", images=[], mos=[], std=[], digest="-", fixed_matrix=None,
                           matrix_source=None, matrix=None)
    return AnchorsInfo(name=anchors.name, source=anchors.source, images=anchors.images, mos=anchors.mos.tolist(),
                       std=anchors.std.tolist(), digest=anchors.digest(),
                       fixed_matrix=None if anchors.matrix is None else anchors.matrix.tolist(),
                       matrix_source=source, matrix=None if matrix is None else np.asarray(matrix).tolist())
