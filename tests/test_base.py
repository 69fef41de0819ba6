"""The comparator contract: derivations, capability flags, lifetime, user classes, declared options
checked before any model work, and per-pair failures recorded, never raised or dropped."""
import re
from dataclasses import dataclass

import numpy as np
import pytest

from adapters.base import (
    Comparator,
    Comparisons,
    OptionError,
    Pair,
    UserComparator,
    as_comparator,
    backends,
    check_model_options,
    compare_batch,
    comparator_class,
    fingerprint_hash,
    load_comparator,
    normalize_logprobs,
    parse_spec,
    rate_batch,
)
from adapters.fingerprint import FINGERPRINT_KEYS
from harness.core.options import option


def assert_fingerprint_shape(fp: dict) -> None:
    """Every built-in backend's fingerprint has the same keys, in the same order (adapters.fingerprint)."""
    assert tuple(fp) == FINGERPRINT_KEYS
    assert list(fp["model"]) == ["id", "revision", "class", "weights"]
    assert fp["prompt"] is None or len(fp["prompt"]["sha256"]) == 64
    fingerprint_hash(fp)  # serialisable


class FixedComparator:
    """A user's class with only compare and fingerprint; drives compare_batch through each failure path."""

    def __init__(self, model=None, rows=None, fail=None):
        self.model, self.rows, self.fail = model, rows, fail

    def compare(self, pairs):
        if self.fail:
            raise RuntimeError(self.fail)
        return self.rows[: len(pairs)]

    def fingerprint(self):
        return {"backend": "fixed"}


class NoModelComparator:
    """A user's class whose __init__ takes no model: built as Class(**options)."""

    def __init__(self, *, level=2):
        self.level = level

    def compare(self, pairs):
        return np.log(np.eye(5)[[self.level] * len(pairs)] + 1e-9)

    def rate(self, images):
        return np.zeros((len(images), 5))

    def fingerprint(self):
        return {"backend": "no-model", "level": self.level}


@dataclass
class DataclassComparator:
    """A user's dataclass: every field is an option (its first field is not a model)."""

    scale: float = 1.0
    name: str = "dc"

    def compare(self, pairs):
        return np.zeros((len(pairs), 5)) + self.scale

    def fingerprint(self):
        return {"backend": self.name, "scale": self.scale}


class PathComparator:
    """A user's class whose first parameter has no default: it receives the model."""

    def __init__(self, path, scale=1.0):
        self.path, self.scale = path, scale

    def compare(self, pairs):
        return np.zeros((len(pairs), 5))

    def fingerprint(self):
        return {"backend": "path", "path": self.path}


class DeclaredComparator:
    """A user's class that declares its options: they are checked and coerced like a built-in's."""

    @dataclass(frozen=True)
    class Options:
        scale: float = option(1.0, "a factor")

    def __init__(self, model=None, **options):
        self.scale = options.get("scale", 1.0)

    def compare(self, pairs):
        return np.zeros((len(pairs), 5))

    def fingerprint(self):
        return {"scale": self.scale}


class Echo(Comparator):
    """A built-in style subclass: only compare_detailed (plus rating), the rest derived."""

    backend = "echo"
    model_arg = "optional"
    can_rate = True
    closed = 0

    @dataclass(frozen=True)
    class Options:
        shift: float = option(0.0, "added to level 0")
        secret_token: str = option("", "never recorded", secret=True)

    def compare_detailed(self, pairs):
        lp = np.zeros((len(pairs), 5))
        lp[:, 0] += self.options.shift
        return Comparisons(lp, [None] * len(pairs), [{"n": i} for i in range(len(pairs))])

    def rate_detailed(self, images):
        return Comparisons(np.full((len(images), 5), -1.0))

    def close(self):
        type(self).closed += 1


