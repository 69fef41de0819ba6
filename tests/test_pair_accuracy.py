"""Pairwise prediction accuracy (docs/method.md, "Pairwise accuracy"): both readings against an independent
computation, by hand and through the real CLI (the embedded benchmark, a manifest with std), and rescore."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.levels import LEVELS
from harness.core.metrics import pair_accuracy
from harness.data.demo_data import build_demo_benchmark
from harness.run.record import read_run


def eqn2(q1, s1, q2, s2) -> int:
    """Eqn. 2 as the docs state it, written out case by case (boundaries go to the milder level)."""
    d, s = q1 - q2, math.sqrt(s1 * s1 + s2 * s2)
    if abs(d) <= s:
        return 2
    if abs(d) <= 2 * s:
        return 1 if d > 0 else 3
    return 0 if d > 0 else 4


def reference(pairs) -> dict:
    """Both accuracies by a plain loop over (mos1, std1, mos2, std2, preference, level) tuples."""
    hits = {k: [] for k in ("binary", "binary_similar", "binary_outside", "five_level", "five_level_similar",
                            "five_level_outside")}
    ties = no_std = failed = 0
    for q1, s1, q2, s2, p, lv in pairs:
        if math.isnan(p):
            failed += 1
            continue
        label = None if math.isnan(s1) or math.isnan(s2) else eqn2(q1, s1, q2, s2)
        no_std += label is None
        band = None if label is None else ("similar" if label == 2 else "outside")
        if q1 == q2:
            ties += 1
        else:
            right = (q2 > q1 and p > 0.5) or (q2 < q1 and p < 0.5)
            hits["binary"].append(right)
            if band:
                hits[f"binary_{band}"].append(right)
        if label is not None:
            hits["five_level"].append(lv == label)
            hits[f"five_level_{band}"].append(lv == label)
    out = {"n_failed": failed, "n_mos_ties": ties, "n_no_std": no_std}
    for k, v in hits.items():
        out[k], out[f"n_{k}"] = (sum(v) / len(v) if v else None), len(v)
    return out


def check(got: dict, want: dict) -> None:
    for k, v in want.items():
        if v is None:
            assert got[k] is None or math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(v, abs=1e-12), k


NAN = float("nan")
HAND = [
    # (mos1, std1, mos2, std2, P(second better), predicted level)
    pytest.param([(1, .5, 2, .5, .9, 3), (2, .5, 1, .5, .9, 1), (3, .5, 3, .5, .5, 2), (3, NAN, 5, .1, .8, 4)],
                 {"binary": 2 / 3, "n_binary": 3, "n_mos_ties": 1, "n_no_std": 1, "five_level": 1.0,
                  "n_five_level": 3, "binary_outside": .5, "n_binary_similar": 0}, id="ties-and-no-std"),
    pytest.param([(50, 10, 55, 10, .6, 3), (50, 10, 45, 10, .3, 2), (50, 0, 50, 0, .5, 2), (1, 1, 2, NAN, NAN, 4)],
                 {"binary": 1.0, "n_binary": 2, "binary_similar": 1.0, "n_binary_similar": 2, "five_level": 2 / 3,
                  "five_level_similar": 2 / 3, "n_five_level_outside": 0, "n_failed": 1}, id="similar-band"),
    pytest.param([(0, 1, 3, 1, .99, 4), (0, 1, 2, 1, .7, 4), (3, 1, 0, 1, .2, 0), (0, 3, 5, 4, .4, 3)],
                 {"binary": .75, "five_level": .5, "five_level_outside": 2 / 3, "n_five_level_outside": 3,
                  "binary_similar": 0.0}, id="boundaries"),
]


@pytest.mark.parametrize("pairs,expected", HAND)
def test_hand_made_pairs_match_the_reference_and_the_expected_numbers(pairs, expected):
    got = pair_accuracy(*np.array(pairs, dtype=np.float64).T)
    check(got, reference(pairs))
    check(got, expected)


def test_a_boundary_pair_is_the_milder_level_and_mirrors():
    # |d| = s exactly (3-4-5: s = 5): similar both ways; |d| = 2s: worse / better, never inferior / superior
    assert pair_accuracy([0], [3], [5], [4], [.5], [2])["five_level"] == 1.0
    assert pair_accuracy([10], [3], [0], [4], [.5], [1])["five_level"] == 1.0
    assert pair_accuracy([0], [3], [10], [4], [.5], [3])["five_level"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pairs_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = 300
    q1, q2 = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n).astype(float)  # many ties
    s1, s2 = rng.choice([0.0, .5, 1.0, NAN], n), rng.uniform(0, 2, n)
    p = np.where(rng.random(n) < .05, NAN, rng.choice([.1, .5, .7, .95], n))
    lv = rng.integers(0, 5, n)
    got = pair_accuracy(q1, s1, q2, s2, p, lv)
    check(got, reference(zip(q1, s1, q2, s2, p, lv)))
    assert got["n_pairs"] + got["n_failed"] == n


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one value per pair"):
        pair_accuracy([1, 2], [0, 0], [1], [0], [.5], [2])
    with pytest.raises(ValueError, match="MOS must be finite"):
        pair_accuracy([NAN], [0], [1], [0], [.5], [2])


# --- through the CLI -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A slice of the embedded benchmark, and beside it the same images with a std each (a manifest of ours)."""
    ds = build_demo_benchmark(tmp_path_factory.mktemp("bench"), size=48, sources=["coins"])
    items = json.loads((ds.root / "manifest.json").read_text())
    rng = np.random.default_rng(7)
    for item in items:
        item["std"] = float(rng.choice([0.0, 0.2, 0.5, 1.0]))
    (ds.root / "with_std.json").write_text(json.dumps(items))
    return ds.root


