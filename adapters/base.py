"""The comparator contract: one base class that every backend subclasses, and the backend registry.

A comparator turns image pairs into level log-probabilities, shape (n, 5), in the shared level order
(`harness.core.levels.LEVELS`): the verdict on the SECOND image relative to the FIRST. Adapters judge
each pair exactly as given: they do not reorder, schedule, cache, retry across runs or compute
metrics (the runner does; its `order: both` is the one place both orders are planned and folded).
See docs/architecture.md, "The comparator contract".

Writing an adapter:

    class MyComparator(Comparator):
        backend = "mine"
        model_arg = "required"      # the part of the spec after the colon: "required", "optional" or "none"
        can_rate = False            # True when rate_detailed (single-image rating) is implemented

        @dataclass(frozen=True)
        class Options:              # every option a user may set (-o KEY=VALUE, a YAML model's options)
            batch_size: int = option(8, "pairs per forward", minimum=1)

        def __init__(self, model=None, *, image_store=None, **options):
            super().__init__(model, **options)   # checks model and options; sets self.options, self.model_id
            ...

        def compare_detailed(self, pairs) -> Comparisons: ...     # the one required method
        def fingerprint(self) -> dict: return build_fingerprint(...)

Constructor contract: `Class(model, **options)`, where `model` is the part of the spec after the colon
(or None). Options are checked against `Options` in the constructor and, for a whole run or YAML grid,
by `check_model_options` before any model is loaded: an unknown key names the valid ones, a wrong type
names the key, the value and the expected type (`harness.core.options`). Python-only objects (an image
store, a processor, an API client, a model already in memory) are keyword-only constructor arguments
outside `Options`, so the command line and YAML cannot set them.

User classes (`py:package.module:Class`) need only `compare(pairs)` and `fingerprint()`; they may add
`compare_detailed`, `rate` or `rate_detailed`, `close` and an `Options` dataclass. A class that is not
a `Comparator` is wrapped (`UserComparator`): it is built as `Class(model, **options)` when its
`__init__`'s first parameter is named `model` or is positional without a default (the model comes from
the option `model=`), else as `Class(**options)` (e.g. a dataclass whose fields are all options), and
then a model is refused. Without `Options` its options are passed through as
given, checked only against the names its `__init__` accepts. Its fingerprint is its own.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Optional, Sequence, Union, cast

import numpy as np

from adapters.fingerprint import build_fingerprint, fingerprint_hash, model_identity
from harness.core.levels import N_LEVELS
from harness.core.options import OptionError, check_options
from harness.core.pairs import Pair

__all__ = ["Backend", "Comparator", "Comparisons", "ImageRef", "NoOptions", "OptionError", "Pair", "UserComparator",
           "as_comparator", "backends", "build_fingerprint", "check_model_options", "compare_batch",
           "comparator_class", "fingerprint_hash", "load_comparator", "normalize_logprobs", "parse_spec",
           "rate_batch", "register_comparator", "row_problems"]

ImageRef = Union[str, "os.PathLike[str]"]
ModelArg = Literal["required", "optional", "none"]


@dataclass
class Comparisons:
    """Per-pair outcome of a batch: log-probs (NaN rows where failed), a reason per failed pair,
    and free-form per-pair metadata (e.g. the probability mass an API left outside its top-k)."""

    logprobs: np.ndarray
    errors: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    #: set when the call failed as a whole (the comparator raised or answered no readable batch): every
    #: pair carries this reason without having been judged on its own, so a caller may retry the pairs
    #: in smaller batches (`harness.run.judging` bisects); per-pair errors are answers, never retried
    batch_error: Optional[str] = None

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class NoOptions:
    """The options of a comparator that takes none."""


class Comparator(abc.ABC):
    """What every backend is (see the module docstring).

    Required: `compare_detailed`. Derived: `compare` (its log-probs) and `rate` (from `rate_detailed`,
    which a backend implements when it sets `can_rate`). `fingerprint` describes everything that
    changes the numbers (`adapters.fingerprint`); `close` frees what the comparator holds, also on
    leaving a `with` block.
    """

    #: registry name, the part of the spec before the colon
    backend: ClassVar[str] = "custom"
    #: whether the spec names a model after the colon
    model_arg: ClassVar[ModelArg] = "required"
    #: what the model part is, for error messages and `c2s models`
    model_help: ClassVar[str] = "a model"
    #: single-image rating (`rate_detailed`) is implemented
    can_rate: ClassVar[bool] = False
    #: the declared options (a dataclass built with harness.core.options.option); None: undeclared,
    #: passed through as given (wrapped user classes only)
    Options: ClassVar[Optional[type]] = NoOptions

    options: Any
    model_id: Optional[str]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.can_rate and cls.rate_detailed is Comparator.rate_detailed:
            raise TypeError(f"{cls.__name__} sets can_rate but does not implement rate_detailed")

    def __init__(self, model: Any = None, **options: Any) -> None:
        values = type(self).check(model, options, f"model {self.spec_of(model)}")
        self.options = values if self.Options is None else self.Options(**values)
        self.model_id = os.fspath(model) if isinstance(model, (str, os.PathLike)) and os.fspath(model) else None

    # --- options, checked without building anything ---

    @classmethod
    def spec_of(cls, model: Any) -> str:
        """The spec that names this class and `model`, for messages."""
        return f"{cls.backend}:{model}" if isinstance(model, (str, os.PathLike)) and os.fspath(model) else cls.backend

    @classmethod
    def check(cls, model: Any, options: Optional[dict], where: str) -> dict:
        """The options checked and coerced to their declared types; the model part checked against
        `model_arg`. Loads nothing. Raises OptionError (a ValueError) naming `where`."""
        given = model is not None and not (isinstance(model, (str, os.PathLike)) and not os.fspath(model))
        if cls.model_arg == "none" and given:
            raise ValueError(f"{where}: {cls.spec_of(None)} takes no model (got {model!r}); "
                             f"write the spec as {cls.spec_of(None)!r}")
        if cls.model_arg == "required" and not given:
            raise ValueError(f"{where}: give the model after the colon: {cls.model_help}")
        if cls.Options is None:
            if options is not None and not isinstance(options, dict):
                raise OptionError(f"{where}: options must be a mapping of KEY: VALUE, got {type(options).__name__}")
            return dict(options or {})
        values = check_options(cls.Options, options, where)
        cls.validate_options(cls.Options(**values), where)
        return values

    @classmethod
    def validate_options(cls, options: Any, where: str) -> None:
        """Checks that need more than the declared types (a prompt that exists and shows the right
        number of images), still without loading a model. Raise ValueError naming `where`."""

    # --- judging ---

    @abc.abstractmethod
    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """Per-pair log-probs (n, 5), with a reason per pair that could not be judged."""

    def compare(self, pairs: Sequence[Pair]) -> np.ndarray:
        """The (n, 5) level log-probs of `compare_detailed` (NaN rows where a pair failed)."""
        return self.compare_detailed(list(pairs)).logprobs

    def rate_detailed(self, images: Sequence[ImageRef]) -> Comparisons:
        """Single-image baseline: per-image log-probs over `RATING_LEVELS` (bad .. excellent)."""
        raise NotImplementedError(f"{type(self).__name__} has no single-image rating (can_rate is False)")

    def rate(self, images: Sequence[ImageRef]) -> np.ndarray:
        """The (n, 5) rating log-probs of `rate_detailed`."""
        return self.rate_detailed(list(images)).logprobs

    def fingerprint(self) -> dict:
        """Everything that changes the numbers. Backends override this; the default records the
        backend, the model, the adapter class and the (non-secret) declared options."""
        return build_fingerprint(
            backend=self.backend, model=model_identity(self.model_id), dtype=None, prompt=None, level_tokens=None,
            preprocessing=None, versions={},
            extra={"adapter": f"{type(self).__module__}.{type(self).__qualname__}",
                   "options": public_options(self.options)})

    # --- lifetime ---

    def close(self) -> None:
        """Free the model, engine, worker or connections now rather than at garbage collection."""

    def __enter__(self) -> "Comparator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def public_options(options: Any) -> dict:
    """The options as a dict, without those declared `secret`."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
                if not f.metadata.get("secret", False)}
    return dict(options or {})


