"""Scatter plots: real PNGs, the fitted curve drawn only when the fit succeeded, one per dataset."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.core.metrics import fit_logistic
import harness.report.plots as plots
from harness.report.plots import scatter_plot, write_plots
from tests.test_reports import make_run, synthetic_dataset

CURVE_RGB = np.array([0xD6, 0x27, 0x28])


def _curve_pixels(png) -> int:
    """Pixels of the fitted curve's colour (nothing else in the plot uses it)."""
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return int(np.sum(np.all(np.abs(rgb - CURVE_RGB) < 20, axis=-1)))


def test_scatter_plot_draws_the_fitted_curve(tmp_path):
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 100, 80)
    mos = 1 + 4 / (1 + np.exp(-(pred - 50) / 12)) + rng.normal(0, 0.2, 80)
    fit = fit_logistic(pred, mos)
    assert fit.ok
    out = scatter_plot(pred, mos, fit, "LIVE (split 1)", tmp_path / "deep" / "a.png")
    assert out == tmp_path / "deep" / "a.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 300
    assert _curve_pixels(out) > 200


def test_scatter_plot_with_failed_fit_draws_no_curve(tmp_path):
    pred = np.array([1.0, 2.0, 3.0])            # too few points for a 4-parameter fit
    mos = np.array([1.0, 2.0, 3.5])
    fit = fit_logistic(pred, mos)
    assert not fit.ok
    out = scatter_plot(pred, mos, fit, "tiny", tmp_path / "b.png")
    assert out.stat().st_size > 0 and _curve_pixels(out) == 0


def test_scatter_plot_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        scatter_plot(np.ones(3), np.ones(4), None, "x", tmp_path / "c.png")
    with pytest.raises(ValueError, match="no finite"):
        scatter_plot(np.full(3, np.nan), np.ones(3), None, "x", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_write_plots_one_png_per_dataset(tmp_path):
    live_rows, live = synthetic_dataset(1, splits=("1", "2"), n_failed=2)
    koniq_rows, koniq = synthetic_dataset(2, splits=("2", "all"))
    bid_rows, bid = synthetic_dataset(3, n_images=8, splits=("all",), n_failed=8)   # nothing to plot
    run_dir = make_run(tmp_path, "r", {"LIVE": live, "KonIQ": koniq, "BID": bid},
                       scores={"LIVE": live_rows, "KonIQ": koniq_rows, "BID": bid_rows})
    paths = write_plots(run_dir)
    # split "all" where present, else the first split; no plot for a dataset with no scored image
    assert [p.relative_to(run_dir).as_posix() for p in paths] == ["plots/scatter_LIVE_1.png",
                                                                   "plots/scatter_KonIQ_all.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _curve_pixels(p) > 200


def test_whole_dataset_plot_uses_every_scored_image_once(tmp_path, monkeypatch):
    # runner-style: scores.csv has a row per image and split; the "all" group is every image once
    rows, ds = synthetic_dataset(4, n_images=50, splits=("all", "1", "2"), n_failed=5, summary_over="splits")
    run_dir = make_run(tmp_path, "r", {"SPAQ": ds}, scores={"SPAQ": rows})
    drawn = []
    monkeypatch.setattr(plots, "scatter_plot", lambda pred, mos, fit, title, out, **kw: drawn.append((pred, mos)) or out)
    write_plots(run_dir)
    ok = {r["image"]: (r["score"], r["mos"]) for r in rows if r["status"] == "ok"}
    assert len(ok) == 45 and len(drawn) == 1
    pred, mos = drawn[0]
    assert sorted(zip(pred, mos)) == sorted(ok.values())


def _rgb_pixels(png, hex_colour: str, alpha=plots.POINT_ALPHA) -> int:
    """Pixels of a colour as drawn on white with `alpha` (the points' by default)."""
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    colour = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    target = alpha * colour + (1 - alpha) * 255
    return int(np.sum(np.all(np.abs(rgb - target) < 12, axis=-1)))


def test_groups_are_coloured_error_bars_drawn_and_long_titles_wrapped(tmp_path):
    rng = np.random.default_rng(1)
    pred = rng.uniform(0, 10, 60)
    mos = 1 + 4 / (1 + np.exp(-(pred - 5))) + rng.normal(0, 0.1, 60)
    groups = ["blur" if k % 2 else "noise" for k in range(60)]
    title = "LIVE (split all): " + "a-very-long-model-label-" * 6 + ", paper, soft"
    seen = {}
    real_set_title = plots.Figure.add_subplot

    def spy(fig, *a, **kw):
        ax = real_set_title(fig, *a, **kw)
        original = ax.set_title
        ax.set_title = lambda text, **k: seen.setdefault("title", text) and original(text, **k)
        return ax
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots.Figure, "add_subplot", spy)
        out = scatter_plot(pred, mos, fit_logistic(pred, mos), title, tmp_path / "g.png", sd=np.full(60, 0.8),
                           groups=groups)
    assert _rgb_pixels(out, plots.GROUP_COLOURS[0]) > 50 and _rgb_pixels(out, plots.GROUP_COLOURS[1]) > 50
    assert all(len(line) <= plots.TITLE_WIDTH for line in seen["title"].splitlines())
    assert seen["title"].replace("\n", "").replace(" ", "") == title.replace(" ", "")
    plain = scatter_plot(pred, mos, None, "x", tmp_path / "p.png")
    assert _rgb_pixels(plain, plots.GROUP_COLOURS[1]) == 0
    bars = scatter_plot(pred, mos, None, "x", tmp_path / "e.png", sd=np.full(60, 0.8))
    no_bars = scatter_plot(pred, mos, None, "x", tmp_path / "n.png")
    bar_pixels = [_rgb_pixels(p, plots.GROUP_COLOURS[0], plots.BAR_ALPHA) for p in (bars, no_bars)]
    assert bar_pixels[0] > 100 and bar_pixels[0] > 5 * bar_pixels[1]


def test_score_sd_follows_an_affine_scale_only():
    class Row:
        def __init__(self, score, latent, sd):
            self.score, self.latent, self.sd = score, latent, sd
    latent = np.array([-1.0, 0.0, 2.0])
    affine = [Row(3 * x + 1, x, 0.1) for x in latent]
    assert np.allclose(plots.score_sd(affine), 0.3)
    assert plots.score_sd([Row(x * x, x, 0.1) for x in latent]) is None     # per-image min-max: no sd
