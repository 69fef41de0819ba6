"""Dataset manifests: a root folder plus records (relative image path, MOS, optional std, splits).

Why: users already hold their datasets in one of a few formats (the official Compare2Score JSON
lists, pyiqa's meta-info CSVs, a plain `path,mos[,std]` CSV, a bare folder). Every loader turns
its format into the same `Dataset`, and every problem (unreadable rows, paths escaping the root,
duplicates, missing or unreadable files) is collected and reported in ONE `DatasetError` before
any model work; with `drop_bad=True` the run goes on without them and the report says what was
dropped. Nothing is dropped silently.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.core.jsontext import parse_json
from harness.data.registry import N_SPLITS, DatasetInfo, get_dataset_info, identify, split_file
from harness.data.images import ImageError, Limits, load_image, probe_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: How many problems a DatasetError message spells out; all of them are in `.problems`.
MAX_LISTED = 200


@dataclass(frozen=True)
class Record:
    """One image: `path` relative to the dataset root (absolute only when explicitly allowed)."""

    path: str
    mos: float | None = None
    std: float | None = None
    splits: frozenset[str] = frozenset()
    #: the manifest's `group` (e.g. a distortion family): per-group numbers and plot colours; unlike a
    #: split it never changes a dataset's headline
    group: str = ""
    #: the manifest's other columns or keys, (name, text) in manifest order: carried into scores.csv
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: `where` is a row ("line 7", "item 3") or an image path."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass
class ValidationReport:
    dataset: str
    n_records: int
    problems: list[Problem]
    dropped: list[Problem]
    checked_files: bool

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        files = "files checked" if self.checked_files else "files NOT checked"
        if self.ok:
            return f"dataset {self.dataset!r}: {self.n_records} records, no problems ({files})"
        return (f"dataset {self.dataset!r}: {self.n_records} records kept, {len(self.dropped)} dropped "
                f"of {len(self.problems)} problems ({files}):\n" + _listing(self.problems))


def _listing(problems: list[Problem]) -> str:
    lines = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more (all in DatasetError.problems)")
    return "\n".join(lines)


class DatasetError(ValueError):
    """Every problem of a dataset at once, so a user fixes them in one pass."""

    def __init__(self, name: str, problems: list[Problem], *, hint: str | None = None):
        self.name = name
        self.hint = hint
        self.problems = list(problems)
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        tally = ", ".join(f"{n} {k}" for k, n in counts.items())
        super().__init__(
            f"dataset {name!r} has {len(self.problems)} problem(s) ({tally}); fix them or pass "
            f"--drop-bad (drop_bad: true in YAML) to run without these items:\n" + (f"  ({hint})\n" if hint else "") + _listing(self.problems)
        )


@dataclass
class Dataset:
    name: str
    root: Path
    records: list[Record]
    higher_is_better: bool = True
    score_range: tuple[float, float] | None = None
    #: problems found while parsing (their rows are not in `records`); reported by `validate`
    row_problems: list[Problem] = field(default_factory=list)
    report: ValidationReport | None = None

    def __post_init__(self):
        self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.records)

    def abspath(self, record: Record) -> Path:
        return self.root / record.path

    @property
    def splits(self) -> list[str]:
        return sorted(set().union(*(r.splits for r in self.records))) if self.records else []

    @property
    def has_scores(self) -> bool:
        return bool(self.records) and all(r.mos is not None for r in self.records)

    def in_split(self, split: str) -> "Dataset":
        """The records belonging to `split`, as a dataset of its own."""
        kept = [r for r in self.records if split in r.splits]
        if not kept:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; its splits: {self.splits or 'none'}")
        return replace(self, name=f"{self.name}[{split}]", records=kept, row_problems=[], report=None)

    def validate(self, drop_bad: bool = False, *, check_files: bool = True, decode: bool = False,
                 limits: Limits | None = None) -> ValidationReport:
        """Collect every problem; raise one `DatasetError`, or drop the bad items if `drop_bad`.

        `check_files` opens each image's header (missing, empty, not an image, out of the size
        `limits`, by default the process-wide ones); `decode` also decodes it fully (finds truncated
        and corrupt files; slower).
        """
        problems = list(self.row_problems)
        bad: set[int] = set()
        seen: dict[str, int] = {}
        for i, rec in enumerate(self.records):
            key = os.path.normpath(rec.path)
            if key in seen:
                problems.append(Problem("duplicate", rec.path, f"same image as record {seen[key]}"))
                bad.add(i)
            else:
                seen[key] = i
        if check_files:
            for i, rec in enumerate(self.records):
                if i in bad:
                    continue
                try:
                    (load_image if decode else probe_image)(self.abspath(rec), limits=limits)
                except ImageError as exc:
                    if exc.reason == "missing file":
                        problems.append(Problem("missing file", rec.path, f"not found at {exc.path}"))
                    else:
                        problems.append(Problem("bad image", rec.path, exc.reason))
                    bad.add(i)
        if problems and not drop_bad:
            n_missing = sum(p.kind == "missing file" for p in problems)
            hint = (f"none of the {n_missing} images exist under the root {self.root}: is it the folder that "
                    "holds the manifest's image paths?") if n_missing and n_missing == len(self.records) else None
            raise DatasetError(self.name, problems, hint=hint)
        self.records = [r for i, r in enumerate(self.records) if i not in bad]
        self.row_problems = []
        self.report = ValidationReport(self.name, len(self.records), problems, list(problems), check_files)
        return self.report


# --- parsing helpers ---------------------------------------------------------------------------
class _RowError(Exception):
    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail


def _relative_path(raw, allow_outside_root: bool) -> str:
    """Refuse absolute paths and `..` unless the user allows them (lexical check: symlinks inside
    the root are followed on purpose, datasets are often linked in)."""
    if not isinstance(raw, str) or not raw.strip():
        raise _RowError("unreadable row", f"image path missing or not text ({raw!r})")
    raw = raw.strip()
    if allow_outside_root:
        return raw
    if os.path.isabs(raw) or Path(raw).drive:
        raise _RowError("outside root", f"absolute path {raw!r}: write it relative to the dataset root (--root; root: in YAML)")
    norm = os.path.normpath(raw)
    if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
        raise _RowError("outside root", f"path {raw!r} escapes the root: pass the folder holding it as --root (root: in YAML)")
    return raw


def _number(value, field_name: str, *, required: bool) -> float | None:
    """A score as number or numeric string (AGIQA-3K stores strings); finite or refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _RowError("unreadable row", f"no {field_name}")
        return None
    if isinstance(value, bool):
        raise _RowError("unreadable row", f"{field_name} is a boolean ({value!r})")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise _RowError("unreadable row", f"{field_name} is not a number ({value!r})") from None
    if not math.isfinite(x):
        raise _RowError("unreadable row", f"{field_name} is not finite ({value!r})")
    return x


