"""A comparator whose cost is per pair (a fixed amount of arithmetic per pair, and a verdict from a cheap
per-image statistic), for `bench/ray_scaling.py`. The classical comparator's own quality index costs about
as much per image as 40 FFTs do per pair, and each process computes it once per image it sees: two
replicas would each pay it for (nearly) every image, a cost of the comparator that does not split, which
would hide what the executor itself costs or gains. Real comparators (one forward pass per pair) cost per
pair, as this one does."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.classical import ClassicalComparator
from harness.core.options import option


class PairBoundComparator(ClassicalComparator):
    @dataclass(frozen=True, kw_only=True)
    class Options(ClassicalComparator.Options):
        work: int = option(40, "FFTs of a 128x128 array per pair (the CPU-bound part)", minimum=0)

    def quality_index(self, path) -> float:
        """The image's mean gray level (0-1): cheap, so the per-pair arithmetic is what the run costs."""
        return float(np.asarray(self.store.get(path), dtype=np.float32).mean() / 255.0)

    def compare_detailed(self, pairs):
        burn(len(pairs) * self.options.work)
        return super().compare_detailed(pairs)


def burn(ffts: int) -> None:
    """The per-pair arithmetic: `ffts` round trips of a 128x128 FFT."""
    grid = np.random.default_rng(0).normal(size=(128, 128))
    for _ in range(ffts):
        grid = np.fft.ifft2(np.fft.fft2(grid)).real
