"""Run reports: built by hand from run folders that follow the runner's data contract.

`make_run` and `synthetic_dataset` are shared with the plot and leaderboard tests.
"""
from __future__ import annotations

import json
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from harness.core.metrics import correlations
from harness.core.profiles import Profile
from harness.report.reports import summary_text, write_report
from harness.run.evaluation import summarise
from harness.run.record import (AnchorsInfo, ComparisonRow, Counts, DatasetInfo, Manifest, Metrics, ModelInfo, RunFolderError,
                                ScoreRow, Seeds, read_run, write_run)


def corr(srcc, plcc_logistic, n=100, n_dropped=0, **more):
    """A split's correlation dict as `harness.core.metrics.correlations` returns it."""
    return {"srcc": srcc, "krcc": srcc * 0.8, "plcc": plcc_logistic - 0.01, "plcc_logistic": plcc_logistic,
            "rmse_logistic": 0.4, "n": n, "n_dropped": n_dropped, "logistic_ok": True, **more}


def synthetic_dataset(seed, n_images=60, splits=("1", "2", "3"), n_failed=0, higher_is_better=True,
                      summary_over=None):
    """Scores.csv rows and the metrics.json entry of one dataset, both made the runner's way: one
    scores row per image and named split it belongs to (or "all" when in none); "all" in `splits`
    is the whole-dataset group; correlations from `harness.core.metrics`."""
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1.0, 5.0, n_images)
    latent = (mos - 3.0) + rng.normal(0.0, 0.6, n_images)
    if not higher_is_better:
        latent = -latent
    score = 100.0 / (1.0 + np.exp(-latent))
    failed = set(rng.choice(n_images, size=n_failed, replace=False).tolist())
    members = {s: (np.arange(n_images) if s == "all" else
                   np.sort(rng.choice(n_images, size=int(0.6 * n_images), replace=False))) for s in splits}
    entry = {"higher_is_better": higher_is_better, "n_images": n_images, "n_failed": n_failed, "splits": {}}
    if summary_over:
        entry["summary_over"] = summary_over
    pred = np.array([np.nan if i in failed else score[i] for i in range(n_images)])
    for split, idx in members.items():
        entry["splits"][split] = correlations(pred[idx], mos[idx], higher_is_better=higher_is_better)
    rows = []
    for i in range(n_images):
        bad = i in failed
        for split in [s for s in splits if s != "all" and i in members[s]] or ["all"]:
            rows.append({"split": split, "image": f"img_{i:03d}.png", "mos": mos[i],
                         "score": np.nan if bad else score[i], "latent": np.nan if bad else latent[i],
                         "sd": np.nan if bad else 0.3, "n_anchors_ok": 3 if bad else 5,
                         "status": "failed" if bad else "ok",
                         "error": f"ImageError: img_{i:03d}.png: truncated file" if bad else ""})
    return rows, entry