def test_compare_and_rate_are_derived_from_the_detailed_calls():
    c = Echo(shift="0.5")  # text accepted for a float, as YAML or -o deliver it
    assert c.options.shift == 0.5 and c.model_id is None
    np.testing.assert_array_equal(c.compare([Pair("a", "b")] * 2), [[0.5, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(c.rate(["a"]), [[-1.0] * 5])
    assert Echo("m").model_id == "m"


def test_capability_flags_replace_probing():
    class PairsOnly(Comparator):
        model_arg = "none"

        def compare_detailed(self, pairs):
            return Comparisons(np.zeros((len(pairs), 5)))

    assert Echo.can_rate and not PairsOnly.can_rate
    with pytest.raises(NotImplementedError, match="no single-image rating"):
        PairsOnly().rate(["a"])
    with pytest.raises(ValueError, match="no single-image rating"):
        rate_batch(PairsOnly(), ["a"])
    with pytest.raises(TypeError, match="sets can_rate but does not implement rate_detailed"):
        class Liar(PairsOnly):
            can_rate = True
    with pytest.raises(TypeError, match="abstract"):
        Comparator()  # compare_detailed is the one required method


def test_close_and_context_manager():
    Echo.closed = 0
    with Echo() as c:
        assert isinstance(c, Echo)
    assert Echo.closed == 1
    with pytest.raises(RuntimeError):
        with Echo():
            raise RuntimeError("the body failed")
    assert Echo.closed == 2  # closed on the way out of a failing block too
    with load_comparator("py:tests.test_base:FixedComparator") as wrapped:
        assert wrapped.inner.model is None
    wrapped.close()  # the user class has no close: nothing to do


def test_default_fingerprint_records_backend_model_and_public_options():
    fp = Echo("m", shift=1, secret_token="hunter2").fingerprint()
    assert tuple(fp) == FINGERPRINT_KEYS and fp["backend"] == "echo" and fp["model"]["id"] == "m"
    assert fp["extra"]["options"] == {"shift": 1.0} and "hunter2" not in str(fp)


def test_pair_swapped_and_paths():
    p = Pair("a.png", "b.png")
    assert p.swapped() == Pair("b.png", "a.png")
    from pathlib import Path
    assert Pair(Path("x"), Path("y")).first == "x"


def test_normalize_removes_row_constant_and_keeps_nan():
    x = np.array([[1.0, 2, 3, 4, 5], [1001.0, 1002, 1003, 1004, 1005], [np.nan] * 5])
    out = normalize_logprobs(x)
    assert np.allclose(out[0], out[1])
    assert np.allclose(np.exp(out[0]).sum(), 1.0)
    assert np.isnan(out[2]).all()


def test_compare_batch_records_nonfinite_rows():
    rows = np.array([[0.0, 0, 0, 0, 0], [np.nan, 0, 0, 0, 0], [0.0, 0, 0, np.inf, 0]])
    res = compare_batch(FixedComparator(rows=rows), [Pair("a", "b")] * 3)
    assert res.errors[0] is None and res.errors[1] and res.errors[2]
    assert np.isnan(res.logprobs[1:]).all()
    assert np.allclose(np.exp(res.logprobs[0]), 0.2)
    assert res.ok.tolist() == [True, False, False]


def test_compare_batch_backend_exception_fails_every_pair_with_reason():
    res = compare_batch(FixedComparator(fail="CUDA out of memory"), [Pair("a", "b")] * 2)
    assert res.errors == ["RuntimeError: CUDA out of memory"] * 2
    assert np.isnan(res.logprobs).all()


def test_compare_batch_wrong_shape():
    res = compare_batch(FixedComparator(rows=np.zeros((2, 4))), [Pair("a", "b")] * 2)
    assert all("shape" in e for e in res.errors)


def test_compare_batch_keeps_detailed_errors():
    class Detailed(FixedComparator):
        def compare_detailed(self, pairs):
            return Comparisons(np.zeros((2, 5)), [None, "HTTP 500 after 5 tries"], [{}, {"tries": 5}])

    res = compare_batch(Detailed(), [Pair("a", "b")] * 2)
    assert res.errors == [None, "HTTP 500 after 5 tries"]
    assert np.isnan(res.logprobs[1]).all() and res.meta[1] == {"tries": 5}


NEG = -np.inf


@pytest.mark.parametrize("row", [
    [NEG, NEG, 0.0, -1.0, -2.0],            # two levels of probability 0
    [-0.5, NEG, NEG, NEG, NEG],             # one level holds everything
    [3.0, NEG, 1.0, NEG, 2.0],              # unnormalised logits with holes
    [-1e30, NEG, -1e30 - 1.0, NEG, -1e30],  # huge negative but finite (an API's unseen level) next to -inf
])
def test_compare_batch_keeps_minus_inf_as_probability_zero(row):
    res = compare_batch(FixedComparator(rows=np.array([row, [0.0] * 5])), [Pair("a", "b")] * 2)
    assert res.errors == [None, None] and res.batch_error is None
    finite = [v for v in row if v != NEG]
    top = max(finite)
    total = sum(np.exp(v - top) for v in finite)
    for got, v in zip(res.logprobs[0], row):   # independent: log(p / sum p), level by level
        assert got == NEG if v == NEG else got == pytest.approx(v - top - np.log(total), abs=1e-12)


@pytest.mark.parametrize("row, reason", [
    ([NEG] * 5, "every level has log-probability -inf"),
    ([NEG, NEG, np.inf, 0.0, 0.0], r"\+inf"),
    ([NEG, np.nan, 0.0, 0.0, 0.0], "NaN"),
])
def test_compare_batch_refuses_rows_that_are_no_judgement(row, reason):
    res = compare_batch(FixedComparator(rows=np.array([[0.0] * 5, row])), [Pair("a", "b")] * 2)
    assert res.errors[0] is None and re.search(reason, res.errors[1]) and np.isnan(res.logprobs[1]).all()
    assert res.batch_error is None   # a per-pair answer, not a failed call


class Raising:
    """A user comparator that raises `exc` from compare."""

    def __init__(self, exc=None):
        self.exc = exc

    def compare(self, pairs):
        raise self.exc

    def fingerprint(self):
        return {"backend": "raising"}


@pytest.mark.parametrize("exc, reason", [
    (SystemExit(0), "SystemExit: 0"), (SystemExit(3), "SystemExit: 3"), (SystemExit("bye"), "SystemExit: bye"),
    (MemoryError("big"), "MemoryError: big"), (KeyError("k"), "KeyError: 'k'"),
])
def test_a_comparator_that_raises_or_exits_fails_its_call_not_the_process(exc, reason):
    res = compare_batch(Raising(exc), [Pair("a", "b")] * 3)
    assert res.errors == [reason] * 3 and res.batch_error == reason and np.isnan(res.logprobs).all()


def test_keyboard_interrupt_still_stops():
    with pytest.raises(KeyboardInterrupt):
        compare_batch(Raising(KeyboardInterrupt()), [Pair("a", "b")])


@pytest.mark.parametrize("answer, reason", [
    (np.zeros((2, 5)), "returned ndarray, expected Comparisons"),
    (Comparisons(np.zeros((3, 5))), r"shape \(3, 5\)"),
    (None, "returned NoneType"),
])
def test_an_unreadable_answer_is_a_failed_call(answer, reason):
    class Odd(FixedComparator):
        def compare_detailed(self, pairs):
            return answer

    res = compare_batch(Odd(), [Pair("a", "b")] * 2)
    assert re.search(reason, res.batch_error) and res.errors == [res.batch_error] * 2


def test_an_empty_error_is_still_a_failure():
    class Empty(FixedComparator):
        def compare_detailed(self, pairs):
            return Comparisons(np.zeros((2, 5)), ["", None], [None, {"k": 1}])

    res = compare_batch(Empty(), [Pair("a", "b")] * 2)
    assert res.errors[0] and res.errors[1] is None and res.meta == [{}, {"k": 1}]


def test_parse_spec_and_errors():
    assert parse_spec("hf:/models/x") == ("hf", "/models/x")
    assert parse_spec("classical") == ("classical", None)
    assert parse_spec("openai:gpt-4o") == ("openai", "gpt-4o")
    with pytest.raises(ValueError, match="unknown model backend 'nope'"):
        parse_spec("nope:x")
    with pytest.raises(ValueError, match="non-empty"):
        parse_spec("  ")
    with pytest.raises(ValueError, match="py:package.module:ClassName"):
        parse_spec("py:just_a_module")


def test_py_classes_are_wrapped_behind_the_contract():
    comp = load_comparator("py:tests.test_base:FixedComparator", rows=np.zeros((1, 5)))
    assert isinstance(comp, UserComparator) and isinstance(comp.inner, FixedComparator)
    assert not comp.can_rate and comp.fingerprint() == {"backend": "fixed"}
    np.testing.assert_array_equal(comp.compare([Pair("a", "b")]), np.zeros((1, 5)))
    assert load_comparator("py:tests.test_base:FixedComparator", model="/m").inner.model == "/m"
    assert comparator_class("py:tests.test_base:FixedComparator") is type(comp)  # one wrapper per class
    # an object built elsewhere gets the same wrapper; a Comparator is used as is
    assert type(as_comparator(FixedComparator())) is type(comp)
    echo = Echo()
    assert as_comparator(echo) is echo


def test_py_class_without_a_model_argument():
    comp = load_comparator("py:tests.test_base:NoModelComparator", level=4)
    assert comp.inner.level == 4 and comp.can_rate
    assert np.argmax(comp.compare([Pair("a", "b")])[0]) == 4
    assert rate_batch(comp, ["x.png"]).ok.all()
    with pytest.raises(ValueError, match="NoModelComparator takes no model .got '/m'."):
        load_comparator("py:tests.test_base:NoModelComparator", model="/m")


def test_which_first_parameter_receives_the_model():
    dc = load_comparator("py:tests.test_base:DataclassComparator", scale=2, name="x")
    assert (dc.inner.scale, dc.inner.name) == (2, "x")
    assert check_model_options("py:tests.test_base:DataclassComparator", {"scale": 3}) == {"scale": 3}
    with pytest.raises(ValueError, match="takes no model"):
        load_comparator("py:tests.test_base:DataclassComparator", model="/m")
    pc = load_comparator("py:tests.test_base:PathComparator", model="/ckpt", scale=2)
    assert (pc.inner.path, pc.inner.scale) == ("/ckpt", 2)


def test_py_spec_errors_are_clear():
    for spec, match in [("py:tests.test_base:Missing", "has no attribute 'Missing'"),
                        ("py:tests.no_such_module:X", "cannot import tests.no_such_module"),
                        ("py:tests.test_base:assert_fingerprint_shape", "is a function, not a class"),
                        ("py:tests.test_base:Comparisons", "lacks compare and fingerprint"),
                        ("py:just_a_module", "py:package.module:ClassName")]:
        with pytest.raises(ValueError, match=match):
            load_comparator(spec)
    with pytest.raises(OptionError, match="unknown option.*'rowz'.*valid options: fail, rows"):
        load_comparator("py:tests.test_base:FixedComparator", rowz=1)
    with pytest.raises(OptionError, match="'scale' = 'big' .str. is not float"):
        load_comparator("py:tests.test_base:DeclaredComparator", scale="big")
    assert load_comparator("py:tests.test_base:DeclaredComparator", scale="2").inner.scale == 2.0


def test_check_model_options_validates_without_building():
    # no such folder: nothing is loaded, so nothing fails but the options
    assert check_model_options("hf:/no/such/model", {"batch_size": "16", "max_pixels": 1e6}) == \
        {"batch_size": 16, "max_pixels": 1000000}
    assert check_model_options("openai:m", {"base_delay": "1e-3", "api_key_env": None}) == \
        {"base_delay": 0.001, "api_key_env": None}
    assert check_model_options("classical", None) == {}
    assert check_model_options("py:tests.test_base:FixedComparator", {"model": "/m", "fail": "x"}) == \
        {"fail": "x", "model": "/m"}
    for spec, options, match in [
            ("hf:/m", {"batch_sise": 8}, r"model hf:/m: unknown option 'batch_sise' \(did you mean 'batch_size'\?\); "
                                         "valid options: batch_size, device, dtype"),
            ("hf:/m", {"batch_size": True}, r"option 'batch_size' = True \(bool\) is not int"),
            ("openai:m", {"timeout": "soon"}, r"option 'timeout' = 'soon' \(str\) is not float"),
            ("vllm:/m", {"max_modle_len": 512}, "did you mean 'max_model_len'"),
            ("vllm:/m", {"prompt": "rating"}, "prompt 'rating' shows 1 image"),
            ("hf:/m", {"prompt": "no_such_prompt"}, "unknown prompt 'no_such_prompt'"),
            ("compare2score", {"order": "both"}, "unknown option 'order'"),
            ("classical", {"sigma": 0}, "'sigma' must be > 0"),
            ("classical:some/model", {}, "classical takes no model"),
            ("hf", {}, "give the model after the colon: a model folder or hub id"),
            ("hf:/m", ["batch_size"], "options must be a mapping"),
            ("nope:x", {}, "unknown model backend 'nope'")]:
        with pytest.raises(ValueError, match=match):
            check_model_options(spec, options)


def test_registry_lists_every_backend_with_its_spec_and_options():
    listed = {b.name: b for b in backends()}
    assert list(listed) == ["hf", "vllm", "openai", "compare2score", "classical"]
    assert {n: b.spec() for n, b in listed.items()} == {
        "hf": "hf:MODEL", "vllm": "vllm:MODEL", "openai": "openai:MODEL", "compare2score": "compare2score[:MODEL]",
        "classical": "classical"}
    for b in listed.values():
        cls = b.load()
        assert issubclass(cls, Comparator) and cls.backend == b.name and b.summary and cls.Options is not None
    assert listed["hf"].load().can_rate and not listed["classical"].load().can_rate


def test_fingerprint_hash_is_order_independent():
    assert fingerprint_hash({"a": 1, "b": [1, 2]}) == fingerprint_hash({"b": [1, 2], "a": 1})
    assert fingerprint_hash({"a": 1}) != fingerprint_hash({"a": 2})


def test_rate_batch_keeps_reasons_and_refuses_comparators_without_rating():
    class Rater(FixedComparator):
        def rate_detailed(self, images):
            return Comparisons(np.zeros((len(images), 5)), [None, "ImageError: truncated"], [{}, {}])

    res = rate_batch(Rater(), ["a.png", "b.png"])
    assert res.errors == [None, "ImageError: truncated"] and np.isnan(res.logprobs[1]).all()
    with pytest.raises(ValueError, match="no single-image rating"):
        rate_batch(FixedComparator(), ["a.png"])


def test_checking_every_backend_imports_no_model_library():
    """check_model_options and the registry import the adapter modules only: torch, transformers and
    vllm load when a model is built, so a whole YAML grid is checked in a moment."""
    import subprocess
    import sys

    code = ("import sys\nfrom adapters.base import backends, check_model_options\n"
            "for b in backends():\n    b.spec()\n"
            "check_model_options('hf:/m', {'batch_size': 2}); check_model_options('vllm:/m', {'dtype': 'float32'})\n"
            "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))")
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