def run_cli(tmp_path, run_id, *dataset) -> Path:
    out = tmp_path / "runs"
    assert main(["run", "--model", "classical", *dataset, "--anchors", "select", "--out", str(out),
                 "--run-id", run_id, "--no-report"]) == 0
    return out / run_id


def independent(run_dir: Path, dataset: str, split: str, std: dict | None) -> dict:
    """Both accuracies of one split, read from the folder's CSV files alone (`std`: image -> std)."""
    with open(run_dir / "scores.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == dataset]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    anchors = set(manifest["anchors"]["images"])
    mos = {r["path"]: float(r["mos"]) for r in rows}
    image = {r["path"]: r["image"] for r in rows}
    members = {r["path"] for r in rows if r["split"] == split or split == "all"} | anchors
    pairs = []
    with open(run_dir / "comparisons.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            a, b = r["first"], r["second"]
            if r["role"] != "test" or a == b or not {a, b} <= set(mos) or not {a, b} <= members:
                continue
            lp = [float(r[level]) for level in LEVELS]
            sa, sb = (NAN, NAN) if std is None else (std[image[a]], std[image[b]])
            pairs.append((mos[a], sa, mos[b], sb, float(r["preference"]), int(np.argmax(lp))))
    assert pairs
    return reference(pairs)


def test_the_demo_run_records_the_binary_accuracy_per_split(bench, tmp_path):
    run_dir = run_cli(tmp_path, "demo", "--dataset", f"bench={bench / 'manifest.json'}")
    ds = read_run(run_dir).metrics.datasets["bench"]
    assert set(ds.pair_accuracy) == set(ds.splits)
    for split in ("all", "jpeg", "gaussian_blur"):
        got = ds.pair_accuracy[split].model_dump()
        check(got, independent(run_dir, "bench", split, None))
        assert got["n_no_std"] == got["n_pairs"] and got["five_level"] != got["five_level"]  # no std: no Eqn. 2
        assert 0.5 < got["binary"] <= 1.0  # the classical comparator orders distortion levels well
    med = np.median([ds.pair_accuracy[s].binary for s in ds.over])
    assert ds.pair_accuracy_summary["binary"].median == pytest.approx(med)


def test_a_manifest_with_std_gets_the_five_level_accuracy_and_rescore_repeats_it(bench, tmp_path):
    run_dir = run_cli(tmp_path, "std", "--dataset", f"mine={bench / 'with_std.json'}", "--root", str(bench))
    std = {i["image"]: i["std"] for i in json.loads((bench / "with_std.json").read_text())}
    ds = read_run(run_dir).metrics.datasets["mine"]
    for split in ds.pair_accuracy:
        got = ds.pair_accuracy[split].model_dump()
        check(got, independent(run_dir, "mine", split, std))
        assert got["n_no_std"] == 0 and got["n_five_level"] == got["n_pairs"] > 0
        assert got["n_five_level_similar"] + got["n_five_level_outside"] == got["n_five_level"]
    assert main(["rescore", str(run_dir), "--out", str(tmp_path / "again"), "--no-report"]) == 0
    again = read_run(next((tmp_path / "again").iterdir())).metrics.datasets["mine"]
    assert again.pair_accuracy == ds.pair_accuracy and again.pair_accuracy_summary == ds.pair_accuracy_summary
    # count mode scores the arg-max verdict: the levels, so the five-level accuracy, are the same
    assert main(["rescore", str(run_dir), "--mode", "count", "--out", str(tmp_path / "count"), "--no-report"]) == 0
    count = read_run(next((tmp_path / "count").iterdir())).metrics.datasets["mine"]
    assert count.pair_accuracy["all"].five_level == ds.pair_accuracy["all"].five_level


def test_a_folder_without_pair_accuracy_or_std_still_reads_and_rescores(bench, tmp_path):
    run_dir = run_cli(tmp_path, "old", "--dataset", f"mine={bench / 'with_std.json'}", "--root", str(bench))
    doc = json.loads((run_dir / "metrics.json").read_text())
    for ds in doc["datasets"].values():
        del ds["pair_accuracy"], ds["pair_accuracy_summary"]
    (run_dir / "metrics.json").write_text(json.dumps(doc))
    with open(run_dir / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(run_dir / "scores.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "std"])
        w.writeheader()
        w.writerows([{k: v for k, v in r.items() if k != "std"} for r in rows])
    assert read_run(run_dir).metrics.datasets["mine"].pair_accuracy is None
    assert main(["rescore", str(run_dir), "--out", str(tmp_path / "re"), "--no-report"]) == 0
    acc = read_run(next((tmp_path / "re").iterdir())).metrics.datasets["mine"].pair_accuracy["all"]
    assert acc.n_no_std == acc.n_pairs and acc.binary is not None  # the std was lost with the column


def test_the_embedded_benchmark_by_name(tmp_path):
    run_dir = run_cli(tmp_path, "named", "--dataset", "demo", "--limit", "30")
    ds = read_run(run_dir).metrics.datasets["demo"]
    check(ds.pair_accuracy["all"].model_dump(), independent(run_dir, "demo", "all", None))
    assert ds.pair_accuracy["all"].n_pairs > 0 and read_run(run_dir).metrics.mode == "soft"


def test_the_report_shows_the_pairwise_table(bench, tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "--model", "classical", "--dataset", f"mine={bench / 'with_std.json'}", "--root", str(bench),
                 "--anchors", "select", "--out", str(out), "--run-id", "rep"]) == 0
    acc = read_run(out / "rep").metrics.datasets["mine"].pair_accuracy
    md, html = (out / "rep" / "report.md").read_text(), (out / "rep" / "report.html").read_text()
    for split, a in acc.items():
        row = (f"| {split} | {a.n_pairs} | {a.binary:.3f} ({a.n_binary}) | {a.binary_similar:.3f} "
               f"({a.n_binary_similar}) |")
        assert row in md
        assert f"<td class=\"num\">{a.five_level:.3f} ({a.n_five_level})</td>" in html
    assert "Pairwise accuracy" in md and "Five-level, similar band" in html


def test_leaderboard_columns_are_optional(bench, tmp_path, capsys):
    run_dir = run_cli(tmp_path, "lb", "--dataset", f"mine={bench / 'with_std.json'}", "--root", str(bench))
    summary = read_run(run_dir).metrics.datasets["mine"].pair_accuracy_summary
    assert main(["leaderboard", str(run_dir), "--out", str(tmp_path / "plain")]) == 0
    plain = (tmp_path / "plain" / "leaderboard.md").read_text()
    assert "Pair acc." not in plain and "pair_binary" not in (tmp_path / "plain" / "leaderboard.csv").read_text()
    assert main(["leaderboard", str(run_dir), "--out", str(tmp_path / "acc"), "--columns", "accuracy"]) == 0
    md = (tmp_path / "acc" / "leaderboard.md").read_text()
    assert "| mine Pair acc. | mine 5-level acc. |" in md
    assert f"| **{summary['binary'].median:.3f} ±" in md and f"| **{summary['five_level'].median:.3f} ±" in md
    with open(tmp_path / "acc" / "leaderboard.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["pair_five_level_median"]) == summary["five_level"].median
    assert "5-level acc.</th>" in (tmp_path / "acc" / "leaderboard.html").read_text()
    capsys.readouterr()
    assert main(["leaderboard", str(run_dir), "--out", str(tmp_path / "bad"), "--columns", "accuracy,nope"]) == 2
    assert capsys.readouterr().err.strip() == ("c2s leaderboard: error: --columns nope: not a column group; "
                                               "choose from accuracy")


def test_anchors_from_another_dataset_give_that_dataset_no_pairs(bench, tmp_path_factory, tmp_path):
    other = build_demo_benchmark(tmp_path_factory.mktemp("other"), size=48, sources=["camera"]).root
    run_dir = run_cli(tmp_path, "two", "--dataset", f"mine={bench / 'with_std.json'}",
                      "--dataset", f"other={other / 'manifest.json'}", "--anchors-dataset", "mine")
    ds = read_run(run_dir).metrics.datasets
    assert ds["mine"].pair_accuracy["all"].n_pairs > 0
    assert ds["other"].pair_accuracy["all"].n_pairs == 0 and math.isnan(ds["other"].pair_accuracy["all"].binary)
    assert ds["other"].pair_accuracy_summary["binary"].n == 0


def test_a_rating_run_has_no_pairwise_accuracy(bench, tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "--model", "py:tests.runner_support:CountingComparator", "-o", f"log={tmp_path / 'log'}",
                 "--dataset", f"mine={bench / 'with_std.json'}", "--root", str(bench), "--mode", "rating",
                 "--out", str(out), "--run-id", "rating"]) == 0
    assert read_run(out / "rating").metrics.datasets["mine"].pair_accuracy is None
    assert "Pairwise accuracy" not in (out / "rating" / "report.md").read_text()


@pytest.mark.parametrize("edit", [(".png", ".pnh"), ("/", "//x/")])
def test_rescore_refuses_a_path_column_that_is_not_the_image(bench, tmp_path, capsys, edit):
    run_dir = run_cli(tmp_path, "edited", "--dataset", f"mine={bench / 'with_std.json'}")
    scores = run_dir / "scores.csv"
    lines = scores.read_text().splitlines(True)
    cells = lines[3].split(",")
    cells[3] = cells[3].replace(*edit)  # the path column of one row (the image column keeps its name)
    lines[3] = ",".join(cells)
    scores.write_text("".join(lines))
    capsys.readouterr()
    assert main(["rescore", str(run_dir), "--out", str(tmp_path / "re"), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"c2s rescore: error: {scores} line 4: column 'path': ") and err.count("\n") == 1
    assert "is not image" in err and "under the root of dataset 'mine'" in err
