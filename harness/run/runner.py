"""The runner: plan the pairs, reuse the cache, judge the rest in batches, score, measure, write.

One `run(config)` call judges every pair a set of runs needs ONCE (tests x anchors, the anchor
block once per model, optionally both orders), storing each batch in the pair cache as it arrives,
then scores the same comparisons under every requested profile and mode and writes one run folder
per (profile, mode). `rescore(run_dir, ...)` repeats the scoring from a run folder's recorded
comparisons alone: no model, no torch.

Resume is running the same command again: run ids are derived from the configuration, and every
pair already in the cache is skipped. A run id already used by another configuration is refused
before any model work unless `overwrite` is set (`check_targets`).
"""
from __future__ import annotations

import functools
import json
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from adapters.base import (Pair, as_comparator, check_model_options, comparator_class, fingerprint_hash)
from harness.core import home
from harness.core.anchors import (DEFAULT_SCHEME, SCHEMES, AnchorSet, koniq_default, no_scale_reason, read_anchor_file,
                                  scheme_label, select_anchors)
from harness.core.calibration import calibration_problem
from harness.core.jsontext import strict_json
from harness.core.metrics import MAX_BOOTSTRAP
from harness.core.options import check_fields, options_secrets, recorded_options
from harness.core.secrets import remember
from harness.run.cache import PairCache
from harness.run.designs import ACTIVE, DEFAULT_DESIGN, Design, check_design, judge_active, score_active
from harness.data.datasets import Dataset, Record, load_dataset, load_official_split
from harness.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, Limits, image_limits, unreadable
from harness.run.evaluation import DatasetRun, JudgedPairs, evaluate
from harness.run.executors import ExecutorSpec, open_session
from harness.run.judging import Judged, cache_lookup, judge, plan_pairs, prompt_key
from harness.core.profiles import DEFAULT_PROFILE, Profile, get_profile, profile_label
from harness.core.vocabulary import (ALL, BY_SPLITS, DEFAULT_ALPHA, DEFAULT_ANCHORS, DEFAULT_BATCH_SIZE, DEFAULT_BETA,
                                     DEFAULT_ORDER, DEFAULT_RUNS_DIR, DEFAULT_STALL_TIMEOUT, MODES, ORDERS, SUMMARIES)
from harness.run.record import (MANIFEST, NO_ANCHORS, Manifest, Metrics, RunFolderError, ScoreRow, anchors_info,
                                check_not_leftover, check_outputs, check_replaceable, check_run_id, comparison_rows,
                                git_revision, read_run, short_digest, slug, versions, write_run)
from harness.run.scoring import (anchor_block_needed, apply_calibration, calibrated_judged, calibration_for,
                                 fixed_matrix, matrix_source, on_raw_logits, score_tests)

# --- configuration ------------------------------------------------------------------------------

_NO_RATING = "mode rating needs a comparator with single-image rating; {!r} has none (use --mode soft or count)"


@dataclass
class DatasetSpec:
    """Where a dataset comes from. `name` alone: a registered dataset's official test splits (needs
    `root`, the folder holding e.g. `koniq/`), or "demo" (the embedded benchmark, built into `root`
    or the cache; its splits are the distortion families). With `source`: a manifest (Compare2Score
    JSON, pyiqa CSV, plain CSV) or a folder."""

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

    def __post_init__(self):
        check_fields(self, f"dataset {self.name!r}")
        if self.summary is not None and self.summary not in SUMMARIES:
            raise ValueError(f"dataset {self.name!r}: summary must be one of {', '.join(SUMMARIES)}, "
                             f"got {self.summary!r}")


