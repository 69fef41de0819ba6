"""Leaderboards: merged rows, medians over splits, best per column, failures shown in every format."""
from __future__ import annotations

import csv
import json
import math
import re
import statistics
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from harness.report.leaderboard import RowKey, build_leaderboard, write_leaderboard
from harness.cli import main
from tests.test_reports import assert_md_tables_well_formed, corr, edit_json, make_run


#: the anchor set of make_run's runs, as a leaderboard row shows it
ANCHORS = "koniq-default (feedbeef)"
#: nine items left out by --drop-bad, as a manifest lists them
DROPPED = [f"missing file: gone{k}.png: not found at /data/gone{k}.png" for k in range(6)] + [
    "duplicate: a.png: same image as record 0", "unreadable row: line 9: score is not a number ('x')",
    "bad image: b.png: not an image"]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (what strict readers do)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


def _dataset(srcc, plcc, n_failed=0, dropped=None, n_images=100):
    dropped = dropped or [0] * len(srcc)
    splits = {str(i + 1) if len(srcc) > 1 else "all": corr(s, p, n_dropped=d)
              for i, (s, p, d) in enumerate(zip(srcc, plcc, dropped))}
    return {"higher_is_better": True, "n_images": n_images, "n_failed": n_failed, "splits": splits}


def _expected(srcc):
    """Independent cell text: statistics.median and the sample sd, three decimals."""
    text = f"{statistics.median(srcc):.3f}"
    return text + (f" ± {statistics.stdev(srcc):.3f}" if len(srcc) > 1 else "")


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(42)
    v = {k: rng.uniform(0.5, 0.75, 10).round(6).tolist() for k in ("a_live_s", "a_live_p", "a_csiq_s", "a_csiq_p",
                                                                    "b_live_s", "b_live_p")}
    v["b_live_s"] = [x + 0.2 for x in v["a_live_s"]][:7]        # model B better on LIVE SRCC, 7 splits
    v["b_live_p"] = [x - 0.2 for x in v["a_live_p"]][:7]        # ... and worse on PLCC
    # LIVE: 3 images failed, 9 items dropped as bad (--drop-bad); up to 2 images left out of a split's numbers
    a1 = make_run(tmp_path, "a-1", {"LIVE": _dataset(v["a_live_s"], v["a_live_p"], n_failed=3, dropped=[0, 2] * 5),
                                    "CSIQ": _dataset(v["a_csiq_s"], v["a_csiq_p"])},
                  label="Model A", created="2026-11-26T06:00:00+00:00", dropped={"LIVE": DROPPED})
    a2 = make_run(tmp_path, "a-2", {"KonIQ": _dataset([0.81], [0.83])}, label="Model A",
                  created="2026-11-26T07:00:00+00:00")
    b1 = make_run(tmp_path, "b-1", {"LIVE": _dataset(v["b_live_s"], v["b_live_p"]),
                                    "KonIQ": _dataset([0.8104], [0.5])},
                  label="Model B | v2", profile="official", created="2026-11-26T06:30:00Z")
    return [a1, a2, b1], v


def test_rows_merge_and_cells_hold_medians_over_splits(runs):
    dirs, v = runs
    lb = build_leaderboard(dirs)
    a, b = RowKey("Model A", "paper", "soft", ANCHORS), RowKey("Model B | v2", "official", "soft", ANCHORS)
    assert lb.rows == [a, b] and lb.datasets == ["LIVE", "CSIQ", "KonIQ"]
    assert lb.cell(b, "CSIQ") is None
    live = lb.cell(a, "LIVE")
    assert math.isclose(live.stats["srcc"].median, statistics.median(v["a_live_s"]), abs_tol=1e-12)
    assert math.isclose(live.stats["srcc"].sd, statistics.stdev(v["a_live_s"]), abs_tol=1e-12)
    assert math.isclose(live.stats["plcc_logistic"].median, statistics.median(v["a_live_p"]), abs_tol=1e-12)
    assert (live.n_failed, live.n_dropped, live.n_splits, live.run_id) == (3, 9, 10, "a-1")
    assert lb.cell(a, "KonIQ").run_id == "a-2"
    # best per column: B on LIVE SRCC, A on LIVE PLCC; KonIQ SRCC 0.81 vs 0.8104 tie at 3 decimals
    assert lb.cell(b, "LIVE").best == {"srcc": True, "plcc_logistic": False}
    assert live.best == {"srcc": False, "plcc_logistic": True}
    assert lb.cell(a, "KonIQ").best["srcc"] and lb.cell(b, "KonIQ").best["srcc"]
    assert lb.cell(a, "KonIQ").best["plcc_logistic"] and not lb.cell(b, "KonIQ").best["plcc_logistic"]


