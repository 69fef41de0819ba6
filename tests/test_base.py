"""The comparator interface: per-pair failures are recorded, never raised or dropped."""
import numpy as np
import pytest

from adapters.base import (
    Comparisons,
    Pair,
    compare_batch,
    fingerprint_hash,
    load_comparator,
    normalize_logprobs,
    parse_spec,
)


class FixedComparator:
    """Returns given rows; used to drive compare_batch through each failure path."""

    def __init__(self, model=None, rows=None, fail=None):
        self.rows, self.fail = rows, fail

    def compare(self, pairs):
        if self.fail:
            raise RuntimeError(self.fail)
        return self.rows[: len(pairs)]

    def fingerprint(self):
        return {"backend": "fixed"}


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


def test_py_backend_loads_any_class():
    comp = load_comparator("py:tests.test_base:FixedComparator", rows=np.zeros((1, 5)))
    assert isinstance(comp, FixedComparator)
    with pytest.raises(ValueError, match="has no attribute"):
        load_comparator("py:tests.test_base:Missing")


def test_fingerprint_hash_is_order_independent():
    assert fingerprint_hash({"a": 1, "b": [1, 2]}) == fingerprint_hash({"b": [1, 2], "a": 1})
    assert fingerprint_hash({"a": 1}) != fingerprint_hash({"a": 2})


def test_rate_batch_keeps_reasons_and_refuses_comparators_without_rating():
    from adapters.base import rate_batch

    class Rater(FixedComparator):
        def rate_detailed(self, images):
            return Comparisons(np.zeros((len(images), 5)), [None, "ImageError: truncated"], [{}, {}])

    res = rate_batch(Rater(), ["a.png", "b.png"])
    assert res.errors == [None, "ImageError: truncated"] and np.isnan(res.logprobs[1]).all()
    with pytest.raises(ValueError, match="no single-image rating"):
        rate_batch(FixedComparator(), ["a.png"])
