"""The runner: plan the pairs, reuse the cache, judge the rest in batches, score, measure, write.

One `run(config)` call judges every pair a set of runs needs ONCE (tests x anchors, the anchor
block once per model, optionally both orders), storing each batch in the pair cache as it arrives,
then scores the same comparisons under every requested profile and mode and writes one run folder
per (profile, mode). `rescore(run_dir, ...)` repeats the scoring from a run folder's recorded
comparisons alone: no model, no torch.

Resume is running the same command again: run ids are derived from the configuration, and every
pair already in the cache is skipped.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from adapters.base import Pair, compare_batch, fingerprint_hash, load_comparator, parse_spec, rate_batch
from harness import __version__
from harness.anchors import (AnchorSet, anchor_pairs, koniq_default, matrix_from_mos, matrix_from_preferences,
                             select_anchors)
from harness.cache import PairCache
from harness.datasets import Dataset, Record, load_dataset, load_official_split
from harness.images import ImageError, content_hash
from harness.levels import LEVELS, N_LEVELS
from harness.metrics import aggregate, bootstrap_ci, correlations
from harness.official import official_scores
from harness.profiles import MODES, Profile, get_profile
from harness.scaling import hard_preference, preference, score_against_anchors

ORDERS = ("anchor_first", "both")
SUMMARY_METRICS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic")
ALL = "all"


# --- configuration ------------------------------------------------------------------------------

@dataclass
class DatasetSpec:
    """Where a dataset comes from. `name` alone: a registered dataset's official test splits (needs
    `root`, the folder holding e.g. `koniq/`), or "demo" (the embedded benchmark). With `source`:
    a manifest (Compare2Score JSON, pyiqa CSV, plain CSV) or a folder."""

    name: str
    source: str | None = None
    root: str | None = None
    splits: list[str] | None = None
    fmt: str = "auto"
    higher_is_better: bool | None = None
    #: what the leaderboard's summary aggregates: "splits" (median over splits, the paper) or "all"
    summary: str | None = None
    #: explicit image files to score (no MOS), instead of a manifest or folder
    images: list[str] | None = None


@dataclass
class AnchorSpec:
    """"koniq": the paper's five KonIQ anchors (images under `root`); "select": Eqn. 4 on the
    configured dataset `dataset`; otherwise a JSON file {images, mos, std[, matrix][, root]}."""

    source: str = "koniq"
    root: str | None = None
    dataset: str | None = None
    alpha: int = 5
    beta: int = 1


@dataclass
class RunConfig:
    model: str
    datasets: list[DatasetSpec]
    model_options: dict = field(default_factory=dict)
    label: str | None = None
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    profiles: list[str] = field(default_factory=lambda: ["paper"])
    profile_overrides: dict = field(default_factory=dict)
    modes: list[str] = field(default_factory=lambda: ["soft"])
    order: str = "anchor_first"
    batch_size: int = 16
    out_dir: str = "results/runs"
    cache: str = "results/cache/pairs.sqlite"
    run_id: str | None = None
    drop_bad: bool = False
    bootstrap: int = 0
    seed: int = 0
    reports: bool = True

    def __post_init__(self):
        parse_spec(self.model)  # an unknown backend fails here, before any data or model work
        if not self.datasets:
            raise ValueError("a run needs at least one dataset")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be among {MODES}, got {self.modes}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if int(self.batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be distinct, got {names}")
        for p in self.profiles:  # fail before any model work
            get_profile(p, **self.profile_overrides)

    @property
    def model_label(self) -> str:
        return self.label or self.model


# --- datasets and anchors --------------------------------------------------------------------------

def resolve_dataset(spec: DatasetSpec, *, drop_bad: bool = False) -> tuple[Dataset, str]:
    """The dataset a spec names, validated (every problem in one DatasetError before model work),
    and what its summary aggregates over."""
    if spec.images is not None:
        return images_dataset(spec.name, spec.images), ALL
    if spec.source is None and spec.name == "demo":
        from harness.demo_data import build_demo_benchmark

        ds = build_demo_benchmark(spec.root)
        return ds, spec.summary or ALL
    if spec.source is not None:
        ds = load_dataset(spec.source, spec.root, name=spec.name, fmt=spec.fmt,
                          higher_is_better=spec.higher_is_better, drop_bad=drop_bad)
        ds.name = spec.name
        if spec.splits:
            ds = _keep_splits(ds, spec.splits)
        return ds, spec.summary or (("splits" if ds.splits else ALL))
    if spec.root is None:
        raise ValueError(f"dataset {spec.name!r}: give `source` (a manifest or folder) or `root` (the folder "
                         "holding the images of a registered dataset, for its official splits)")
    from harness.dataset_registry import N_SPLITS

    splits = spec.splits or [str(k) for k in range(1, N_SPLITS + 1)]
    # the union of the splits is checked once, so one error lists every problem of every split
    parts = [load_official_split(spec.name, s, spec.root, check_files=False, drop_bad=True) for s in splits]
    merged: dict[str, Record] = {}
    for part in parts:
        for rec in part.records:
            old = merged.get(rec.path)
            merged[rec.path] = rec if old is None else replace(old, splits=old.splits | rec.splits)
    ds = replace(parts[0], name=spec.name, records=list(merged.values()),
                 row_problems=[p for part in parts for p in part.report.problems], report=None)
    if spec.higher_is_better is not None:
        ds.higher_is_better = spec.higher_is_better
    ds.validate(drop_bad=drop_bad)
    return ds, spec.summary or "splits"


def images_dataset(name: str, images) -> Dataset:
    """A scoring-only dataset of explicit image files (absolute paths; missing files are reported
    with the other per-image failures, not raised)."""
    paths = [str(Path(p).resolve()) for p in images]
    if not paths:
        raise ValueError("no images given")
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        raise ValueError(f"images given twice: {dupes[:5]}")
    return Dataset(name=name, root=Path("/"), records=[Record(p) for p in paths])


def _keep_splits(ds: Dataset, splits) -> Dataset:
    wanted = {str(s) for s in splits}
    missing = wanted - set(ds.splits)
    if missing:
        raise ValueError(f"dataset {ds.name!r} has no split(s) {sorted(missing)}; its splits: {ds.splits}")
    return replace(ds, records=[r for r in ds.records if r.splits & wanted])


def resolve_anchors(spec: AnchorSpec, datasets: dict[str, Dataset]) -> AnchorSet:
    """An anchor set whose images are absolute paths."""
    if spec.source == "koniq":
        base = koniq_default()
        root = spec.root
        if root is None and "koniq" in {n.lower() for n in datasets}:
            root = next(str(d.root) for n, d in datasets.items() if n.lower() == "koniq")
        if root is None:
            raise ValueError("the default KonIQ anchors need anchors.root: the folder holding koniq/ (KonIQ-10k "
                             "images); or choose anchors.source: select (Eqn. 4 on one of your datasets)")
        return replace(base, images=[str(Path(root) / i) for i in base.images])
    if spec.source == "select":
        name = spec.dataset or (next(iter(datasets)) if len(datasets) == 1 else None)
        if name == "demo" and name not in datasets:  # the embedded benchmark: a reference usable anywhere
            datasets = {**datasets, "demo": resolve_dataset(DatasetSpec("demo"))[0]}
        if name not in datasets:
            raise ValueError(f"anchors.source=select needs anchors.dataset, one of {sorted(datasets)}")
        ds = datasets[name]
        if not ds.has_scores:
            raise ValueError(f"cannot select anchors from {name!r}: it has no MOS")
        recs = ds.records
        mos = np.array([r.mos for r in recs], dtype=np.float64)
        if not ds.higher_is_better:  # anchors go in ascending QUALITY order
            mos = -mos
        std = np.array([0.0 if r.std is None else r.std for r in recs], dtype=np.float64)
        idx = select_anchors(mos, std, spec.alpha, spec.beta)
        return AnchorSet(images=[str(ds.abspath(recs[i])) for i in idx], mos=mos[idx], std=std[idx],
                         name=f"{name} Eqn. 4 (alpha={spec.alpha}, beta={spec.beta})"
                              + ("" if ds.higher_is_better else "; MOS = -DMOS so that higher is better"),
                         source=f"selected from dataset {name!r}")
    path = Path(spec.source)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"anchors.source {spec.source!r} is neither 'koniq', 'select' nor a readable JSON file: "
                         f"{exc}") from None
    root = Path(spec.root or data.get("root") or path.parent)
    return AnchorSet(images=[str(root / i) for i in data["images"]], mos=data["mos"], std=data["std"],
                     matrix=data.get("matrix"), name=data.get("name", path.stem), source=str(path))


# --- planning and judging --------------------------------------------------------------------------

@dataclass
class Judged:
    """Every planned pair's outcome: log-probs (NaN rows where failed), error, where it came from."""

    pairs: list[Pair]
    roles: list[str]
    logprobs: np.ndarray
    errors: list
    cached: np.ndarray

    def lookup(self) -> dict[Pair, np.ndarray]:
        return {p: self.logprobs[i] for i, p in enumerate(self.pairs)}

    def error_of(self) -> dict[Pair, str]:
        return {p: e for p, e in zip(self.pairs, self.errors) if e is not None}