@dataclass
class AnchorSpec:
    """"koniq": the paper's five KonIQ anchors (images under `root`); "select": a selection scheme
    (Eqn. 4 by default) on the dataset `dataset`, a test dataset of the run, "demo", or, with
    `dataset_source` (a manifest or folder; images under `root`) or `root` alone (a registered dataset), one
    used only for anchors (Table 5); otherwise a JSON file {images, mos, std[, matrix][, root]}."""

    source: str = DEFAULT_ANCHORS
    root: str | None = None
    dataset: str | None = None
    alpha: int = DEFAULT_ALPHA
    beta: int = DEFAULT_BETA
    #: Table 6: min-variance (Eqn. 4), max-variance or random (per interval, drawn with `seed`)
    scheme: str = DEFAULT_SCHEME
    seed: int = 0
    #: the anchor dataset's manifest or folder when it is not one of the run's datasets
    dataset_source: str | None = None

    def __post_init__(self):
        check_fields(self, "anchors")
        if self.alpha < 1 or self.beta < 1:
            raise ValueError(f"anchors: alpha and beta must be >= 1, got alpha={self.alpha}, beta={self.beta}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"anchors: scheme {self.scheme!r} (--anchor-scheme) is not one of {', '.join(SCHEMES)}")
        if self.seed < 0:
            raise ValueError(f"anchors: seed must be >= 0, got {self.seed}")
        if self.seed and self.scheme != "random":
            raise ValueError(f"anchors: seed {self.seed} (--anchor-seed) applies only to scheme 'random', "
                             f"not {self.scheme!r}")
        given = [k for k, v in (("scheme", self.scheme != DEFAULT_SCHEME), ("seed", self.seed),
                                ("dataset_source", self.dataset_source)) if v]
        if given and self.source != "select":
            raise ValueError(f"anchors: {', '.join(given)} apply only to source 'select' (--anchors select), "
                             f"not {self.source!r}")


@dataclass
class RunConfig:
    model: str
    datasets: list[DatasetSpec]
    model_options: dict = field(default_factory=dict)
    label: str | None = None
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    profiles: list[str] = field(default_factory=lambda: [DEFAULT_PROFILE])
    profile_overrides: dict = field(default_factory=dict)
    modes: list[str] = field(default_factory=lambda: ["soft"])
    order: str = DEFAULT_ORDER
    batch_size: int = DEFAULT_BATCH_SIZE
    out_dir: str = DEFAULT_RUNS_DIR
    #: the SQLite pair cache; None: the home folder's (harness.core.home.pair_cache_path), "" for none
    cache: str | None = None
    run_id: str | None = None
    drop_bad: bool = False
    bootstrap: int = 0
    seed: int = 0
    reports: bool = True
    #: score only the first N images of each dataset (manifest order), anchors unchanged: a labelled
    #: preview, never a dataset's result (its own run id and leaderboard row)
    limit: int | None = None
    #: replace a run folder of the same id written by another configuration (`check_targets`)
    overwrite: bool = False
    #: refuse (never resize) images above this many pixels or with a side under `min_side` pixels
    #: (harness.data.images.Limits), in the dataset checks and in the comparators' loading alike; they only
    #: refuse images, so they are no part of a run's identity
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    #: stop the run (resumable) when no batch has come back for this many seconds; 0: never (watchdog.py)
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    #: the comparison design (harness.run.designs): "anchors" (the paper's) or "active" with `budget`
    #: comparisons per test image (may be fractional) in rounds of `round_size` pairs, tie-breaks seeded by `seed`
    design: str = DEFAULT_DESIGN
    budget: float | None = None
    round_size: int | None = None
    #: where judging runs: this process or a Ray cluster (harness.run.executors); results are the same
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def __post_init__(self):
        # a value of the wrong type, an unknown backend or a bad option fails here, before any data or
        # model work (and, in a YAML grid, before the first model runs); values take their declared types
        check_fields(self, "config")
        self.model_options = check_model_options(self.model, self.model_options)
        remember(*options_secrets(comparator_class(self.model).Options, self.model_options))
        if not self.datasets:
            raise ValueError("a run needs at least one dataset")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be among {MODES}, got {self.modes}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.cache is None:
            self.cache = str(home.pair_cache_path())
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= self.bootstrap <= MAX_BOOTSTRAP:
            raise ValueError(f"bootstrap must be between 0 and {MAX_BOOTSTRAP} resamples, got {self.bootstrap}")
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"limit must be >= 1 (images per dataset), got {self.limit}")
        if not self.stall_timeout >= 0:
            raise ValueError(f"stall_timeout must be >= 0 seconds (0: no limit), got {self.stall_timeout}")
        if self.run_id is not None:
            check_run_id(self.run_id)
        self.image_limits  # Limits checks each is a whole number >= 1, before any work
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be distinct, got {names}")
        for p in self.profiles:  # fail before any model work
            get_profile(p, **self.profile_overrides)
        if "rating" in self.modes and not comparator_class(self.model).can_rate:
            raise ValueError(_NO_RATING.format(self.model))
        check_design(self.design, self.budget, self.round_size, self.modes,
                     [get_profile(p, **self.profile_overrides) for p in self.profiles])

    @property
    def model_label(self) -> str:
        return self.label or self.model

    @property
    def recorded_options(self) -> dict:
        """The model options as manifests, run ids and the pair cache keep them: no secret, no credential."""
        return recorded_options(comparator_class(self.model).Options, self.model_options)

    @property
    def image_limits(self) -> Limits:
        return Limits(self.max_pixels, self.min_side)

    def design_spec(self) -> Design:
        return Design(self.design, self.budget, self.round_size, self.seed if self.design == ACTIVE else 0)


def _under_image_limits(fn):
    """`fn(config, ...)` with the config's image limits applied process-wide while it lasts
    (harness.data.images.image_limits): the comparators load images through the shared store, deep
    inside a backend, where no argument reaches."""
    @functools.wraps(fn)
    def wrapper(config: RunConfig, *args, **kwargs):
        with image_limits(config.image_limits):
            return fn(config, *args, **kwargs)
    return wrapper


