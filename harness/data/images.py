"""One loader for every image the harness touches (docs/architecture.md, "Layers").

Why one loader: models see 8-bit RGB, so every mode must reach RGB the same way everywhere
(EXIF orientation applied, transparency composited on a stated background, 16-bit and float
data scaled, not clipped), and every bad file must fail with a reason a user can act on
instead of a Pillow traceback halfway through a run. `ImageStore` decodes each image once per
run however many comparisons it takes part in; `content_hash` gives cache keys that survive
renames and change when the bytes change.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Refuse images above this many pixels (decompression bombs). Pillow's own warning threshold.
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """An image that cannot be used, with the path and a specific reason."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _check_file(path: Path) -> os.stat_result:
    """Reasons that need no decoder: missing, not a file, empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "missing file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot access file ({exc.strerror or exc})") from None
    if not path.is_file():
        raise ImageError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageError(path, "zero-byte file")
    return st


def _open_checked(path: Path, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) and refuse over-limit sizes before any pixel is decoded."""
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"over the pixel limit (Pillow refused it: {exc})") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read image header ({exc})") from None
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        img.close()
        raise ImageError(path, f"over the pixel limit: {w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
    if w == 0 or h == 0:
        img.close()
        raise ImageError(path, f"empty image ({w}x{h})")
    return img


def probe_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone: the cheap check a dataset validation can afford
    for thousands of files (missing, empty, not an image, over the limit). Truncation only shows
    on a full decode (`load_image`)."""
    with _open_checked(Path(path), max_pixels) as img:
        return img.size


def unreadable(paths) -> list[str]:
    """`  - PATH: REASON` for every image whose header cannot be read (`probe_image`), for one listing of all
    the problems instead of one error at a time."""
    lines = []
    for path in paths:
        try:
            probe_image(path)
        except ImageError as exc:
            lines.append(f"  - {path}: {exc.reason}")
    return lines


def _scale_to_uint8(a: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """High-bit-depth grey to 8 bits by the range the mode implies, never by clipping.

    I;16*: 0..65535 -> /257. I (32-bit int) and F (float): the value range decides: data that
    fits 0..255 is already 8-bit, 0..65535 is 16-bit, F within 0..1 is normalised; anything
    else (negative or larger values) is stretched min..max, the only mapping that keeps detail.
    """
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ImageError(path, f"non-finite pixel values in mode {mode}")
    lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        scaled = a / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = a / 257.0
    else:
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def to_rgb(img: Image.Image, *, background=DEFAULT_BACKGROUND, path="<image>") -> Image.Image:
    """Any Pillow mode to 8-bit RGB (orientation NOT handled here; `load_image` does it)."""
    path = Path(os.fspath(path))
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode, path), "L").convert("RGB")
    if _has_alpha(img):  # alpha channel, palette transparency or an RGB/L colour key
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's conversions are exact here
    except (ValueError, OSError) as exc:
        raise ImageError(path, f"cannot convert mode {mode} to RGB ({exc})") from None


def load_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, background=DEFAULT_BACKGROUND) -> Image.Image:
    """Decode fully, apply EXIF orientation, return 8-bit RGB; raise `ImageError` with the reason.

    The first frame is used for multi-frame files. Truncated or corrupt data is refused even if
    some other module set `ImageFile.LOAD_TRUNCATED_IMAGES`.
    """
    path = Path(os.fspath(path))
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError(path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated files would pass silently")
    with _open_checked(path, max_pixels) as img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(path, f"truncated or corrupt image data ({exc})") from None
        try:
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError, TypeError, KeyError) as exc:
            raise ImageError(path, f"unreadable EXIF orientation ({exc})") from None
        return to_rgb(img, background=background, path=path)


# --- content hashes --------------------------------------------------------------------------
_HASHES: dict[tuple, str] = {}
_HASH_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple:
    st = _check_file(path)
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def content_hash(path) -> str:
    """sha256 hex of the file bytes, memoised by (resolved path, mtime, size)."""
    path = Path(os.fspath(path))
    key = _file_key(path)
    with _HASH_LOCK:
        hit = _HASHES.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = digest
    return digest


class ImageStore:
    """Decode-once LRU of RGB images keyed by (resolved path, mtime, size).

    Failures are remembered too, so a bad file costs one decode attempt per run. Returned images
    are shared: callers must not modify them in place (`.copy()` first).
    """

    def __init__(self, max_items: int = 256, max_pixels: int | None = DEFAULT_MAX_PIXELS, background=DEFAULT_BACKGROUND):
        if max_items < 1:
            raise ValueError(f"ImageStore: max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.max_pixels = max_pixels
        self.background = tuple(background)
        self._items: OrderedDict[tuple, Image.Image | ImageError] = OrderedDict()
        self._lock = threading.Lock()
        self.decodes = 0
        self.hits = 0

    def get(self, path) -> Image.Image:
        path = Path(os.fspath(path))
        key = _file_key(path)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
        if item is None:
            try:
                item = load_image(path, max_pixels=self.max_pixels, background=self.background)
            except ImageError as exc:
                item = exc
            with self._lock:
                self.decodes += 1
                self._items[key] = item
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        if isinstance(item, ImageError):
            raise item
        return item

    def hash(self, path) -> str:
        return content_hash(path)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_DEFAULT_STORE: ImageStore | None = None
_DEFAULT_LOCK = threading.Lock()


def default_store() -> ImageStore:
    """The process-wide store adapters share, so one run decodes each image once."""
    global _DEFAULT_STORE
    with _DEFAULT_LOCK:
        if _DEFAULT_STORE is None:
            _DEFAULT_STORE = ImageStore()
        return _DEFAULT_STORE
