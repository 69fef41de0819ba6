"""Run folders: what a run writes (manifest, scores, comparisons, metrics, reports) and reads back
for `rescore`. Floats are written as repr, the shortest text that parses back to the same bits."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from adapters.base import Pair
from harness import __version__
from harness.core.anchors import AnchorSet
from harness.data.datasets import Dataset, Record
from harness.core.vocabulary import ALL
from harness.run.evaluation import DatasetRun
from harness.run.judging import Judged
from harness.core.levels import LEVELS, N_LEVELS
from harness.core.profiles import Profile
from harness.run.scoring import pair_preference


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def short_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def versions() -> dict:
    """Versions of what computed the numbers; heavy libraries only if this process imported them."""
    out = {"python": sys.version.split()[0], "c2s-harness": __version__}
    for name in ("numpy", "scipy", "pandas", "PIL", "torch", "transformers", "vllm", "openai", "skimage"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
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


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Floats as repr: the shortest text that parses back to the same bits (rescore relies on it)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r[c] is None else repr(float(r[c])) if isinstance(r[c], float) else r[c] for c in columns])


SCORE_COLUMNS = ["dataset", "split", "image", "path", "mos", "score", "latent", "sd", "n_anchors_ok", "status", "error"]
COMPARISON_COLUMNS = ["first", "second", "role", *LEVELS, "preference", "status", "error", "cached"]


def comparison_rows(judged: Judged, profile: Profile, mode: str) -> list[dict]:
    rows = []
    roles = np.array(judged.roles)
    prefs = np.full(len(judged.pairs), np.nan)
    for role, temperature in (("test", profile.temperature), ("anchor", profile.anchor_temperature)):
        sel = roles == role
        prefs[sel] = pair_preference(judged.logprobs[sel], mode, temperature)
    for i, (p, role) in enumerate(zip(judged.pairs, judged.roles)):
        row = {"first": p.first, "second": p.second, "role": role, "preference": float(prefs[i]),
               "status": "ok" if judged.errors[i] is None else "failed", "error": judged.errors[i] or "",
               "cached": int(judged.cached[i])}
        row.update({lv: float(v) for lv, v in zip(LEVELS, judged.logprobs[i])})
        rows.append(row)
    return rows


def write_run(run_dir: Path, manifest: dict, score_rows: list[dict], comp_rows: list[dict], metrics: dict,
              *, reports: bool = True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(run_dir / "scores.csv", score_rows, SCORE_COLUMNS)
    _write_csv(run_dir / "comparisons.csv", comp_rows, COMPARISON_COLUMNS)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
    # the manifest goes after the data: a folder with a manifest is a complete run
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
    if reports:
        from harness.report.reports import write_report

        t0 = time.perf_counter()
        write_report(run_dir)
        manifest["timings"]["reports"] = time.perf_counter() - t0
        (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
    return run_dir


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite_or_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def anchors_manifest(anchors: AnchorSet, matrix: np.ndarray | None, source: str | None) -> dict:
    return {"name": anchors.name, "source": anchors.source, "images": anchors.images, "mos": anchors.mos.tolist(),
            "std": anchors.std.tolist(), "digest": anchors.digest(),
            "fixed_matrix": None if anchors.matrix is None else anchors.matrix.tolist(),
            "matrix_source": source,
            "matrix": None if matrix is None else [[_finite_or_none(float(v)) for v in row] for row in matrix]}


def read_judged(path: Path) -> Judged:
    """A run's recorded comparisons (comparisons.csv), exactly as judged (floats round-trip)."""
    pairs, roles, lps, errors, cached = [], [], [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            pairs.append(Pair(row["first"], row["second"]))
            roles.append(row["role"])
            lps.append([float(row[lv]) for lv in LEVELS])
            errors.append(row["error"] or None)
            cached.append(row["cached"] == "1")
    return Judged(pairs, roles, np.array(lps, dtype=np.float64).reshape(-1, N_LEVELS), errors, np.array(cached))


def read_datasets(run_dir: Path, manifest: dict) -> tuple[list[DatasetRun], list[str]]:
    """The datasets of a run, rebuilt from scores.csv and the manifest (no image is opened)."""
    info = {d["name"]: d for d in manifest["datasets"]}
    recs: dict[str, dict[str, Record]] = {name: {} for name in info}
    tests: dict[str, None] = {}
    with open(run_dir / "scores.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name, split = row["dataset"], row["split"]
            mos = float(row["mos"]) if row["mos"] else None
            old = recs[name].get(row["image"])
            tag = frozenset() if split == ALL else frozenset([split])
            recs[name][row["image"]] = Record(row["image"], mos, None, tag if old is None else old.splits | tag)
            tests[row["path"]] = None
    dsruns = []
    for name, d in info.items():
        ds = Dataset(name=name, root=Path(d["root"]), records=list(recs[name].values()),
                     higher_is_better=d["higher_is_better"])
        dsruns.append(DatasetRun(ds, d["summary_over"]))
    return dsruns, list(tests)
