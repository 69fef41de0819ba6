"""A comparator whose cost is per pair (the classical verdict plus a fixed amount of arithmetic per pair),
for `bench/ray_scaling.py`: the classical comparator alone computes its quality index once per image and
caches it, so more replicas would only repeat that work instead of sharing it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.classical import ClassicalComparator
from harness.core.options import option


class PairBoundComparator(ClassicalComparator):
    @dataclass(frozen=True, kw_only=True)
    class Options(ClassicalComparator.Options):
        work: int = option(40, "FFTs of a 128x128 array per pair (the CPU-bound part)", minimum=0)

    def compare_detailed(self, pairs):
        burn(len(pairs) * self.options.work)
        return super().compare_detailed(pairs)


def burn(ffts: int) -> None:
    """The per-pair arithmetic: `ffts` round trips of a 128x128 FFT."""
    grid = np.random.default_rng(0).normal(size=(128, 128))
    for _ in range(ffts):
        grid = np.fft.ifft2(np.fft.fft2(grid)).real