# --- datasets and anchors --------------------------------------------------------------------------

def resolve_dataset(spec: DatasetSpec, *, drop_bad: bool = False) -> tuple[Dataset, str]:
    """The dataset a spec names, validated (every problem in one DatasetError before model work),
    and what its summary aggregates over."""
    if spec.images is not None:
        return images_dataset(spec.name, spec.images), ALL
    if spec.source is None and spec.name == "demo":
        from harness.data.demo_data import build_demo_benchmark

        ds = build_demo_benchmark(spec.root)  # root: where the benchmark is built (default: the cache)
        return (_keep_splits(ds, spec.splits) if spec.splits else ds), spec.summary or ALL
    if spec.source is not None:
        ds = load_dataset(spec.source, spec.root, name=spec.name, fmt=spec.fmt,
                          higher_is_better=spec.higher_is_better, drop_bad=drop_bad)
        ds.name = spec.name
        if spec.splits:
            ds = _keep_splits(ds, spec.splits)
        return ds, spec.summary or (BY_SPLITS if ds.splits else ALL)
    if spec.root is None:
        raise ValueError(f"dataset {spec.name!r}: give `source` (a manifest or folder) or `root` (the folder "
                         "holding the images of a registered dataset, for its official splits)")
    from harness.data.registry import N_SPLITS

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
    return ds, spec.summary or BY_SPLITS


def images_dataset(name: str, images) -> Dataset:
    """A scoring-only dataset of explicit image files (absolute paths, symlinks not followed: results name
    an image as the user did; missing files are reported with the other per-image failures, not raised)."""
    paths = [os.path.abspath(p) for p in images]
    if not paths:
        raise ValueError("no images given")
    dupes = sorted(p for p, n in Counter(paths).items() if n > 1)
    if dupes:
        raise ValueError(f"images given twice: {dupes[:5]}")
    return Dataset(name=name, root=Path("/"), records=[Record(p) for p in paths])


def _keep_splits(ds: Dataset, splits) -> Dataset:
    wanted = {str(s) for s in splits}
    missing = wanted - set(ds.splits)
    if missing:
        raise ValueError(f"dataset {ds.name!r} has no split(s) {sorted(missing)}; its splits: {ds.splits}")
    return replace(ds, records=[replace(r, splits=r.splits & wanted) for r in ds.records if r.splits & wanted])


