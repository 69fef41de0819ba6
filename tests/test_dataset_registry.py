"""The nine-dataset registry: lookups, split files, the explicit fetch, and score directions
checked from the official split files themselves."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from statistics import mean

import numpy as np
import pytest
from scipy.stats import spearmanr

from harness.data import registry as reg
from harness.data.registry import DATASETS, fetch_official_splits, get_dataset_info, split_file

NINE = {"LIVE", "CSIQ", "KADID-10k", "BID", "LIVE Challenge", "KonIQ-10k", "SPAQ", "TID2013", "AGIQA-3K"}


def test_nine_datasets_and_lookup_by_alias():
    assert {d.display_name for d in DATASETS.values()} == NINE
    assert get_dataset_info("KonIQ-10k") is get_dataset_info("koniq") is DATASETS["koniq10k"]
    assert get_dataset_info("LIVE Challenge").name == "clive"
    assert get_dataset_info("agi-cgi").name == "agiqa3k"
    with pytest.raises(ValueError, match="unknown dataset 'pipal'; known datasets: LIVE, CSIQ"):
        get_dataset_info("pipal")


def test_split_file_paths_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_HOME", str(tmp_path / "cache"))
    assert reg.default_splits_dir() == tmp_path / "cache" / "compare2score_splits"
    p = split_file("tid", 4, must_exist=False)
    assert p == tmp_path / "cache" / "compare2score_splits" / "4" / "tid_testing_set.json"
    with pytest.raises(FileNotFoundError, match="c2s datasets fetch"):
        split_file("tid", 4)
    for bad in (0, 11, "x", 1.5, True):
        with pytest.raises(ValueError, match="split must be an integer 1..10"):
            split_file("tid", bad, must_exist=False)
    monkeypatch.delenv("C2S_HOME")
    assert str(reg.default_splits_dir()).endswith(".cache/c2s/compare2score_splits")


def _splits(shared_data):
    return shared_data / "compare2score_splits"


def _union(shared_data, name):
    """image -> score over the ten splits (an image in several splits has one label)."""
    out = {}
    for k in range(1, 11):
        for item in json.loads(split_file(name, k, _splits(shared_data)).read_text()):
            out[item["image"]] = float(item["gt_score"])
    return out


def test_registry_facts_match_the_files(shared_data):
    for info in DATASETS.values():
        sizes, lo, hi, has_std = [], np.inf, -np.inf, True
        first = split_file(info.name, 1, _splits(shared_data)).read_bytes()
        for k in range(1, 11):
            raw = split_file(info.name, k, _splits(shared_data)).read_bytes()
            items = json.loads(raw)
            sizes.append(len(items))
            scores = [float(i["gt_score"]) for i in items]
            lo, hi = min(lo, min(scores)), max(hi, max(scores))
            has_std &= all("std" in i for i in items)
            if info.whole_set:
                assert raw == first, f"{info.name}: split {k} differs from split 1"
        assert (min(sizes), max(sizes)) == info.split_size, info.name
        assert (lo, hi) == pytest.approx(info.score_range), info.name
        assert has_std == info.has_std, info.name


def test_live_is_dmos_lower_is_better(shared_data):
    scores = _union(shared_data, "live")
    ranked = sorted(scores, key=scores.get)
    # a reference (undistorted) image sits at exactly 0.0, the floor of a DMOS scale ...
    assert scores[ranked[0]] == 0.0 and sum(v == 0.0 for v in scores.values()) == 1
    # ... and the largest values all belong to JPEGs (heavy compression is the worst LIVE content)
    assert all(p.startswith("live/jpeg/") for p in ranked[-5:])
    assert DATASETS["live"].higher_is_better is False and DATASETS["live"].score_kind == "DMOS"


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if d.level_pattern])
def test_synthetic_datasets_direction_from_distortion_level(shared_data, name):
    """Stronger distortion (higher level in the file name) must mean lower quality."""
    info = DATASETS[name]
    scores = _union(shared_data, name)
    levels = {p: info.distortion_level(p) for p in scores}
    assert all(v is not None for v in levels.values()), f"{name}: a file name without a level"
    by_level = defaultdict(list)
    for p, s in scores.items():
        by_level[levels[p]].append(s)
    means = [mean(by_level[k]) for k in sorted(by_level)]
    rho = spearmanr([levels[p] for p in scores], list(scores.values()))[0]
    # quality falls with the level: higher scores are better
    assert rho < -0.4 and all(a > b for a, b in zip(means, means[1:])), (name, rho, means)
    assert info.higher_is_better is True


def test_agiqa_direction_from_generators(shared_data):
    """AttnGAN (2018, a GAN at 256 px) must score below Midjourney and SDXL if higher is better."""
    scores = _union(shared_data, "agiqa3k")
    gen = defaultdict(list)
    for p, s in scores.items():
        gen[p.split("/")[1].split("_")[0].lower()].append(s)
    assert mean(gen["attngan"]) < min(mean(gen["midjourney"]), mean(gen["xl2.2"]))
    assert DATASETS["agiqa3k"].higher_is_better is True


def test_identify_by_folder_prefix():
    assert reg.identify(["koniq/1.jpg", "koniq/2.jpg"]).name == "koniq10k"
    assert reg.identify(["TID2013/distorted_images/i01_01_1.bmp"]).name == "tid2013"
    assert reg.identify(["koniq/1.jpg", "spaq/1.jpg"]) is None
    assert reg.identify([]) is None


# --- the explicit download, against local copies ---
def test_fetch_from_file_url(shared_data, tmp_path):
    dest = fetch_official_splits(tmp_path / "splits", base_url=_splits(shared_data).as_uri())
    for rel in reg.official_checksums():
        assert (dest / rel).read_bytes() == (_splits(shared_data) / rel).read_bytes()
    # second call: everything present and verified, nothing re-fetched (a dead URL proves it)
    assert fetch_official_splits(dest, base_url="file:///nonexistent/{revision}") == dest


def test_fetch_over_http_and_refuses_changed_files(shared_data, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(_splits(shared_data), served / "main")
    (served / "main" / "3" / "agi.json").write_text("[]")  # tampered upstream copy
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{{revision}}"
        with pytest.raises(RuntimeError, match=r"1 of 90 official split files could not be fetched from .*:\n  sha256 differs.*: 1 file\(s\)\n    3/agi.json$"):
            fetch_official_splits(tmp_path / "out", base_url=url, revision="main")
        assert not (tmp_path / "out" / "3" / "agi.json").exists()
        assert (tmp_path / "out" / "7" / "koniq10k_test.json").is_file()
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_downloads_at_import():
    """Importing every data module with the network patched to explode: nothing may reach for it."""
    code = ("import urllib.request, socket\n"
            "def boom(*a, **k): raise SystemExit('network used at import')\n"
            "urllib.request.urlopen = boom; socket.create_connection = boom\n"
            "import harness.data.registry, harness.data.datasets, harness.data.demo_data, harness.data.images, adapters.classical\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_authentic_datasets_lie_on_their_published_rating_scales(shared_data):
    """BID, LIVE Challenge, KonIQ-10k and SPAQ carry no distortion level in their file names, so
    their direction is the rating protocol's (a higher rating is better quality, docs/method.md); what
    the files can show is that their scores sit on those published scales, not on a DMOS one."""
    published = {"bid": (0, 5), "clive": (0, 100), "koniq10k": (1, 5), "spaq": (0, 100)}
    for name, (lo, hi) in published.items():
        scores = _union(shared_data, name).values()
        assert lo <= min(scores) and max(scores) <= hi, name
        assert DATASETS[name].higher_is_better and DATASETS[name].score_kind == "MOS"


def test_pyiqa_direction_overrides():
    assert DATASETS["csiq"].direction_for("pyiqa") is False and DATASETS["csiq"].direction_for("compare2score")
    assert DATASETS["live"].direction_for("pyiqa") is False and DATASETS["live"].direction_for("compare2score") is False
    assert DATASETS["koniq10k"].direction_for("pyiqa") is True


def test_command_line(shared_data, tmp_path, capsys):
    assert reg.main(["fetch", "--dest", str(tmp_path / "s"), "--base-url", _splits(shared_data).as_uri()]) == 0
    assert (tmp_path / "s" / "10" / "agi.json").is_file()
    assert reg.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "LIVE " in out and "LOWER is better" in out and out.count("\n") >= 10
