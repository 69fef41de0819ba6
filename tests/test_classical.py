"""The weight-free classical comparator: level distribution, measures, interface, caching."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from adapters.base import Comparator, Pair, compare_batch, fingerprint_hash, load_comparator
from adapters.classical import (
    ClassicalComparator,
    blockiness,
    level_logprobs,
    noise_sigma,
)
from harness.data.demo_data import FAMILIES, build_demo_benchmark, manifest_items
from harness.data.images import ImageStore
from harness.core.levels import level_from_mos
from tests.test_base import assert_fingerprint_shape


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_benchmark(tmp_path_factory.mktemp("demo"), size=128, sources=["chelsea", "coffee", "camera"])


def test_level_distribution_matches_eqn2_under_gaussian_noise():
    """Independent check: sample perceived indices, label them with the shared Eqn. 2 rule."""
    rng = np.random.default_rng(0)
    sigma, n = 0.8, 400_000
    for diff in (-3.0, -1.2, 0.0, 0.5, 2.2):
        q1 = rng.normal(0.0, sigma, n)
        q2 = rng.normal(diff, sigma, n)
        labels = level_from_mos(q1, sigma, q2, sigma)
        empirical = np.bincount(labels, minlength=5) / n
        np.testing.assert_allclose(np.exp(level_logprobs(diff, sigma)[0]), empirical, atol=4e-3)


def test_level_distribution_symmetry_and_extremes():
    d = np.array([-50.0, -2.0, -0.3, 0.0, 0.3, 2.0, 50.0])
    lp = level_logprobs(d, 1.0)
    assert lp.shape == (7, 5) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(lp, level_logprobs(-d, 1.0)[:, ::-1], atol=1e-12)
    assert np.argmax(lp[3]) == 2 and np.argmax(lp[-1]) == 4 and np.argmax(lp[0]) == 0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma must be a positive finite number"):
            level_logprobs(1.0, bad)


def test_noise_estimate_recovers_known_sigma():
    rng = np.random.default_rng(1)
    for s in (0.01, 0.05):
        flat = 0.5 + rng.normal(0, s, (256, 256))
        assert noise_sigma(flat) == pytest.approx(s, rel=0.05)


def test_blockiness_sees_jpeg_grid_only():
    rng = np.random.default_rng(2)
    smooth = np.clip(np.cumsum(rng.normal(0, 2, (128, 128)), axis=1) + 128, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, "JPEG", quality=5)
    jpeg = np.asarray(Image.open(buf), dtype=float) / 255
    assert blockiness(smooth / 255.0) < 0.05
    assert blockiness(jpeg) > 0.3
    assert blockiness(np.roll(jpeg, 4, axis=(0, 1))) < blockiness(jpeg) / 2  # off-grid: no longer aligned


def test_index_ranks_the_benchmark(demo):
    comp = ClassicalComparator()
    items = manifest_items(demo)
    q = np.array([comp.quality_index(demo.abspath(r)) for r in demo.records])
    y = np.array([r.mos for r in demo.records])
    for fam in FAMILIES:
        keep = np.array([fam in r.splits for r in demo.records])
        assert spearmanr(q[keep], y[keep])[0] > 0.75, fam
    for src in {it["source"] for it in items}:
        rows = [i for i, it in enumerate(items) if it["source"] == src]
        pristine = q[rows[0]]
        assert all(q[i] < pristine for i in rows if items[i]["level"] == 5), src


def test_comparator_interface_and_pipeline_shapes(demo):
    comp = load_comparator("classical", sigma=0.7)
    assert isinstance(comp, ClassicalComparator) and isinstance(comp, Comparator)
    p = [str(demo.abspath(r)) for r in demo.records[:4]]
    pairs = [Pair(p[0], p[1]), Pair(p[1], p[0]), Pair(p[2], p[2]), Pair(p[3], p[0])]
    lp = comp.compare(pairs)
    assert lp.shape == (4, 5) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp[0], lp[1][::-1], atol=1e-12)  # swapping the order mirrors the verdict
    assert np.argmax(lp[2]) == 2  # an image against itself: similar
    res = compare_batch(comp, pairs)
    assert res.ok.all()
    np.testing.assert_allclose(res.logprobs, lp, atol=1e-12)
    json.dumps(comp.fingerprint())
    assert_fingerprint_shape(comp.fingerprint())
    assert comp.fingerprint()["extra"]["sigma"] == 0.7 and comp.fingerprint()["prompt"] is None
    assert fingerprint_hash(comp.fingerprint()) != fingerprint_hash(ClassicalComparator(sigma=1.3).fingerprint())


def test_bad_image_fails_only_its_pair(demo, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    good = [str(demo.abspath(r)) for r in demo.records[:2]]
    res = compare_batch(ClassicalComparator(), [Pair(good[0], good[1]), Pair(good[0], str(bad)),
                                                Pair(str(tmp_path / "gone.png"), good[1])])
    assert res.ok.tolist() == [True, False, False]
    assert "not an image" in res.errors[1] and "missing file" in res.errors[2]
    assert np.all(np.isnan(res.logprobs[1:])) and np.all(np.isfinite(res.logprobs[0]))


def test_measured_once_per_content(demo, tmp_path):
    store = ImageStore()
    comp = ClassicalComparator(image_store=store)
    a, b = (demo.abspath(r) for r in demo.records[:2])
    copy = tmp_path / "copy.png"
    shutil.copy(a, copy)
    comp.compare([Pair(a, b)] * 5 + [Pair(copy, b)])
    assert comp.n_measured == 2  # the copy has the same bytes: same cache entry
    assert store.decodes == 2


def test_flat_image_is_finite(tmp_path):
    p = tmp_path / "flat.png"
    Image.new("RGB", (40, 40), (90, 90, 90)).save(p)
    assert np.isfinite(ClassicalComparator().quality_index(p))


def test_model_argument_refused():
    with pytest.raises(ValueError, match="takes no model"):
        load_comparator("classical:some/model")


def test_full_pipeline_on_the_benchmark(demo):
    """Anchors (Eqn. 4) + comparator matrix + exact MAP, as bench/classical_benchmark.py runs it.

    With fixed anchors the MAP score is a monotone function of the preferences, which are monotone
    in the quality index: the pipeline must rank exactly as the raw index does (an independent
    route to the same ranking), and well above chance against the ground truth."""
    from bench.classical_benchmark import score_benchmark

    comp = ClassicalComparator()
    run = score_benchmark(comp, demo)
    scored = run["scored"]
    assert run["n_failed"] == 0 and scored.converged.all() and not scored.failed.any()
    assert len(run["selection"].indices) == 5
    A = run["anchor_matrix"]
    np.testing.assert_allclose(A + A.T, 1.0, atol=1e-12)
    index = np.array([comp.quality_index(p) for p in run["paths"]])
    assert spearmanr(scored.score, index)[0] == pytest.approx(1.0, abs=1e-12)
    assert spearmanr(scored.score, run["mos"])[0] > 0.8


# --- version 2: quantisation and lost resolution (held-out families; docs in adapters/classical.py) ---

def _photo(demo, name="chelsea/pristine.png"):
    return np.asarray(Image.open(demo.root / name).convert("RGB"))


def test_quantisation_is_the_level_gap_as_noise_sd(demo):
    from adapters.classical import quantisation_sigma

    x = _photo(demo)
    assert quantisation_sigma(x) == pytest.approx(1 / 255 / np.sqrt(12))  # every level in its range used
    for levels in (16, 5, 3):
        q = (np.round(x / 255 * (levels - 1)) * (255 / (levels - 1))).round().astype(np.uint8)
        step = 255 / (levels - 1)
        assert quantisation_sigma(q) == pytest.approx(step / 255 / np.sqrt(12), rel=0.02)


def test_block_width_and_content_of_a_pixelated_image(demo):
    from adapters.classical import block_content, block_width

    x = _photo(demo)
    assert block_width(x, 0) == block_width(x, 1) == 1.0 and block_content(x) is x
    for b in (2, 3, 4):
        small = x[::b, ::b]
        big = np.repeat(np.repeat(small, b, axis=0), b, axis=1)
        assert block_width(big, 0) == block_width(big, 1) == b
        np.testing.assert_array_equal(block_content(big), small)


def test_channel_shift_finds_a_misregistration_and_nothing_else(demo):
    from adapters.classical import channel_shift

    x = _photo(demo)
    assert [channel_shift(x, c, a) for c in (0, 2) for a in (0, 1)] == [0, 0, 0, 0]
    for d in (1, 3, 6):
        y = x.copy()
        y[:, :, 0] = np.roll(x[:, :, 0], d, axis=1)
        y[:, :, 2] = np.roll(x[:, :, 2], -d, axis=1)
        assert (channel_shift(y, 0, 1), channel_shift(y, 2, 1), channel_shift(y, 0, 0)) == (d, -d, 0)
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 60, x.shape), 0, 255).astype(np.uint8)
    assert channel_shift(noisy, 0, 1) == channel_shift(noisy, 2, 0) == 0


def test_version_2_measures_leave_the_demo_untouched(demo):
    """Both new impairments are 0 on every demo image, so the demo's figures are version 1's."""
    from adapters.classical import MEASURES, measure_image

    for rec in demo.records:
        m = measure_image(Image.open(demo.abspath(rec)).convert("RGB"))
        assert MEASURES["quantisation"].impairment(m["quantisation"]) == 0.0, rec.path
        assert MEASURES["resolution"].impairment(m["resolution"]) == 0.0, rec.path


# --- version 3: band limit and over-saturation (docs/classical.md) ---

def _low_pass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """A brick-wall low-pass at `cutoff` cycles/pixel (radial), as the held-out set's ringing family makes it."""
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
    keep = (np.hypot(fy, fx) <= cutoff)[:, :, None]
    y = np.real(np.fft.ifft2(np.fft.fft2(x.astype(float), axes=(0, 1)) * keep, axes=(0, 1)))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def test_band_edge_finds_a_brick_wall_cutoff_and_no_edge_in_a_photograph(demo):
    from adapters.classical import _luma, band_edge, band_limit_sigma

    x = _photo(demo)
    assert band_edge(_luma(x)) == 0.5 and band_limit_sigma(_luma(x)) == 0.0  # a sharp photograph: signal to Nyquist
    # the Hann window's main lobe spreads each frequency over +-2 bins of the shorter side, rings are 1/n wide
    tolerance = 2.0 / min(x.shape[:2]) + 1.0 / max(x.shape[:2])
    for cutoff in (0.3, 0.2, 0.1):
        assert abs(band_edge(_luma(_low_pass(x, cutoff))) - cutoff) <= tolerance, cutoff
    flat = np.full((40, 40, 3), 90, np.uint8)
    assert band_edge(_luma(flat)) == 0.0 and band_limit_sigma(_luma(flat)) == np.inf
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert band_edge(_luma(noise)) == 0.5


