"""The viewer in a real browser (headless Chromium, one per session; harness.tools.browser), on a real run of
the offline demo: no console error, the numbers of scores.csv, sorting, an image's pairs, links that resolve."""
from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from harness.report.gallery import residuals
from harness.report.viewer import build_site, serve
from harness.tools.browser import open_page

LEVELS = 5


@pytest.fixture(scope="module")
def site(demo_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser-site") / "view"
    build_site(demo_runs, out)
    return out


@pytest.fixture
def page(chromium_context, site):
    page = open_page(chromium_context, (site / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    yield page
    errors = page.errors
    page.close()
    assert not errors, errors


def scores(run_dir: Path) -> dict[str, dict]:
    with open(run_dir / "scores.csv", newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def table(page) -> list[dict]:
    return page.eval_on_selector_all("#images tbody tr", """rows => rows.map(r => ({
        image: r.querySelector('td.name').textContent, mos: r.querySelector('td.mos').textContent,
        score: r.querySelector('td.score').textContent, residual: r.querySelector('td.residual').textContent}))""")


def test_the_table_shows_the_numbers_of_scores_csv(page, demo_runs):
    want = scores(demo_runs[0])
    rows = table(page)
    assert len(rows) == 100 and page.inner_text(".pager").startswith("260 images")
    for row in rows:
        assert row["score"] == f"{float(want[row['image']]['score']):.3f}"
        assert row["mos"] == f"{float(want[row['image']]['mos']):.3f}"


def test_sorting_by_residual_puts_the_largest_first_and_filters_narrow_the_table(page, demo_runs):
    rows = list(scores(demo_runs[0]).values())
    res, _ = residuals([float(r["score"]) for r in rows], [float(r["mos"]) for r in rows], [True] * len(rows), True)
    page.click("th[data-key=residual]")
    shown = [abs(float(r["residual"])) for r in table(page)]
    assert shown[0] == pytest.approx(np.nanmax(np.abs(res)), abs=6e-4)
    assert shown == sorted(shown, reverse=True)
    worst = page.inner_text("#worst .card div:nth-child(2)")
    assert table(page)[0]["image"] == worst
    page.click("th[data-key=residual]")  # again: smallest first
    assert abs(float(table(page)[0]["residual"])) == pytest.approx(np.nanmin(np.abs(res)), abs=6e-4)
    page.select_option("#split", "jpeg")
    n_jpeg = sum(1 for r in csv.DictReader(open(demo_runs[0] / "scores.csv")) if r["split"] == "jpeg")
    assert page.inner_text(".pager").startswith(f"{n_jpeg} images")
    page.fill("#q", "moon/")
    assert all(r["image"].startswith("moon/") for r in table(page)) and table(page)


def test_an_image_opens_its_pairs_with_five_bars_per_anchor(page, demo_runs):
    name = table(page)[0]["image"]
    page.click("#images tbody tr:first-child td.name a")
    page.wait_for_selector(".anchor-pair")
    assert page.inner_text("h2") == name
    n_runs, n_anchors = len(demo_runs), 5
    assert page.locator(".anchor-pair").count() == n_runs * n_anchors
    bars = page.eval_on_selector_all(".dist", "ds => ds.map(d => d.querySelectorAll('.bar').length)")
    assert bars == [LEVELS] * (n_runs * n_anchors)
    probs = page.eval_on_selector_all(".dist", "ds => ds.map(d => [...d.querySelectorAll('.p')].map(p => +p.textContent))")
    assert all(abs(sum(p) - 1) < 0.01 for p in probs)
    assert "cache key:" in page.inner_text(".dist") and page.locator("#across tr").count() == n_runs + 1
    with open(demo_runs[0] / "comparisons.csv", newline="") as f:
        pref = next(float(r["preference"]) for r in csv.DictReader(f) if r["second"].endswith(name))
    assert f"P(better): {pref:.3f}" in page.inner_text(".dist")


def test_the_disagreement_list_ranks_images_by_spread(page):
    page.click("#nav-disagree")
    page.wait_for_selector("#disagree")
    spreads = page.eval_on_selector_all("#disagree tr td:nth-child(4)", "ts => ts.map(t => +t.textContent)")
    assert len(spreads) == 100 and spreads == sorted(spreads, reverse=True) and spreads[0] > 0


def test_every_link_resolves_from_file_and_over_http(page, site):
    page.click("a[href='#/files']")
    page.wait_for_selector("ul.files")
    hrefs = page.eval_on_selector_all("ul.files a[href]", "as => as.map(a => a.href)")
    files = [h for h in hrefs if h.startswith("file:")]
    assert len(files) == 4 * 6  # scores, comparisons, manifest, metrics, report.html, report.md per run
    for href in files:
        assert Path(unquote(urlparse(href).path)).is_file(), href
    server, url = serve(site)
    try:
        for href in files:
            rel = Path(unquote(urlparse(href).path)).relative_to(site).as_posix()
            assert page.context.request.get(url.replace("index.html", rel)).status == 200, rel
    finally:
        server.shutdown()
        server.server_close()
    page.goto((site / "index.html").as_uri())
    page.wait_for_function("[...document.querySelectorAll('#worst img')].every(i => i.complete)")
    broken = page.eval_on_selector_all("#worst img", "is => is.filter(i => !i.complete || i.naturalWidth === 0).length")
    assert broken == 0


def test_the_leaderboard_sorts_filters_and_links_to_reports_and_the_viewer(chromium_context, demo_runs, site, tmp_path):
    from harness.report.leaderboard import build_leaderboard, write_leaderboard

    out = tmp_path / "lb"
    write_leaderboard(build_leaderboard(demo_runs), out, formats=("html",), viewer=site)
    page = open_page(chromium_context, (out / "leaderboard.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    srcc = "#leaderboard tbody tr:not([hidden]) td:nth-child(6)"
    page.click("th:text-is('SRCC')")
    values = [float(v) for v in page.eval_on_selector_all(srcc, "ts => ts.map(t => t.dataset.v)")]
    assert len(values) == 4 and values == sorted(values, reverse=True)
    page.click("th:text-is('SRCC')")
    assert [float(v) for v in page.eval_on_selector_all(srcc, "ts => ts.map(t => t.dataset.v)")] == sorted(values)
    page.click("th:text-is('Model')")
    page.select_option("select[data-filter=profile]", "official")
    profiles = page.eval_on_selector_all("#leaderboard tbody tr:not([hidden]) td:nth-child(2)", "ts => ts.map(t => t.textContent)")
    assert profiles == ["official", "official"]
    hrefs = page.eval_on_selector_all("#leaderboard tbody tr:not([hidden]) a", "as => as.map(a => a.href)")
    reports = [h for h in hrefs if h.endswith("report.html")]
    assert len(reports) == 2 and all(Path(unquote(urlparse(h).path)).is_file() for h in reports)
    viewer = next(h for h in hrefs if "#/run/" in h)
    run_id = viewer.rsplit("/", 1)[1]
    page.goto(viewer)
    page.wait_for_selector("#images")
    assert run_id in page.eval_on_selector("#run", "s => s.options[s.selectedIndex].value + ' ' + "
                                                  "window.C2S_DATA.runs[+s.value].run_id")
    assert not page.errors, page.errors
    page.close()
