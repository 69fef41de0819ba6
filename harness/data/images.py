"""One loader for every image the harness touches (docs/architecture.md, "Images").

Why one loader: models see 8-bit RGB, so every mode must reach RGB the same way everywhere
(EXIF orientation applied, transparency composited on a stated background, 16-bit and float
data scaled, not clipped), and every bad file must fail with a reason a user can act on
instead of a Pillow traceback halfway through a run. Whatever a decoder raises on a hostile
file (Pillow's plugins raise ValueError, SyntaxError, struct.error, IndexError, ... as well as
OSError) becomes an `ImageError` naming the file: one per-image failure, never an aborted run
or a failed batch. `ImageStore` decodes each image once per run however many comparisons it
takes part in, within a byte budget; `content_hash` gives cache keys that survive renames and
change when the bytes change.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from harness.core.vocabulary import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE  # the CLI states them too

#: What `ImageStore` keeps of decoded images, in bytes: room for ~340 KonIQ-size (1024x768) images,
#: or 3 images at the default pixel limit, whatever the dataset's image sizes.
DEFAULT_CACHE_BYTES = 1 << 30
DEFAULT_BACKGROUND = (255, 255, 255)
#: The formats the loader opens: the raster formats image datasets come in. Pillow's other plugins
#: (EPS runs Ghostscript, WMF, FITS, PSD, ...) are never tried on a user's file.
FORMATS = ("AVIF", "BMP", "DIB", "GIF", "JPEG", "JPEG2000", "PNG", "PPM", "TGA", "TIFF", "WEBP")
#: Pixels scaled or composited per step: bounds the temporary arrays of a large image to a few MB.
_BLOCK_PIXELS = 1 << 20
#: What a remembered failure counts against the store's budget, so failures too stay bounded.
_FAILURE_BYTES = 1024


class ImageError(ValueError):
    """An image that cannot be used, with the path and a specific reason."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (--{name.replace('_', '-')} N; {name}: N in YAML), "
                         f"got {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """The sizes the loader refuses: more than `max_pixels` pixels (None: no limit), or a side
    under `min_side` pixels. Both are checked from the header, before any pixel is decoded."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE

    def __post_init__(self):
        if self.max_pixels is not None:
            _positive_int("max_pixels", self.max_pixels)
        _positive_int("min_side", self.min_side)


_LIMITS = Limits()


def current_limits() -> Limits:
    """The process-wide limits: what every loading function uses unless given its own."""
    return _LIMITS


@contextmanager
def image_limits(limits: Limits):
    """Apply `limits` process-wide for the block, then restore the previous ones.

    Process-wide because the comparators load their images through the shared `default_store()`
    deep inside a backend: a run (harness.run.runner) and the CLI's image commands set the user's
    `--max-pixels` / `--min-side` here once. Pillow's own bomb guard (an error at twice
    `Image.MAX_IMAGE_PIXELS`) is raised to match a larger `max_pixels`, so the user's limit decides.
    """
    global _LIMITS
    previous, pillow = _LIMITS, Image.MAX_IMAGE_PIXELS
    _LIMITS = limits
    if limits.max_pixels is None or pillow is not None and limits.max_pixels > pillow:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        yield limits
    finally:
        _LIMITS, Image.MAX_IMAGE_PIXELS = previous, pillow