def test_mtf50_constant_is_where_a_gaussian_passes_half():
    """MTF50_SD checked against the Gaussian's transfer function integrated numerically."""
    from scipy.integrate import quad
    from scipy.stats import norm

    from adapters.classical import MTF50_SD

    for sd in (0.8, 1.5, 3.0):
        f50 = MTF50_SD / sd
        mtf = quad(lambda t: norm.pdf(t, scale=sd) * np.cos(2 * np.pi * f50 * t), -12 * sd, 12 * sd)[0]
        assert mtf == pytest.approx(0.5, abs=1e-9)


def test_colourfulness_scales_with_a_chroma_gain_and_over_saturation_starts_beyond_the_demo(demo):
    from adapters.classical import NATURAL_COLOURFULNESS, colourfulness, over_saturation
    from harness.data.demo_data import DEFAULT_SOURCES, _pristine, _to_uint8

    x = _photo(demo).astype(float)
    grey = (x @ np.array([0.299, 0.587, 0.114]))[:, :, None]
    for gain in (0.5, 1.5):  # unclipped: the opponent channels are linear in the chroma x - grey
        y = grey + (x - grey) * gain
        assert colourfulness(y) == pytest.approx(gain * colourfulness(x), rel=1e-9)
    assert colourfulness(np.repeat(x[:, :, :1], 3, axis=2)) == 0.0 and over_saturation(grey.repeat(3, 2)) == 0.0
    natural = [colourfulness(_to_uint8(_pristine(s, 256))) for s in DEFAULT_SOURCES]
    assert max(natural) == pytest.approx(NATURAL_COLOURFULNESS, abs=0.05)  # the constant's source
    push = np.clip(grey + (x - grey) * 4.0, 0, 255)
    assert over_saturation(push) > 0 and over_saturation(x) == 0.0


