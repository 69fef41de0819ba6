"""Hostile image files: every one either loads to RGB or fails as an `ImageError` naming its path.

A mutation corpus built from small images of many formats and modes (truncations, flipped and
zeroed bytes, spliced blocks, decompression bombs in PNG text and ICC chunks, bogus EXIF, huge
declared sizes, bad JPEG markers...) goes through every entry point that reads an image; nothing
else may escape, because one escaped exception aborts a run or fails a whole batch.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from harness.data.images import ImageError, ImageStore, load_image, probe_image, unreadable

SEED = 20240610

# a damaged file may make Pillow warn (corrupt EXIF, skipped tags) before it fails or loads: not the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _photo(w=40, h=32) -> Image.Image:
    rng = np.random.default_rng(SEED)
    x = np.linspace(0, 255, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    noise = rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(x + noise, 0, 255).astype(np.uint8), "RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif(orientation) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def base_files() -> dict[str, bytes]:
    """One small valid file per format and mode the loader must handle."""
    rgb = _photo()
    frames = [rgb, rgb.rotate(90), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    deep = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # I;16
    return {
        "rgb.png": _save(rgb, "PNG"),
        "rgba.png": _save(rgb.convert("RGBA"), "PNG"),
        "la.png": _save(rgb.convert("LA"), "PNG"),
        "pal_trns.png": _save(pal, "PNG", transparency=0),
        "deep.png": _save(deep, "PNG"),
        "bilevel.png": _save(rgb.convert("1"), "PNG"),
        "icc.png": _save(rgb, "PNG", icc_profile=b"not really an ICC profile" * 4),
        "rgb.jpg": _save(rgb, "JPEG", quality=85),
        "progressive.jpg": _save(rgb, "JPEG", quality=85, progressive=True),
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG"),
        "grey.jpg": _save(rgb.convert("L"), "JPEG"),
        "rotated.jpg": _save(rgb, "JPEG", exif=_exif(6)),
        "anim.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "rgb.bmp": _save(rgb, "BMP"),
        "pal.bmp": _save(pal, "BMP"),
        "rgb.tif": _save(rgb, "TIFF", compression="tiff_deflate"),
        "float.tif": _save(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.float32) / 255), "TIFF"),
        "cmyk.tif": _save(rgb.convert("CMYK"), "TIFF"),
        "pages.tif": _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "lossy.webp": _save(rgb, "WEBP", quality=80),
        "lossless.webp": _save(rgb.convert("RGBA"), "WEBP", lossless=True),
        "anim.webp": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "rgb.ppm": _save(rgb, "PPM"),
    }


# --- format-aware splices ---------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_insert(png: bytes, chunk: bytes, before: bytes = b"IDAT") -> bytes:
    i = png.index(before) - 4
    return png[:i] + chunk + png[i:]


def _png_ihdr(png: bytes, w: int, h: int) -> bytes:
    """The same PNG with another declared size (and a valid CRC, so only the size is wrong)."""
    ihdr = png[16:29]
    new = struct.pack(">II", w, h) + ihdr[8:]
    return png[:8] + _chunk(b"IHDR", new) + png[33:]


def _jpeg_insert(jpg: bytes, segment: bytes) -> bytes:
    return jpg[:2] + segment + jpg[2:]  # right after SOI


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_sof_size(jpg: bytes, w: int, h: int) -> bytes:
    i = next(i for i in range(2, len(jpg) - 1) if jpg[i] == 0xFF and jpg[i + 1] in (0xC0, 0xC2))
    return jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]


def _bomb(n_bytes: int) -> bytes:
    return zlib.compress(b"\0" * n_bytes, 9)


def spliced(bases: dict[str, bytes]) -> dict[str, bytes]:
    png, jpg = bases["rgb.png"], bases["rgb.jpg"]
    big = 20 << 20  # past Pillow's MAX_TEXT_CHUNK (1 MiB) many times over
    bad_tiff_exif = b"Exif\0\0" + b"MM\0\x2a" + struct.pack(">I", 0x7FFFFFF0)  # first IFD far past the end
    looping_exif = b"Exif\0\0" + b"II\x2a\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<I", 0)  # an Exif sub-IFD pointing at itself
    odd_orientation = b"Exif\0\0" + b"II\x2a\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHII", 0x0112, 2, 4, 0x7FFF0000) + struct.pack("<I", 0)  # orientation as a text, far away
    out = {
        "ztxt_bomb.png": _png_insert(png, _chunk(b"zTXt", b"Comment\0\0" + _bomb(big))),
        "itxt_bomb.png": _png_insert(png, _chunk(b"iTXt", b"Comment\0\1\0\0\0" + _bomb(big))),
        "iccp_bomb.png": _png_insert(png, _chunk(b"iCCP", b"icc\0\0" + _bomb(big))),
        "ztxt_bomb_after_idat.png": _png_insert(png, _chunk(b"zTXt", b"Comment\0\0" + _bomb(big)), b"IEND"),
        "many_text.png": _png_insert(png, b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + _bomb(1 << 20) + b"")
                                                   for i in range(70))),
        "bogus_exif.png": _png_insert(png, _chunk(b"eXIf", b"MM\0\x2a" + bytes(range(40)))),
        "zero_idat.png": _png_insert(png, _chunk(b"IDAT", b"")),
        "no_idat.png": png[:png.index(b"IDAT") - 4] + png[png.index(b"IEND") - 4:],
        "huge_declared.png": _png_ihdr(png, 100_000, 100_000),
        "wide_declared.png": _png_ihdr(png, 2**31 - 1, 1),
        "zero_width.png": _png_ihdr(png, 0, 32),
        "one_pixel_declared.png": _png_ihdr(png, 1, 1),
        "bad_crc.png": png[:30] + bytes([png[30] ^ 0xFF]) + png[31:],
        "unknown_critical.png": _png_insert(png, _chunk(b"ABCD", b"x" * 10)),
        "huge_chunk_length.png": _png_insert(png, struct.pack(">I", 0x7FFFFFFF) + b"tEXt" + b"x" * 10),
        "bad_exif.jpg": _jpeg_insert(jpg, _segment(0xE1, bad_tiff_exif)),
        "looping_exif.jpg": _jpeg_insert(jpg, _segment(0xE1, looping_exif)),
        "odd_orientation.jpg": _jpeg_insert(jpg, _segment(0xE1, odd_orientation)),
        "garbage_marker.jpg": _jpeg_insert(jpg, b"\xff\x01\xff\xff\x00\x10garbage"),
        "bad_icc.jpg": _jpeg_insert(jpg, _segment(0xE2, b"ICC_PROFILE\0\x01\x01" + b"\xde\xad" * 50)),
        "huge_sof.jpg": _jpeg_sof_size(jpg, 65_000, 65_000),
        "zero_sof.jpg": _jpeg_sof_size(jpg, 40, 0),
        "tiny_sof.jpg": _jpeg_sof_size(jpg, 2, 2),
        "gif_huge_screen.gif": bases["anim.gif"][:6] + struct.pack("<HH", 65535, 65535) + bases["anim.gif"][10:],
        "bmp_huge.bmp": bases["rgb.bmp"][:18] + struct.pack("<ii", 2**30, 2**30) + bases["rgb.bmp"][26:],
        "bmp_zero_bpp.bmp": bases["rgb.bmp"][:28] + struct.pack("<H", 0) + bases["rgb.bmp"][30:],
        "tiny.png": _save(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
        "thin.png": _save(Image.new("RGB", (400, 3), (1, 2, 3)), "PNG"),
    }
    return out


def mutated(bases: dict[str, bytes], rng: np.random.Generator) -> dict[str, bytes]:
    """Generic damage to every base file: truncations, flipped bytes, zeroed and repeated blocks."""
    out = {}
    for name, data in bases.items():
        n = len(data)
        stem, ext = name.rsplit(".", 1)
        for frac in (0.02, 0.25, 0.5, 0.75, 0.97):
            out[f"{stem}.cut{int(frac * 100)}.{ext}"] = data[:max(1, int(n * frac))]
        for k in (1, 3, 12):
            b = bytearray(data)
            for pos in rng.integers(0, n, k):
                b[pos] ^= int(rng.integers(1, 256))
            out[f"{stem}.flip{k}.{ext}"] = bytes(b)
        i = int(rng.integers(0, n // 2))
        out[f"{stem}.zeroed.{ext}"] = data[:i] + bytes(min(64, n - i)) + data[i + 64:]
        j = int(rng.integers(8, max(9, n - 32)))
        out[f"{stem}.repeat.{ext}"] = data[:j] + data[j - 8:j + 24] + data[j:]
        out[f"{stem}.tail.{ext}"] = data + rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    bases = base_files()
    files = {**bases, **spliced(bases), **mutated(bases, np.random.default_rng(SEED))}
    paths = []
    for name, data in sorted(files.items()):
        p = folder / name
        p.write_bytes(data)
        paths.append(p)
    return paths


def _outcome(fn, path):
    try:
        return fn(path)
    except ImageError as exc:
        assert str(path) in str(exc) and exc.path == str(path), f"{path}: the error does not name the file: {exc}"
        return exc


def test_corpus_is_large_and_varied(corpus):
    assert len(corpus) > 300
    assert {p.suffix for p in corpus} >= {".png", ".jpg", ".gif", ".bmp", ".tif", ".webp", ".ppm"}


def test_nothing_but_image_error_escapes(corpus):
    escaped = []
    store = ImageStore()
    for path in corpus:
        for fn in (load_image, probe_image, store.get):
            try:
                got = _outcome(fn, path)
            except Exception as exc:  # noqa: BLE001 - the point of the test
                escaped.append(f"{fn.__name__}({path.name}): {type(exc).__name__}: {exc}")
                continue
            if fn is not probe_image and not isinstance(got, ImageError):
                assert got.mode == "RGB" and min(got.size) >= 16, path
        try:
            lines = unreadable([path])
        except Exception as exc:  # noqa: BLE001
            escaped.append(f"unreadable({path.name}): {type(exc).__name__}: {exc}")
        else:
            assert all(str(path) in line for line in lines)
    assert not escaped, "\n".join(escaped)