@contextmanager
def _reasons(path: Path, what: str):
    """Whatever decoding raises, as an `ImageError` naming the file: `what` failed, and why."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"over the pixel limit (Pillow refused it: {exc})") from None
    except UnidentifiedImageError:
        raise ImageError(path, f"not an image in a supported format ({', '.join(FORMATS)})") from None
    except MemoryError:
        raise ImageError(path, f"{what}: out of memory") from None
    except Exception as exc:  # noqa: BLE001 - a hostile file can make a decoder raise anything
        raise ImageError(path, f"{what} ({type(exc).__name__}: {exc})") from None


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


def _open_checked(f, path: Path, limits: Limits) -> Image.Image:
    """Open lazily (header only) and refuse sizes out of `limits` before any pixel is decoded."""
    with _reasons(path, "cannot read image header"), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(f, formats=FORMATS)
        w, h = img.size
    if limits.max_pixels is not None and w * h > limits.max_pixels:
        raise ImageError(path, f"over the pixel limit: {w}x{h} = {w * h} pixels > max_pixels={limits.max_pixels}")
    if w == 0 or h == 0:
        raise ImageError(path, f"empty image ({w}x{h})")
    if min(w, h) < limits.min_side:
        raise ImageError(path, f"too small: {w}x{h}, a side under min_side={limits.min_side} pixels")
    return img


def probe_image(path, *, limits: Limits | None = None) -> tuple[int, int]:
    """(width, height) from the header alone: the cheap check a dataset validation can afford
    for thousands of files (missing, empty, not an image, out of the size limits). Truncation
    only shows on a full decode (`load_image`)."""
    path = Path(os.fspath(path))
    _check_file(path)
    with _reasons(path, "cannot open file"), open(path, "rb") as f:
        return _open_checked(f, path, limits or current_limits()).size


def unreadable(paths, *, full: bool = False) -> list[str]:
    """`  - PATH: REASON` for every image that cannot be used, for one listing of all the problems
    instead of one error at a time. By default from the header (`probe_image`); `full` decodes
    each image, through the shared store so a comparator does not decode it again: for the few
    anchors, on which every score depends."""
    check = default_store().get if full else probe_image
    lines = []
    for path in paths:
        try:
            check(path)
        except ImageError as exc:
            lines.append(f"  - {path}: {exc.reason}")
    return lines


def _scale_to_uint8(a: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """High-bit-depth grey to 8 bits by the range the mode implies, never by clipping.

    I;16*: 0..65535 -> /257. I (32-bit int) and F (float): the value range decides: data that
    fits 0..255 is already 8-bit, 0..65535 is 16-bit, F within 0..1 is normalised; anything
    else (negative or larger values) is stretched min..max, the only mapping that keeps detail.
    Scaled in row blocks, so a large image needs no full-size float copies.
    """
    lo, hi = float(a.min()), float(a.max())  # NaN propagates: one check finds NaN and inf
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageError(path, f"non-finite pixel values in mode {mode}")
    if mode.startswith("I;16"):
        offset, factor = 0.0, 1.0 / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        offset, factor = 0.0, 255.0
    elif lo >= 0.0 and hi <= 255.0:
        offset, factor = 0.0, 1.0
    elif lo >= 0.0 and hi <= 65535.0:
        offset, factor = 0.0, 1.0 / 257.0
    else:
        offset, factor = lo, (255.0 / (hi - lo) if hi > lo else 0.0)
    out = np.empty(a.shape, np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, a.shape[1]))
    for top in range(0, a.shape[0], rows):
        block = (a[top:top + rows].astype(np.float64) - offset) * factor
        out[top:top + rows] = np.clip(np.rint(block, out=block), 0, 255, out=block)
    return out


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _composite(img: Image.Image, background) -> Image.Image:
    """Alpha (or a transparent palette entry or colour key) over an opaque background, in row
    strips: the result is the only full-size image made (Pillow's alpha_composite of the whole
    image would make three more)."""
    out = Image.new("RGB", img.size, tuple(background))
    w, h = img.size
    rows = max(1, _BLOCK_PIXELS // max(1, w))
    for top in range(0, h, rows):
        box = (0, top, w, min(h, top + rows))
        strip = img.crop(box).convert("RGBA")
        out.paste(strip, box, strip)
    return out


def to_rgb(img: Image.Image, *, background=DEFAULT_BACKGROUND, path="<image>") -> Image.Image:
    """Any Pillow mode to 8-bit RGB (orientation NOT handled here; `load_image` does it).
    An RGB image is returned as it is, not copied."""
    path = Path(os.fspath(path))
    mode = img.mode
    with _reasons(path, f"cannot convert mode {mode} to RGB"):
        if mode.startswith("I;16") or mode in ("I", "F"):
            return Image.fromarray(_scale_to_uint8(np.asarray(img), mode, path)).convert("RGB")
        if _has_alpha(img):  # alpha channel, palette transparency or an RGB/L colour key
            return _composite(img, background)
        if mode == "RGB":
            return img
        return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's conversions are exact here


def load_image(path, *, limits: Limits | None = None, background=DEFAULT_BACKGROUND) -> Image.Image:
    """Decode fully, apply EXIF orientation, return 8-bit RGB; raise `ImageError` with the reason.

    The first frame is used for multi-frame files. Truncated or corrupt data is refused even if
    some other module set `ImageFile.LOAD_TRUNCATED_IMAGES`. The file is read through a handle
    of our own, closed on return: the image never maps the file (a file changed later cannot
    change it), and the decoded pixels are converted in place where possible (no defensive copies:
    a 9000x9000 image costs its decoded size once or twice, not ten times).
    """
    path = Path(os.fspath(path))
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError(path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated files would pass silently")
    _check_file(path)
    with _reasons(path, "cannot open file"), open(path, "rb") as f:
        img = _open_checked(f, path, limits or current_limits())
        with _reasons(path, "truncated or corrupt image data"):
            img.load()
        with _reasons(path, "unreadable EXIF orientation"):
            ImageOps.exif_transpose(img, in_place=True)
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


def _nbytes(item: Image.Image | str) -> int:
    """Memory an entry holds: Pillow keeps RGB in 4 bytes a pixel; a failure is its reason."""
    return item.width * item.height * 4 if isinstance(item, Image.Image) else _FAILURE_BYTES


class ImageStore:
    """Decode-once LRU of RGB images keyed by (resolved path, mtime, size, limits), bounded by the
    bytes the decoded images hold (`max_bytes`), not by their number: a few huge images cannot
    exhaust memory. An image larger than the whole budget is returned but not kept.

    Failures are remembered too (their reason, re-raised under the name the caller used, so a
    symlink's failure names the symlink), so a bad file costs one decode attempt per run.
    `limits` None: the process-wide ones (`image_limits`) at each call. Returned images are
    shared: callers must not modify them in place (`.copy()` first).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, *, limits: Limits | None = None,
                 background=DEFAULT_BACKGROUND):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"ImageStore: max_bytes must be a whole number >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.limits = limits
        self.background = tuple(background)
        self._items: OrderedDict[tuple, Image.Image | str] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.decodes = 0
        self.hits = 0

    def get(self, path) -> Image.Image:
        path = Path(os.fspath(path))
        limits = self.limits or current_limits()
        key = (*_file_key(path), limits)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
        if item is None:
            try:
                item = load_image(path, limits=limits, background=self.background)
            except ImageError as exc:
                item = exc.reason
            self._keep(key, item)
        if isinstance(item, str):
            raise ImageError(path, item)
        return item

    def _keep(self, key: tuple, item: Image.Image | str) -> None:
        size = _nbytes(item)
        with self._lock:
            self.decodes += 1
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= _nbytes(old)
            if size > self.max_bytes:
                return
            self._items[key] = item
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= _nbytes(dropped)

    def __len__(self) -> int:
        return len(self._items)

    def hash(self, path) -> str:
        return content_hash(path)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


_DEFAULT_STORE: ImageStore | None = None
_DEFAULT_LOCK = threading.Lock()


def default_store() -> ImageStore:
    """The process-wide store adapters share, so one run decodes each image once (under the
    process-wide limits, `image_limits`)."""
    global _DEFAULT_STORE
    with _DEFAULT_LOCK:
        if _DEFAULT_STORE is None:
            _DEFAULT_STORE = ImageStore()
        return _DEFAULT_STORE
