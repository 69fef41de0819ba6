"""What several benchmarks share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_like_jpegs(folder: Path, n: int, *, width: int, height: int, seed: int) -> list[str]:
    """JPEGs of a chosen size made of smooth (upsampled) noise, so they decode and compress like
    photographs rather than like white noise; deterministic per seed."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        small = rng.integers(0, 256, (max(2, height // 24), max(2, width // 32), 3), dtype=np.uint8)
        p = Path(folder) / f"img{seed}_{k}.jpg"
        Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(p, quality=90)
        paths.append(str(p))
    return paths
