"""A real comparator (the classical one) that logs every call it gets, optionally slowly.

Used through the `py:` model spec so the runner's own code loads it, in-process or in a child
process that a test kills. Each batch appends one line "<n pairs>" to `log` before returning;
with `hang_after=N` the Nth batch logs and then never returns, so a test kills the run at a known
point instead of racing a running one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from adapters.base import Comparisons
from adapters.classical import ClassicalComparator
from harness.core.options import option


class CountingComparator(ClassicalComparator):
    can_rate = True

    @dataclass(frozen=True, kw_only=True)
    class Options(ClassicalComparator.Options):
        log: str = option(help="file that gets one line per batch")
        delay: float = option(0.0, "seconds each batch sleeps", minimum=0)
        hang_after: int = option(0, "the batch with this number (from 1) never returns; 0: none does", minimum=0)

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        self.log, self.delay = self.options.log, self.options.delay
        self.batches = 0

    def _record(self, n: int) -> None:
        time.sleep(self.delay)
        with open(self.log, "a") as f:
            f.write(f"{n}\n")
        self.batches += 1
        while self.batches == self.options.hang_after:  # until the test kills the process
            time.sleep(3600)

    def compare_detailed(self, pairs):
        res = super().compare_detailed(pairs)
        self._record(len(pairs))
        return res

    def rate_detailed(self, images):
        """A single-image rating from the quality index: a softmax peaked at its level."""
        self._record(len(images))
        q = np.array([self.quality_index(p) for p in images])
        centers = np.array([-8.0, -6.0, -4.0, -2.0, 0.0])  # bad .. excellent on the index scale
        return Comparisons(-((q[:, None] - centers[None, :]) ** 2) / 4.0)

    def fingerprint(self):
        fp = super().fingerprint()
        return {**fp, "extra": {**fp["extra"], "test_double": "CountingComparator"}}


def calls(log) -> list[int]:
    try:
        return [int(x) for x in open(log).read().split()]
    except FileNotFoundError:
        return []


class FailingOnComparator(CountingComparator):
    """Fails every pair that shows the image `fail_on` (e.g. an API that rejects one file)."""

    @dataclass(frozen=True, kw_only=True)
    class Options(CountingComparator.Options):
        fail_on: str = option(help="pairs showing this image fail")

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        self.fail_on = self.options.fail_on

    def compare_detailed(self, pairs):
        res = super().compare_detailed(pairs)
        for i, p in enumerate(pairs):
            if self.fail_on in (p.first, p.second):
                res.logprobs[i] = np.nan
                res.errors[i] = "HTTP 400: image rejected"
        return res
