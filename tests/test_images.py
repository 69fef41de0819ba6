"""Broken and unusual images built on the fly: each gets its clear, specific outcome."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image

from harness.data.images import (
    ImageError,
    ImageStore,
    Limits,
    content_hash,
    default_store,
    load_image,
    probe_image,
)


def _gradient_rgb(w=64, h=48) -> Image.Image:
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8), "RGB")


@pytest.fixture()
def rgb_png(tmp_path):
    p = tmp_path / "ok.png"
    _gradient_rgb().save(p)
    return p


def test_plain_rgb_roundtrip(rgb_png):
    img = load_image(rgb_png)
    assert img.mode == "RGB" and img.size == (64, 48)
    assert np.array_equal(np.asarray(img), np.asarray(_gradient_rgb()))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="missing file"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="zero-byte file"):
        load_image(p)


def test_text_file_named_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    _gradient_rgb(256, 256).save(buf, "JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    probe_image(p)  # the header is intact: only a full decode can see the damage
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(p)


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    _gradient_rgb(256, 256).save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[:-200])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(p)


def test_cmyk_jpeg_converts_to_matching_rgb(tmp_path):
    src = _gradient_rgb()
    p = tmp_path / "cmyk.jpg"
    src.convert("CMYK").save(p, "JPEG", quality=95)
    assert Image.open(p).mode == "CMYK"
    out = np.asarray(load_image(p)).astype(int)
    assert out.shape == (48, 64, 3)
    # JPEG loss only: an inverted-CMYK mistake would be off by ~255
    assert np.abs(out - np.asarray(src).astype(int)).mean() < 6


def test_16bit_png_scales_not_clips(tmp_path):
    a = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    out = np.asarray(load_image(p))
    assert out.dtype == np.uint8 and out.shape == (32, 64, 3)
    expected = np.rint(a / 257.0).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)
    assert out.min() == 0 and out.max() == 255  # clipping would saturate almost everything at 255


def test_float_tiff_in_unit_range(tmp_path):
    a = np.linspace(0, 1, 40 * 20, dtype=np.float32).reshape(20, 40)
    p = tmp_path / "float.tif"
    Image.fromarray(a, "F").save(p)
    out = np.asarray(load_image(p))[..., 0]
    assert np.array_equal(out, np.rint(a * 255).astype(np.uint8))


def test_int32_image_with_negative_values_is_stretched(tmp_path):
    a = np.arange(-160, 160, dtype=np.int32).reshape(16, 20)
    p = tmp_path / "int.tif"
    Image.fromarray(a, "I").save(p)
    out = np.asarray(load_image(p))[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotone: order preserved


def test_palette_png_with_transparency_composited_on_background(tmp_path):
    img = Image.new("P", (20, 20), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] + [0] * (254 * 3))
    img.paste(1, (0, 0, 10, 20))  # left half index 1 (blue), right half index 0 (red)
    p = tmp_path / "pal.png"
    img.save(p, transparency=0)  # red is transparent
    white = np.asarray(load_image(p))
    assert tuple(white[10, 4]) == (0, 0, 255)
    assert tuple(white[10, 16]) == (255, 255, 255)
    black = np.asarray(load_image(p, background=(0, 0, 0)))
    assert tuple(black[10, 16]) == (0, 0, 0)


def test_rgba_half_transparent_blends(tmp_path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (16, 16), (0, 0, 0, 128)).save(p)
    px = np.asarray(load_image(p))[0, 0].astype(int)
    assert np.all(np.abs(px - 127) <= 1)


def test_la_and_bilevel_modes(tmp_path):
    la = tmp_path / "la.png"
    Image.new("LA", (16, 16), (0, 0)).save(la)  # fully transparent black
    assert tuple(np.asarray(load_image(la))[0, 0]) == (255, 255, 255)
    one = tmp_path / "one.png"
    Image.new("1", (16, 16), 1).save(one)
    assert tuple(np.asarray(load_image(one))[0, 0]) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif.tobytes())
    assert load_image(p).size == (20, 40)


def test_over_the_pixel_limit_refused_before_decoding(tmp_path, rgb_png):
    with pytest.raises(ImageError, match="over the pixel limit: 64x48 = 3072 pixels > max_pixels=3000"):
        load_image(rgb_png, limits=Limits(max_pixels=3000))
    with pytest.raises(ImageError, match="over the pixel limit"):
        probe_image(rgb_png, limits=Limits(max_pixels=100))
    assert load_image(rgb_png, limits=Limits(max_pixels=3072)).size == (64, 48)


def test_content_hash_is_sha256_of_bytes_and_follows_changes(tmp_path, rgb_png):
    assert content_hash(rgb_png) == hashlib.sha256(rgb_png.read_bytes()).hexdigest()
    other = tmp_path / "copy.png"
    other.write_bytes(rgb_png.read_bytes())
    assert content_hash(other) == content_hash(rgb_png)
    Image.new("RGB", (3, 3)).save(other)
    os.utime(other, ns=(1, 1))  # new size AND mtime: the memo must not serve the old digest
    assert content_hash(other) == hashlib.sha256(other.read_bytes()).hexdigest()


def test_store_decodes_once_and_evicts_lru(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 16), (i, i, i)).save(p)
        paths.append(p)
    store = ImageStore(max_bytes=2 * 16 * 16 * 4)  # room for two of them
    for _ in range(5):
        store.get(paths[0])
    assert store.decodes == 1 and store.hits == 4
    store.get(paths[1])
    store.get(paths[2])  # evicts paths[0]
    store.get(paths[0])
    assert store.decodes == 4
    assert store.hash(paths[1]) == content_hash(paths[1])


def test_store_remembers_failures(tmp_path):
    p = tmp_path / "bad.png"
    p.write_text("nope")
    store = ImageStore()
    for _ in range(3):
        with pytest.raises(ImageError, match="not an image"):
            store.get(p)
    assert store.decodes == 1


def test_default_store_is_shared():
    assert default_store() is default_store()


def test_global_truncated_flag_is_refused(rgb_png, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="LOAD_TRUNCATED_IMAGES is set"):
        load_image(rgb_png)


def test_rgb_colour_key_transparency(tmp_path):
    p = tmp_path / "key.png"
    img = Image.new("RGB", (16, 16), (10, 20, 30))
    img.putpixel((0, 0), (0, 255, 0))
    img.save(p, transparency=(0, 255, 0))
    out = np.asarray(load_image(p, background=(200, 100, 50)))
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[1, 1]) == (10, 20, 30)