def plan_pairs(tests: list[str], anchors: list[str], *, order: str, anchor_block: bool) -> tuple[list[Pair], list[str]]:
    """tests x anchors with the anchor shown first (+ swapped if order == "both"), then the anchor block."""
    pairs, roles = [], []
    for x in tests:
        for a in anchors:
            pairs.append(Pair(a, x)); roles.append("test")
            if order == "both":
                pairs.append(Pair(x, a)); roles.append("test")
    if anchor_block:
        block = anchor_pairs(anchors)
        pairs += block
        roles += ["anchor"] * len(block)
    return pairs, roles


def hash_images(paths, progress: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Content hashes (cache keys) and, per unreadable image, why."""
    hashes, errors = {}, {}
    for p in _progress(sorted(set(paths)), progress, "hashing", "img"):
        try:
            hashes[p] = content_hash(p)
        except (OSError, ImageError) as exc:
            errors[p] = f"{type(exc).__name__}: {exc}"
    return hashes, errors


def judge(call, pairs: list[Pair], roles: list[str], *, cache: PairCache | None, fp_hash: str,
          prompt_key: str, batch_size: int, progress: bool = False, timings: dict | None = None) -> Judged:
    """Cached pairs are read; the rest go to `call` (a batch of pairs -> `Comparisons`, e.g.
    `lambda b: compare_batch(comparator, b)`) in batches, each batch stored in the cache (one
    transaction) as soon as it returns. Failed pairs are recorded, never retried here."""
    t0 = time.perf_counter()
    n = len(pairs)
    lp = np.full((n, N_LEVELS), np.nan)
    errors: list = [None] * n
    cached = np.zeros(n, dtype=bool)
    hashes, bad = hash_images({p.first for p in pairs} | {p.second for p in pairs}, progress)
    keyed = []
    for i, p in enumerate(pairs):
        reason = bad.get(p.first) or bad.get(p.second)
        if reason:
            errors[i] = f"image unreadable: {reason}"
        else:
            keyed.append(i)
    keys = {i: (hashes[pairs[i].first], hashes[pairs[i].second]) for i in keyed}
    found = cache.get_many(fp_hash, prompt_key, list(set(keys.values()))) if cache else {}
    todo: dict[tuple[str, str], list[int]] = {}
    for i in keyed:
        k = keys[i]
        if k in found:
            lp[i], cached[i] = found[k], True
        else:
            todo.setdefault(k, []).append(i)  # identical content is judged once
    t_lookup = time.perf_counter()
    work = [idx[0] for idx in todo.values()]
    bar = _bar(len(work), progress, "comparing", "pair")
    for start in range(0, len(work), batch_size):
        batch = work[start:start + batch_size]
        res = call([pairs[i] for i in batch])
        rows = []
        for j, i in enumerate(batch):
            for same in todo[keys[i]]:
                lp[same], errors[same] = res.logprobs[j], res.errors[j]
            if res.errors[j] is None:
                rows.append((*keys[i], res.logprobs[j], res.meta[j] or {}))
        if cache and rows:
            cache.put_many(fp_hash, prompt_key, rows)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    if timings is not None:
        timings["hash_and_cache_lookup"] = timings.get("hash_and_cache_lookup", 0.0) + t_lookup - t0
        timings["compare"] = timings.get("compare", 0.0) + time.perf_counter() - t_lookup
    return Judged(pairs, roles, lp, errors, cached)


def _bar(total, progress, desc, unit):
    if not progress or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)


def _progress(items, progress, desc, unit):
    if not progress or len(items) < 200:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


# --- scoring ------------------------------------------------------------------------------------

def _pref(lp: np.ndarray, mode: str, temperature: float) -> np.ndarray:
    return hard_preference(lp) if mode == "count" else preference(lp, temperature)


def anchor_matrix_for(profile: Profile, mode: str, anchors: AnchorSet, lookup: dict) -> tuple[np.ndarray, str]:
    """The anchor block for a profile: the set's fixed matrix, Thurstone from MOS, or the model's own
    judgements (both orders averaged: C[i, j] = mean of P(i beats j) over the pairs that show it)."""
    source = profile.anchor_matrix
    if source == "auto":
        source = "official" if profile.solver == "official-adam" and anchors.matrix is not None else "comparator"
    if source == "official":
        if anchors.matrix is None:
            raise ValueError(f"anchor set {anchors.name!r} carries no fixed matrix; use anchor_matrix comparator or mos")
        return anchors.matrix, source
    if source == "mos":
        return matrix_from_mos(anchors.mos, anchors.std), source
    block = anchor_pairs(anchors.images)
    missing = [p for p in block if p not in lookup]
    if missing:
        raise ValueError(f"the anchor block was not judged ({len(missing)} pairs missing); this run used a fixed "
                         "anchor matrix, so re-run with the model to use anchor_matrix comparator")
    p = _pref(np.array([lookup[q] for q in block]), mode, profile.anchor_temperature)
    return matrix_from_preferences(block, p, anchors.images), source


@dataclass
class Scored:
    score: np.ndarray
    latent: np.ndarray
    sd: np.ndarray
    n_ok: np.ndarray
    errors: list
    anchor_matrix: np.ndarray | None
    matrix_source: str | None
    converged_frac: float | None = None


def score_tests(tests: list[str], anchors: AnchorSet, lookup: dict, errors: dict, profile: Profile,
                mode: str, order: str) -> Scored:
    """Scores for every test image from the judged pairs; an image with no usable pair is NaN
    and carries the first reason one of its pairs failed."""
    N, m = len(tests), len(anchors.images)
    if mode == "rating":
        lp = np.array([lookup.get(Pair(x, x), np.full(N_LEVELS, np.nan)) for x in tests]).reshape(N, N_LEVELS)
        s = preference(lp, 1.0)  # the expected rating on [0, 1] (Q-Align style)
        errs = [None if np.isfinite(v) else errors.get(Pair(x, x), "no rating") for x, v in zip(tests, s)]
        return Scored(s, s, np.full(N, np.nan), np.isfinite(s).astype(int), errs, None, None)
    nan_row = np.full(N_LEVELS, np.nan)
    fwd = np.array([[lookup.get(Pair(a, x), nan_row) for a in anchors.images] for x in tests]).reshape(N * m, N_LEVELS)
    b = _pref(fwd, mode, profile.temperature).reshape(N, m)
    if order == "both":
        rev = np.array([[lookup.get(Pair(x, a), nan_row) for a in anchors.images] for x in tests]).reshape(N * m, N_LEVELS)
        b_rev = 1.0 - _pref(rev, mode, profile.temperature).reshape(N, m)
        b = _nanmean2(b, b_rev)
    C, source = anchor_matrix_for(profile, mode, anchors, lookup)
    n_ok = np.isfinite(b).sum(axis=1)
    converged = None
    if profile.solver == "official-adam":
        score, latent_all = official_scores(b, C, link=profile.link, steps=profile.steps)
        latent, sd = latent_all[:, -1].astype(np.float64), np.full(N, np.nan)
        score = score.astype(np.float64)
    else:
        res = score_against_anchors(C, b, link=profile.link, prior_var=profile.prior_var, scale=profile.scale,
                                    anchor_mos=anchors.mos)
        score, latent, sd = res.score, res.latent, res.sd
        converged = float(np.mean(res.converged[~res.failed])) if (~res.failed).any() else None
    errs = []
    for i, x in enumerate(tests):
        if np.isfinite(score[i]):
            errs.append(None)
            continue
        reasons = [errors.get(Pair(a, x)) for a in anchors.images] + [errors.get(Pair(x, a)) for a in anchors.images]
        reasons = [r for r in reasons if r]
        errs.append(reasons[0] if reasons else "no usable comparison")
    return Scored(score, latent, sd, n_ok, errs, C, source, converged)


def _nanmean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise mean of two arrays ignoring NaN (NaN only where both are)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    total = np.where(fa, a, 0.0) + np.where(fb, b, 0.0)
    count = fa.astype(int) + fb.astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


# --- metrics and run folders ----------------------------------------------------------------------

@dataclass
class DatasetRun:
    """A dataset as the runner sees it: the validated dataset and what its summary aggregates."""

    dataset: Dataset
    summary: str

    @property
    def paths(self) -> list[str]:
        return [str(self.dataset.abspath(r)) for r in self.dataset.records]


def evaluate(dsruns: list[DatasetRun], tests: list[str], scored: Scored, *, bootstrap: int = 0,
             seed: int = 0) -> tuple[list[dict], dict]:
    """scores.csv rows (one per image and split it belongs to) and the metrics per dataset and split."""
    at = {x: i for i, x in enumerate(tests)}
    rows, metrics = [], {}
    for dr in dsruns:
        ds = dr.dataset
        idx = np.array([at[p] for p in dr.paths], dtype=np.int64)
        pred = scored.score[idx]
        mos = np.array([np.nan if r.mos is None else r.mos for r in ds.records], dtype=np.float64)
        groups = {ALL: np.arange(len(idx))}
        for s in ds.splits:
            groups[s] = np.array([k for k, r in enumerate(ds.records) if s in r.splits], dtype=np.int64)
        for k, (rec, path) in enumerate(zip(ds.records, dr.paths)):
            i = idx[k]
            for split in (sorted(rec.splits) or [ALL]):
                rows.append({"dataset": ds.name, "split": split, "image": rec.path, "path": path, "mos": rec.mos,
                             "score": scored.score[i], "latent": scored.latent[i], "sd": scored.sd[i],
                             "n_anchors_ok": int(scored.n_ok[i]), "status": "ok" if scored.errors[i] is None
                             else "failed", "error": scored.errors[i] or ""})
        entry = {"higher_is_better": bool(ds.higher_is_better), "n_images": len(idx),
                 "n_failed": int(sum(scored.errors[i] is not None for i in idx)), "summary_over": dr.summary,
                 "splits": {}, "summary": {}}
        if ds.has_scores:
            for split, g in groups.items():
                corr = correlations(pred[g], mos[g], higher_is_better=ds.higher_is_better)
                if bootstrap:
                    for name in ("srcc", "plcc"):
                        corr[f"{name}_ci95"] = list(bootstrap_ci(pred[g], mos[g], name, bootstrap, seed,
                                                                 higher_is_better=ds.higher_is_better))
                entry["splits"][split] = corr
            over = [s for s in groups if s != ALL] if dr.summary == "splits" and len(groups) > 1 else [ALL]
            entry["summary"] = {m: aggregate([entry["splits"][s][m] for s in over]) for m in SUMMARY_METRICS}
        metrics[ds.name] = entry
    return rows, metrics


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def _digest(obj) -> str:
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
    root = Path(__file__).resolve().parents[1]
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
    temps = np.array([profile.anchor_temperature if r == "anchor" else profile.temperature for r in judged.roles])
    prefs = np.full(len(judged.pairs), np.nan)
    for t in set(temps.tolist()):
        sel = temps == t
        prefs[sel] = preference(judged.logprobs[sel], t) if mode == "soft" else (
            hard_preference(judged.logprobs[sel]) if mode == "count" else preference(judged.logprobs[sel], 1.0))
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
        from harness.reports import write_report

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


# --- the two entry points --------------------------------------------------------------------------

def prompt_key(fp: dict, rating: bool = False) -> str:
    """The prompt part of the cache key: the template hash an adapter reports (fingerprint()["prompt"]
    ["sha256"] by convention), else a fixed tag (the fingerprint hash covers everything anyway)."""
    entry = fp.get("rating_prompt" if rating else "prompt")
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    return ("rating:" if rating else "") + (sha or "no-prompt")


def run(config: RunConfig, *, comparator=None, progress: bool = True) -> list[Path]:
    """Judge what the configured runs need once, then score and write one folder per (profile, mode)."""
    timings: dict = {}
    t0 = time.perf_counter()
    dsruns = []
    for spec in config.datasets:
        ds, summary = resolve_dataset(spec, drop_bad=config.drop_bad)
        dsruns.append(DatasetRun(ds, summary))
    datasets = {dr.dataset.name: dr.dataset for dr in dsruns}
    anchors = resolve_anchors(config.anchors, datasets)
    profiles = [get_profile(p, **config.profile_overrides) for p in config.profiles]
    tests = list(dict.fromkeys(p for dr in dsruns for p in dr.paths))
    timings["load_datasets"] = time.perf_counter() - t0

    owned = comparator is None
    if owned:
        comparator = load_comparator(config.model, **config.model_options)
    try:
        if "rating" in config.modes and not hasattr(comparator, "rate"):
            raise ValueError(f"mode rating needs a comparator with single-image rating; {config.model!r} has none")
        fp = comparator.fingerprint()
        fp_hash = fingerprint_hash(fp)
        cache = PairCache(config.cache) if config.cache else None
        try:
            judged = {}
            pair_modes = [m for m in config.modes if m != "rating"]
            if pair_modes:
                block = any(anchor_matrix_needs_model(p, anchors) for p in profiles)
                pairs, roles = plan_pairs(tests, anchors.images, order=config.order, anchor_block=block)
                judged["pairs"] = judge(lambda b: compare_batch(comparator, b), pairs, roles, cache=cache,
                                        fp_hash=fp_hash, prompt_key=prompt_key(fp), batch_size=config.batch_size,
                                        progress=progress, timings=timings)
            if "rating" in config.modes:
                items = [Pair(x, x) for x in tests]
                judged["rating"] = judge(lambda b: rate_batch(comparator, [p.first for p in b]), items,
                                         ["test"] * len(items), cache=cache, fp_hash=fp_hash,
                                         prompt_key=prompt_key(fp, rating=True), batch_size=config.batch_size,
                                         progress=progress, timings=timings)
        finally:
            if cache:
                cache.close()
    finally:
        if owned and hasattr(comparator, "close"):
            comparator.close()

    out = []
    for mode in config.modes:
        for profile in (profiles if mode != "rating" else profiles[:1]):
            j = judged["rating" if mode == "rating" else "pairs"]
            identity = {"model": config.model, "options": config.model_options, "fp": fp_hash,
                        "datasets": [asdict(s) for s in config.datasets], "anchors": anchors.digest(),
                        "profile": profile.as_dict(), "mode": mode, "order": config.order}
            run_id = config.run_id or f"{_slug(config.model_label)}-{profile.name}-{mode}-{_digest(identity)}"
            if config.run_id and len(config.modes) * len(profiles) > 1:
                run_id = f"{config.run_id}-{profile.name}-{mode}"
            manifest = {"run_id": run_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "model": {"spec": config.model, "label": config.model_label, "options": config.model_options,
                                  "fingerprint": fp, "fingerprint_hash": fp_hash},
                        "order": config.order, "batch_size": config.batch_size,
                        "datasets_config": [asdict(s) for s in config.datasets], "anchors_config": asdict(config.anchors),
                        "seeds": {"bootstrap": config.seed, "official_adam": 0}, "bootstrap": config.bootstrap,
                        "cache": str(Path(config.cache).resolve()) if config.cache else None}
            path = finish_run(Path(config.out_dir) / run_id, manifest, dsruns, tests, anchors, j, profile, mode,
                              dict(timings), bootstrap=config.bootstrap, seed=config.seed, reports=config.reports)
            out.append(path)
    return out


def anchor_matrix_needs_model(profile: Profile, anchors: AnchorSet) -> bool:
    src = profile.anchor_matrix
    return src == "comparator" or (src == "auto" and not (profile.solver == "official-adam" and anchors.matrix is not None))


def finish_run(run_dir: Path, manifest: dict, dsruns: list[DatasetRun], tests: list[str], anchors: AnchorSet,
               judged: Judged, profile: Profile, mode: str, timings: dict, *, bootstrap: int, seed: int,
               reports: bool) -> Path:
    """Score, measure and write one run folder (shared by `run` and `rescore`)."""
    t0 = time.perf_counter()
    scored = score_tests(tests, anchors, judged.lookup(), judged.error_of(), profile, mode, manifest["order"])
    timings["scoring"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_rows, metrics = evaluate(dsruns, tests, scored, bootstrap=bootstrap, seed=seed)
    timings["metrics"] = time.perf_counter() - t0
    failed = np.array([e is not None for e in judged.errors])
    manifest.update({
        "profile": profile.as_dict(), "mode": mode,
        "anchors": anchors_manifest(anchors, scored.anchor_matrix, scored.matrix_source),
        "datasets": [{"name": dr.dataset.name, "root": str(dr.dataset.root), "n_images": len(dr.dataset),
                      "higher_is_better": bool(dr.dataset.higher_is_better), "splits": dr.dataset.splits,
                      "summary_over": dr.summary,
                      "dropped": [str(p) for p in (dr.dataset.report.dropped if dr.dataset.report else [])]}
                     for dr in dsruns],
        "versions": versions(), "git_revision": git_revision(), "timings": timings,
        "counts": {"pairs_total": len(judged.pairs), "pairs_cached": int(judged.cached.sum()),
                   "pairs_computed": int((~judged.cached & ~failed).sum()), "pairs_failed": int(failed.sum()),
                   "images_total": len(tests), "images_failed": int(sum(e is not None for e in scored.errors))},
        "map_converged_fraction": scored.converged_frac,
    })
    metrics_doc = {"run_id": manifest["run_id"], "model_label": manifest["model"]["label"], "profile": profile.name,
                   "mode": mode, "datasets": metrics}
    t0 = time.perf_counter()
    write_run(run_dir, manifest, score_rows, comparison_rows(judged, profile, mode), metrics_doc, reports=reports)
    return run_dir


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


def rescore(run_dir, *, profile: str | None = None, mode: str | None = None, out_dir=None, reports: bool = True,
            bootstrap: int | None = None, **overrides) -> Path:
    """Score a finished run again from its recorded comparisons under another profile, link,
    temperature, scale or anchor matrix source; no model is loaded and torch is never imported."""
    run_dir = Path(run_dir)
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except OSError:
        raise ValueError(f"{run_dir} is not a finished run folder (no manifest.json)") from None
    old = manifest["profile"]
    prof = get_profile(profile, **overrides) if profile else replace(
        Profile(**old), **{k: v for k, v in overrides.items() if v is not None})
    mode = mode or manifest["mode"]
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if (mode == "rating") != (manifest["mode"] == "rating"):
        raise ValueError("a rating run holds single-image ratings, a comparison run holds pairs: rescore cannot "
                         "switch between them")
    judged = read_judged(run_dir / "comparisons.csv")
    a = manifest["anchors"]
    anchors = AnchorSet(images=a["images"], mos=a["mos"], std=a["std"], matrix=a["fixed_matrix"], name=a["name"],
                        source=a["source"])
    dsruns, tests = read_datasets(run_dir, manifest)
    same = prof.as_dict() == old and mode == manifest["mode"]
    new_id = f"{manifest['run_id']}-rescored-{_digest([prof.as_dict(), mode])}"
    target = Path(out_dir) / new_id if out_dir else run_dir.parent / new_id
    new_manifest = {k: v for k, v in manifest.items() if k not in ("timings", "counts", "profile", "mode", "anchors")}
    new_manifest.update(run_id=new_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        rescored_from={"run_id": manifest["run_id"], "same_settings": same})
    boot = manifest.get("bootstrap", 0) if bootstrap is None else bootstrap
    return finish_run(target, new_manifest, dsruns, tests, anchors, judged, prof, mode, {}, bootstrap=boot,
                      seed=manifest.get("seeds", {}).get("bootstrap", 0), reports=reports)