def test_markdown_table(runs, tmp_path):
    dirs, v = runs
    (md,) = write_leaderboard(build_leaderboard(dirs), tmp_path / "lb", formats=("md",))
    text = md.read_text()
    assert_md_tables_well_formed(text)
    lines = text.splitlines()
    assert lines[0] == ("| Model | Profile | Mode | Anchors | LIVE SRCC | LIVE PLCC | LIVE failed / dropped | CSIQ SRCC "
                        "| CSIQ PLCC "
                        "| CSIQ failed / dropped | KonIQ SRCC | KonIQ PLCC | KonIQ failed / dropped |")
    row_a = next(line for line in lines if line.startswith("| Model A |"))
    row_b = next(line for line in lines if line.startswith("| Model B \\| v2 |"))
    assert row_a == ("| Model A | paper | soft | koniq-default (feedbeef) | " + _expected(v["a_live_s"]) + " | **"
                     + _expected(v["a_live_p"])
                     + "** | 3 / 9 | **" + _expected(v["a_csiq_s"]) + "** | **" + _expected(v["a_csiq_p"])
                     + "** | 0 / 0 | **0.810** | **0.830** | 0 / 0 |")
    assert row_b == ("| Model B \\| v2 | official | soft | koniq-default (feedbeef) | **" + _expected(v["b_live_s"])
                     + "** | " + _expected(v["b_live_p"]) + " | 0 / 0 | – | – | – | **0.810** | 0.500 | 0 / 0 |")
    assert "`a-1`, `a-2`, `b-1`" in text


def test_html_csv_json_hold_the_same_content(runs, tmp_path):
    dirs, v = runs
    lb = build_leaderboard(dirs)
    paths = write_leaderboard(lb, tmp_path / "lb")
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.html", "leaderboard.csv", "leaderboard.json"]
    html = paths[1].read_text()
    root = ET.fromstring(html)
    strong = sorted(s.text for s in root.iter("strong"))
    assert strong == sorted([_expected(v["a_live_p"]), _expected(v["a_csiq_s"]), _expected(v["a_csiq_p"]),
                             "0.810", "0.830", _expected(v["b_live_s"]), "0.810"])
    assert "Model B | v2" in "".join(root.itertext()) and "3 / 9" in "".join(root.itertext())
    with paths[2].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    live_a = next(r for r in rows if r["model_label"] == "Model A" and r["dataset"] == "LIVE")
    assert float(live_a["srcc_median"]) == statistics.median(v["a_live_s"])
    assert (live_a["n_failed"], live_a["n_dropped"], live_a["plcc_logistic_best"]) == ("3", "9", "True")
    doc = strict_json(paths[3].read_text())
    assert doc["datasets"] == ["LIVE", "CSIQ", "KonIQ"] and len(doc["cells"]) == 5
    koniq_a = next(c for c in doc["cells"] if c["model_label"] == "Model A" and c["dataset"] == "KonIQ")
    assert koniq_a["srcc_median"] == 0.81 and koniq_a["srcc_sd"] is None and koniq_a["srcc_best"] is True
    live_a = next(c for c in doc["cells"] if c["model_label"] == "Model A" and c["dataset"] == "LIVE")
    assert (live_a["n_failed"], live_a["n_dropped"]) == (3, 9)


