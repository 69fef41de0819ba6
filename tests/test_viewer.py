"""`c2s view` without a browser: the residuals against an independent computation, the site's data against
the run files, thumbnail caching and size, refusals, and the --serve server (docs/viewer.md)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.report.gallery import Thumbnails, residuals
from harness.report.viewer import MARKER, _prompt, build_site, serve
from tests.conftest import REPO


def site_json(site: Path) -> dict:
    text = (site / "data.js").read_text()
    assert text.startswith("window.C2S_DATA=") and text.endswith(";\n")
    return json.loads(text[len("window.C2S_DATA="):-2])


@pytest.fixture(scope="module")
def site(demo_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "view"
    build_site(demo_runs, out)
    return out


def test_residuals_match_an_independent_fit_and_ranking():
    rng = np.random.default_rng(3)
    mos = rng.uniform(1, 5, 40)
    score = 2 * mos + rng.normal(0, 1, 40)
    ok = np.ones(40, bool)
    ok[[3, 7]] = False
    score[7] = np.nan
    res, rank_err = residuals(score, mos, ok, True)
    fit = stats.linregress(score[ok], mos[ok])
    assert np.allclose(res[ok], fit.slope * score[ok] + fit.intercept - mos[ok])
    assert np.isnan(res[~ok]).all() and np.isnan(rank_err[~ok]).all()
    # rank 1 = best: position in the descending order, by score and by MOS
    by_score = np.empty(38)
    by_score[np.argsort(-score[ok])] = np.arange(1, 39)
    by_mos = np.empty(38)
    by_mos[np.argsort(-mos[ok])] = np.arange(1, 39)
    assert np.array_equal(rank_err[ok], by_score - by_mos)
    # a lower-is-better MOS (e.g. DMOS) turns the MOS ranking round
    _, flipped = residuals(score, -mos, ok, False)
    assert np.array_equal(flipped[ok], rank_err[ok])


def test_constant_scores_have_no_residual_but_a_rank_error():
    res, rank_err = residuals([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [True] * 3, True)
    assert np.isnan(res).all() and np.isfinite(rank_err).all()


def test_the_site_shows_each_runs_numbers_as_in_scores_csv(site, demo_runs):
    data = site_json(site)
    images = data["images"]
    assert len(images["image"]) == 260 and len(data["runs"]) == len(demo_runs) == 4
    assert len(data["anchors"]) == 5 and all(a["thumb"] and a["hash"] for a in data["anchors"])
    for run, run_dir in zip(data["runs"], demo_runs):
        with open(run_dir / "scores.csv", newline="") as f:
            for row in csv.DictReader(f):
                i = images["image"].index(row["image"])
                assert row["split"] in images["splits"][i]
                assert run["score"][i] == float(row["score"]) and run["status"][i] == row["status"]
                assert images["mos"][i] == float(row["mos"])
    pairs = data["pairs"][0]
    assert len(pairs) == 260 and all(len(p) == 5 for p in pairs.values())  # one pair per anchor (anchor first)
    assert all(p[1] == 0 and len(p[2]) == 5 for ps in pairs.values() for p in ps)


def test_thumbnails_are_small_shared_and_made_once(site, demo_runs, tmp_path):
    thumbs = sorted((site / "thumbs").iterdir())
    assert len(thumbs) == 265  # 260 test images and 5 anchors, each once for four runs
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert total / 260 < 4 * 20_000  # four runs' files and data: under 20 KB per image and run
    assert max(p.stat().st_size for p in thumbs) < 20_000
    before = {p.name: p.stat().st_mtime_ns for p in thumbs}
    build_site(demo_runs[:1], site)
    assert {p.name: p.stat().st_mtime_ns for p in (site / "thumbs").iterdir()} == before
    assert len(site_json(site)["runs"]) == 1 and sorted(p.name for p in (site / "files").iterdir()) == ["0"]
    build_site(demo_runs, site)


def test_an_unreadable_image_has_no_thumbnail(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    make = Thumbnails(tmp_path / "thumbs")
    assert make(str(bad)) is None and make(str(tmp_path / "missing.png")) is None
    assert not list((tmp_path / "thumbs").iterdir())


def test_the_prompt_shown_is_what_the_model_saw():
    assert _prompt({"prompt": {"text": "{{ image(1) }} template", "rendered": "<image> exact"}}) == "<image> exact"
    assert _prompt({"prompt": {"text": "template only"}}) == "template only"
    assert "no prompt" in _prompt({"prompt": None})


def test_the_site_never_writes_over_a_foreign_folder_or_into_a_run(demo_runs, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for out in (mine, demo_runs[0] / "view"):
        res = subprocess.run([sys.executable, "-m", "harness.cli", "view", str(demo_runs[0]), "--out", str(out)],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert res.stderr.startswith("c2s view: error: --out")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not (demo_runs[0] / "view").exists()


def test_serve_answers_on_localhost(site):
    assert (site / MARKER).is_file()
    server, url = serve(site)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"viewer.js" in r.read()
        with urllib.request.urlopen(url.replace("index.html", "files/0/scores.csv"), timeout=10) as r:
            assert r.read().startswith(b"dataset,split,image")
    finally:
        server.shutdown()
        server.server_close()


def test_the_report_shows_anchor_thumbnails_worst_and_best_images_and_links(demo_runs, site):
    import xml.etree.ElementTree as ET

    run_dir = demo_runs[0]
    root = ET.fromstring((run_dir / "report.html").read_text())
    imgs = {img.get("src"): img.get("class") for img in root.iter("img")}
    assert sum(c == "anchor" for c in imgs.values()) == 5
    assert all((run_dir / src).is_file() for src in imgs) and any(s.startswith("plots/facets_") for s in imgs)
    cards = ["".join(div.itertext()) for div in root.iter("div") if div.get("class") == "card"]
    assert len(cards) == 12  # the worst and the best six of the one dataset
    worst = [abs(float(c.rsplit("residual ", 1)[1])) for c in cards[:6]]
    best = [abs(float(c.rsplit("residual ", 1)[1])) for c in cards[6:]]
    assert worst == sorted(worst, reverse=True) and best == sorted(best) and min(worst) >= max(best)
    links = [a.get("href") for a in root.iter("a")]
    assert {"scores.csv", "comparisons.csv", "manifest.json"} <= set(links)
    assert all((run_dir / h).is_file() for h in links)
    assert f"c2s view {run_dir} --out DIR" in (run_dir / "report.html").read_text()  # the final folder, not the temporary
    copy = (site / "files" / "0" / "report.html").read_text()
    assert "c2s view" not in copy and 'href="../../index.html#/run/' in copy


def test_c2s_view_serve_prints_a_url_that_answers(demo_runs, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "view", str(demo_runs[0]), "--out",
                             str(tmp_path / "site"), "--serve"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("wrote ") and lines[1].startswith("serving "), lines
        url = lines[1].split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
