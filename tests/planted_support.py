"""The planted comparator killed part-way, for the kill-and-resume tests of active designs."""
from __future__ import annotations

from harness.tools.planted import PlantedThurstone


class Killed(BaseException):  # as a kill: no comparator error handling catches it
    pass


class DiesAfter(PlantedThurstone):
    """The planted comparator, killed (an exception out of the run) once it has judged `budget` pairs."""

    def __init__(self, budget: int, **options):
        super().__init__(**options)
        self.budget = budget

    def compare_detailed(self, pairs):
        if self.budget <= 0:
            raise Killed()
        self.budget -= len(pairs)
        return super().compare_detailed(pairs)