def test_band_limit_and_blur_count_once(demo):
    """A brick-wall low-pass lowers the index; band limit and blur are one loss: the larger counts."""
    from adapters.classical import SAME_LOSS, impairments, index_from_measures, measure_image

    x = _photo(demo)
    m = measure_image(x)
    lp = measure_image(_low_pass(x, 0.12))
    assert index_from_measures(lp) < index_from_measures(m) - 1.0
    imp = impairments(lp)
    others = sum(v for k, v in imp.items() if k not in SAME_LOSS[0])
    assert index_from_measures(lp) == pytest.approx(-(others + max(imp["blur"], imp["band_limit"])))


def test_version_3_ranks_ringing_and_over_saturation_on_a_held_out_photograph(tmp_path):
    """Version 2 ranked neither (ringing levels 1-3 all read 0; saturation raised the index). Pristine is
    left out of the ringing order: its fine texture reads as noise, which the low-pass removes (docs/classical.md)."""
    from harness.data.heldout_data import build_heldout_benchmark

    ds = build_heldout_benchmark(tmp_path, size=128, sources=["ihc"])
    comp = ClassicalComparator()
    q = {r.path.rsplit("/", 1)[1][:-4]: comp.quality_index(ds.abspath(r)) for r in ds.records}
    ringing = [q[f"ringing_{k}"] for k in range(1, 6)]
    assert all(a > b for a, b in zip(ringing, ringing[1:])), ringing
    saturation = [q[f"saturation_{k}"] for k in range(2, 6)]
    assert all(a > b for a, b in zip(saturation, saturation[1:])) and q["saturation_3"] < q["pristine"], saturation