def _std(value) -> float | None:
    x = _number(value, "std", required=False)
    if x is not None and x < 0:
        raise _RowError("unreadable row", f"std is negative ({value!r})")
    return x


def _registered(name) -> DatasetInfo | None:
    try:
        return get_dataset_info(name) if name else None
    except ValueError:
        return None


def _build(name, root, rows, *, default_name, higher_is_better, score_range, check_files, drop_bad,
           fmt: str, info: DatasetInfo | None = None) -> Dataset:
    """rows: (where, callable -> Record). Registry facts (found by `name`, else by the records'
    folder prefix) fill what the caller left open: the direction of labels in format `fmt`, and
    the registered score range when every score lies inside it."""
    records, problems = [], []
    for where, make in rows:
        try:
            records.append(make())
        except _RowError as exc:
            problems.append(Problem(exc.kind, where, exc.detail))
    info = info or _registered(name) or identify([r.path for r in records])
    if score_range is None and info is not None:
        lo, hi = info.score_range
        if all(r.mos is None or lo <= r.mos <= hi for r in records):
            score_range = info.score_range
    ds = Dataset(
        name=name or (info.name if info else default_name),
        root=Path(root),
        records=records,
        higher_is_better=higher_is_better if higher_is_better is not None else (info.direction_for(fmt) if info else True),
        score_range=score_range,
        row_problems=problems,
    )
    ds.validate(drop_bad, check_files=check_files)
    return ds


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(str(path), [Problem("missing file", str(path), f"{what} not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(str(path), [Problem("unreadable file", str(path), f"cannot read {what} ({exc})")]) from None


# --- loaders -----------------------------------------------------------------------------------
#: the keys of a Compare2Score JSON record the loader reads; any other key is carried into scores.csv
_JSON_KEYS = {"image", "img_path", "gt_score", "std", "splits", "split", "group"}


def load_compare2score_json(path, root, *, name=None, allow_outside_root=False, higher_is_better=None,
                            score_range=None, check_files=True, drop_bad=False) -> Dataset:
    """The official Compare2Score list: `{"image" | "img_path", "gt_score" (number or string),
    "std"?}`. Optional `"splits"` (list of names) or `"split"` (a name) mark split membership, `"group"`
    a group (per-group numbers, never the headline); other keys are carried into scores.csv."""
    path = Path(path)
    try:
        items = parse_json(_read_text(path, "manifest"))
    except json.JSONDecodeError as exc:
        raise DatasetError(str(path), [Problem("unreadable file", str(path), f"invalid JSON ({exc})")]) from None
    if not isinstance(items, list):
        raise DatasetError(str(path), [Problem("unreadable file", str(path),
                                               f"expected a JSON list of records, got {type(items).__name__}")])

    def make(item):
        def build():
            if not isinstance(item, dict):
                raise _RowError("unreadable row", f"expected an object, got {type(item).__name__}")
            raw = item.get("image", item.get("img_path"))
            splits = item.get("splits", [item["split"]] if "split" in item else [])
            if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
                raise _RowError("unreadable row", f"splits must be a list of names ({splits!r})")
            group = item.get("group", "")
            if not isinstance(group, (str, int)) or isinstance(group, bool):
                raise _RowError("unreadable row", f"group must be a name ({group!r})")
            extra = tuple((k, str(v)) for k, v in item.items()
                          if k not in _JSON_KEYS and isinstance(v, (str, int, float)) and str(v) != "")
            return Record(_relative_path(raw, allow_outside_root),
                          _number(item.get("gt_score"), "gt_score", required=True),
                          _std(item.get("std")), frozenset(splits), str(group), extra)
        return build

    rows = [(f"item {i}", make(item)) for i, item in enumerate(items)]
    return _build(name, root, rows, default_name=path.stem, higher_is_better=higher_is_better,
                  score_range=score_range, check_files=check_files, drop_bad=drop_bad, fmt="compare2score")


_IMAGE_COLUMNS = ("dist_name", "dis_img_path", "dist_img_path", "distorted", "img_name", "image_name", "image",
                  "img_path", "path", "filename", "file")
_SCORE_COLUMNS = ("mos", "dmos", "score", "gt_score", "mos_zscore")
_STD_COLUMNS = ("std", "sd", "mos_std", "dmos_std", "std_dev")
_SPLIT_COLUMNS = ("split", "set")


def _pick(header: list[str], choices, fallback: int | None) -> int | None:
    low = [h.strip().lower() for h in header]
    for c in choices:
        if c in low:
            return low.index(c)
    return fallback


def _csv_rows(path: Path):
    text = _read_text(path, "CSV file")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [(n, row) for n, row in enumerate(csv.reader(text.splitlines(), dialect), start=1) if any(c.strip() for c in row)]


def _load_csv(path, root, *, name, allow_outside_root, higher_is_better, score_range, check_files, drop_bad,
              header: bool | None, with_splits: bool) -> Dataset:
    path = Path(path)
    rows = _csv_rows(path)
    if not rows:
        raise DatasetError(str(path), [Problem("unreadable file", str(path), "empty CSV file")])
    first = rows[0][1]
    if header is None:  # a header is a first row whose second cell is not a number
        try:
            float(first[1]) if len(first) > 1 else None
            header = False
        except ValueError:
            header = True
    cols = [c.strip() for c in first] if header else []
    img_i = _pick(cols, _IMAGE_COLUMNS, 0)
    score_i = _pick(cols, _SCORE_COLUMNS, 1)
    std_i = _pick(cols, _STD_COLUMNS, None if header else 2)
    split_i = _pick(cols, _SPLIT_COLUMNS, None) if with_splits else None
    group_i = _pick(cols, ("group",), None)
    used = {img_i, score_i, std_i, split_i, group_i}
    extra_i = [(i, c) for i, c in enumerate(cols) if i not in used and c]
    if header and higher_is_better is None and score_i < len(cols) and cols[score_i].lower() == "dmos":
        higher_is_better = False
    body = rows[1:] if header else rows

    def make(row):
        def cell(i):
            return row[i] if i is not None and i < len(row) else None

        def build():
            if len(row) <= max(img_i, score_i):
                raise _RowError("unreadable row", f"expected at least {max(img_i, score_i) + 1} columns, got {len(row)}")
            split = (cell(split_i) or "").strip()
            extra = tuple((c, cell(i).strip()) for i, c in extra_i if (cell(i) or "").strip())
            return Record(_relative_path(cell(img_i), allow_outside_root), _number(cell(score_i), "score", required=True),
                          _std(cell(std_i)), frozenset([split]) if split else frozenset(),
                          (cell(group_i) or "").strip(), extra)
        return build

    fmt = "pyiqa" if with_splits else "csv"
    # pyiqa names its files meta_info_<Dataset>Dataset.csv: that names the dataset too
    pyiqa_name = re.fullmatch(r"meta_info_(.+?)Dataset", path.stem) if with_splits else None
    info = _registered(name) or (_registered(pyiqa_name.group(1)) if pyiqa_name else None)
    return _build(name, root, [(f"line {n}", make(row)) for n, row in body], default_name=path.stem,
                  higher_is_better=higher_is_better, score_range=score_range, check_files=check_files,
                  drop_bad=drop_bad, fmt=fmt, info=info)


def load_pyiqa_csv(path, root, *, name=None, allow_outside_root=False, higher_is_better=None, score_range=None,
                   check_files=True, drop_bad=False) -> Dataset:
    """pyiqa's meta-info CSV: a header; the image column (`dist_name` for full-reference files,
    else `img_name`/`image_name`/first column), the score column (`mos`/`dmos`/second column; DMOS
    means lower is better), optional `std`, and the split column (`split`/`set`) as membership."""
    return _load_csv(path, root, name=name, allow_outside_root=allow_outside_root, higher_is_better=higher_is_better,
                     score_range=score_range, check_files=check_files, drop_bad=drop_bad, header=True, with_splits=True)


def load_plain_csv(path, root, *, name=None, allow_outside_root=False, higher_is_better=None, score_range=None,
                   check_files=True, drop_bad=False) -> Dataset:
    """`path,mos[,std]`, with or without a header line."""
    return _load_csv(path, root, name=name, allow_outside_root=allow_outside_root, higher_is_better=higher_is_better,
                     score_range=score_range, check_files=check_files, drop_bad=drop_bad, header=None, with_splits=False)


def load_folder(root, *, name=None, check_files=True, drop_bad=False) -> Dataset:
    """Every image file under `root` (recursive, hidden entries skipped), no scores: scoring only."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(str(root), [Problem("missing file", str(root), "not a folder")])
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(Path(dirpath, f).relative_to(root).as_posix())
    if not paths:
        raise DatasetError(str(root), [Problem("missing file", str(root), f"no image files ({', '.join(IMAGE_EXTENSIONS)})")])
    rows = [(p, (lambda p=p: Record(p))) for p in paths]
    return _build(name, root, rows, default_name=root.name, higher_is_better=True, score_range=None,
                  check_files=check_files, drop_bad=drop_bad, fmt="folder")


def _sniff_csv_kind(path: Path) -> str:
    rows = _csv_rows(path)
    cols = {c.strip().lower() for c in (rows[0][1] if rows else [])}
    pyiqa_marks = {"split", "set", "dmos", "img_name", "image_name", "dist_name", "ref_name", "dis_img_path"}
    return "pyiqa" if cols & pyiqa_marks else "csv"


FORMATS = ("auto", "compare2score", "pyiqa", "csv", "folder")


def load_dataset(source, root=None, *, name=None, fmt: str = "auto", allow_outside_root=False,
                 higher_is_better=None, score_range=None, check_files=True, drop_bad=False) -> Dataset:
    """One entry point for every format. `root` defaults to the manifest's folder (or the folder
    itself). A registered dataset (by `name`, or recognised by its folder prefix) brings its score
    direction and range along; explicit arguments win."""
    source = Path(source)
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        if source.is_dir():
            fmt = "folder"
        elif source.suffix.lower() == ".json":
            fmt = "compare2score"
        elif source.suffix.lower() in (".csv", ".txt", ".tsv"):
            fmt = _sniff_csv_kind(source)
        else:
            raise ValueError(f"cannot tell the format of {source} (a folder, .json or .csv); give the manifest a .json or .csv name (or fmt: in YAML)")
    if fmt == "folder":
        if root is not None and Path(root) != source:
            raise ValueError("for a folder dataset the folder is the root: pass the folder as source only")
        return load_folder(source, name=name, check_files=check_files, drop_bad=drop_bad)
    loader = {"compare2score": load_compare2score_json, "pyiqa": load_pyiqa_csv, "csv": load_plain_csv}[fmt]
    return loader(source, root if root is not None else source.parent, name=name, allow_outside_root=allow_outside_root,
                  higher_is_better=higher_is_better, score_range=score_range, check_files=check_files, drop_bad=drop_bad)


def load_official_split(name: str, split, root, *, splits_dir=None, check_files=True, drop_bad=False) -> Dataset:
    """One of the paper's ten official test splits of a registered dataset, images under `root`
    (the folder holding e.g. `koniq/`); records are tagged with the split number."""
    info = get_dataset_info(name)
    ds = load_compare2score_json(split_file(info.name, split, splits_dir), root, name=info.name,
                                 check_files=check_files, drop_bad=drop_bad)
    tag = frozenset([str(int(split))])
    ds.records = [replace(r, splits=r.splits | tag) for r in ds.records]
    ds.name = f"{info.name}[split {int(split)}]"
    return ds


__all__ = [
    "IMAGE_EXTENSIONS", "N_SPLITS", "Dataset", "DatasetError", "Problem", "Record", "ValidationReport",
    "load_compare2score_json", "load_dataset", "load_folder", "load_official_split", "load_plain_csv",
    "load_pyiqa_csv",
]
