"""The composite protocol: the side-by-side image, the wording it implies, its record in the fingerprint,
and its own labelled row in leaderboards and reports (model-level proofs: tests/test_hf_adapter.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adapters.base import check_model_options
from adapters.chat import checked_pair_prompt
from harness.data.composite import EDGE, SEPARATOR, pairing_record, protocol_of, side_by_side
from harness.report.leaderboard import build_leaderboard
from harness.report.reports import write_report
from tests.test_reports import corr, edit_json, make_run


def test_side_by_side_keeps_both_images_and_shows_a_separator():
    rng = np.random.default_rng(0)
    left, right = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 30), (20, 50)))
    out = np.asarray(side_by_side(Image.fromarray(left), Image.fromarray(right)))
    assert out.shape == (40, 30 + SEPARATOR + 50, 3)
    np.testing.assert_array_equal(out[:, :30], left)                      # first: left, untouched
    np.testing.assert_array_equal(out[10:30, 30 + SEPARATOR:], right)     # second: right, centred
    assert (out[:10, 30 + SEPARATOR:] == 128).all() and (out[30:, 30 + SEPARATOR:] == 128).all()
    bar = out[:, 30:30 + SEPARATOR]
    assert (bar[:, :EDGE] == 0).all() and (bar[:, SEPARATOR - EDGE:] == 0).all()
    assert (bar[:, EDGE:SEPARATOR - EDGE] == 255).all()


def test_the_wording_follows_the_pairing():
    template, rendered = checked_pair_prompt("official", "composite", "here")
    assert template.name == "composite" and rendered.n_images == 1
    assert "left" in "".join(s for s in rendered.segments if isinstance(s, str)) and "right" in rendered.prefill
    assert checked_pair_prompt("official", "two-image", "here")[1].n_images == 2
    with pytest.raises(ValueError, match="prompt 'paper' shows 2 image"):
        checked_pair_prompt("paper", "composite", "here")
    with pytest.raises(ValueError, match="prompt 'composite' shows 1 image"):
        checked_pair_prompt("composite", "two-image", "here")
    for spec in ("hf:m", "vllm:m"):
        check_model_options(spec, {"pairing": "composite"})
        with pytest.raises(ValueError, match="'pairing' = 'stacked'"):
            check_model_options(spec, {"pairing": "stacked"})


def test_the_fingerprint_names_the_protocol():
    assert protocol_of({"preprocessing": pairing_record("composite")}) == "composite"
    assert pairing_record("composite")["composite"]["separator_px"] == SEPARATOR
    assert protocol_of({"preprocessing": pairing_record("two-image")}) == "two-image"
    assert protocol_of({"backend": "classical", "preprocessing": None}) == "two-image"


def test_a_composite_run_is_a_row_of_its_own_and_its_report_says_so(tmp_path):
    data = {"LIVE": {"higher_is_better": True, "n_images": 10, "n_failed": 0, "splits": {"all": corr(0.8, 0.8)}}}
    make_run(tmp_path, "two", data, label="M")
    comp = make_run(tmp_path, "comp", data, label="M")
    edit_json(comp / "manifest.json",
              lambda m: m["model"]["fingerprint"].update(preprocessing=pairing_record("composite")))
    lb = build_leaderboard([tmp_path / "two", comp])
    assert sorted(r.model_text for r in lb.rows) == ["M", "M [composite]"]
    md, _ = write_report(comp)
    assert "composite protocol: both images side by side in one image" in md.read_text()
    md2, _ = write_report(tmp_path / "two")
    assert "composite protocol" not in md2.read_text()