# --------------------------------------------------------------------------- user classes
class UserComparator(Comparator):
    """A user's class that is not a `Comparator`, behind the contract (see the module docstring).

    One subclass per user class (`user_comparator_class`) states what that class has, once, as
    flags; the wrapped object is `inner`.
    """

    model_arg: ClassVar[ModelArg] = "optional"
    Options: ClassVar[Optional[type]] = None
    user_class: ClassVar[type] = object
    has_compare_detailed: ClassVar[bool] = False
    has_rate_detailed: ClassVar[bool] = False
    has_close: ClassVar[bool] = False

    def __init__(self, model: Any = None, **options: Any) -> None:
        values = type(self).check(model, options, f"model {self.backend}")
        self.options, self.model_id = values, None
        args = (model,) if self.model_arg == "optional" else ()
        self.inner = self.user_class(*args, **values)

    @classmethod
    def wrapping(cls, inner: Any) -> "UserComparator":
        """A wrapper around an object already built."""
        self = cls.__new__(cls)
        self.options, self.model_id, self.inner = {}, None, inner
        return self

    @classmethod
    def spec_of(cls, model: Any) -> str:
        return cls.backend

    @classmethod
    def check(cls, model: Any, options: Optional[dict], where: str) -> dict:
        values = super().check(model, options, where)
        accepted = _keyword_names(cls.user_class, cls.model_arg == "optional")
        unknown = sorted(set(values) - accepted) if accepted is not None else []
        if unknown:
            raise OptionError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: "
                              f"{', '.join(sorted(accepted or ())) or 'none'}")
        return values

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        if self.has_compare_detailed:
            return self.inner.compare_detailed(pairs)
        return Comparisons(np.asarray(self.inner.compare(pairs), dtype=np.float64))

    def rate_detailed(self, images: Sequence[ImageRef]) -> Comparisons:
        if self.has_rate_detailed:
            return self.inner.rate_detailed(images)
        return Comparisons(np.asarray(self.inner.rate(images), dtype=np.float64))

    def fingerprint(self) -> dict:
        return self.inner.fingerprint()

    def close(self) -> None:
        if self.has_close:
            self.inner.close()


