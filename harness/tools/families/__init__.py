"""The model families the harness knows, one small module per family behind this registry.

A family module (`harness/tools/families/<model_type>.py`, named by transformers' `model_type` where the
family is a transformers one) holds everything family-specific: `FAMILY`, the advice `c2s models` shows
(spec forms, recommended options, why), and, where the family can be built offline, `build(size) ->
(processor, model)`, its tiny random stand-in (harness.tools.tiny_vlm saves it). Adding a family is adding
one module; nothing else lists families.

Why advice lives here and not in the adapters: a family is advice (recommended dtype, image size, context
length) across backends, while the adapters declare what each option means and check it. Every option a
family recommends is a declared option of its backend (tests/test_families.py), so the two cannot drift.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

#: The protocols a family is judged under: both images in one prompt, or side by side in one image.
PROTOCOLS = ("two-image", "composite")


@dataclass(frozen=True)
class Family:
    name: str
    example: str                          # a model id or checkpoint folder of the family
    specs: tuple[str, ...]                # the spec forms that run it
    settings: tuple[tuple[str, str], ...]  # (backend, recommended -o options, as typed)
    note: str                             # image size and context: why those settings
    model_type: str | None = ""           # transformers' model_type ("" = the module's name; None = not one)
    protocol: str = "two-image"           # one of PROTOCOLS
    tiny: str | None = None               # set by the registry: the module's name when it has build()


LOCAL_SPECS = ("hf:PATH_OR_ID", "vllm:PATH_OR_ID", "openai:MODEL (a vLLM server: -o server=vllm)")


def composite_settings(dtype: str) -> tuple[tuple[str, str], ...]:
    """The recommended options of a single-image family: the composite pairing, on transformers and on vLLM
    (one image per prompt)."""
    return (("hf", f"-o pairing=composite -o dtype={dtype}"),
            ("vllm", f"-o pairing=composite -o dtype={dtype} -o limit_mm_per_prompt='{{image: 1}}'"))


def _modules() -> dict[str, ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {n: importlib.import_module(f"{__name__}.{n}") for n in names}


def _registered(name: str, mod: ModuleType) -> Family:
    fam: Family = mod.FAMILY
    if fam.protocol not in PROTOCOLS:
        raise ValueError(f"family module {name}: protocol {fam.protocol!r} is not one of {PROTOCOLS}")
    return dataclasses.replace(fam, model_type=name if fam.model_type == "" else fam.model_type,
                               tiny=name if hasattr(mod, "build") else None)


_MODULES = _modules()
#: Families with a tiny build first (by model_type), then the others (released model, servers).
FAMILIES: tuple[Family, ...] = tuple(sorted((_registered(n, m) for n, m in _MODULES.items()),
                                            key=lambda f: (f.tiny is None, f.tiny or f.name)))


def tiny_builder(key: str):
    """The `build(size)` of the family module `key` (a name of harness.tools.tiny_vlm.FAMILIES)."""
    return _MODULES[key].build


def tiny_family(name: str) -> str:
    """The tiny_vlm key for a family named as the user likes ("Qwen2.5-VL", "qwen2_5_vl", "smolvlm")."""
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower().replace(".", "_").replace("-", "_") if ch.isalnum() or ch == "_")

    names = {}
    for f in FAMILIES:
        if f.tiny:
            names[norm(f.tiny)] = f.tiny
            names.update({norm(part.split("(")[0].strip()): f.tiny for part in f.name.split("/")})
    key = names.get(norm(name))
    if key is None:
        raise ValueError(f"no tiny model for {name!r}; choose one of {', '.join(f.tiny for f in FAMILIES if f.tiny)}")
    return key


def describe_families() -> str:
    """The families for `c2s models`: spec forms, recommended options, why, and the tiny stand-in."""
    lines = ["model families (recommended settings; every option is listed under its backend above):"]
    for f in FAMILIES:
        lines.append(f"  {f.name}, e.g. {f.example}" + ("" if f.protocol == "two-image" else f" [{f.protocol}]"))
        lines.append(f"      spec: {' | '.join(f.specs)}")
        for backend, opts in f.settings:
            lines.append(f"      {backend}: {opts}")
        lines.append(f"      why: {f.note}")
        if f.tiny:
            lines.append(f"      offline: c2s models tiny {f.tiny} --out DIR  (random weights, then --model hf:DIR)")
    return "\n".join(lines) + "\n"
