"""What `c2s run` and its report say about results: both headlines (--summary), bootstrap intervals
on the console, in the report and in strict JSON, and degenerate results flagged (issue 11)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageFilter

from harness.cli import main
from harness.run.record import read_run, run_dirs_in
from tests.test_plots import _curve_pixels


class ConstantComparator:
    """Every pair gets the same verdict: every test image then gets the same score."""

    def __init__(self, model=None):
        pass

    def compare(self, pairs):
        return np.tile(np.log([0.1, 0.2, 0.4, 0.2, 0.1]), (len(pairs), 1))

    def fingerprint(self):
        return {"backend": "constant-test"}


def strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """16 images blurred 0..15 (MOS falls with blur), in two splits: 'a' (even) and 'b' (odd)."""
    root = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    lines = ["image,mos,split"]
    for k in range(16):
        base.filter(ImageFilter.GaussianBlur(k * 0.3)).save(root / f"img{k:02d}.png")
        lines.append(f"img{k:02d}.png,{5 - k * 0.25 + (0.6 if k % 4 == 1 else 0)},{'ab'[k % 2]}")
    (root / "mine.csv").write_text("\n".join(lines) + "\n")
    return root


def _run(tmp_path, manifest, *more, model="classical", status=0):
    out = tmp_path / "runs"
    argv = ["run", "--model", model, "--dataset", f"mine={manifest / 'mine.csv'}", "--root", str(manifest),
            "--anchors", "select", "--anchors-dataset", "mine", "--alpha", "3", "--out", str(out),
            "--cache", "", *more]
    assert main(argv) == status
    (run_dir,) = run_dirs_in(out)
    return run_dir


@pytest.mark.parametrize("summary", ["all", "splits"])
def test_summary_chooses_the_headline_and_both_numbers_are_shown(tmp_path, manifest, capsys, summary):
    run_dir = _run(tmp_path, manifest, "--summary", summary)
    out = capsys.readouterr().out
    d = read_run(run_dir).metrics.datasets["mine"]
    assert d.summary_over == summary
    whole, median = d.splits["all"].srcc, float(np.median([d.splits[s].srcc for s in "ab"]))
    headline = whole if summary == "all" else median
    assert d.summary["srcc"].median == headline
    lines = [line for line in out.splitlines() if "SRCC" in line]
    first = "(headline, all images;" if summary == "all" else "(headline, median over 2 splits;"
    second = "(median over 2 splits, not the headline)" if summary == "all" else "(all images, not the headline)"
    assert first in lines[0] and second in lines[1]
    assert f"SRCC {whole:.4f}" in "\n".join(lines) and f"SRCC {median:.4f}" in "\n".join(lines)
    report = (run_dir / "report.md").read_text()
    other = "splits" if summary == "all" else "all"
    assert re.search(rf"Headline \({'all images' if summary == 'all' else 'median over 2 splits'}\): SRCC", report)
    assert f"`--summary {other}` makes it the headline" in report


def test_bootstrap_intervals_on_console_and_report_and_json_is_strict(tmp_path, manifest, capsys):
    run_dir = _run(tmp_path, manifest, "--summary", "all", "--bootstrap", "200")
    out = capsys.readouterr().out
    lo, hi = read_run(run_dir).metrics.datasets["mine"].splits["all"].srcc_ci95
    assert f"[{lo:.4f}, {hi:.4f}]" in out.splitlines()[1]
    assert f"[{lo:.3f}, {hi:.3f}]" in (run_dir / "report.md").read_text()
    assert f"[{lo:.3f}, {hi:.3f}]" in (run_dir / "report.html").read_text()
    for name in ("manifest.json", "metrics.json"):
        strict_json((run_dir / name).read_text())
    assert main(["leaderboard", str(run_dir), "--out", str(tmp_path / "lb")]) == 0
    assert f"[{lo:.3f}, {hi:.3f}]" in capsys.readouterr().out
    strict_json((tmp_path / "lb" / "leaderboard.json").read_text())


def test_constant_predictions_are_flagged_not_reported_as_fine(tmp_path, manifest, capsys):
    run_dir = _run(tmp_path, manifest, "--summary", "all", "--bootstrap", "20",
                   model=f"py:{__name__}:ConstantComparator", status=4)  # undefined metrics: exit 4
    cap = capsys.readouterr()
    assert "c2s: warning: red: mine: every image has the same score" in cap.err
    assert "SRCC n/a" in cap.out
    split = read_run(run_dir).metrics.datasets["mine"].splits["all"]
    assert not split.logistic_ok and "constant predictions" in split.logistic_message
    report = (run_dir / "report.md").read_text()
    assert "> **RED: degenerate results" in report
    assert "headline SRCC is n/a (constant predictions: no correlation is defined)" in report
    assert "**failed**: constant predictions" in report
    assert 'class="red"' in (run_dir / "report.html").read_text()
    strict_json((run_dir / "metrics.json").read_text())
    (png,) = (run_dir / "plots").glob("scatter_*.png")
    assert _curve_pixels(png) == 0                      # no logistic drawn for a failed fit


def test_limit_scores_the_first_images_and_is_labelled_everywhere(tmp_path, manifest, capsys):
    full = _run(tmp_path / "full", manifest, "--summary", "all")
    small = _run(tmp_path / "small", manifest, "--summary", "all", "--limit", "6")
    out = capsys.readouterr().out
    assert "LIMITED RUN: only the first 6 images of each dataset were scored" in out
    rec, whole = read_run(small), read_run(full)
    assert rec.manifest.limit == 6 and whole.manifest.limit is None and "-first6-" in small.name
    assert [r.image for r in rec.scores if r.split == "a" or r.split == "b"] == [f"img{k:02d}.png" for k in range(6)]
    assert rec.manifest.anchors.digest == whole.manifest.anchors.digest      # anchors from the whole dataset
    assert "LIMITED RUN: only the first 6 images" in (small / "report.md").read_text()
    assert main(["leaderboard", str(full), str(small), "--out", str(tmp_path / "lb")]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^\| classical \| paper \| soft \|", table, re.M)
    assert re.search(r"^\| classical \[limited to first 6\] \| paper \| soft \|", table, re.M)
    assert main(["run", "--model", "classical", "--dataset", "demo", "--limit", "0"]) == 2
    assert "limit must be >= 1" in capsys.readouterr().err


def test_dry_run_counts_cached_pairs_and_estimates_time_without_a_model(tmp_path, manifest, capsys, monkeypatch):
    cache = tmp_path / "pairs.sqlite"
    base = ["run", "--model", "classical", "--dataset", f"mine={manifest / 'mine.csv'}", "--root", str(manifest),
            "--anchors", "select", "--anchors-dataset", "mine", "--alpha", "3", "--out", str(tmp_path / "runs"),
            "--cache", str(cache)]
    import harness.run.executors as executors  # where a run's sessions load the model

    def no_model(*a, **k):
        raise AssertionError("a dry run loaded the model")
    with monkeypatch.context() as mp:
        mp.setattr(executors, "load_comparator", no_model)
        assert main(base + ["--dry-run"]) == 0                  # no cache yet
        out = capsys.readouterr().out
        assert "pairs: 54 to judge; already cached: unknown" in out and "no time estimate" in out
        assert "anchors: mine Eqn. 4 (alpha=3, beta=1), 3 images" in out
        assert not cache.exists() and not (tmp_path / "runs").exists()
    assert main(base + ["--limit", "4"]) == 4   # 16 distinct pairs judged and timed (2 images a split: no metric)
    capsys.readouterr()
    with monkeypatch.context() as mp:
        mp.setattr(executors, "load_comparator", no_model)
        assert main(base + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pairs: 54 planned, 22 already cached, 32 to judge; estimated \d+\.\d s "
                     r"\(from 16 timed before with this model and options\)", out)
    assert len(list((tmp_path / "runs").iterdir())) == 1        # the dry run wrote no run folder


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_group_column_gives_per_group_numbers_without_changing_the_headline(tmp_path, manifest, capsys, kind):
    rows = [line.split(",") for line in (manifest / "mine.csv").read_text().split()[1:]]
    items = [{"image": img, "gt_score": float(mos), "group": "blur" if k < 8 else "heavy", "level": str(k)}
             for k, (img, mos, _) in enumerate(rows)]
    if kind == "csv":
        source = tmp_path / "grouped.csv"
        source.write_text("image,mos,group,level\n" + "".join(f"{i['image']},{i['gt_score']},{i['group']},"
                                                                f"{i['level']}\n" for i in items))
    else:
        source = tmp_path / "grouped.json"
        source.write_text(json.dumps(items))
    out = tmp_path / "runs"
    assert main(["run", "--model", "classical", "--dataset", f"mine={source}", "--root", str(manifest),
                 "--anchors", "select", "--anchors-dataset", "mine", "--alpha", "3", "--out", str(out),
                 "--cache", ""]) == 0
    (run_dir,) = run_dirs_in(out)
    d = read_run(run_dir).metrics.datasets["mine"]
    assert d.summary_over == "all" and list(d.splits) == ["all"]            # a group is not a split
    assert d.summary["srcc"].median == d.splits["all"].srcc
    assert sorted(d.groups) == ["blur", "heavy"] and d.groups["blur"].n == 8
    scores = (run_dir / "scores.csv").read_text().splitlines()
    assert scores[0].endswith(",group,meta:level") and scores[1].endswith(",blur,0")
    report = (run_dir / "report.md").read_text()
    assert "Per group (the manifest's `group` column; not part of the headline):" in report
    assert re.search(r"^\| heavy \| 8 \| 0 \|", report, re.M)
    capsys.readouterr()
    assert main(["rescore", str(run_dir), "--link", "logit", "--no-report"]) == 0      # carried through rescore
    new = next(p for p in run_dirs_in(out) if p != run_dir)
    assert (new / "scores.csv").read_text().splitlines()[0] == scores[0]
    assert sorted(read_run(new).metrics.datasets["mine"].groups) == ["blur", "heavy"]


def test_anchors_files_written_by_the_cli_are_strict_json(tmp_path, capsys):
    src = tmp_path / "anchors.json"
    src.write_text('{"images": ["a.png", "b.png", "c.png"], "mos": [1.0, 2.0, 3.0], "std": [0.0, 0.0, 0.0]}')
    assert main(["anchors", "matrix", "--anchors", str(src), "--from-mos", "--out", str(tmp_path / "m.json")]) == 0
    doc = strict_json((tmp_path / "m.json").read_text())        # a degenerate matrix, written strictly
    assert len(doc["matrix"]) == 3 and all(v is None or 0 <= v <= 1 for row in doc["matrix"] for v in row)


def test_yaml_summary_and_limit(tmp_path, manifest, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"""
model: classical
datasets:
  - {{name: mine, source: "{manifest / 'mine.csv'}", root: "{manifest}", summary: all}}
