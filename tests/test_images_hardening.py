"""Hostile image files: every one either loads to RGB or fails as an `ImageError` naming its path.

A mutation corpus built from small images of many formats and modes (truncations, flipped and
zeroed bytes, spliced blocks, decompression bombs in PNG text and ICC chunks, bogus EXIF, huge
declared sizes, bad JPEG markers...) goes through every entry point that reads an image; nothing
else may escape, because one escaped exception aborts a run or fails a whole batch.
"""
from __future__ import annotations

import io
from pathlib import Path
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from harness.data.images import ImageError, ImageStore, Limits, load_image, probe_image, unreadable

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
def made():
    """The valid base files and the format-aware splices, built once for the module."""
    bases = base_files()
    return bases, spliced(bases)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, made):
    folder = tmp_path_factory.mktemp("corpus")
    bases, splices = made
    files = {**bases, **splices, **mutated(bases, np.random.default_rng(SEED))}
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


# --- the bombs Pillow raises ValueError for, one by one, through every reader -------------------------------
BOMBS = ("ztxt_bomb.png", "itxt_bomb.png", "iccp_bomb.png", "many_text.png")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory, made):
    folder = tmp_path_factory.mktemp("bombs")
    for name in BOMBS:
        (folder / name).write_bytes(made[1][name])
    return folder


@pytest.mark.parametrize("name", BOMBS)
def test_metadata_bombs_fail_their_image_only(bombs, name, tmp_path):
    from harness.data.datasets import DatasetError, load_plain_csv

    path = bombs / name
    for fn in (load_image, probe_image, ImageStore().get):
        with pytest.raises(ImageError, match="cannot read image header") as info:
            fn(path)
        assert info.value.path == str(path)
    assert unreadable([path]) == [f"  - {path}: {info.value.reason}"]
    good = tmp_path / "good.png"
    _photo().save(good)
    (tmp_path / "bomb.png").write_bytes(path.read_bytes())
    (tmp_path / "d.csv").write_text("good.png,1\nbomb.png,2\n")
    with pytest.raises(DatasetError, match="bomb.png: cannot read image header"):
        load_plain_csv(tmp_path / "d.csv", tmp_path)
    ds = load_plain_csv(tmp_path / "d.csv", tmp_path, drop_bad=True)
    assert [r.path for r in ds.records] == ["good.png"] and [p.where for p in ds.report.dropped] == ["bomb.png"]


