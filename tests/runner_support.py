"""A real comparator (the classical one) that logs every call it gets, optionally slowly.

Used through the `py:` model spec so the runner's own code loads it, in-process or in a child
process that a test kills. Each batch appends one line "<n pairs>" to `log` before returning.
"""
from __future__ import annotations

import time

import numpy as np

from adapters.classical import ClassicalComparator


class CountingComparator(ClassicalComparator):
    def __init__(self, model=None, *, log: str, delay: float = 0.0, **kw):
        super().__init__(model, **kw)
        self.log, self.delay = log, float(delay)

    def _record(self, n: int) -> None:
        time.sleep(self.delay)
        with open(self.log, "a") as f:
            f.write(f"{n}\n")

    def compare_detailed(self, pairs):
        res = super().compare_detailed(pairs)
        self._record(len(pairs))
        return res

    def rate(self, images):
        """A single-image rating from the quality index: a softmax peaked at its level."""
        self._record(len(images))
        q = np.array([self.quality_index(p) for p in images])
        centers = np.array([-8.0, -6.0, -4.0, -2.0, 0.0])  # bad .. excellent on the index scale
        return -((q[:, None] - centers[None, :]) ** 2) / 4.0

    def fingerprint(self):
        return {**super().fingerprint(), "test_double": "CountingComparator"}


def calls(log) -> list[int]:
    try:
        return [int(x) for x in open(log).read().split()]
    except FileNotFoundError:
        return []


class FailingOnComparator(CountingComparator):
    """Fails every pair that shows the image `fail_on` (e.g. an API that rejects one file)."""

    def __init__(self, model=None, *, fail_on: str, **kw):
        super().__init__(model, **kw)
        self.fail_on = fail_on

    def compare_detailed(self, pairs):
        res = super().compare_detailed(pairs)
        for i, p in enumerate(pairs):
            if self.fail_on in (p.first, p.second):
                res.logprobs[i] = np.nan
                res.errors[i] = "HTTP 400: image rejected"
        return res
