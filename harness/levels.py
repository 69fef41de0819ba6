"""The five comparative levels shared by every module (see DESIGN.md).

A level is the verdict on the SECOND image relative to the FIRST; index 4 means the
second image is much better.
"""
from __future__ import annotations

import numpy as np

LEVELS: tuple[str, ...] = ("inferior", "worse", "similar", "better", "superior")
N_LEVELS = len(LEVELS)
#: Eqn. 3 weights: the probability that the second image wins, per level.
LEVEL_WEIGHTS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
#: Single-image rating words (Q-Align style), worst first so that LEVEL_WEIGHTS apply unchanged.
RATING_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
