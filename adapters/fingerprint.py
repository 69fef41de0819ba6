"""One fingerprint shape for every backend (docs/architecture.md, "The comparator contract").

Why: the fingerprint is the pair cache's key and the run manifest's record of what produced the
numbers. When every backend fills the same keys, a reader (and a future `c2s cache` or viewer)
finds the model, the dtype and the prompt in one place whatever judged the pairs:

    backend        registry name ("hf", "vllm", "openai", "compare2score", "classical")
    model          {id, revision, class, weights}: weights is the local checkpoint's identity
                   (config hash, weight-file sizes and times) or None for a hub id or an API model
    dtype          the compute dtype, or None where the backend does not know it (an API)
    prompt         the pair wording: {name, sha256, text, ...}; the runner keys its cache on sha256
    rating_prompt  the single-image wording (same form), or None without single-image rating
    level_tokens   how the five level words are read: {ids, strings, strategy} or a rule
    preprocessing  what happens to an image before the model sees it
    versions       library versions that change the numbers
    extra          anything backend-specific (engine options, server mode, calibration)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

FINGERPRINT_KEYS = ("backend", "model", "dtype", "prompt", "rating_prompt", "level_tokens", "preprocessing",
                    "versions", "extra")


def build_fingerprint(*, backend: str, model: dict, dtype: Optional[str], prompt: Optional[dict],
                      level_tokens: Optional[dict], preprocessing: Optional[dict], versions: dict,
                      rating_prompt: Optional[dict] = None, extra: Optional[dict] = None) -> dict:
    """The fingerprint of one comparator, in the shared shape (see the module docstring)."""
    return {"backend": backend, "model": model, "dtype": dtype, "prompt": prompt, "rating_prompt": rating_prompt,
            "level_tokens": level_tokens, "preprocessing": preprocessing, "versions": versions,
            "extra": extra or {}}


def checkpoint_identity(model: Any) -> dict:
    """What identifies a local checkpoint cheaply: the config's hash and each weight file's size and
    modification time (a checkpoint re-saved into the same folder keeps its sizes, not its times).
    Empty for anything that is not a local folder (a hub id, an API model name)."""
    if not isinstance(model, (str, os.PathLike)):
        return {}
    path = Path(model)
    if not path.is_dir():
        return {}
    cfg = path / "config.json"
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {"config_sha256": hashlib.sha256(cfg.read_bytes()).hexdigest() if cfg.is_file() else None,
            "weight_files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def model_identity(model_id: Optional[str], *, revision: Any = None, cls: Optional[str] = None,
                   local: bool = True) -> dict:
    """The `model` entry: id, revision, model class and, when `model_id` may be a local folder
    (`local`), the weights' identity."""
    weights = checkpoint_identity(model_id) if local else {}
    return {"id": model_id, "revision": revision, "class": cls, "weights": weights or None}


def checked_fingerprint(comparator: Any, where: str) -> dict:
    """The comparator's fingerprint, checked BEFORE any pair is judged (it keys the pair cache and is
    written into the run manifest after judging): a dict of JSON values with text keys. Anything else
    (None, a set, an object, a tuple key, fingerprint() raising) is one ValueError naming `where`."""
    try:
        fp = comparator.fingerprint()
    except Exception as exc:  # noqa: BLE001 - a plug-in's own code: reported, not a harness bug
        raise ValueError(f"{where}: fingerprint() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(fp, dict):
        raise ValueError(f"{where}: fingerprint() returned {type(fp).__name__}; it must return a dict of JSON "
                         "values (see adapters/fingerprint.py)")
    try:
        _check_json(fp, "fingerprint")
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"{where}: fingerprint() must return JSON values (text keys; text, numbers, booleans, "
                         f"null, lists, dicts): {exc}") from None
    return fp


def _check_json(value: Any, at: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{at} has the key {key!r}, not text")
            _check_json(item, f"{at}.{key}")
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            _check_json(item, f"{at}[{k}]")
    elif not (value is None or isinstance(value, (str, int, float, np.generic))):
        raise TypeError(f"{at} is a {type(value).__name__}")


def fingerprint_hash(fp: dict) -> str:
    """Stable short hash of a fingerprint (canonical JSON)."""
    blob = json.dumps(fp, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
