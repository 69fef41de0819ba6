"""A held-out benchmark for the weight-free comparator: other photographs, other distortion families.

Why: the classical comparator's constants were read off the embedded benchmark's ten default photographs
and five distortion families (`harness.data.demo_data`); a figure on the same images says nothing about
how it generalises. This set shares neither: the photographs are scikit-image's spare ones (never a demo
test image) plus `text`, which the demo does not use at all, and the six families are none of the demo's.

What it is, honestly: a SYNTHETIC-DISTORTION set whose "MOS" is a proxy, the objective severity ordering
`5 - level` (pristine 5, the strongest level 0), exactly as in the demo; not human opinion. Within one
photograph and family the order is certain; across families "the same level" is only roughly the same
visible damage. Colour saturation needs colour, so it is applied to the colour photographs only.

Built deterministically into a cache folder like the demo (`build_heldout_benchmark`).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.core import home
from harness.data.datasets import Dataset, load_compare2score_json
from harness.data.demo_data import (DEFAULT_SIZE, N_DEMO_LEVELS, PRISTINE, _install, _luma, _pristine, _seed,
                                    _to_uint8)

GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
#: photographs shipped in scikit-image's wheel that are no demo test image (the first six serve as the
#: demo's anchor photographs; `text` appears nowhere in the demo)
HELDOUT_SOURCES = ("brick", "grass", "gravel", "ihc", "page", "cell", "text")

#: Strength per level 1..5 (mildest first).
HELDOUT_FAMILIES: dict[str, tuple[float, ...]] = {
    "pixelation": (2, 3, 4, 6, 8),                       # block side in pixels
    "quantisation": (32, 16, 8, 5, 3),                   # levels per channel
    "ringing": (0.6, 0.45, 0.33, 0.24, 0.17),            # ideal low-pass cutoff, fraction of Nyquist
    "chromatic_aberration": (1, 2, 3, 5, 7),             # opposite shifts of red and blue, pixels
    "motion_blur": (3, 5, 9, 13, 19),                    # horizontal box kernel length, pixels
    "saturation": (1.6, 2.2, 3.0, 4.0, 5.5),             # chroma gain (colour photographs only)
}
COLOUR_ONLY = ("saturation",)


def _has_colour(x: np.ndarray) -> bool:
    return bool(np.ptp(x - x.mean(axis=2, keepdims=True)) > 1e-3)


def distort_heldout(x: np.ndarray, family: str, level: int) -> np.ndarray:
    """One held-out family at level 1..5 on float RGB in [0, 1]; returns float RGB in [0, 1]. Deterministic."""
    if family not in HELDOUT_FAMILIES:
        raise ValueError(f"unknown held-out family {family!r}; known: {', '.join(HELDOUT_FAMILIES)}")
    if not 1 <= level <= N_DEMO_LEVELS:
        raise ValueError(f"level must be 1..{N_DEMO_LEVELS}, got {level}")
    s = HELDOUT_FAMILIES[family][level - 1]
    h, w = x.shape[:2]
    if family == "pixelation":
        small = Image.fromarray(_to_uint8(x)).resize((max(1, round(w / s)), max(1, round(h / s))), Image.BOX)
        y = np.asarray(small.resize((w, h), Image.NEAREST), dtype=np.float64) / 255.0
    elif family == "quantisation":
        y = np.round(x * (s - 1)) / (s - 1)
    elif family == "ringing":  # an ideal (brick-wall) low-pass: blur with Gibbs ripples at every edge
        fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
        keep = np.hypot(fy, fx) <= 0.5 * s
        y = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(0, 1)) * keep[:, :, None], axes=(0, 1)))
    elif family == "chromatic_aberration":
        d = int(s)
        y = x.copy()
        y[:, :, 0] = ndimage.shift(x[:, :, 0], (0, d), order=0, mode="nearest")
        y[:, :, 2] = ndimage.shift(x[:, :, 2], (0, -d), order=0, mode="nearest")
    elif family == "motion_blur":
        y = ndimage.uniform_filter1d(x, size=int(s), axis=1, mode="reflect")
    else:  # saturation
        gray = _luma(x)[:, :, None]
        y = gray + (x - gray) * s
    return np.clip(y, 0.0, 1.0)


def generate_heldout(folder: Path, size: int, sources) -> list[dict]:
    """Write every image and return the manifest items (Compare2Score format; `splits` = families)."""
    items = []
    for src in sources:
        x = _pristine(src, size)
        families = [f for f in HELDOUT_FAMILIES if f not in COLOUR_ONLY or _has_colour(x)]
        (folder / src).mkdir(parents=True, exist_ok=True)
        rel = f"{src}/{PRISTINE}.png"
        Image.fromarray(_to_uint8(x), "RGB").save(folder / rel)
        items.append({"image": rel, "gt_score": float(N_DEMO_LEVELS), "splits": families, "source": src,
                      "family": PRISTINE, "level": 0})
        for fam in families:
            for level in range(1, N_DEMO_LEVELS + 1):
                rel = f"{src}/{fam}_{level}.png"
                Image.fromarray(_to_uint8(distort_heldout(x, fam, level)), "RGB").save(folder / rel)
                items.append({"image": rel, "gt_score": float(N_DEMO_LEVELS - level), "splits": [fam],
                              "source": src, "family": fam, "level": level})
    return items


def build_heldout_benchmark(cache_dir=None, *, size: int = DEFAULT_SIZE, sources=HELDOUT_SOURCES) -> Dataset:
    """The held-out set as a `Dataset` (name "heldout", scores 0..5, higher is better), built into
    `cache_dir` (default: the home folder's demo cache) unless a copy of this generator version is there."""
    sources = list(sources)
    key = f"heldout-v{GENERATOR_VERSION}-{size}px-{_seed(size, *sources):08x}"
    base = Path(cache_dir) if cache_dir is not None else home.demo_dir()
    folder = base / key
    if not (folder / MANIFEST).is_file():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".building-"))
        try:
            (tmp / MANIFEST).write_text(json.dumps(generate_heldout(tmp, size, sources), indent=0))
            _install(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_compare2score_json(folder / MANIFEST, folder, name="heldout", higher_is_better=True,
                                   score_range=(0.0, float(N_DEMO_LEVELS)))