def make_run(root, run_id, datasets, *, label="tiny-model", profile="paper", mode="soft",
             created="2026-11-26T06:00:00+00:00", scores=None, counts=None, dropped=None) -> Path:
    """Write a run folder through the run record's writer.

    datasets: name -> metrics.json entry (summary_over "splits" unless given; the summary over
    splits is computed the runner's way); scores: name -> scores.csv rows (without dataset, path);
    dropped: name -> the items --drop-bad left out (manifest.json).
    """
    entries = {}
    for name, d in datasets.items():
        d = {"summary_over": "splits", **d}
        entries[name] = {**d, "summary": summarise(d["splits"], d["summary_over"]) if d["splits"] else {}}
    rows = [ScoreRow(dataset=name, path=f"/data/{r['image']}", **r) for name, rs in (scores or {}).items() for r in rs]
    manifest = Manifest(
        run_id=run_id, created=created,
        model=ModelInfo(spec=f"hf:/models/{label}", label=label, options={},
                        fingerprint={"backend": "hf", "dtype": "float32"}, fingerprint_hash="0123456789abcdef"),
        order="anchor_first", batch_size=16, anchors_in_test=[], datasets_config=[], anchors_config={},
        seeds=Seeds(bootstrap=0, official_adam=0), bootstrap=0, cache=None, profile=Profile(profile), mode=mode,
        anchors=AnchorsInfo(name="koniq-default", source="koniq", images=["a1.jpg", "a2.jpg", "a3.jpg"],
                            mos=[1.5, 2.75, 4.0], std=[0.2, 0.3, 0.25], digest="feedbeef", fixed_matrix=None,
                            matrix_source="comparator", matrix=None),
        datasets=[DatasetInfo(name=n, root="/data", n_images=d["n_images"], higher_is_better=d["higher_is_better"],
                              splits=list(d["splits"]), summary_over=d["summary_over"],
                              dropped=(dropped or {}).get(n, []))
                  for n, d in entries.items()],
        versions={"numpy": np.__version__, "torch": "2.14.1"}, git_revision="abc1234",
        timings={"plan": 0.01, "compare": 12.5, "solve": 0.2},
        counts=Counts(**{"pairs_total": 1000, "pairs_cached": 400, "pairs_computed": 600, "pairs_failed": 0,
                         "images_total": sum(d["n_images"] for d in entries.values()), "images_failed": 0,
                         **(counts or {})}),
        map_converged_fraction=1.0, anchors_unusable=[])
    metrics = Metrics(run_id=run_id, model_label=label, profile=profile, mode=mode, datasets=entries)
    c = manifest.counts  # one comparisons.csv row per pair counted, as the runner writes them
    pairs = [ComparisonRow(first="a1.jpg", second=f"t{i}.jpg", role="test", logprobs=[-1.6] * 5, preference=0.5,
                           status="ok" if i >= c.pairs_failed else "failed", error="", cached=i < c.pairs_cached)
             for i in range(c.pairs_total)]
    return write_run(Path(root) / run_id, manifest, metrics, rows, pairs)


def edit_json(path: Path, change) -> None:
    """Rewrite a JSON file of a run folder by hand (to make it malformed)."""
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _f3(x):
    return f"{x:.3f}"


def assert_md_tables_well_formed(md: str):
    """Every Markdown table has a header, a separator and rows of the same (unescaped) cell count."""
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert tables
    for t in tables:
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in t}
        assert len(widths) == 1, t
        assert re.fullmatch(r"\|(\s*-*:?-+:?\s*\|)+", t[1]), t[1]


@pytest.fixture
def two_dataset_run(tmp_path):
    live_rows, live = synthetic_dataset(1, splits=("1", "2", "3", "4"), n_failed=3)
    koniq_rows, koniq = synthetic_dataset(2, n_images=40, splits=("all",), higher_is_better=False)
    counts = {"pairs_total": 1000, "pairs_cached": 0, "pairs_computed": 993, "pairs_failed": 7, "images_failed": 3}
    run = make_run(tmp_path, "run-1", {"LIVE": live, "KonIQ | test": koniq}, label="tiny <random> LMM",
                   scores={"LIVE": live_rows, "KonIQ | test": koniq_rows}, counts=counts)
    return run, {"LIVE": live, "KonIQ | test": koniq}


