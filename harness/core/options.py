"""Declared options: every adapter (and the run configuration) states its options once, as a
dataclass whose fields carry a type, a default and a help text; `check_options` validates a user's
`key: value` mapping against it before any model is loaded, and `describe_options` renders the same
declarations for `--help` and `c2s models`.

Why our own checker rather than the dataclass constructor: a misspelt key must name the valid
ones, a wrong type must name the key, the value and the expected type, and values that YAML or
`-o KEY=VALUE` deliver as text in a numeric field (`1e-3` is a string to YAML 1.1) must still be
accepted as numbers, while `true` is never a batch size and `"no"` never a yes.

    @dataclass
    class MyOptions:
        device: str = option("cpu", "torch device: cpu, cuda, cuda:1")
        batch_size: int = option(8, "pairs per forward", minimum=1)

    check_options(MyOptions, {"batch_size": "16"}, where="hf")  # -> error: int expected

An option declared `secret=True` (an API key, a dict of HTTP headers) is never shown in a message and
is masked wherever options are recorded (`recorded_options`); URLs in any option lose their credentials
there too (harness.core.secrets).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from harness.core.secrets import redact, secrets_in


class OptionError(ValueError):
    """A user's option is unknown, of the wrong type or out of range (the message says which and why)."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, minimum: float | None = None,
           maximum: float | None = None, secret: bool = False, **kw: Any) -> Any:
    """A dataclass field with a help text and optional numeric bounds (`secret`: never printed)."""
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "secret": secret}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One declared option, as `--help` and `c2s models` show it."""

    name: str
    type: str
    default: Any
    help: str
    required: bool


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_name(tp: Any) -> str:
    """A readable name for a declared type: `int`, `float or None`, `one of 'a', 'b'`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or None" if type(None) in args else "")
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any) -> Any:
    """`value` as type `tp`, or raise TypeError. Text is accepted in numeric fields (YAML delivers
    `1e-3` as a string); booleans are never numbers and text is never a boolean."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
        raise TypeError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise TypeError
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value)
            except TypeError:
                continue
        raise TypeError
    if origin is not None:  # list[int], dict[str, Any], tuple[int, ...]
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            item_types = [a for a in typing.get_args(tp) if a is not Ellipsis]
            item = item_types[0] if item_types else Any
            return origin(_coerce(item, v) for v in value)
        if origin is dict and isinstance(value, dict):
            return dict(value)
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp in (int, float):
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str):  # text from YAML or -o; "1e3" is a whole number too
            try:
                value = float(value) if tp is float or any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise TypeError from None
        if tp is float and isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads `revision: 20240101` as int
            return str(value)
        raise TypeError
    if isinstance(value, tp):
        return value
    raise TypeError


def _shown(value: Any, secret: bool) -> str:
    """A user's value as an error message may quote it: a secret never, a URL without its credentials."""
    return "***" if secret else repr(redact(value))


def secret_options(cls) -> set[str]:
    """The names of the options `cls` (a declared-options dataclass, or None) declares secret."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return set()
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("secret", False)}


def recorded_options(cls, values: dict) -> dict:
    """The options as a run record may hold them: declared secrets and values under secret names masked,
    URLs without credentials (harness.core.secrets.redact); `cls` may be None (undeclared options)."""
    secret = secret_options(cls)
    return {k: redact(v, k in secret, k) for k, v in (values or {}).items()}


def options_secrets(cls, values: dict) -> set[str]:
    """Every secret the options hold (what `recorded_options` masks), for scrubbing free text."""
    secret = secret_options(cls)
    return set().union(*(secrets_in(v, k in secret, k) for k, v in (values or {}).items()))


def check_options(cls, values: dict | None, where: str) -> dict:
    """The user's options for the declared dataclass `cls`, coerced to the declared types.

    Raises OptionError naming `where` (e.g. "model hf:/models/qwen") and the key: an unknown key
    lists the valid ones; a wrong type states the value and the expected type; a number outside
    its declared bounds says so. Keys may be written with dashes (`max-pixels`)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise OptionError(f"{where}: options must be a mapping of KEY: VALUE, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"{where}: unknown option {key!r}{hint}; valid options: {', '.join(sorted(fields))}")
        meta = fields[key].metadata
        secret = meta.get("secret", False)
        try:
            coerced = _coerce(hints[key], value)
        except TypeError:
            raise OptionError(f"{where}: option {key!r} = {_shown(value, secret)} "
                              f"({type(value).__name__}) is not {type_name(hints[key])}") from None
        if isinstance(coerced, float) and not math.isfinite(coerced):
            raise OptionError(f"{where}: option {key!r} must be a finite number, got {_shown(value, secret)}")
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
            if lo is not None and coerced < lo or hi is not None and coerced > hi:
                bounds = " and ".join(s for s in (f">= {lo:g}" if lo is not None else "",
                                                   f"<= {hi:g}" if hi is not None else "") if s)
                raise OptionError(f"{where}: option {key!r} must be {bounds}, got {_shown(value, secret)}")
        out[key] = coerced
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in out]  # type: ignore[misc]
    if missing:
        raise OptionError(f"{where}: missing required option(s) {', '.join(missing)}")
    return out


def check_fields(obj: Any, where: str) -> None:
    """Coerce a dataclass instance's fields, in place, to their declared types (the run configuration
    checks itself this way, so `batch_size: 2.5` or `drop_bad: "no"` stop a run before any work)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        try:
            coerced = _coerce(hints[f.name], value)
        except TypeError:
            raise OptionError(f"{where}: {f.name!r} = {_shown(value, False)} ({type(value).__name__}) is not "
                              f"{type_name(hints[f.name])}") from None
        object.__setattr__(obj, f.name, coerced)


def option_infos(cls) -> list[OptionInfo]:
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default, required = f.default_factory(), False  # type: ignore[misc]
        else:
            default, required = None, True
        out.append(OptionInfo(f.name, type_name(hints[f.name]), default, f.metadata.get("help", ""), required))
    return out


def describe_options(cls, indent: str = "  ") -> str:
    """One line per option: `name (type, default X): help`, for --help and `c2s models`."""
    lines = []
    for info in option_infos(cls):
        default = "required" if info.required else f"default {info.default!r}"
        lines.append(f"{indent}{info.name} ({info.type}, {default}){': ' + info.help if info.help else ''}")
    return "\n".join(lines)
