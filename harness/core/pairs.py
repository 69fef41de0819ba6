"""A pair of images to compare: the one type both the harness and the adapters speak."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    """Two image references; the verdict is on `second` relative to `first`."""

    first: str
    second: str

    def __post_init__(self):
        object.__setattr__(self, "first", os.fspath(self.first))
        object.__setattr__(self, "second", os.fspath(self.second))

    def swapped(self) -> "Pair":
        return Pair(self.second, self.first)