_WRAPPERS: dict[type, type[UserComparator]] = {}


def user_comparator_class(user_class: type) -> type[UserComparator]:
    """The `UserComparator` subclass for `user_class` (made once per class)."""
    wrapper = _WRAPPERS.get(user_class)
    if wrapper is None:
        def has(name: str) -> bool:
            return callable(getattr(user_class, name, None))

        declared = getattr(user_class, "Options", None)
        wrapper = cast("type[UserComparator]", type(f"User{user_class.__name__}", (UserComparator,), {
            "__doc__": user_class.__doc__, "__module__": __name__,
            "backend": f"py:{user_class.__module__}:{user_class.__qualname__}", "user_class": user_class,
            "model_arg": "optional" if _takes_model(user_class) else "none",
            "Options": declared if dataclasses.is_dataclass(declared) else None,
            "can_rate": has("rate") or has("rate_detailed"), "has_compare_detailed": has("compare_detailed"),
            "has_rate_detailed": has("rate_detailed"), "has_close": has("close")}))
        _WRAPPERS[user_class] = wrapper
    return wrapper


def _parameters(user_class: type) -> Optional[list]:
    try:
        return list(inspect.signature(user_class).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return None


def _takes_model(user_class: type) -> bool:
    """Whether `__init__`'s first parameter receives the model: it is named `model`, or it is
    positional without a default (`def __init__(self, path)`), positional-only or `*args`. A first
    parameter with a default and another name (`scale=1.0`, a dataclass's first field) is an option."""
    params = _parameters(user_class)
    if params is None:
        return True
    if not params:
        return False
    first, kind = params[0], inspect.Parameter
    if first.kind in (kind.POSITIONAL_ONLY, kind.VAR_POSITIONAL):
        return True
    return first.kind is kind.POSITIONAL_OR_KEYWORD and (first.name == "model" or first.default is kind.empty)


def _keyword_names(user_class: type, takes_model: bool) -> Optional[set]:
    """The option names `__init__` accepts (None: any, it takes **kwargs)."""
    params = _parameters(user_class)
    if params is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    if takes_model and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
        names.remove(params[0].name)
    return set(names)


def as_comparator(obj: Any) -> Comparator:
    """`obj` itself when it is a `Comparator`, else `obj` wrapped so that its capabilities are flags."""
    if isinstance(obj, Comparator):
        return obj
    return user_comparator_class(type(obj)).wrapping(obj)


# --------------------------------------------------------------------------- batches, never raising
def normalize_logprobs(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax: any per-row additive constant is removed. NaN rows stay NaN."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        z = x - m
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def row_problems(logprobs: np.ndarray) -> list[Optional[str]]:
    """Per row of level log-probs (n, 5), why it is not a judgement, None where it is one. -inf is a
    level of probability 0 and is kept; NaN, +inf and a row with every level at -inf are refused."""
    x = np.asarray(logprobs, dtype=np.float64).reshape(-1, N_LEVELS)
    finite = np.isfinite(x)
    out: list[Optional[str]] = [None] * len(x)
    for i in np.flatnonzero(~np.all(finite | np.isneginf(x), axis=1) | ~np.any(finite, axis=1)):
        row = x[i]
        out[i] = ("NaN level log-probabilities" if np.isnan(row).any() else "+inf level log-probabilities"
                  if np.isposinf(row).any() else "every level has log-probability -inf (probability 0)")
    return out


def compare_batch(comparator: Any, pairs: Sequence[Pair]) -> Comparisons:
    """Run one batch through any comparator without ever raising for a data problem.

    A call that fails (any exception, SystemExit included; KeyboardInterrupt still stops) or answers
    no readable batch fails every pair with its reason and sets `batch_error`; a row that is not a
    judgement (`row_problems`) fails that pair. Rows are re-normalised so downstream code may rely on
    log-softmax rows.
    """
    comp, batch = as_comparator(comparator), list(pairs)
    return _checked(len(batch), lambda: comp.compare_detailed(batch))


def rate_batch(comparator: Any, images: Sequence[ImageRef]) -> Comparisons:
    """`compare_batch` for the single-image rating baseline (levels `harness.core.levels.RATING_LEVELS`),
    with the same failure recording. ValueError for a comparator without single-image rating."""
    comp, paths = as_comparator(comparator), [os.fspath(i) for i in images]
    if not comp.can_rate:
        raise ValueError(f"{comp.spec_of(comp.model_id)} has no single-image rating (rate); use mode soft or count")
    return _checked(len(paths), lambda: comp.rate_detailed(paths))


class _Unreadable(Exception):
    """An answer that cannot be read pair by pair; its message is the reason."""


def _unpacked(res: Any, n: int) -> tuple[np.ndarray, list, list]:
    """(log-probs, errors, meta) of a comparator's answer for n pairs, or `_Unreadable`."""
    if not isinstance(res, Comparisons):
        raise _Unreadable(f"comparator returned {type(res).__name__}, expected Comparisons")
    lp = np.asarray(res.logprobs, dtype=np.float64)
    if lp.shape != (n, N_LEVELS):
        raise _Unreadable(f"comparator returned shape {lp.shape}, expected ({n}, {N_LEVELS})")
    errors, meta = list(res.errors), list(res.meta)
    if len(errors) != n or len(meta) != n:
        raise _Unreadable(f"comparator returned {len(errors)} errors and {len(meta)} metadata entries for {n} pairs")
    return lp, [None if e is None else str(e) or "failed (no reason given)" for e in errors], \
        [{} if m is None else m for m in meta]


def _checked(n: int, call: Callable[[], Comparisons]) -> Comparisons:
    try:
        lp, errors, meta = _unpacked(call(), n)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failed call, recorded per pair, never swallowed
        reason = str(exc) if isinstance(exc, _Unreadable) else f"{type(exc).__name__}: {exc}"
        return Comparisons(np.full((n, N_LEVELS), np.nan), [reason] * n, [{} for _ in range(n)], batch_error=reason)
    errors = [e if e is not None else None if p is None else f"{p} from the model"
              for e, p in zip(errors, row_problems(lp))]
    bad = np.array([e is not None for e in errors], dtype=bool)
    lp = normalize_logprobs(np.where(bad[:, None], 0.0, lp))
    lp[bad] = np.nan
    return Comparisons(lp, errors, meta)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Backend:
    """One backend a model spec can name, as `c2s models` lists it."""

    name: str
    #: "package.module:Class", imported only when needed (no torch for `classical`)
    target: str
    summary: str

    def load(self) -> type[Comparator]:
        """The adapter class (a `Comparator` subclass), imported but not built."""
        return _comparator_type(_import_class(self.target, f"backend {self.name!r}"), f"backend {self.name!r}")

    def spec(self) -> str:
        """How a spec names it: `hf:MODEL`, `compare2score[:MODEL]` or `classical`."""
        arg = self.load().model_arg
        return {"required": f"{self.name}:MODEL", "optional": f"{self.name}[:MODEL]"}.get(arg, self.name)


_REGISTRY: dict[str, Backend] = {b.name: b for b in (
    Backend("hf", "adapters.hf:HFComparator", "any image-text-to-text model through transformers"),
    Backend("vllm", "adapters.vllm:VLLMComparator", "a local model through the vLLM offline engine"),
    Backend("openai", "adapters.openai_api:OpenAIComparator",
            "an OpenAI-compatible chat API (a vLLM server's exact levels, or any server's top-k)"),
    Backend("compare2score", "adapters.compare2score:Compare2ScoreComparator",
            "the released Compare2Score model, in its own worker environment"),
    Backend("classical", "adapters.classical:ClassicalComparator",
            "weight-free classical no-reference measures (blur, noise, blockiness, contrast)"),
)}

#: `py:package.module:Class` loads any importable class without registering it first.
PY_BACKEND = "py"


def register_comparator(backend: str, target: str, summary: str = "") -> None:
    """Register a third-party adapter: `target` is "module:Class", built as `Class(model, **options)`
    (a class that is not a `Comparator` is wrapped, as for `py:` specs)."""
    _REGISTRY[backend] = Backend(backend, target, summary)


def backends() -> list[Backend]:
    """The registered backends, built-in first."""
    return list(_REGISTRY.values())


def parse_spec(spec: str) -> tuple[str, Optional[str]]:
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


def _import_class(target: str, where: str) -> type:
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{where}: cannot import {module_name}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the module's own code failed on import: name the spec
        raise ValueError(f"{where}: importing {module_name} raised {type(exc).__name__}: {exc}") from exc
    obj = getattr(module, name, None)
    if obj is None:
        raise ValueError(f"{where}: {module_name} has no attribute {name!r}")
    if not inspect.isclass(obj):
        raise ValueError(f"{where}: {module_name}.{name} is a {type(obj).__name__}, not a class")
    return obj


def _comparator_type(cls: type, where: str) -> type[Comparator]:
    """`cls` when it is a Comparator; a user class with compare and fingerprint, wrapped."""
    if issubclass(cls, Comparator):
        return cls
    missing = [m for m in ("compare", "fingerprint") if not callable(getattr(cls, m, None))]
    if missing == ["compare"] and callable(getattr(cls, "compare_detailed", None)):
        missing = []
    if missing:
        raise ValueError(f"{where}: {cls.__module__}.{cls.__qualname__} lacks {' and '.join(missing)}(); "
                         "a comparator needs compare(pairs) and fingerprint() (see adapters.base)")
    return user_comparator_class(cls)


def comparator_class(spec: str) -> type[Comparator]:
    """The `Comparator` subclass a model spec names, imported but not built (no model is loaded)."""
    backend, model = parse_spec(spec)
    if backend == PY_BACKEND:
        return _comparator_type(_import_class(model or "", f"spec {spec!r}"), f"spec {spec!r}")
    return _REGISTRY[backend].load()


def _split_model(spec: str, options: Optional[dict]) -> tuple[Optional[str], Any]:
    """(model, the other options): a `py:` spec's model travels as the option `model`."""
    backend, model = parse_spec(spec)
    if backend == PY_BACKEND:
        rest = dict(options) if isinstance(options, dict) else options
        return (rest.pop("model", None) if isinstance(rest, dict) else None), rest
    return model, options


def check_model_options(spec: str, options: Optional[dict] = None) -> dict:
    """Check a model spec and its options as its adapter declares them, WITHOUT building the adapter
    or loading anything: the runner calls it for every model of a run or YAML grid first.

    Returns the options coerced to their declared types (`"1e-3"` -> 0.001 for a float). Raises
    ValueError (OptionError for options) naming the spec: an unknown backend or class, an unknown
    key (with the valid ones), a wrong type (key, value, expected type), a missing or unwanted model.
    """
    model, rest = _split_model(spec, options)
    checked = comparator_class(spec).check(model, rest, f"model {spec}")
    return {**checked, "model": model} if model is not None and parse_spec(spec)[0] == PY_BACKEND else checked


def load_comparator(spec: str, **options: Any) -> Comparator:
    """Build the adapter a model spec names, e.g. `load_comparator("hf:/models/qwen", batch_size=8)`;
    use it as a context manager to close it: `with load_comparator(...) as c:`."""
    model, rest = _split_model(spec, options)
    return comparator_class(spec)(model, **rest)