def test_duplicate_row_and_dataset(runs, tmp_path):
    dirs, _ = runs
    newer = make_run(tmp_path, "a-3", {"CSIQ": _dataset([0.5, 0.7], [0.6, 0.6])}, label="Model A",
                     created="2026-11-26T08:00:00+00:00")
    older = make_run(tmp_path, "a-0", {"CSIQ": _dataset([0.1, 0.3], [0.2, 0.2])}, label="Model A",
                     created="2026-11-26T05:00:00+00:00")
    with pytest.raises(ValueError, match=r"Model A \(paper, soft, anchors koniq-default \(feedbeef\)\) on 'CSIQ' "
                                         r"appears in two runs.*--keep-latest"):
        build_leaderboard(dirs + [newer])
    a = RowKey("Model A", "paper", "soft", ANCHORS)
    for order in (dirs + [newer, older], [older, newer] + dirs):
        cell = build_leaderboard(order, keep_latest=True).cell(a, "CSIQ")
        assert cell.run_id == "a-3" and cell.stats["srcc"].median == pytest.approx(0.6)
    same_time = make_run(tmp_path, "a-4", {"CSIQ": _dataset([0.5], [0.6])}, label="Model A",
                         created="2026-11-26T06:00:00")          # no zone: read as UTC
    with pytest.raises(ValueError, match="cannot tell which is newer"):
        build_leaderboard([dirs[0], same_time], keep_latest=True)
    assert build_leaderboard([dirs[0], dirs[0]]).cell(a, "CSIQ").run_id == "a-1"   # same folder twice


def test_undefined_splits_are_counted_not_averaged(tmp_path):
    run = make_run(tmp_path, "u", {"LIVE": _dataset([0.9, float("nan"), 0.7], [0.8, 0.8, 0.8]),
                                   "BID": _dataset([float("nan")], [float("nan")])}, label="M")
    lb = build_leaderboard([run])
    live = lb.cell(RowKey("M", "paper", "soft", ANCHORS), "LIVE")
    assert live.text("srcc") == f"0.800 ± {statistics.stdev([0.9, 0.7]):.3f} (1 undefined split)"
    paths = write_leaderboard(lb, tmp_path / "lb", formats=("json", "md"))
    doc = strict_json(paths[0].read_text())
    bid = next(c for c in doc["cells"] if c["dataset"] == "BID")
    assert bid["srcc_median"] is None and bid["srcc_best"] is False
    assert re.search(r"\| n/a \(1 undefined split\) \| n/a \(1 undefined split\) \| 0 / 0 \|", paths[1].read_text())


