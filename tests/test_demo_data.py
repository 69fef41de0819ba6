"""The embedded benchmark: contents, ground truth, determinism, caching, and distortion strength."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from harness.data import demo_data
from harness.data.demo_data import (
    FAMILIES,
    available_sources,
    build_demo_benchmark,
    manifest_items,
    skimage_data_dir,
)
from harness.data.images import load_image

SMALL = dict(size=96, sources=["astronaut", "coins", "rocket"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return build_demo_benchmark(tmp_path_factory.mktemp("demo"), **SMALL)


def _digests(ds):
    return {r.path: hashlib.sha256(ds.abspath(r).read_bytes()).hexdigest() for r in ds.records}


def test_sources_are_real_files_of_the_installed_package():
    src = available_sources()
    assert set(demo_data.DEFAULT_SOURCES) <= set(src)
    for name in src:
        assert demo_data._source_file(name).parent == skimage_data_dir()
    with pytest.raises(ValueError, match="unknown or absent demo source 'lena'"):
        build_demo_benchmark(None, sources=["lena"])


def test_contents_and_ground_truth(small):
    assert len(small) == 3 * (1 + len(FAMILIES) * 5) and len(FAMILIES) >= 5
    assert small.name == "demo" and small.higher_is_better and small.score_range == (0.0, 5.0)
    assert small.report.ok and small.report.checked_files
    items = manifest_items(small)
    assert [it["image"] for it in items] == [r.path for r in small.records]
    for it, rec in zip(items, small.records):
        assert rec.mos == 5 - it["level"]  # pristine best
        if it["family"] == "pristine":
            assert rec.splits == set(FAMILIES)  # in every family; no split of its own (constant MOS)
        else:
            assert rec.splits == {it["family"]}
        assert max(load_image(small.abspath(rec)).size) == 96
    for fam in FAMILIES:
        sub = small.in_split(fam)
        assert sorted(r.mos for r in sub.records) == sorted([0.0, 1, 2, 3, 4, 5] * 3)


def test_distortion_grows_with_level(small):
    """Mean squared difference from the pristine image rises strictly with the level, per family."""
    items = manifest_items(small)
    for src in SMALL["sources"]:
        ref = np.asarray(load_image(small.root / src / "pristine.png"), dtype=float)
        for fam in FAMILIES:
            mse = [np.mean((np.asarray(load_image(small.root / src / f"{fam}_{k}.png"), dtype=float) - ref) ** 2)
                   for k in range(1, 6)]
            assert all(0 < a < b for a, b in zip(mse, mse[1:])), (src, fam, mse)
    assert {it["family"] for it in items} == set(FAMILIES) | {"pristine"}


def test_deterministic_across_builds(small, tmp_path):
    again = build_demo_benchmark(tmp_path, **SMALL)
    assert _digests(again) == _digests(small)


def test_cached_then_rebuilt_when_missing_or_version_changes(tmp_path, monkeypatch):
    ds = build_demo_benchmark(tmp_path, **SMALL)
    calls = []
    real = demo_data.generate
    monkeypatch.setattr(demo_data, "generate", lambda *a: calls.append(1) or real(*a))
    build_demo_benchmark(tmp_path, **SMALL)
    assert calls == []  # up to date: nothing regenerated
    victim = ds.abspath(ds.records[7])
    victim.unlink()
    build_demo_benchmark(tmp_path, **SMALL)
    assert calls == [1] and victim.is_file()
    monkeypatch.setattr(demo_data, "GENERATOR_VERSION", demo_data.GENERATOR_VERSION + 1)
    rebuilt = build_demo_benchmark(tmp_path, **SMALL)
    assert calls == [1, 1]
    assert json.loads((rebuilt.root / "generator.json").read_text())["generator_version"] == demo_data.GENERATOR_VERSION
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be an integer >= 32"):
        build_demo_benchmark(None, size=8)
    with pytest.raises(ValueError, match="distinct"):
        build_demo_benchmark(None, sources=["coins", "coins"])
    with pytest.raises(ValueError, match="unknown distortion family 'fog'"):
        demo_data.distort(np.zeros((4, 4, 3)), "fog", 1, np.random.default_rng(0))