def test_report_shows_the_run_metrics_and_failures(two_dataset_run):
    run_dir, datasets = two_dataset_run
    md_path, html_path = write_report(run_dir)
    assert md_path == run_dir / "report.md" and html_path == run_dir / "report.html"
    md = md_path.read_text()
    assert_md_tables_well_formed(md)
    # who, how, with what
    for text in ("tiny <random> LMM", "hf:/models/tiny <random> LMM", "0123456789abcdef", "koniq-default",
                 "feedbeef", "comparator", "abc1234", "torch | 2.14.1", "| compare | 12.50 |"):
        assert text in md, text
    # failures prominently at the top, with the failed images and their reasons
    head = md.split("## Results")[0]
    assert "**FAILURES: 7 of 1000 pairs failed; 3 images failed (3 failed images in scores.csv)." in head
    failed = sorted({r["image"] for r in synthetic_dataset(1, splits=("1", "2", "3", "4"), n_failed=3)[0]
                     if r["status"] == "failed"})
    assert len(failed) == 3
    for image in failed:
        assert f"| LIVE | {image} | ImageError: {image}: truncated file |" in md
    # every split's numbers, as in metrics.json
    for name, ds in datasets.items():
        for split, c in ds["splits"].items():
            row = (f"| {split} | {c['n']} | {c['n_dropped']} | {_f3(c['srcc'])} | {_f3(c['krcc'])} | "
                   f"{_f3(c['plcc'])} | {_f3(c['plcc_logistic'])} | {_f3(c['rmse_logistic'])} | ok |")
            assert row in md, row
    # the summary row: median and sample sd over splits, computed independently here
    srcc = [c["srcc"] for c in datasets["LIVE"]["splits"].values()]
    expected = f"{_f3(statistics.median(srcc))} ± {_f3(statistics.stdev(srcc))}"
    summary_row = next(line for line in md.splitlines() if line.startswith("| LIVE |"))
    assert summary_row.startswith("| LIVE | 60 | **3** | 0 | 4 splits | " + expected + " |"), summary_row
    koniq_row = next(line for line in md.splitlines() if line.startswith("| KonIQ \\| test |"))
    assert "±" not in koniq_row and f"| {_f3(datasets['KonIQ | test']['splits']['all']['srcc'])} |" in koniq_row
    # plots linked by relative path, files present
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 2 and all(not Path(p).is_absolute() and (run_dir / p).stat().st_size > 0 for p in links)


def test_every_dropped_item_is_counted_and_listed(tmp_path):
    """Items --drop-bad left out, over two datasets: each counted (total and per dataset), listed up to the
    listing limit, never confused with the images a split leaves out of its correlations."""
    from harness.report.reports import MAX_FAILED_LISTED

    rows, ds = synthetic_dataset(4, n_images=30, splits=("1", "2"), n_failed=2)
    many = ["unreadable row: line 4: score is not a number ('<b>')"] + [
        f"missing file: gone{k}.png: not found at /data/gone{k}.png" for k in range(MAX_FAILED_LISTED + 2)]
    few = ["duplicate: x | y.png: same image as record 0", "bad image: z.png: not an image"]
    run_dir = make_run(tmp_path, "r", {"LIVE": ds, "CSIQ": synthetic_dataset(5, n_images=20)[1]},
                       scores={"LIVE": rows}, dropped={"LIVE": many, "CSIQ": few})
    md_path, html_path = write_report(run_dir)
    md = md_path.read_text()
    assert_md_tables_well_formed(md)
    total = len(many) + len(few)
    assert f"**DROPPED: {total} dataset item(s) left out as bad (--drop-bad) before scoring" in md.split("## Results")[0]
    assert f"{total} dataset item(s) left out as bad (--drop-bad), the first {MAX_FAILED_LISTED} listed" in md
    listed = md.split("## Dropped items")[1].split("## Pair counts")[0]
    assert sum(line.startswith("| LIVE |") for line in listed.splitlines()) == MAX_FAILED_LISTED
    assert "| LIVE | missing file: gone0.png: not found at /data/gone0.png |" in listed
    assert next(line for line in md.splitlines() if line.startswith("| LIVE |")).startswith("| LIVE | 30 | **2** | "
                                                                                            f"**{len(many)}** |")
    assert next(line for line in md.splitlines() if line.startswith("| CSIQ |")).startswith("| CSIQ | 20 | 0 | **2** |")
    assert f"**{len(many)} items dropped as bad**" in md and "| Split | n | Left out |" in md
    html = html_path.read_text()
    ET.fromstring(html)
    assert f"DROPPED: {total} dataset item(s)" in html and "score is not a number (&#39;&lt;b&gt;&#39;)" in html
    # a dataset without dropped items says so
    clean = make_run(tmp_path, "clean", {"LIVE": ds}, scores={"LIVE": rows})
    md = write_report(clean)[0].read_text()
    assert "DROPPED" not in md and md.split("## Dropped items")[1].split("##")[0].strip() == "None."


