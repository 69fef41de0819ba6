"""Comparators for the Ray executor's fault tests, loaded through the `py:` spec inside Ray replicas."""
from __future__ import annotations

import os
from dataclasses import dataclass

from harness.core.options import option
from tests.runner_support import CountingComparator


class DyingComparator(CountingComparator):
    """Its process exits (as on a segfault) whenever a batch holds the pair `poison` ("first|second")."""

    @dataclass(frozen=True, kw_only=True)
    class Options(CountingComparator.Options):
        poison: str = option(help="FIRST|SECOND: a batch holding this pair kills the process")

    def compare_detailed(self, pairs):
        if any(f"{p.first}|{p.second}" == self.options.poison for p in pairs):
            os._exit(3)
        return super().compare_detailed(pairs)


class BrokenComparator(CountingComparator):
    """Cannot start (e.g. its weights do not fit in the GPU's memory)."""

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
