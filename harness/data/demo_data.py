"""The embedded benchmark: real photographs from scikit-image's own package, degraded on demand.

Why: no dataset images or model weights can be downloaded on our machines, yet the whole
pipeline must run and give a meaningful leaderboard anywhere. scikit-image ships a handful of
real photographs inside its wheel (skimage/data); each is degraded by five distortion families
at five increasing levels, like KADID-10k's construction.

What it is, honestly: a SYNTHETIC-DISTORTION benchmark whose ground truth is the objective
ordering of distortion strength, NOT human opinion scores. The score of an image is its quality
rank `5 - level` (pristine = 5, the strongest distortion = 0; higher is better). Orderings are
exact within one source and one family; across families and sources "the same level" is only
roughly the same visible damage, which is what makes the overall correlation a real test.

Generation is deterministic (seeded per image, PNG output), takes a few seconds, and is written
once into a cache folder; it is rebuilt only when files are missing or when `GENERATOR_VERSION`,
the size, the sources or the source files change.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from harness.core import home
from harness.data.datasets import Dataset, load_compare2score_json
from harness.data.images import load_image

#: Bump whenever the generated pixels or the manifest would change.
GENERATOR_VERSION = 2
DEFAULT_SIZE = 256
N_DEMO_LEVELS = 5
PRISTINE = "pristine"
MANIFEST = "manifest.json"
GENERATOR_FILE = "generator.json"

#: Real photographs shipped in skimage/data (file stems), default selection first.
DEFAULT_SOURCES = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "moon",
                   "motorcycle_left", "retina", "rocket")
PHOTOS = DEFAULT_SOURCES + ("brick", "grass", "gravel", "ihc", "page", "cell", "text")

#: Strength per level 1..5 (mildest first).
FAMILIES: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (0.7, 1.2, 2.0, 3.2, 5.0),        # sigma in pixels
    "gaussian_noise": (0.02, 0.04, 0.07, 0.11, 0.17),  # sigma, image in [0, 1]
    "jpeg": (40, 25, 15, 9, 5),                        # JPEG quality
    "contrast": (0.75, 0.55, 0.4, 0.28, 0.18),         # remaining fraction of contrast
    "impulse_noise": (0.005, 0.015, 0.035, 0.07, 0.12),  # fraction of salt-and-pepper pixels
}


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def available_sources() -> list[str]:
    """The photographs of `PHOTOS` present in the installed scikit-image (never downloaded)."""
    files = {p.stem: p for p in skimage_data_dir().iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    return [s for s in PHOTOS if s in files]


def _source_file(name: str) -> Path:
    hits = [p for p in skimage_data_dir().iterdir() if p.stem == name and p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if name not in PHOTOS or not hits:
        raise ValueError(f"unknown or absent demo source {name!r}; available here: {', '.join(available_sources())}")
    return hits[0]


def _pristine(name: str, size: int) -> np.ndarray:
    """The source photo as float RGB in [0, 1], longest side `size` (Lanczos)."""
    img = load_image(_source_file(name))
    scale = size / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return np.asarray(img, dtype=np.float64) / 255.0


def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114])


def distort(x: np.ndarray, family: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Apply one family at level 1..5 to float RGB in [0, 1]; returns float RGB in [0, 1]."""
    if family not in FAMILIES:
        raise ValueError(f"unknown distortion family {family!r}; known: {', '.join(FAMILIES)}")
    if not 1 <= level <= N_DEMO_LEVELS:
        raise ValueError(f"level must be 1..{N_DEMO_LEVELS}, got {level}")
    s = FAMILIES[family][level - 1]
    if family == "gaussian_blur":
        y = ndimage.gaussian_filter(x, sigma=(s, s, 0), mode="reflect")
    elif family == "gaussian_noise":
        y = x + rng.normal(0.0, s, size=x.shape)
    elif family == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(_to_uint8(x), "RGB").save(buf, "JPEG", quality=int(s))
        y = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64) / 255.0
    elif family == "contrast":
        y = _luma(x).mean() + (x - _luma(x).mean()) * s
    else:  # impulse_noise
        hit = rng.random(x.shape[:2]) < s
        salt = rng.random(x.shape[:2]) < 0.5
        y = x.copy()
        y[hit] = np.where(salt[hit], 1.0, 0.0)[:, None]
    return np.clip(y, 0.0, 1.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _config(size: int, sources: list[str]) -> dict:
    digests = {s: hashlib.sha256(_source_file(s).read_bytes()).hexdigest() for s in sources}
    return {"generator_version": GENERATOR_VERSION, "size": size, "sources": sources,
            "families": {k: list(v) for k, v in FAMILIES.items()}, "source_sha256": digests}


def generate(folder: Path, size: int, sources: list[str]) -> list[dict]:
    """Write every image into `folder` and return the manifest items (Compare2Score format plus
    `splits` = the families an image belongs to, and `source`, `family`, `level`)."""
    families = list(FAMILIES)
    items = []
    for src in sources:
        x = _pristine(src, size)
        (folder / src).mkdir(parents=True, exist_ok=True)
        rel = f"{src}/{PRISTINE}.png"
        Image.fromarray(_to_uint8(x), "RGB").save(folder / rel)
        # the pristine image is level 0 of every family, so per-family metrics include it
        items.append({"image": rel, "gt_score": float(N_DEMO_LEVELS), "splits": families,
                      "source": src, "family": PRISTINE, "level": 0})
        for fam in families:
            for level in range(1, N_DEMO_LEVELS + 1):
                y = distort(x, fam, level, np.random.default_rng(_seed(src, fam, level)))
                rel = f"{src}/{fam}_{level}.png"
                Image.fromarray(_to_uint8(y), "RGB").save(folder / rel)
                items.append({"image": rel, "gt_score": float(N_DEMO_LEVELS - level), "splits": [fam],
                              "source": src, "family": fam, "level": level})
    return items


def _is_current(folder: Path, config: dict) -> bool:
    try:
        if json.loads((folder / GENERATOR_FILE).read_text()) != config:
            return False
        items = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all((folder / it["image"]).is_file() for it in items)


def build_demo_benchmark(cache_dir=None, *, size: int = DEFAULT_SIZE, sources=None) -> Dataset:
    """The embedded benchmark as a `Dataset` (name "demo", higher is better, scores 0..5), built
    into `cache_dir` (default: the home folder's demo/, see harness.core.home) unless an up-to-date copy is already there.

    Per-family subsets: `ds.in_split("jpeg")` (pristine images included in every family).
    """
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32 (longest side in pixels), got {size!r}")
    sources = list(DEFAULT_SOURCES if sources is None else sources)
    if not sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be distinct photo names, got {sources!r}")
    config = _config(size, sources)  # also refuses unknown or absent sources
    key = hashlib.sha256(json.dumps([size, sources]).encode()).hexdigest()[:10]
    base = Path(cache_dir) if cache_dir is not None else home.demo_dir()
    folder = base / f"demo-{size}px-{key}"
    if not _is_current(folder, config):
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".building-"))
        try:
            items = generate(tmp, size, sources)
            (tmp / MANIFEST).write_text(json.dumps(items, indent=0))
            (tmp / GENERATOR_FILE).write_text(json.dumps(config, sort_keys=True))
            _install(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_compare2score_json(folder / MANIFEST, folder, name="demo", higher_is_better=True,
                                   score_range=(0.0, float(N_DEMO_LEVELS)))


def _install(tmp: Path, folder: Path) -> None:
    """Swap the new build in; a concurrent builder that won the race is fine (same content)."""
    if folder.exists():
        old = folder.with_name(f".old-{folder.name}-{os.getpid()}")
        os.replace(folder, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (folder / MANIFEST).is_file():
            raise


def source_photographs(paths) -> set[str] | None:
    """The photographs that images of a built embedded benchmark were made from; None when any path is not
    such an image (so a caller can tell anchors that are all copies of one photograph)."""
    sources, known = set(), {}
    for p in map(Path, paths):
        manifest = p.parent.parent / MANIFEST
        if manifest not in known:
            try:
                known[manifest] = {i["image"]: i.get("source") for i in json.loads(manifest.read_text())}
            except (OSError, ValueError, TypeError, KeyError):
                return None
        src = known[manifest].get(f"{p.parent.name}/{p.name}")
        if src is None:
            return None
        sources.add(src)
    return sources


def manifest_items(ds: Dataset) -> list[dict]:
    """The generator's manifest items (source, family, level per image) of a built benchmark."""
    return json.loads((ds.root / MANIFEST).read_text())