def test_report_html_is_well_formed_and_escaped(two_dataset_run):
    run_dir, datasets = two_dataset_run
    _, html_path = write_report(run_dir)
    html = html_path.read_text()
    root = ET.fromstring(html)            # strict XML parse: every tag closed, every entity valid
    assert "tiny &lt;random&gt; LMM" in html and "<random>" not in html
    failures = [p for p in root.iter("p") if p.get("class") == "failures"]
    assert len(failures) == 1 and "7 of 1000 pairs failed" in failures[0].text
    srcs = [img.get("src") for img in root.iter("img")]
    assert sorted(srcs) == ["plots/facets_LIVE.png", "plots/scatter_KonIQ_test_all.png", "plots/scatter_LIVE_1.png"]
    for src in srcs:
        assert not Path(src).is_absolute() and (run_dir / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = ["".join(td.itertext()) for td in root.iter("td")]
    for c in datasets["LIVE"]["splits"].values():
        assert _f3(c["plcc_logistic"]) in cells


def test_report_without_failures_says_so(tmp_path):
    rows, ds = synthetic_dataset(5, splits=("all",))
    run_dir = make_run(tmp_path, "clean", {"CSIQ": ds}, scores={"CSIQ": rows})
    md, html = write_report(run_dir)
    assert "> No failures: 0 of 1000 pairs failed, 0 images failed." in md.read_text()
    assert "FAILURES" not in md.read_text() and "FAILURES" not in html.read_text()


def test_dataset_with_every_image_failed_is_reported_without_plot(tmp_path):
    rows, ds = synthetic_dataset(6, n_images=10, splits=("all",), n_failed=10)
    run_dir = make_run(tmp_path, "allfail", {"BID": ds}, scores={"BID": rows},
                       counts={"pairs_total": 50, "pairs_cached": 0, "pairs_computed": 0, "pairs_failed": 50,
                               "images_failed": 10})
    md = write_report(run_dir)[0].read_text()
    assert "No plot: no image of this dataset has both a score and a MOS." in md
    assert "10 failed image(s):" in md and "| BID | 10 | **10** | 0 | all | n/a (1 undefined split) |" in md


def test_a_malformed_run_folder_gets_no_report(tmp_path):
    """The report reads through the run record: a bad folder is one error naming file and field."""
    rows, ds = synthetic_dataset(7, splits=("all",))
    run_dir = make_run(tmp_path, "r", {"LIVE": ds}, scores={"LIVE": rows})
    edit_json(run_dir / "manifest.json", lambda m: m["counts"].pop("pairs_total"))
    with pytest.raises(RunFolderError, match=r"manifest.json: field 'counts.pairs_total': missing"):
        write_report(run_dir)
    assert not (run_dir / "report.md").exists()
    with pytest.raises(RunFolderError, match="run folder not found"):
        write_report(tmp_path / "nope")


def test_image_names_stay_text_in_the_report(tmp_path):
    """Image names such as "NA" or "null" are names, not missing values."""
    rows, ds = synthetic_dataset(8, n_images=12, splits=("all",), n_failed=2)
    failed = [r for r in rows if r["status"] == "failed"]
    failed[0]["image"], failed[1]["image"] = "NA", "null"
    run_dir = make_run(tmp_path, "r", {"LIVE": ds}, scores={"LIVE": rows})
    md = write_report(run_dir)[0].read_text()
    assert "| LIVE | NA | ImageError:" in md and "| LIVE | null | ImageError:" in md


def test_runner_style_summary_over_splits_or_all(tmp_path):
    """The runner writes an "all" group beside the named splits and says which one the headline uses."""
    rows_s, over_splits = synthetic_dataset(11, splits=("all", "1", "2", "3"), summary_over="splits")
    rows_a, over_all = synthetic_dataset(12, splits=("all", "1", "2"), summary_over="all")
    rows_1, one_split = synthetic_dataset(14, splits=("1",))
    unlabeled = {"higher_is_better": True, "n_images": 4, "n_failed": 0, "splits": {}, "summary_over": "all"}
    run_dir = make_run(tmp_path, "r", {"CSIQ": over_splits, "KADID": over_all, "TID": one_split, "mine": unlabeled},
                       scores={"CSIQ": rows_s, "KADID": rows_a, "TID": rows_1})
    md = write_report(run_dir)[0].read_text()
    named = [over_splits["splits"][s]["srcc"] for s in ("1", "2", "3")]
    csiq = next(line for line in md.splitlines() if line.startswith("| CSIQ |"))
    assert csiq.startswith(f"| CSIQ | 60 | 0 | 0 | 3 splits | {_f3(statistics.median(named))} ± "
                           f"{_f3(statistics.stdev(named))} |"), csiq
    kadid = next(line for line in md.splitlines() if line.startswith("| KADID |"))
    assert kadid.startswith(f"| KADID | 60 | 0 | 0 | all | {_f3(over_all['splits']['all']['srcc'])} |"), kadid
    assert f"| TID | 60 | 0 | 0 | 1 split | {_f3(one_split['splits']['1']['srcc'])} |" in md
    assert "| mine | 4 | 0 | 0 | - | no MOS |" in md and "No ground-truth scores for this dataset" in md
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == ["facets_CSIQ.png", "facets_KADID.png",
                                                                    "scatter_CSIQ_all.png", "scatter_KADID_all.png",
                                                                    "scatter_TID_1.png"]


def test_bad_summary_over_is_rejected(tmp_path):
    _, ds = synthetic_dataset(13, splits=("1", "2"))
    run_dir = make_run(tmp_path, "r", {"LIVE": ds})
    edit_json(run_dir / "metrics.json", lambda m: m["datasets"]["LIVE"].update(summary_over="median"))
    with pytest.raises(RunFolderError, match=r"metrics.json: field 'datasets.LIVE.summary_over': Input should be "
                                             r"'splits' or 'all' \(got 'median'\)"):
        read_run(run_dir)
    edit_json(run_dir / "metrics.json", lambda m: m["datasets"]["LIVE"].update(summary_over="all"))
    with pytest.raises(RunFolderError, match=r"field 'datasets.LIVE': the summary is over the whole dataset but "
                                             r"there is no 'all' split"):
        read_run(run_dir)


def test_report_of_a_real_runner_output_shows_its_summary(tmp_path):
    """End to end on the runner's own files (classical comparator, embedded demo benchmark): the
    headline numbers the report shows are the median and sd over the splits the runner measured."""
    from harness.report.reports import METRIC_COLUMNS
    from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

    (run_dir,) = run(RunConfig(model="classical", datasets=[DatasetSpec("demo")],
                               anchors=AnchorSpec(source="select", dataset="demo"), out_dir=str(tmp_path / "runs"),
                               cache=str(tmp_path / "cache.sqlite")), progress=False)
    assert not (run_dir / "report.md").exists()  # the caller writes reports, the runner does not
    md_path, html_path = write_report(run_dir)
    ET.fromstring(html_path.read_text())
    md = md_path.read_text()
    assert_md_tables_well_formed(md)
    for name, ds in read_run(run_dir).metrics.datasets.items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        for key, _ in METRIC_COLUMNS:
            values = [getattr(ds.splits[s], key) for s in ds.over]
            assert ds.summary[key].median == statistics.median(values)
            assert f" {summary_text(ds.summary[key])} |" in row
    assert (run_dir / "plots" / "scatter_demo_all.png").stat().st_size > 0


def test_the_command_line_writes_reports_unless_told_not_to(tmp_path, capsys):
    """`c2s run` and `c2s rescore` write the report of the folder the runner wrote; --no-report skips it."""
    from harness.cli import main

    assert main(["run", "--model", "classical", "--dataset", "demo", "--anchors", "select", "--anchors-dataset",
                 "demo", "--out", str(tmp_path / "runs"), "--cache", str(tmp_path / "c.sqlite"),
                 "--run-id", "r"]) == 0
    run_dir = tmp_path / "runs" / "r"
    assert (run_dir / "report.md").is_file() and (run_dir / "report.html").is_file()
    out = capsys.readouterr().out
    assert out.startswith(f"{run_dir}  [classical | paper | soft]") and "demo" in out and "SRCC" in out
    assert main(["rescore", str(run_dir), "--link", "logit", "--no-report"]) == 0
    (rescored,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("r-rescored-")]
    assert not (rescored / "report.md").exists() and (rescored / "metrics.json").is_file()
