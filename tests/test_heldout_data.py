"""The held-out benchmark: other photographs, other families, the severity proxy, built deterministically."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from harness.data.demo_data import DEFAULT_SOURCES, FAMILIES
from harness.data.heldout_data import HELDOUT_FAMILIES, HELDOUT_SOURCES, build_heldout_benchmark, distort_heldout


def test_nothing_is_shared_with_the_demo():
    assert not set(HELDOUT_SOURCES) & set(DEFAULT_SOURCES)
    assert not set(HELDOUT_FAMILIES) & set(FAMILIES)


def test_contents_proxy_and_determinism(tmp_path):
    ds = build_heldout_benchmark(tmp_path / "a", size=64, sources=["brick", "ihc"])
    again = build_heldout_benchmark(tmp_path / "b", size=64, sources=["brick", "ihc"])
    gray, colour = len(HELDOUT_FAMILIES) - 1, len(HELDOUT_FAMILIES)  # saturation needs colour
    assert len(ds) == (1 + gray * 5) + (1 + colour * 5)
    assert all(r.mos == 5 - int(r.path.rsplit("_", 1)[1][0]) if "pristine" not in r.path else r.mos == 5
               for r in ds.records)
    assert {r.path for r in ds.records if "saturation" in r.path} == {f"ihc/saturation_{k}.png" for k in range(1, 6)}

    def digest(d):
        return [hashlib.sha256(d.abspath(r).read_bytes()).hexdigest() for r in d.records]

    assert digest(ds) == digest(again)


@pytest.mark.parametrize("family", list(HELDOUT_FAMILIES))
def test_each_family_departs_further_from_the_original_with_its_level(family):
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 1, (48, 48, 3)), axis=1) + np.linspace(0, 30, 48)[:, None, None]
    x = (walk - walk.min()) / np.ptp(walk)  # smooth, colourful, over the whole range
    errors = [np.abs(distort_heldout(x, family, level) - x).mean() for level in range(1, 6)]
    assert all(b > a for a, b in zip(errors, errors[1:])), errors
