"""One pairwise-comparison interface for every backend (see DESIGN.md, "The comparator interface").

A comparator turns image pairs into level log-probabilities, shape (n, 5), in the shared level
order (`harness.core.levels.LEVELS`): the verdict on the SECOND image relative to the FIRST.
Adapters do not schedule, cache, retry across runs or compute metrics: the runner does.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from harness.core.levels import N_LEVELS
from harness.core.pairs import Pair

ImageRef = Union[str, "os.PathLike[str]"]


@runtime_checkable
class Comparator(Protocol):
    """What every adapter implements.

    `compare` returns level log-probabilities (rows normalise to 1 in probability space); a pair
    the backend could not judge is a row of NaN. Adapters that know WHY a pair failed (API errors,
    missing log-probs) also implement `compare_detailed` returning `Comparisons`.
    `fingerprint` describes everything that changes the numbers (backend, model and revision,
    dtype, prompt template and hash, level token ids, preprocessing, library versions): the cache
    key and the run manifest are built from it.
    """

    def compare(self, pairs: Sequence[Pair]) -> np.ndarray: ...

    def fingerprint(self) -> dict: ...


@dataclass
class Comparisons:
    """Per-pair outcome of a batch: log-probs (NaN rows where failed), a reason per failed pair,
    and free-form per-pair metadata (e.g. the probability mass an API left outside its top-k)."""

    logprobs: np.ndarray
    errors: list = field(default_factory=list)
    meta: list = field(default_factory=list)

    def __post_init__(self):
        n = len(self.logprobs)
        if not self.errors:
            self.errors = [None] * n
        if not self.meta:
            self.meta = [{} for _ in range(n)]
        if len(self.errors) != n or len(self.meta) != n:
            raise ValueError("Comparisons: logprobs, errors and meta must have one entry per pair")

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)


def normalize_logprobs(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax: any per-row additive constant is removed. NaN rows stay NaN."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        z = x - m
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def compare_batch(comparator: Comparator, pairs: Sequence[Pair]) -> Comparisons:
    """Run one batch through any comparator without ever raising for a data problem.

    A backend exception fails every pair of the batch with its message; a non-finite row fails
    that pair. Rows are re-normalised so downstream code may rely on log-softmax rows.
    """
    pairs = list(pairs)
    if hasattr(comparator, "compare_detailed"):
        return _checked(len(pairs), lambda: comparator.compare_detailed(pairs))
    return _checked(len(pairs), lambda: Comparisons(np.asarray(comparator.compare(pairs), dtype=np.float64)))


def rate_batch(comparator, images: Sequence[ImageRef]) -> Comparisons:
    """`compare_batch` for the single-image rating baseline (`comparator.rate(images)`, levels
    `harness.core.levels.RATING_LEVELS`; `rate_detailed` where the adapter knows why an image failed),
    with the same failure recording."""
    images = [os.fspath(i) for i in images]
    if hasattr(comparator, "rate_detailed"):
        return _checked(len(images), lambda: comparator.rate_detailed(images))
    if not hasattr(comparator, "rate"):
        raise ValueError(f"{type(comparator).__name__} has no single-image rating (rate); use mode soft or count")
    return _checked(len(images), lambda: Comparisons(np.asarray(comparator.rate(images), dtype=np.float64)))


def _checked(n: int, call) -> Comparisons:
    try:
        res = call()
    except Exception as exc:  # noqa: BLE001 - recorded per pair, never swallowed
        reason = f"{type(exc).__name__}: {exc}"
        return Comparisons(np.full((n, N_LEVELS), np.nan), [reason] * n, [{} for _ in range(n)])
    lp = np.asarray(res.logprobs, dtype=np.float64)
    if lp.shape != (n, N_LEVELS):
        reason = f"comparator returned shape {lp.shape}, expected ({n}, {N_LEVELS})"
        return Comparisons(np.full((n, N_LEVELS), np.nan), [reason] * n, [{} for _ in range(n)])
    errors = list(res.errors)
    bad = ~np.all(np.isfinite(lp), axis=1)
    for i in np.flatnonzero(bad):
        if errors[i] is None:
            errors[i] = "non-finite level log-probabilities from the model"
    lp = normalize_logprobs(np.where(bad[:, None], np.nan, lp))
    for i, e in enumerate(errors):
        if e is not None:
            lp[i] = np.nan
    return Comparisons(lp, errors, list(res.meta))


def fingerprint_hash(fp: dict) -> str:
    """Stable short hash of a fingerprint (canonical JSON)."""
    blob = json.dumps(fp, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- registry: model spec string -> adapter class, imported lazily (no torch for `classical`) ---
_REGISTRY: dict[str, str] = {
    "hf": "adapters.hf:HFComparator",
    "vllm": "adapters.vllm:VLLMComparator",
    "openai": "adapters.openai_api:OpenAIComparator",
    "compare2score": "adapters.compare2score:Compare2ScoreComparator",
    "classical": "adapters.classical:ClassicalComparator",
}


#: `py:package.module:Class` loads any importable adapter without registering it first.
PY_BACKEND = "py"


def register_comparator(backend: str, target: str) -> None:
    """Register a third-party adapter: `target` is "module:Class"; the class is built as
    `Class(model, **options)` where `model` is the part of the spec after the colon (or None)."""
    _REGISTRY[backend] = target


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`hf:Qwen/Qwen2.5-VL-7B-Instruct` -> ("hf", "Qwen/..."); `classical` -> ("classical", None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("model spec must be a non-empty string such as 'hf:PATH' or 'classical'")
    backend, sep, model = spec.strip().partition(":")
    if backend == PY_BACKEND:
        if model.count(":") != 1 or not all(model.split(":")):
            raise ValueError(f"spec {spec!r}: write py:package.module:ClassName")
        return backend, model
    if backend not in _REGISTRY:
        known = ", ".join(sorted([*_REGISTRY, PY_BACKEND]))
        raise ValueError(f"unknown model backend {backend!r} in spec {spec!r}; known backends: {known}")
    return backend, (model if sep and model else None)


def comparator_class(spec: str) -> type:
    """The adapter class a model spec names, imported but not built (no model is loaded)."""
    backend, model = parse_spec(spec)
    target = model if backend == PY_BACKEND else _REGISTRY[backend]
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if cls is None:
        raise ValueError(f"spec {spec!r}: {module_name} has no attribute {cls_name!r}")
    return cls


def load_comparator(spec: str, **options: Any) -> Comparator:
    """Build the adapter a model spec names, e.g. `load_comparator("hf:/models/qwen", batch_size=8)`."""
    backend, model = parse_spec(spec)
    if backend == PY_BACKEND:
        model = options.pop("model", None)
    return comparator_class(spec)(model, **options)
