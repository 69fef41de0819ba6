"""The five comparative levels shared by every module (docs/method.md, "Levels").

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


def level_from_mos(mos_first, std_first, mos_second, std_second) -> np.ndarray:
    """Eqn. 2: label a pair (second image relative to the first) from both images' (MOS, std).

    q = mos_first - mos_second, sigma = sqrt(std_first^2 + std_second^2); the level depends on |q|
    with each boundary going to the milder level: |q| <= sigma -> similar, sigma < |q| <= 2 sigma ->
    worse/better, |q| > 2 sigma -> inferior/superior. The paper's table leaves q = -2 sigma in no
    level and treats q = +sigma and q = -sigma differently; the symmetric rule keeps
    level(b, a) == 4 - level(a, b). With sigma = 0 equal MOS is "similar" (the literal table
    would fall through to "superior") and any difference is inferior/superior.
    Inputs broadcast; returns integer level indices 0..4 (see LEVELS).
    """
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                   (mos_first, std_first, mos_second, std_second)))
    q1, s1, q2, s2 = arrays
    for name, a in zip(("mos_first", "std_first", "mos_second", "std_second"), arrays):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"level_from_mos: {name} contains non-finite values")
    if np.any(s1 < 0) or np.any(s2 < 0):
        raise ValueError("level_from_mos: std values must be >= 0")
    q = q1 - q2
    sigma = np.hypot(s1, s2)
    gap = np.abs(q)
    magnitude = np.where(gap <= sigma, 0, np.where(gap <= 2 * sigma, 1, 2))
    # q > 0: the first image is better, so the second is worse/inferior (indices below 2).
    return (2 - np.sign(q) * magnitude).astype(np.int64)