def test_bad_requests_raise(runs, tmp_path):
    dirs, _ = runs
    with pytest.raises(ValueError, match="no run folders"):
        build_leaderboard([])
    with pytest.raises(ValueError, match=r"unknown format\(s\) \['pdf'\]"):
        write_leaderboard(build_leaderboard(dirs), tmp_path / "out", formats=("md", "pdf"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="run folder not found"):
        build_leaderboard([tmp_path / "missing"])


def test_runner_style_summary_over_and_unranked(tmp_path):
    named = {"1": corr(0.50, 0.61, n_dropped=1), "2": corr(0.70, 0.62, n_dropped=4), "3": corr(0.60, 0.63)}
    live = {"higher_is_better": True, "n_images": 100, "n_failed": 5, "summary_over": "splits",
            "splits": {"all": corr(0.99, 0.99, n_dropped=5), **named}}
    spaq = {"higher_is_better": True, "n_images": 100, "n_failed": 0, "summary_over": "all",
            "splits": {"all": corr(0.77, 0.78), "1": corr(0.1, 0.1)}}
    mine = {"higher_is_better": True, "n_images": 7, "n_failed": 0, "summary_over": "all", "splits": {}}
    run = make_run(tmp_path, "r", {"LIVE": live, "SPAQ": spaq, "mine": mine}, label="M", dropped={"LIVE": DROPPED[:2]})
    lb = build_leaderboard([run])
    row = RowKey("M", "paper", "soft", ANCHORS)
    assert lb.datasets == ["LIVE", "SPAQ"] and lb.unranked == [(row, "mine")]
    c = lb.cell(row, "LIVE")
    # dropped: the items --drop-bad left out, not the images a split leaves out of its correlations
    assert c.text("srcc") == _expected([0.50, 0.70, 0.60]) and (c.n_splits, c.n_failed, c.n_dropped) == (3, 5, 2)
    assert lb.cell(row, "SPAQ").text("srcc") == "0.770" and lb.cell(row, "SPAQ").n_splits == 1
    md, js = write_leaderboard(lb, tmp_path / "lb", formats=("md", "json"))
    assert ("Not ranked (no ground-truth scores): M (paper, soft, anchors koniq-default (feedbeef)) on mine."
            in md.read_text())
    assert json.loads(js.read_text())["unranked"] == [{"model_label": "M", "profile": "paper", "mode": "soft",
                                                       "anchors": ANCHORS, "limit": None, "design": None,
                                                       "protocol": "two-image", "dataset": "mine"}]
    only_unlabeled = make_run(tmp_path, "u", {"mine": mine}, label="M")
    with pytest.raises(ValueError, match="no dataset with ground-truth scores"):
        build_leaderboard([only_unlabeled])


def _variant(tmp_path, run_id, *, anchors=None, limit=None, srcc=0.8, ci=None):
    """A one-dataset run whose manifest names another anchor set or a --limit."""
    extra = {"srcc_ci95": ci} if ci else {}
    live = {"higher_is_better": True, "n_images": 100, "n_failed": 0, "summary_over": "all",
            "splits": {"all": corr(srcc, 0.7, **extra)}}
    run = make_run(tmp_path, run_id, {"LIVE": live}, label="M")

    def change(doc):
        if anchors:
            doc["anchors"].update(name=anchors[0], digest=anchors[1])
        doc["limit"] = limit
    edit_json(run / "manifest.json", change)
    return run


def test_anchor_ablations_and_limited_runs_are_rows_of_their_own(tmp_path, capsys):
    base = _variant(tmp_path, "base", srcc=0.8)
    other = _variant(tmp_path, "other", anchors=("mine Eqn. 4", "0123456789abcdef"), srcc=0.7)
    small = _variant(tmp_path, "small", limit=20, srcc=0.9)
    assert main(["leaderboard", str(base), str(other), str(small), "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert "| M | paper | soft | koniq-default (feedbeef) | 0.800 |" in out
    assert "| M | paper | soft | mine Eqn. 4 (01234567) | 0.700 |" in out
    assert "| M [limited to first 20] | paper | soft | koniq-default (feedbeef) | **0.900** |" in out
    doc = strict_json((tmp_path / "lb" / "leaderboard.json").read_text())
    assert [(r["anchors"], r["limit"]) for r in doc["rows"]] == [(ANCHORS, None), ("mine Eqn. 4 (01234567)", None),
                                                                 (ANCHORS, 20)]
    # the same anchors, model, profile and mode twice is still a conflict, named with its anchors
    again = _variant(tmp_path, "again", anchors=("mine Eqn. 4", "0123456789abcdef"))
    assert main(["leaderboard", str(other), str(again), "--out", str(tmp_path / "lb2")]) == 2
    assert "anchors mine Eqn. 4 (01234567)) on 'LIVE' appears in two runs" in capsys.readouterr().err


def test_bootstrap_intervals_in_every_format_and_strict_json(tmp_path, capsys):
    run = _variant(tmp_path, "ci", ci=[0.71, float("nan")])
    assert main(["leaderboard", str(run), "--out", str(tmp_path / "lb")]) == 0
    assert "| **0.800 [0.710, n/a]** |" in capsys.readouterr().out
    lb = tmp_path / "lb"
    cells = [td.text for td in ET.fromstring((lb / "leaderboard.html").read_text()).iter("td")]
    assert "[0.710, n/a]" in cells  # the HTML page has an interval column where a run computed intervals
    (cell,) = strict_json((lb / "leaderboard.json").read_text())["cells"]
    assert (cell["srcc_ci95_low"], cell["srcc_ci95_high"], cell["plcc_logistic_ci95_low"]) == (0.71, None, None)
    with (lb / "leaderboard.csv").open() as fh:
        (row,) = csv.DictReader(fh)
    assert (row["srcc_ci95_low"], row["srcc_ci95_high"]) == ("0.71", "")