# --- a small world for the command line: photos, a manifest, anchors of the user's own ---------------------
def _noise_png(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def world(tmp_path):
    import json

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for k in range(4):
        _noise_png(imgs / f"t{k}.png", 48, 40, seed=k)
    (imgs / "set.csv").write_text("".join(f"t{k}.png,{k + 1}\n" for k in range(4)))
    anchors = [str(_noise_png(tmp_path / f"a{k}.png", 40, 40, seed=10 + k)) for k in range(3)]
    (tmp_path / "anchors.json").write_text(json.dumps({"images": anchors, "mos": [1.0, 2.0, 3.0],
                                                       "std": [0.3, 0.3, 0.3]}))
    return tmp_path


def _score(world, *extra, images=None):
    import csv

    from harness.cli import main

    rc = main(["score", "--model", "classical", "--images", *(images or [str(world / "imgs")]), "--anchors",
               str(world / "anchors.json"), "--cache", str(world / "c.sqlite"), "--out", str(world / "s.csv"), *extra])
    rows = list(csv.DictReader(open(world / "s.csv"))) if (world / "s.csv").is_file() else []
    return rc, {Path(r["image"]).name: r for r in rows}


def _run(world, *extra):
    from harness.cli import main

    return main(["run", "--model", "classical", "--dataset", f"d={world / 'imgs' / 'set.csv'}", "--anchors",
                 str(world / "anchors.json"), "--cache", str(world / "c.sqlite"), "--out", str(world / "runs"),
                 "--run-id", "r", "--no-report", *extra])


def test_score_fails_only_the_bomb_not_its_batch(world, bombs):
    (world / "imgs" / "bomb.png").write_bytes((bombs / "ztxt_bomb.png").read_bytes())
    _, rows = _score(world)  # the exit code of a partial result is docs/architecture.md's "Exit codes"
    assert set(rows) == {"bomb.png", "t0.png", "t1.png", "t2.png", "t3.png"}
    assert rows["bomb.png"]["status"] != "ok" and "cannot read image header" in rows["bomb.png"]["error"]
    assert all(rows[f"t{k}.png"]["status"] == "ok" for k in range(4))


def test_datasets_check_lists_a_bomb_and_goes_on(world, bombs, capsys):
    from harness.cli import main

    (world / "imgs" / "t3.png").write_bytes((bombs / "iccp_bomb.png").read_bytes())
    assert main(["datasets", "check", f"d={world / 'imgs' / 'set.csv'}", "--root", str(world / "imgs")]) != 0
    out = capsys.readouterr().out
    assert "3 images usable, 1 problem(s) (headers read; --decode decodes every image)" in out
    assert "t3.png: cannot read image header" in out


def test_datasets_check_decode_finds_what_headers_hide(world, capsys):
    from harness.cli import main

    data = (world / "imgs" / "t2.png").read_bytes()
    (world / "imgs" / "t2.png").write_bytes(data[: len(data) // 2])
    args = ["datasets", "check", f"d={world / 'imgs' / 'set.csv'}", "--root", str(world / "imgs")]
    assert main(args) == 0
    assert main([*args, "--decode"]) != 0
    out = capsys.readouterr().out
    assert "3 images usable, 1 problem(s) (every image decoded)" in out and "t2.png: truncated or corrupt" in out


@pytest.mark.parametrize("damage", ["half", "tail", "idat"])
def test_a_truncated_anchor_stops_the_run_before_any_model_work(world, damage, capsys):
    anchor = world / "a1.png"
    data = anchor.read_bytes()
    cut = {"half": data[: len(data) // 2], "tail": data[:-30],
           "idat": data[:data.index(b"IDAT") + 40]}[damage]  # header and the start of the pixels only
    anchor.write_bytes(cut)
    assert probe_image(anchor) == (40, 40) and unreadable([anchor]) == []  # the header check cannot see it
    assert _run(world) == 2
    err = capsys.readouterr().err
    assert "1 anchor image(s) cannot be used" in err and f"{anchor}: truncated or corrupt" in err
    assert not (world / "runs" / "r").exists()


@pytest.mark.parametrize("size", [(1, 1), (15, 200), (200, 15), (3, 3)])
def test_tiny_images_are_refused_with_their_size(tmp_path, size):
    p = tmp_path / "tiny.jpg"
    Image.new("RGB", size, (10, 20, 30)).save(p)
    w, h = size
    for fn in (load_image, probe_image):
        with pytest.raises(ImageError, match=f"too small: {w}x{h}, a side under min_side=16 pixels"):
            fn(p)
    assert load_image(p, limits=Limits(min_side=1)).size == size
    Image.new("RGB", (16, 16)).save(p)
    assert load_image(p).size == (16, 16)


def test_score_applies_the_image_limits_of_the_command_line(world):
    _noise_png(world / "imgs" / "big.png", 64, 64, seed=5)
    _noise_png(world / "imgs" / "thin.png", 60, 30, seed=6)
    _, rows = _score(world, "--max-pixels", "3000", "--min-side", "40")
    assert "over the pixel limit: 64x64 = 4096 pixels > max_pixels=3000" in rows["big.png"]["error"]
    assert "too small: 60x30, a side under min_side=40 pixels" in rows["thin.png"]["error"]
    assert all(rows[f"t{k}.png"]["status"] == "ok" for k in range(4))  # 48x40: inside both limits


def test_run_refuses_what_the_limits_refuse_and_drop_bad_goes_on(world, capsys):
    _noise_png(world / "imgs" / "t1.png", 64, 64, seed=5)
    assert _run(world, "--max-pixels", "3000") == 2
    assert "t1.png: over the pixel limit: 64x64" in capsys.readouterr().err
    assert _run(world, "--max-pixels", "3000", "--drop-bad") in (0, 3)
    from harness.run.record import read_run

    assert sorted(r.image for r in read_run(world / "runs" / "r").scores) == ["t0.png", "t2.png", "t3.png"]


@pytest.mark.parametrize("value", [True, 1.5, "abc", "2.5", 0, -4, None])
def test_image_limits_in_the_run_config_take_whole_numbers_only(value):
    from harness.run.config import configs_from_dict

    for key in ("max_pixels", "min_side"):
        with pytest.raises(ValueError, match=key):
            configs_from_dict({"model": "classical", "datasets": ["demo"], key: value})


@pytest.mark.parametrize("command", [["run", "--model", "classical", "--dataset", "demo", "--dry-run"],
                                     ["datasets", "check", "demo"], ["compare", "--model", "classical", "a", "b"]])
@pytest.mark.parametrize("flag", [["--max-pixels", "0"], ["--min-side", "-1"], ["--max-pixels", "1.5"],
                                  ["--min-side", "x"]])
def test_image_limit_flags_take_whole_numbers_from_one_on(command, flag, capsys):
    from harness.cli import main

    try:
        rc = main([*command, *flag])
    except SystemExit as exc:  # argparse's own refusal of a value that is not an int
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "error" in err and flag[0][2:].replace("-", "_") in err.replace("-", "_")


def test_image_limits_in_the_run_config_accept_whole_numbers_as_text():
    from harness.run.config import configs_from_dict

    (cfg,) = configs_from_dict({"model": "classical", "datasets": ["demo"], "max_pixels": "1e6", "min_side": 8.0})
    assert (cfg.max_pixels, cfg.min_side) == (1_000_000, 8) and cfg.image_limits == Limits(1_000_000, 8)
    (cfg,) = configs_from_dict({"model": "classical", "datasets": ["demo"]})
    assert cfg.image_limits == Limits()


def test_image_limits_apply_process_wide_and_are_restored(tmp_path):
    from harness.data.images import current_limits, default_store, image_limits

    p = _noise_png(tmp_path / "x.png", 32, 32, seed=1)
    pillow = Image.MAX_IMAGE_PIXELS
    with image_limits(Limits(max_pixels=10**10, min_side=40)):
        assert current_limits() == Limits(10**10, 40) and Image.MAX_IMAGE_PIXELS == 10**10
        with pytest.raises(ImageError, match="too small"):
            default_store().get(p)
    assert current_limits() == Limits() and Image.MAX_IMAGE_PIXELS == pillow
    assert default_store().get(p).size == (32, 32)  # the refusal was remembered under those limits only


# --- memory: a byte budget, and no full-size copies in the conversions --------------------------------------
def _pngs(folder, sizes):
    return [_noise_png(folder / f"{k}.png", w, h, seed=k) for k, (w, h) in enumerate(sizes)]


def test_store_is_bounded_by_bytes_not_images(tmp_path):
    small = _pngs(tmp_path, [(16, 16)] * 4)  # 1 KiB each as RGB (4 bytes a pixel)
    store = ImageStore(max_bytes=2 * 16 * 16 * 4)
    for p in small:
        store.get(p)
        assert store.nbytes <= store.max_bytes
    assert len(store) == 2
    big = _noise_png(tmp_path / "big.png", 64, 64, seed=9)
    assert store.get(big).size == (64, 64)  # larger than the whole budget: returned, not kept
    assert len(store) == 2 and store.get(small[-1]) and store.hits == 1  # and nothing was evicted for it
    bad = []
    for k in range(20):
        (tmp_path / f"bad{k}.png").write_text("no")
        bad.append(tmp_path / f"bad{k}.png")
    store = ImageStore(max_bytes=5 * 1024)
    for p in bad:
        with pytest.raises(ImageError):
            store.get(p)
    assert len(store) == 5  # remembered failures count against the budget too


@pytest.mark.parametrize("value", [-1, True, 1.5, "1"])
def test_store_budget_is_a_whole_number(value):
    with pytest.raises(ValueError, match="max_bytes"):
        ImageStore(max_bytes=value)


def test_store_failure_names_the_path_asked_for(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    link = tmp_path / "link_name.png"
    link.symlink_to(bad)
    store = ImageStore()
    with pytest.raises(ImageError):
        store.get(bad)
    with pytest.raises(ImageError) as info:
        store.get(link)
    assert info.value.path == str(link) and str(bad) not in str(info.value)


def test_strip_conversions_equal_the_whole_image_formulas(tmp_path, monkeypatch):
    """The row-block conversions (a few MB of temporaries, whatever the image size) give the same pixels as
    the whole-image formulas they replace, here with blocks of one row."""
    import harness.data.images as images

    monkeypatch.setattr(images, "_BLOCK_PIXELS", 7)
    rng = np.random.default_rng(SEED)
    rgba = Image.fromarray(rng.integers(0, 256, (23, 31, 4), dtype=np.uint8), "RGBA")
    for img in (rgba, rgba.convert("LA"), rgba.convert("P")):
        if img.mode == "P":
            img.info["transparency"] = 3
        for bg in ((255, 255, 255), (7, 99, 200)):
            whole = Image.alpha_composite(Image.new("RGBA", img.size, bg + (255,)), img.convert("RGBA"))
            assert np.array_equal(np.asarray(images.to_rgb(img, background=bg)), np.asarray(whole.convert("RGB")))
    deep = rng.integers(0, 65536, (23, 31)).astype(np.uint16)
    assert np.array_equal(images._scale_to_uint8(deep, "I;16", tmp_path), np.rint(deep / 257.0).astype(np.uint8))
    neg = rng.normal(0, 1000, (23, 31)).astype(np.float32)
    lo, hi = float(neg.min()), float(neg.max())
    expected = np.clip(np.rint((neg.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    assert np.array_equal(images._scale_to_uint8(neg, "F", tmp_path), expected)
    with pytest.raises(ImageError, match="non-finite"):
        images._scale_to_uint8(np.array([[0.0, np.nan]], np.float32), "F", tmp_path)


# --- names stay as the user gave them ------------------------------------------------------------------------
def test_score_reports_a_symlink_under_its_own_name(world):
    target = world / "imgs" / "t0.png"
    link = world / "elsewhere_link.png"
    link.symlink_to(target)
    (world / "imgs" / "inside_link.png").symlink_to(world / "imgs" / "t1.png")
    rc, rows = _score(world, images=[str(world / "imgs"), str(link)])
    assert rc == 0 and rows["elsewhere_link.png"]["image"] == str(link)
    assert rows["inside_link.png"]["image"] == str(world / "imgs" / "inside_link.png")
    assert rows["elsewhere_link.png"]["score"] == rows["t0.png"]["score"]  # the same content, the same score


def test_run_reports_a_symlink_under_its_own_name(world):
    from harness.run.record import read_run

    (world / "imgs" / "renamed.png").symlink_to(world / "imgs" / "t0.png")
    (world / "imgs" / "set.csv").write_text("renamed.png,1\nt1.png,2\nt2.png,3\nt3.png,4\n")
    assert _run(world) == 0
    assert sorted(r.image for r in read_run(world / "runs" / "r").scores) == ["renamed.png", "t1.png", "t2.png",
                                                                              "t3.png"]