def selection_inputs(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """MOS oriented so that higher is better (anchors go in ascending QUALITY order; a DMOS dataset
    is negated) and std (0 where a record has none), for Eqn. 4 selection."""
    if not ds.has_scores:
        raise ValueError(f"cannot select anchors from {ds.name!r}: it has no MOS")
    mos = np.array([r.mos for r in ds.records], dtype=np.float64)
    std = np.array([0.0 if r.std is None else r.std for r in ds.records], dtype=np.float64)
    return (mos if ds.higher_is_better else -mos), std


def anchor_dataset_name(spec: AnchorSpec, test_names: list[str]) -> str | None:
    """The anchor dataset's name: the one given, else the run's only dataset."""
    return spec.dataset or (test_names[0] if len(test_names) == 1 else None)


def anchors_config(config: RunConfig) -> dict:
    """The anchor options as recorded in a manifest, the anchor dataset named even when it was implied
    (tables of Table 5's ablation group runs by it)."""
    doc = asdict(config.anchors)
    if config.anchors.source == "select":
        doc["dataset"] = anchor_dataset_name(config.anchors, [s.name for s in config.datasets])
    return doc


def anchor_dataset(spec: AnchorSpec, datasets: dict[str, Dataset]) -> tuple[str, Dataset]:
    """The dataset anchors are selected from: one given only for anchors (`dataset_source`, or a registered
    dataset under `root`), else the run's dataset of that name, else the embedded demo benchmark."""
    name = anchor_dataset_name(spec, list(datasets))
    if spec.dataset_source is not None:
        if name in datasets:
            raise ValueError(f"anchors dataset {name!r} is also a test dataset of this run: give the anchors-only "
                             f"dataset another name (--anchors-dataset OTHER={spec.dataset_source})")
        if not Path(spec.dataset_source).exists():
            raise ValueError(f"anchors dataset {name!r}: {spec.dataset_source} not found (--anchors-dataset "
                             "NAME=manifest.json|csv|folder, anchors: dataset_source: in YAML)")
        return name, resolve_dataset(DatasetSpec(name, source=spec.dataset_source, root=spec.root))[0]
    if name in datasets:
        return name, datasets[name]
    if name == "demo":  # the embedded benchmark: a reference usable anywhere
        return name, resolve_dataset(DatasetSpec("demo"))[0]
    if name is not None and spec.root is not None:  # a registered dataset used only for anchors
        return name, resolve_dataset(DatasetSpec(name, root=spec.root))[0]
    raise ValueError(f"--anchors select needs --anchors-dataset (anchors: dataset: in YAML): one of the run's "
                     f"datasets {sorted(datasets)}, 'demo', NAME=manifest.json|csv|folder (anchors: dataset_source:), "
                     "or a registered dataset with --anchors-root")


def resolve_anchors(spec: AnchorSpec, datasets: dict[str, Dataset]) -> AnchorSet:
    """An anchor set whose images are absolute paths."""
    if spec.source == "koniq":
        base = koniq_default()
        root = spec.root
        if root is None and "koniq" in {n.lower() for n in datasets}:
            root = next(str(d.root) for n, d in datasets.items() if n.lower() == "koniq")
        if root is None:
            raise ValueError("the default KonIQ anchors need --anchors-root (anchors: root: in YAML): the folder "
                             "holding koniq/ (KonIQ-10k images); or choose --anchors select --anchors-dataset NAME "
                             "(anchors: source: select in YAML): Eqn. 4 on one of your datasets")
        return replace(base, images=[str(Path(root) / i) for i in base.images])
    if spec.source == "select":
        name, ds = anchor_dataset(spec, datasets)
        mos, std = selection_inputs(ds)
        idx = select_anchors(mos, std, spec.alpha, spec.beta, spec.scheme, spec.seed)
        return AnchorSet(images=[str(ds.abspath(ds.records[i])) for i in idx], mos=mos[idx], std=std[idx],
                         name=f"{name} {scheme_label(spec.scheme, spec.alpha, spec.beta, spec.seed)}"
                              + ("" if ds.higher_is_better else "; MOS = -DMOS so that higher is better"),
                         source=f"selected from dataset {name!r}"
                                + (f" ({spec.dataset_source})" if spec.dataset_source else ""))
    if not Path(spec.source).is_file():
        raise ValueError(f"--anchors {spec.source!r} (anchors: source: in YAML) is neither 'koniq', 'select' nor "
                         "an anchors JSON file")
    return read_anchor_file(spec.source, spec.root)[0]




# --- the two entry points --------------------------------------------------------------------------

def needs_anchors(config: RunConfig) -> bool:
    """Anchors are resolved only for the comparison modes: `--mode rating` alone rates each image on its own."""
    return any(m != "rating" for m in config.modes)


def check_before_model_work(config: RunConfig, anchors: AnchorSet, profiles: list[Profile], tests: list[str],
                            comparator=None) -> None:
    """Configuration errors stop the run here, before any model is loaded: nothing to score, an
    unreadable anchor (every image's score depends on it: each anchor is decoded in full, a truncated
    file included), a fixed anchor matrix the anchor set does not carry, rating mode for an adapter
    without single-image rating."""
    if not tests:
        raise ValueError("no images to score: the datasets are empty (or every item was dropped as bad)")
    broken = unreadable(anchors.images if anchors else [], full=True)
    if broken:
        raise ValueError(f"{len(broken)} anchor image(s) cannot be used:\n" + "\n".join(broken))
    for p in profiles if anchors else []:  # a fixed matrix the anchor set cannot give (or a degenerate MOS one)
        fixed_matrix(matrix_source(p, anchors), anchors)
    calibrating = [p for p in profiles if p.calibrate != "none"]
    if calibrating and set(config.modes) - {"soft"}:
        raise ValueError(f"--calibrate {calibrating[0].calibrate} applies to --mode soft only (count reads the arg-max "
                         "level, rating has no anchors); run the other modes without --calibrate")
    if calibrating and anchors and calibration_problem(anchors):
        raise ValueError(f"--calibrate: {calibration_problem(anchors)}")
    if "rating" in config.modes and comparator is not None and not as_comparator(comparator).can_rate:
        raise ValueError(_NO_RATING.format(config.model))


@dataclass
class Plan:
    """What a run will do, all known before any model loads (shared by `run` and `dry_run`)."""

    dsruns: list[DatasetRun]
    anchors: AnchorSet | None  # None: a rating-only run
    profiles: list[Profile]
    tests: list[str]
    #: anchor images that are also test images
    overlap: list[str]
    #: "pairs" (soft and count modes) and/or "rating" -> the items to judge and their roles
    work: dict[str, tuple[list[Pair], list[str]]]

    def folders(self, config: RunConfig) -> list[tuple[Profile, str]]:
        """The (profile, mode) of each run folder, in the order they are written."""
        return [(p, m) for m in config.modes for p in (self.profiles if m != "rating" else self.profiles[:1])]


def config_key(config: RunConfig) -> str:
    """A model configuration known without loading it (spec and checked options): how the pair cache's
    timings name it, so a dry run finds the fingerprint and the speed of a model it has not loaded."""
    return short_digest({"model": config.model, "options": config.recorded_options})


def plan_run(config: RunConfig, comparator=None, *, inputs=(), outputs=()) -> Plan:
    """Datasets, anchors, profiles and the pairs to judge, checked, and the run folders whose ids are known
    without the model (`check_targets`, with the caller's `inputs` and `outputs`); no model is loaded."""
    dsruns = []
    for spec in config.datasets:
        ds, summary = resolve_dataset(spec, drop_bad=config.drop_bad)
        dsruns.append(DatasetRun(ds, summary))
    datasets = {dr.dataset.name: dr.dataset for dr in dsruns}
    # from the whole datasets (--limit keeps the anchors); a rating-only run compares nothing: no anchors
    anchors = resolve_anchors(config.anchors, datasets) if needs_anchors(config) else None
    if config.limit:
        dsruns = [replace(dr, dataset=replace(dr.dataset, records=dr.dataset.records[:config.limit]))
                  for dr in dsruns]
    profiles = [get_profile(p, **config.profile_overrides) for p in config.profiles]
    tests = list(dict.fromkeys(p for dr in dsruns for p in dr.paths))
    check_before_model_work(config, anchors, profiles, tests, comparator)
    overlap = sorted(set(anchors.images) & set(tests)) if anchors else []
    # e.g. the KonIQ anchors sit in some official KonIQ test splits (docs/method.md, "Eqn. 4: choosing anchors")
    if overlap:
        warnings.warn(f"{len(overlap)} anchor image(s) are also test images and will be compared with themselves: "
                      f"{overlap[:3]}{' ...' if len(overlap) > 3 else ''}", stacklevel=3)
    work = {}
    if needs_anchors(config):
        block = any(anchor_block_needed(p, anchors) for p in profiles)
        # an active design plans only the anchor block: its test pairs are chosen round by round (run)
        work["pairs"] = plan_pairs([] if config.design == ACTIVE else tests, anchors.images, order=config.order,
                                   anchor_block=block)
    if "rating" in config.modes:
        work["rating"] = ([Pair(x, x) for x in tests], ["test"] * len(tests))
    plan = Plan(dsruns, anchors, profiles, tests, overlap, work)
    check_targets(config, plan, inputs=inputs, outputs=outputs)
    return plan


def run_identity(config: RunConfig, anchors: AnchorSet | None, profile: Profile, mode: str, fp_hash) -> dict:
    """What makes a run folder the same run: hashed into the default run id, and compared with the
    manifest of a folder whose id a run would reuse (`recorded_identity`)."""
    return {"model": config.model, "options": config.recorded_options, "fp": fp_hash,
            "datasets": [asdict(s) for s in config.datasets], "anchors": anchors.digest() if anchors else None,
            **(selection_identity(asdict(config.anchors)) if anchors else {}),
            "profile": profile.as_dict(), "mode": mode, "order": config.order,
            **({"limit": config.limit} if config.limit else {}),  # full runs keep their ids
            **design_identity(config.design_spec().record())}


def design_identity(design: dict | None) -> dict:
    """An active design's settings are part of a run's identity (not what it spent); anchor-design runs keep their ids."""
    if not design or design.get("name") != ACTIVE:
        return {}
    return {"design": {k: design.get(k) for k in ("name", "budget", "round_size", "seed")}}


def selection_identity(anchors_config: dict) -> dict:
    """A selection scheme other than Eqn. 4 (and a random draw's seed) is part of a run's identity even
    when it happens to pick the same images (its manifest says which scheme a table row is); Eqn. 4
    runs, older manifests included, keep their ids."""
    scheme = anchors_config.get("scheme", DEFAULT_SCHEME)
    if anchors_config.get("source") != "select" or scheme == DEFAULT_SCHEME:
        return {}
    return {"anchor_scheme": scheme, **({"anchor_seed": anchors_config.get("seed", 0)} if scheme == "random" else {})}


def recorded_identity(m: Manifest) -> dict:
    """`run_identity` of a run folder on disk, from its manifest."""
    return {"model": m.model.spec, "options": m.model.options, "fp": m.model.fingerprint_hash,
            "datasets": m.datasets_config, "anchors": None if m.anchors.name == NO_ANCHORS else m.anchors.digest,
            **(selection_identity(m.anchors_config) if m.anchors.name != NO_ANCHORS else {}),
            "profile": m.profile.as_dict(), "mode": m.mode, "order": m.order, **({"limit": m.limit} if m.limit else {}),
            **design_identity(m.design)}


def run_id_for(config: RunConfig, profile: Profile, mode: str, identity: dict) -> str | None:
    """The folder name of one run: the given id (with profile and mode when a run has several of either),
    else derived from the configuration, fingerprint included (None while the fingerprint is not known)."""
    if config.run_id:
        several = len(config.modes) * len(config.profiles) > 1
        return f"{config.run_id}-{profile.name}-{mode}" if several else config.run_id
    if identity["fp"] is None:
        return None
    scope = f"-first{config.limit}" if config.limit else ""
    return f"{slug(config.model_label)}-{profile.name}-{mode}{scope}-{short_digest(identity)}"


#: how a user names each part of a run's identity
_IDENTITY_NAMES = {"model": "model spec", "options": "model options", "fp": "model fingerprint",
                   "datasets": "datasets", "anchors": "anchors", "profile": "profile", "mode": "mode",
                   "order": "order", "limit": "--limit", "design": "design (--design, --budget, --round-size, seed)"}


def check_targets(config: RunConfig, plan: Plan, fp_hash=None, *, inputs=(), outputs=()) -> None:
    """Each run folder's id names one folder inside `out_dir`; writing it (or the caller's `outputs`)
    changes none of the run's inputs; and a folder already there under that id is a run of the same
    configuration (a re-run replaces it) unless `config.overwrite`. A folder that is not a run is never
    replaced. Checked before any model work for the ids known then (given ones), and again once the
    model's fingerprint is known, before any pair is judged."""
    reads = [*plan.tests, *(plan.anchors.images if plan.anchors else []), *inputs,
             *(s.source for s in config.datasets if s.source), *([config.cache] if config.cache else []),
             *(p for p in (config.anchors.source, config.anchors.dataset_source) if p and Path(p).is_file())]
    targets = {}
    for profile, mode in plan.folders(config):
        identity = run_identity(config, plan.anchors, profile, mode, fp_hash)
        run_id = run_id_for(config, profile, mode, identity)
        if run_id is not None:
            targets[Path(config.out_dir) / check_run_id(run_id)] = identity
    check_outputs(outputs, reads)
    check_outputs(targets, reads, fix="choose another --out or --run-id (out_dir:, run_id: in YAML)", what="run folder")
    data = _scored_data(plan.dsruns) if targets else ""
    for target, identity in targets.items():
        _check_reuse(target, identity, config.overwrite, data)


def _canonical(value) -> str:
    """One text per JSON value, whether it was just built (tuples, numpy) or read back from a manifest."""
    return json.dumps(strict_json(value), sort_keys=True, default=str)


def _scored_data(dsruns: list[DatasetRun]) -> str:
    """What a run scored and against which opinions: each dataset's images (as named) with MOS and splits.
    The dataset specs alone do not say it: a manifest edited in place keeps its path."""
    return _canonical([[dr.dataset.name, sorted((r.path, r.mos, sorted(r.splits)) for r in dr.dataset.records)]
                       for dr in dsruns])


def _check_reuse(target: Path, identity: dict, overwrite: bool, data: str) -> None:
    check_replaceable(target)
    if overwrite or not (target / MANIFEST).is_file():
        return
    again = "choose another --run-id (run_id: in YAML) or --out"
    force = "pass --overwrite (overwrite: true in YAML) to replace it"
    try:
        folder = read_run(target)
        old = recorded_identity(folder.manifest)
        old_data = _scored_data(folder.dataset_runs()[0])
    except RunFolderError as exc:
        raise ValueError(f"run id {target.name!r} is taken by a run folder that cannot be read ({exc}); {force}, "
                         f"or {again}") from None
    differ = [_IDENTITY_NAMES[k] for k in _IDENTITY_NAMES
              if (k != "fp" or identity["fp"] is not None) and _canonical(identity.get(k)) != _canonical(old.get(k))]
    if data != old_data and not differ:  # (a change of datasets or --limit explains it already)
        differ.append("images or MOS (the dataset files changed)")
    if differ:
        raise ValueError(f"run id {target.name!r} in {target.parent} holds a run of another configuration "
                         f"(different {', '.join(differ)}); {force}, or {again}")


@_under_image_limits
def dry_run(config: RunConfig) -> tuple[Plan, dict[str, dict]]:
    """The plan of a run and, per kind of work, how many items it has, how many the pair cache already
    holds and an estimate of the seconds the rest take, from the cache's timings of the same model spec
    and options; no model is loaded and nothing is written. Without such timings the cached count is
    unknown (None): the fingerprint that keys the cache needs the model."""
    plan = plan_run(config)
    cache = PairCache(config.cache) if config.cache and Path(config.cache).exists() else None
    out = {}
    try:
        for kind, (items, _) in plan.work.items():
            seen = cache.history(config_key(config), rating=kind == "rating") if cache else None
            entry = {"items": len(items), "cached": None, "to_judge": None, "seconds": None, "timed_pairs": 0}
            if seen:
                look = cache_lookup(items, cache, seen["fingerprint"], seen["prompt"])
                entry["cached"] = sum(k in look.hits.found for k in look.keys.values())
                entry["to_judge"] = len({k for k in look.keys.values() if k not in look.hits.found})
                entry["timed_pairs"] = seen["pairs"]
                entry["seconds"] = entry["to_judge"] * seen["seconds"] / max(seen["pairs"], 1)
            out[kind] = entry
    finally:
        if cache:
            cache.close()
    return plan, out


@_under_image_limits
def run(config: RunConfig, *, comparator=None, progress: bool = True, complete=None, inputs=(),
        outputs=()) -> list[Path]:
    """Judge what the configured runs need once, then score and write one folder per (profile, mode).
    `complete(folder)` adds to each folder before it appears (the CLI's report and plots); `inputs` are
    files the run reads that its configuration does not name (a YAML file), `outputs` files the caller
    will write: both checked with the run folders before any model work (`check_targets`)."""
    timings: dict = {}
    t0 = time.perf_counter()
    plan = plan_run(config, comparator, inputs=inputs, outputs=outputs)
    dsruns, anchors, tests, overlap = plan.dsruns, plan.anchors, plan.tests, plan.overlap
    timings["load_datasets"] = time.perf_counter() - t0

    session = open_session(config.executor, config.model, config.model_options, limits=config.image_limits,
                           comparator=comparator, stall_timeout=config.stall_timeout)
    try:
        fp = session.fingerprint
        fp_hash = fingerprint_hash(fp)
        check_targets(config, plan, fp_hash, inputs=inputs)  # every id, now that the fingerprint is known
        cache = PairCache(config.cache) if config.cache else None
        def judge_kind(kind, items, roles):
            return judge(session.call(kind), items, roles, cache=cache, fp_hash=fp_hash,
                         prompt_key=prompt_key(fp, rating=kind == "rating"), batch_size=config.batch_size,
                         progress=progress, timings=timings, config_key=config_key(config),
                         run_batches=session.run_batches)

        design = config.design_spec()
        try:
            judged = {kind: judge_kind(kind, items, roles) for kind, (items, roles) in plan.work.items()}
            if design.name == ACTIVE:  # rounds chosen under the first profile and comparison mode
                judged["pairs"] = judge_active(functools.partial(judge_kind, "pairs"), tests, anchors,
                                               judged["pairs"], design, profile=plan.profiles[0],
                                               mode=next(m for m in config.modes if m != "rating"), order=config.order)
        finally:
            if cache:
                cache.close()
    finally:
        session.close()

    out = []
    for profile, mode in plan.folders(config):
        j = judged["rating" if mode == "rating" else "pairs"]
        identity = run_identity(config, anchors, profile, mode, fp_hash)
        run_id = run_id_for(config, profile, mode, identity)
        manifest = {"run_id": run_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "model": {"spec": identity["model"], "label": config.model_label,
                              "options": identity["options"], "fingerprint": fp, "fingerprint_hash": fp_hash},
                    "order": config.order, "batch_size": config.batch_size, "anchors_in_test": overlap,
                    "datasets_config": [asdict(s) for s in config.datasets], "anchors_config": anchors_config(config),
                    "seeds": {"bootstrap": config.seed, "official_adam": 0},
                    "cache": str(Path(config.cache).resolve()) if config.cache else None,
                    "limit": config.limit, "design": design.record(), "executor": config.executor.recorded()}
        path = finish_run(Path(config.out_dir) / run_id, manifest, dsruns, tests, anchors, j, profile, mode,
                          dict(timings), bootstrap=config.bootstrap, seed=config.seed, complete=complete)
        out.append(path)
    return out


def judged_pairs(rows, anchors: AnchorSet | None, mode: str) -> JudgedPairs | None:
    """The test pairs of comparisons.csv rows for the pairwise accuracy (None in rating mode, which compares
    nothing): the recorded preference, and the arg-max level of the log-probs."""
    if mode == "rating":
        return None
    rows = [r for r in rows if r.role == "test"]
    lp = np.nan_to_num(np.array([r.logprobs for r in rows], dtype=np.float64).reshape(len(rows), -1), nan=-np.inf)
    return JudgedPairs([r.first for r in rows], [r.second for r in rows],
                       np.array([r.preference for r in rows], dtype=np.float64),
                       np.argmax(lp, axis=1) if rows else np.zeros(0, dtype=np.int64),
                       frozenset(anchors.images if anchors else ()))


def finish_run(run_dir: Path, manifest: dict, dsruns: list[DatasetRun], tests: list[str], anchors: AnchorSet,
               judged: Judged, profile: Profile, mode: str, timings: dict, *, bootstrap: int, seed: int,
               complete=None) -> Path:
    """Score, measure and write one run folder (shared by `run` and `rescore`); `manifest` holds the
    run's identity and configuration, the rest is added here; `complete` as in `write_run`."""
    t0 = time.perf_counter()
    raw = on_raw_logits(profile, mode)
    calibration = calibration_for(profile, mode, anchors, judged.pairs, judged.roles, judged.logprobs)
    if (manifest.get("design") or {}).get("name") == ACTIVE and mode != "rating":
        view, scoring_profile = calibrated_judged(judged, profile, calibration)
        scored = score_active(tests, anchors, view, raw, scoring_profile, mode)
    else:
        rows, scoring_profile = apply_calibration(judged.rows(raw), profile, calibration)
        scored = score_tests(tests, anchors, dict(zip(judged.pairs, rows)), judged.error_of(), scoring_profile, mode,
                             manifest["order"])
    timings["scoring"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    comparisons = comparison_rows(judged, profile, mode, calibration)
    score_rows, metrics = evaluate(dsruns, tests, scored, bootstrap=bootstrap, seed=seed,
                                   undefined=no_scale_reason(anchors), pairs=judged_pairs(comparisons, anchors, mode))
    timings["metrics"] = time.perf_counter() - t0
    failed = np.array([e is not None for e in judged.errors], dtype=bool)
    record = Manifest.model_validate({
        **manifest, "profile": profile, "mode": mode, "bootstrap": bootstrap,
        "anchors": anchors_info(anchors, scored.anchor_matrix, scored.matrix_source),
        "datasets": [{"name": dr.dataset.name, "root": str(dr.dataset.root), "n_images": len(dr.dataset),
                      "higher_is_better": bool(dr.dataset.higher_is_better), "splits": dr.dataset.splits,
                      "summary_over": dr.summary,
                      "dropped": [str(p) for p in (dr.dataset.report.dropped if dr.dataset.report else [])]}
                     for dr in dsruns],
        "versions": versions(), "git_revision": git_revision(), "timings": timings,
        "counts": {"pairs_total": len(judged.pairs), "pairs_cached": int(judged.cached.sum()),
                   "pairs_computed": int((~judged.cached & ~failed).sum()), "pairs_failed": int(failed.sum()),
                   "images_total": len(tests), "images_failed": int(sum(e is not None for e in scored.errors)),
                   "pairs_cache_invalid": judged.cache_invalid,
                   "pairs_raw_logits": int(judged.has_raw().sum()) if raw else 0},
        "map_converged_fraction": scored.converged_frac, "anchors_unusable": scored.unusable_anchors,
        "calibration": calibration.as_record() if calibration else None,
    })
    numbers = Metrics(run_id=record.run_id, model_label=record.model.label,
                      profile=profile_label(profile, record.order), mode=mode, datasets=metrics)
    return write_run(run_dir, record, numbers, [ScoreRow.model_validate(r) for r in score_rows],
                     comparisons, complete=complete)


def rescore(run_dir, *, profile: str | None = None, mode: str | None = None, out_dir=None,
            bootstrap: int | None = None, complete=None, **overrides) -> Path:
    """Score a finished run again from its recorded comparisons under another profile, link,
    temperature, scale or anchor matrix source; no model is loaded and torch is never imported.
    `complete` as in `write_run` (the caller's report, harness.report.reports.write_report)."""
    check_not_leftover(run_dir)
    old = read_run(run_dir)
    m = old.manifest
    prof = get_profile(profile, **overrides) if profile else replace(
        m.profile, **{k: v for k, v in overrides.items() if v is not None})
    mode = mode or m.mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if (mode == "rating") != (m.mode == "rating"):
        raise ValueError("a rating run holds single-image ratings, a comparison run holds pairs: rescore cannot "
                         "switch between them")
    judged, anchors, (dsruns, tests) = old.judged(), old.anchor_set(), old.dataset_runs()
    new_id = check_run_id(f"{m.run_id}-rescored-{short_digest([prof.as_dict(), mode])}")
    target = Path(out_dir) / new_id if out_dir else old.run_dir.parent / new_id
    check_outputs([target], [old.run_dir], fix="choose another --out", what="new run folder")
    check_replaceable(target, fix="choose another --out")
    manifest = m.model_dump(exclude={"format_version", "timings", "counts", "profile", "mode", "anchors"})
    manifest.update(run_id=new_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    rescored_from={"run_id": m.run_id, "same_settings": prof == m.profile and mode == m.mode})
    return finish_run(target, manifest, dsruns, tests, anchors, judged, prof, mode, {},
                      bootstrap=m.bootstrap if bootstrap is None else bootstrap, seed=m.seeds.bootstrap,
                      complete=complete)