anchors: {{source: select, dataset: mine, alpha: 3}}
limit: 8
out_dir: "{tmp_path / 'runs'}"
cache: ""
""")
    assert main(["run", "--config", str(config)]) == 0
    (run_dir,) = run_dirs_in(tmp_path / "runs")
    rec = read_run(run_dir)
    assert rec.manifest.limit == 8 and rec.metrics.datasets["mine"].summary_over == "all"
    assert "(headline, all images;" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--limit", "3", "--dry-run"]) == 0   # the flag wins over YAML
    assert "dataset mine: 3 images (limited to the first 3)" in capsys.readouterr().out


def test_near_constant_predictions_get_an_amber_banner(tmp_path):
    from harness.report.reports import write_report
    from tests.test_reports import corr, make_run

    scores = [{"split": "all", "image": f"i{k}.png", "mos": float(k), "score": 1.0 if k < 7 else 2.0 + k,
               "latent": 0.0, "sd": 0.1, "n_anchors_ok": 3, "status": "ok", "error": ""} for k in range(10)]
    ds = {"higher_is_better": True, "n_images": 10, "n_failed": 0, "summary_over": "all",
          "splits": {"all": corr(0.6, 0.5, n=10)}}
    run_dir = make_run(tmp_path, "r", {"D": ds}, scores={"D": scores})
    md, html = write_report(run_dir)
    text = md.read_text()
    assert "> **AMBER: degenerate results" in text and "RED" not in text
    assert "D: near-constant predictions: 4 distinct scores over 10 images, 7 images share one score" in text
    assert 'class="amber"' in html.read_text()


def test_a_logistic_leaving_the_mos_range_is_a_failed_fit(monkeypatch):
    from harness.core import metrics

    # what curve_fit returned for the count-mode run: asymptotes far outside a 0-5 MOS range
    wild = np.array([27.0, -87.0, 0, 1])
    monkeypatch.setattr(metrics.optimize, "curve_fit", lambda f, x, y, p0, maxfev: (wild, None))
    fit = metrics.fit_logistic(np.linspace(0, 1, 20), np.linspace(0, 5, 20))
    assert not fit.ok and "far outside the MOS range 0 to 5" in fit.message
