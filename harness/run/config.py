"""YAML run configs: models x datasets x profiles, with ${ENV} expansion.

    models:
      - spec: hf:/models/Qwen2.5-VL-7B-Instruct
        label: Qwen2.5-VL-7B
        options: {device: cuda, dtype: bfloat16, batch_size: 16}
      - classical
    datasets:
      - {name: koniq, root: ${IQA_ROOT}}                 # official splits 1..10
      - {name: mine, source: data/mine.csv, root: data/mine}
    anchors: {source: koniq, root: ${IQA_ROOT}}
    profiles: [paper, official]
    modes: [soft, count]
    executor: {kind: ray, replicas: 4, gpus_per_replica: 1}   # optional; docs/scale-out.md

`${VAR}` must be set; `${VAR:-default}` falls back. Relative paths stay relative to the
working directory, as on the command line. Every key is checked before any model work.
"""
from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

from harness.run.executors import ExecutorSpec
from harness.run.record import slug
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RUN_KEYS = {f.name for f in fields(RunConfig)} - {"model", "model_options", "label", "datasets", "anchors", "executor"}


def expand_env(value, where: str = "config"):
    """Expand ${VAR} / ${VAR:-default} in every string of a nested structure."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m):
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ValueError(f"{where}: environment variable {name} is not set (write ${{{name}:-default}} for a fallback)")

    return _ENV.sub(sub, value)


def _unknown(keys, allowed, where: str) -> None:
    """Refuse keys outside `allowed`, naming them (YAML keys may be numbers too) and the allowed ones."""
    unknown = sorted(map(str, set(keys) - set(allowed)))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _build(cls, data, where: str):
    if isinstance(data, str):
        data = {"name": data} if cls is DatasetSpec else {"source": data}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    _unknown(data, {f.name for f in fields(cls)}, where)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _list(doc: dict, key: str) -> list:
    """`key`'s value as a list (one item may be written without brackets)."""
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"config: `{key}` must be a list, got {type(value).__name__} ({value!r})")
    return value


def configs_from_dict(doc: dict) -> list[RunConfig]:
    """One RunConfig per model of a parsed config document."""
    if not isinstance(doc, dict):
        raise ValueError("a run config is a YAML mapping with at least `models` (or `model`) and `datasets`")
    doc = expand_env(doc)
    _unknown(doc, _RUN_KEYS | {"models", "model", "datasets", "anchors", "executor"}, "config")
    models = _list(doc, "models") if "models" in doc else [doc["model"]] if "model" in doc else []
    if not models:
        raise ValueError("config: give `models` (a list) or `model`")
    datasets = [_build(DatasetSpec, d, f"datasets[{i}]") for i, d in enumerate(_list(doc, "datasets"))]
    anchors = _build(AnchorSpec, doc.get("anchors", {}), "anchors")
    common = {k: doc[k] for k in _RUN_KEYS if k in doc}
    if "executor" in doc:  # where judging runs (harness.run.executors): local, or {kind: ray, replicas: N, ...}
        common["executor"] = ExecutorSpec.parse(doc["executor"])
    out = []
    for i, m in enumerate(models):
        if isinstance(m, str):
            m = {"spec": m}
        if not isinstance(m, dict) or not isinstance(m.get("spec"), str):
            raise ValueError(f"models[{i}]: write a spec string or {{spec: ..., label: ..., options: {{...}}}}")
        _unknown(m, {"spec", "label", "options"}, f"models[{i}]")
        options = m.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"models[{i}].options: expected a mapping of KEY: VALUE, got {type(options).__name__}")
        each = dict(common)
        if each.get("run_id") and len(models) > 1:  # one folder per model, never one overwriting another
            each["run_id"] = f"{each['run_id']}-{slug(str(m.get('label') or m['spec']))}"
        try:
            out.append(RunConfig(model=m["spec"], label=m.get("label"), model_options=dict(options),
                                 datasets=datasets, anchors=anchors, **each))
        except TypeError as exc:
            raise ValueError(f"config: {exc}") from None
    return out


def load_config(path) -> list[RunConfig]:
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config {path} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ValueError(f"config {path} is nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"config {path} is not text (UTF-8): {exc}") from None
    return configs_from_dict(doc)
