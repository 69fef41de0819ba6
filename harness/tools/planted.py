"""A planted Thurstone comparator and the synthetic dataset it judges: scores with a known truth.

Why: designs, solvers and calibration are only measurable against a truth that no real model or
dataset gives. Here each image carries a hidden true quality q and the std s of its (simulated)
human ratings; the dataset's MOS is q and its std is s, so the paper's MOS-derived preference
P(b beats a) = Phi((q_b - q_a) / sqrt(s_a^2 + s_b^2)) is the planted model's own.

The comparator (`py:harness.tools.planted:PlantedThurstone`) perceives the difference with noise,

    z = (q_b - q_a + e_b - e_a + eps) / sqrt(s_a^2 + s_b^2),  p = Phi(z),

e a persistent per-image error (sd `image_noise`), eps a fresh per-ordered-pair error (sd `noise`),
both in quality units and seeded (the same pair always gets the same verdict). Its level
distribution is Binomial(4, p) over inferior..superior, whose Eqn. 3 preference (weights k/4) is p
exactly; the level logits are then multiplied by `confidence` (3: three times over-confident,
1/3: three times under-confident), so the temperature that undoes it is T = confidence.

The truth travels inside each PNG as text chunks (`c2s:quality`, `c2s:std`), so anchors, copies
and subsets of a planted dataset need no side file; an image without them fails per pair.
"""
from __future__ import annotations

import csv
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, PngImagePlugin
from scipy.special import gammaln, log_ndtr

from adapters.base import Comparator, Comparisons, Pair, normalize_logprobs
from adapters.fingerprint import build_fingerprint, model_identity
from harness.core.levels import N_LEVELS
from harness.core.options import OptionError, option
from harness.data.images import content_hash

VERSION = 1
QUALITY_KEY, STD_KEY = "c2s:quality", "c2s:std"
#: side of the planted PNGs: the loader's smallest accepted side
SIDE = 16
_K = np.arange(N_LEVELS)
_LOG_BINOMIAL = gammaln(N_LEVELS) - gammaln(_K + 1) - gammaln(N_LEVELS - _K)


def binomial_level_logprobs(z) -> np.ndarray:
    """(n, 5) log-probs of Binomial(4, Phi(z)): level k's weight k/4 averages to Phi(z) exactly."""
    z = np.asarray(z, dtype=np.float64).reshape(-1, 1)
    return _LOG_BINOMIAL + _K * log_ndtr(z) + (N_LEVELS - 1 - _K) * log_ndtr(-z)


def planted_truth(path) -> tuple[float, float]:
    """(quality, std) written into a planted PNG; ValueError when the file carries none."""
    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
    try:
        return float(text[QUALITY_KEY]), float(text[STD_KEY])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: no planted quality (not written by harness.tools.planted)") from None


def _unit_normal(seed: int, *parts: str) -> float:
    """A standard normal draw fixed by the seed and the given strings (order matters)."""
    digest = hashlib.sha256("\0".join([str(seed), *parts]).encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


class PlantedThurstone(Comparator):
    """Judges planted images by their hidden qualities (see the module docstring). CPU only, no weights."""

    backend = "py:harness.tools.planted:PlantedThurstone"
    model_arg = "none"

    @dataclass(frozen=True)
    class Options:
        noise: float = option(0.0, "sd of the per-pair perception error, in quality units (>= 0)")
        image_noise: float = option(0.0, "sd of each image's persistent perception error, in quality units (>= 0)")
        confidence: float = option(1.0, "factor on the level logits: 3 = 3x over-confident, 1/3 = 3x under (> 0)")
        seed: int = option(0, "seed of both perception errors")

    @classmethod
    def validate_options(cls, options, where: str) -> None:
        for name in ("noise", "image_noise"):
            if not getattr(options, name) >= 0:
                raise OptionError(f"{where}: option {name!r} must be >= 0, got {getattr(options, name)!r}")
        if not (np.isfinite(options.confidence) and options.confidence > 0):
            raise OptionError(f"{where}: option 'confidence' must be > 0, got {options.confidence!r}")

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        self._perceived: dict[str, tuple[str, float, float]] = {}
        self._lock = threading.Lock()

    def perceived(self, path) -> tuple[str, float, float]:
        """(content id, quality as perceived: q + e, std), once per file."""
        key = str(path)
        with self._lock:
            hit = self._perceived.get(key)
        if hit is None:
            q, s = planted_truth(path)
            ident = content_hash(path)
            hit = (ident, q + self.options.image_noise * _unit_normal(self.options.seed, "image", ident), s)
            with self._lock:
                self._perceived[key] = hit
        return hit

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        pairs = list(pairs)
        out = np.full((len(pairs), N_LEVELS), np.nan)
        errors: list[str | None] = [None] * len(pairs)
        o = self.options
        for i, pair in enumerate(pairs):
            try:
                (ia, qa, sa), (ib, qb, sb) = self.perceived(pair.first), self.perceived(pair.second)
            except (OSError, ValueError) as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
                continue
            eps = o.noise * _unit_normal(o.seed, "pair", ia, ib)
            scale = np.hypot(sa, sb)
            z = (qb - qa + eps) / scale if scale > 0 else np.sign(qb - qa + eps) * 30.0
            out[i] = normalize_logprobs(o.confidence * binomial_level_logprobs(np.clip(z, -30.0, 30.0)))[0]
        return Comparisons(out, errors)

    def fingerprint(self) -> dict:
        o = self.options
        return build_fingerprint(
            backend=self.backend, model=model_identity(f"planted-thurstone-v{VERSION}", revision=VERSION, local=False),
            dtype="float64", prompt=None, level_tokens=None, preprocessing=None, versions={},
            extra={"noise": o.noise, "image_noise": o.image_noise, "confidence": o.confidence, "seed": o.seed})


def write_planted_dataset(folder, n: int = 1000, *, seed: int = 0, std: float = 0.5,
                          std_spread: float = 0.2) -> Path:
    """Write n planted images and `manifest.csv` (image,mos,std) into `folder`; returns the manifest.

    Qualities q ~ N(0, 1); each image's rating std is std * exp(N(0, std_spread^2)), so std-based
    anchor selection has something to choose from. The pixels are seeded noise, distinct per image
    (the pair cache keys images by content). Load with `--dataset NAME=FOLDER/manifest.csv --root FOLDER`.
    """
    if int(n) != n or n < 2 or not std > 0 or not std_spread >= 0:
        raise ValueError(f"write_planted_dataset: need n >= 2, std > 0, std_spread >= 0; got {n}, {std}, {std_spread}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    quality = rng.standard_normal(int(n))
    stds = std * np.exp(std_spread * rng.standard_normal(int(n)))
    rows = []
    for k in range(int(n)):
        name = f"images/planted_{k:05d}.png"
        info = PngImagePlugin.PngInfo()
        info.add_text(QUALITY_KEY, repr(float(quality[k])))
        info.add_text(STD_KEY, repr(float(stds[k])))
        pixels = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, pnginfo=info)
        rows.append((name, repr(float(quality[k])), repr(float(stds[k]))))
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("image", "mos", "std"), *rows])
    return manifest
