"""Run folders through the real `c2s` (issue 10, classes 4 and 9): a folder appears complete (record, report
and plots) or not at all, a full disk at any point leaves the old run whole and readable, a run id names one
folder inside --out, an id is never silently reused by another configuration, no command writes over its
inputs, and every item dropped by --drop-bad is counted and listed."""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import harness.report.plots as plots
import harness.report.reports as reports
import harness.run.record as record
import harness.run.executors as executors
import harness.run.runner as runner
from harness.cli import main
from harness.run.record import read_run
from tests.conftest import noise_pngs


def _manifest(folder: Path, rows, name="m.csv") -> Path:
    path = folder / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos", "split"])
        w.writerows(rows)
    return path


def make_setup(tmp_path: Path) -> dict:
    """Two small labelled datasets with two splits each, an anchors file of their own, and a pair cache."""
    data = tmp_path / "data"
    data.mkdir()
    imgs = [Path(p).name for p in noise_pngs(data, [(20, 20)] * 10, seed=3)]
    a = _manifest(data, [(p, 1.0 + k, "1" if k % 2 else "2") for k, p in enumerate(imgs[:6])], "a.csv")
    b = _manifest(data, [(p, 5.0 - k, "1" if k % 2 else "2") for k, p in enumerate(imgs[4:])], "b.csv")
    (tmp_path / "anchors").mkdir()
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"images": noise_pngs(tmp_path / "anchors", [(20, 20)] * 3, seed=9, prefix="a"),
                                   "mos": [1.0, 2.0, 3.0], "std": [0.3, 0.3, 0.3]}))
    return {"root": data, "a": a, "b": b, "anchors": anchors, "out": tmp_path / "runs",
            "cache": tmp_path / "cache.sqlite", "tmp": tmp_path}


@pytest.fixture
def setup(tmp_path):
    return make_setup(tmp_path)


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory) -> Path:
    """A finished run with its report and plots (written once; tests work on copies)."""
    s = make_setup(tmp_path_factory.mktemp("reported"))
    assert c2s_run(s) == 0
    return s["out"] / "r"


def c2s_run(s, *extra, dataset="a", run_id="r") -> int:
    args = ["run", "--model", "classical", "--dataset", f"{dataset}={s[dataset]}", "--root", str(s["root"]),
            "--anchors", str(s["anchors"]), "--out", str(s["out"]), "--cache", str(s["cache"])]
    return main(args + (["--run-id", run_id] if run_id is not None else []) + list(extra))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def enospc(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_on_call(monkeypatch, owner, name: str, nth: int) -> None:
    """`owner.name` raises ENOSPC on its nth call (a disk that fills up part-way)."""
    real, calls = getattr(owner, name), []

    def flaky(*args, **kwargs):
        calls.append(1)
        return enospc() if len(calls) == nth else real(*args, **kwargs)
    monkeypatch.setattr(owner, name, flaky)


def fail_final_rename(monkeypatch) -> None:
    """The rename of the finished temporary folder into place fails (after the old one moved aside)."""
    real = os.rename

    def rename(src, dst):
        return enospc() if ".tmp-" in Path(src).name else real(src, dst)
    monkeypatch.setattr(record.os, "rename", rename)


# --- atomic run folders ---------------------------------------------------------------------------------------

#: where the disk fills up during a re-run; the report's faults need a report written
FAULTS = {
    "scores.csv": lambda mp: fail_on_call(mp, record, "_write_csv", 1),
    "comparisons.csv": lambda mp: fail_on_call(mp, record, "_write_csv", 2),
    "manifest.json": lambda mp: fail_on_call(mp, record, "_write_json", 2),
    "plot": lambda mp: fail_on_call(mp, plots, "scatter_plot", 2),
    "report.html": lambda mp: fail_on_call(mp, reports, "template_env", 2),
    "final rename": fail_final_rename,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_full_disk_during_a_rerun_leaves_the_old_run_whole(setup, reported_run, fault, monkeypatch, capsys):
    s = setup
    old = Path(shutil.copytree(reported_run, s["out"] / "r"))
    before = snapshot(old)
    assert {"report.md", "report.html", "manifest.json"} <= set(before) and any(k.startswith("plots/") for k in before)
    FAULTS[fault](monkeypatch)
    capsys.readouterr()
    report = [] if fault in ("plot", "report.html") else ["--no-report"]
    assert c2s_run(s, "--dataset", f"b={s['b']}", "--overwrite", *report) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert snapshot(old) == before
    assert sorted(p.name for p in s["out"].iterdir()) == ["r"]  # no temporary or moved-aside folder left
    assert main(["rescore", str(old), "--link", "logit", "--no-report"]) == 0
    assert main(["leaderboard", str(s["out"]), "--out", str(s["tmp"] / "lb"), "--formats", "csv"]) == 0


def test_a_rerun_replaces_every_file_and_a_new_folder_holds_its_report_when_it_appears(setup, monkeypatch):
    s = setup
    assert c2s_run(s) == 0
    seen = []
    real = record._replace_dir

    def check_complete(new, target):  # what is about to appear is already whole
        seen.append(sorted(p.name for p in new.iterdir()))
        return real(new, target)
    monkeypatch.setattr(record, "_replace_dir", check_complete)
    assert c2s_run(s, "--no-report") == 0  # the same configuration again: a resume, allowed
    assert seen == [["comparisons.csv", "manifest.json", "metrics.json", "scores.csv"]]
    assert sorted(p.name for p in (s["out"] / "r").iterdir()) == seen[0]  # the old report and plots are gone
    assert c2s_run(s) == 0
    assert seen[1] == ["comparisons.csv", "manifest.json", "metrics.json", "plots", "report.html", "report.md",
                       "scores.csv", "thumbs"]


def test_leftovers_of_interrupted_writes_are_never_read_as_runs(setup, reported_run, capsys):
    s = setup
    run_dir = Path(shutil.copytree(reported_run, s["out"] / "r"))
    tmp = s["out"] / ".r.tmp-4242-0123abcd"
    old = s["out"] / ".r.old-4243-89abcdef"
    shutil.copytree(run_dir, tmp)
    shutil.copytree(run_dir, old)
    capsys.readouterr()
    assert main(["leaderboard", str(s["out"]), "--out", str(s["tmp"] / "lb"), "--formats", "json"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unfinished folder(s) of interrupted writes" in err and ".r.tmp-4242-0123abcd" in err
    cells = json.loads((s["tmp"] / "lb" / "leaderboard.json").read_text())["cells"]
    assert [c["run_dir"] for c in cells] == [str(run_dir)]
    for leftover in (tmp, old):
        for command in (["rescore", str(leftover)], ["leaderboard", str(leftover), "--out", str(s["tmp"] / "x")]):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "unfinished folder of an interrupted write of run 'r'" in err
            assert f"use {run_dir} instead" in err
    assert sorted(p.name for p in s["out"].iterdir()) == [".r.old-4243-89abcdef", ".r.tmp-4242-0123abcd", "r"]


# --- run ids name one folder inside --out ----------------------------------------------------------------------

BAD_IDS = {"../escape": "path separator", "/tmp/abs": "path separator", "a/b": "path separator",
           "a\\b": "path separator", "": "is empty", "..": "starts with a dot", ".hidden": "starts with a dot",
           "a\x00b": "control character", "line\nbreak": "control character", "x" * 201: "201 bytes long",
           "é" * 101: "202 bytes long"}


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_run_id_that_is_not_one_folder_name_is_refused(setup, run_id, monkeypatch, capsys):
    s = setup
    monkeypatch.setattr(executors, "load_comparator", lambda *a, **k: pytest.fail("model work before the refusal"))
    before = sorted(p.name for p in s["tmp"].iterdir())
    assert c2s_run(s, run_id=run_id) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s run: error: run id ") and BAD_IDS[run_id] in err and err.count("\n") == 1
    assert sorted(p.name for p in s["tmp"].iterdir()) == before and not Path("/tmp/abs").exists()
    config = s["tmp"] / "run.yaml"
    config.write_text(json.dumps({"model": "classical", "run_id": run_id, "out_dir": str(s["out"]),
                                  "datasets": [{"name": "a", "source": str(s["a"]), "root": str(s["root"])}],
                                  "anchors": {"source": str(s["anchors"])}}))
    assert main(["run", "--config", str(config)]) == 2
    assert "run id " in capsys.readouterr().err and not s["out"].exists()


@pytest.mark.parametrize("run_id", ["my run (v2)", "ünïcode", "a..b", "x" * 200, "with~tilde"])
def test_unusual_but_safe_run_ids_are_kept_as_given(setup, run_id):
    assert c2s_run(setup, "--no-report", run_id=run_id) == 0
    assert [p.name for p in setup["out"].iterdir()] == [run_id]
    assert read_run(setup["out"] / run_id).manifest.run_id == run_id


def test_rescore_refuses_an_output_id_that_leaves_its_folder(setup, capsys):
    s = setup
    assert c2s_run(s, "--no-report") == 0
    run_dir = s["out"] / "r"
    for name in ("manifest.json", "metrics.json"):  # a hostile or damaged folder
        doc = json.loads((run_dir / name).read_text())
        (run_dir / name).write_text(json.dumps({**doc, "run_id": "../../evil"}))
    capsys.readouterr()
    assert main(["rescore", str(run_dir), "--link", "logit"]) == 2
    assert "run id '../../evil-rescored-" in capsys.readouterr().err
    assert not list(s["tmp"].parent.glob("evil-rescored-*")) and sorted(p.name for p in s["out"].iterdir()) == ["r"]


# --- a run id is not reused by another configuration -------------------------------------------------------------

@pytest.mark.parametrize("change, differs", [
    (["--dataset", "PLACEHOLDER_B"], "datasets"),
    (["--profile", "official"], "profile"),
    (["--order", "both"], "order"),
    (["--limit", "3"], "--limit"),
    (["-o", "sigma=2"], "model options"),
    (["--mode", "count"], "mode"),
])
def test_reusing_a_run_id_for_another_configuration_is_refused_before_model_work(setup, change, differs,
                                                                                monkeypatch, capsys):
    s = setup
    assert c2s_run(s, "--no-report") == 0
    before = snapshot(s["out"] / "r")
    change = [f"b={s['b']}" if c == "PLACEHOLDER_B" else c for c in change]
    extra, dataset = (change[2:], "b") if change[0] == "--dataset" else (change, "a")
    monkeypatch.setattr(executors, "load_comparator", lambda *a, **k: pytest.fail("model work before the refusal"))
    capsys.readouterr()
    assert c2s_run(s, *extra, dataset=dataset) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s run: error: run id 'r' in ") and f"(different {differs})" in err
    assert "pass --overwrite (overwrite: true in YAML)" in err and err.count("\n") == 1
    assert snapshot(s["out"] / "r") == before
    monkeypatch.undo()
    # replaced (3 images of a are too few for a correlation: exit code 4, no result, yet a run folder)
    assert c2s_run(s, *extra, "--overwrite", "--no-report", dataset=dataset) == (4 if differs == "--limit" else 0)
    assert read_run(s["out"] / "r").manifest.datasets[0].name == dataset


@pytest.mark.parametrize("edit", ["fewer images", "another MOS", "another split"])
def test_a_manifest_edited_in_place_is_another_dataset(setup, edit, monkeypatch, capsys):
    """Same --dataset spec (the same file), other content: the folder's scored images and MOS decide."""
    s = setup
    rows = list(csv.reader(open(s["a"])))[1:]
    assert c2s_run(s, "--no-report") == 0
    before = snapshot(s["out"] / "r")
    rows = {"fewer images": rows[:-1], "another MOS": [[r[0], str(float(r[1]) + 0.5), r[2]] for r in rows],
            "another split": [[r[0], r[1], "3"] for r in rows]}[edit]
    _manifest(s["root"], rows, "a.csv")
    monkeypatch.setattr(executors, "load_comparator", lambda *a, **k: pytest.fail("model work before the refusal"))
    capsys.readouterr()
    assert c2s_run(s) == 2
    assert "(different images or MOS (the dataset files changed))" in capsys.readouterr().err
    assert snapshot(s["out"] / "r") == before


def test_the_same_data_again_is_the_same_run_whatever_its_numbers(setup):
    """A re-run reads the old folder's images and MOS back from scores.csv: awkward floats, a DMOS column
    (lower is better), splits and names with commas must compare equal to the manifest they came from."""
    s = setup
    rows = list(csv.reader(open(s["a"])))[1:]
    os.rename(s["root"] / rows[0][0], s["root"] / "a, b.png")
    rows[0][0] = "a, b.png"
    with open(s["a"], "w", newline="") as f:
        csv.writer(f).writerows([["image", "dmos", "split"]] + [[r[0], repr(0.1 * k + 1 / 3), r[2]]
                                                                for k, r in enumerate(rows)])
    assert c2s_run(s, "--no-report") == 0
    assert c2s_run(s, "--no-report") == 0


def test_a_changed_fingerprint_is_refused_before_any_pair_is_judged(setup, monkeypatch, capsys):
    s = setup
    assert c2s_run(s, "--no-report") == 0
    manifest = s["out"] / "r" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["model"]["fingerprint_hash"] = "0" * 16  # the checkpoint behind the same spec changed
    manifest.write_text(json.dumps(doc))
    monkeypatch.setattr(runner, "judge", lambda *a, **k: pytest.fail("pairs judged before the refusal"))
    capsys.readouterr()
    assert c2s_run(s, "--no-report") == 2
    assert "(different model fingerprint)" in capsys.readouterr().err


def test_yaml_overwrite_and_the_overwrite_flag_with_a_config(setup, capsys):
    s = setup
    assert c2s_run(s, "--no-report") == 0
    doc = {"model": "classical", "run_id": "r", "out_dir": str(s["out"]), "cache": str(s["cache"]), "reports": False,
           "datasets": [{"name": "b", "source": str(s["b"]), "root": str(s["root"])}],
           "anchors": {"source": str(s["anchors"])}}
    config = s["tmp"] / "run.yaml"
    config.write_text(json.dumps(doc))
    assert main(["run", "--config", str(config)]) == 2
    assert "(different datasets)" in capsys.readouterr().err
    assert main(["run", "--config", str(config), "--overwrite"]) == 0
    config.write_text(json.dumps({**doc, "datasets": [{"name": "a", "source": str(s["a"]), "root": str(s["root"])}],
                                  "overwrite": True}))
    assert main(["run", "--config", str(config)]) == 0
    assert read_run(s["out"] / "r").manifest.datasets[0].name == "a"


def test_a_folder_that_is_not_a_run_is_never_replaced(setup, capsys):
    s = setup
    keep = s["out"] / "r"
    keep.mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert c2s_run(s, *extra) == 2
        assert "exists and is not a run folder: c2s never replaces it" in capsys.readouterr().err
    assert snapshot(keep) == {"notes.txt": b"mine"}
    (keep / "notes.txt").unlink()  # an empty folder holds nothing to lose
    assert c2s_run(s, "--no-report") == 0
    assert main(["rescore", str(keep), "--link", "logit", "--no-report"]) == 0  # rescore's target, too
    (target,) = s["out"].glob("r-rescored-*")
    shutil.rmtree(target)
    target.write_text("mine")
    capsys.readouterr()
    assert main(["rescore", str(keep), "--link", "logit", "--no-report"]) == 2
    assert "exists and is not a run folder: c2s never replaces it; choose another --out" in capsys.readouterr().err
    assert target.read_text() == "mine"


# --- inputs are never written ----------------------------------------------------------------------------------

def test_run_folders_never_replace_or_go_inside_an_input(setup, capsys):
    s = setup
    image = s["root"] / "img0.png"
    data = snapshot(s["root"])
    cases = [
        (["--out", str(s["tmp"]), "--overwrite"], "data", "a"),  # the run folder would be the dataset's folder
        (["--out", str(image)], "r", "a"),  # --out names an input image
        (["--out", str(s["root"])], "sub", "folder"),  # a run folder inside a dataset folder
    ]
    for extra, run_id, dataset in cases:
        s2 = {**s, "folder": s["root"]}
        assert c2s_run(s2, *extra, run_id=run_id, dataset=dataset) == 2, extra
        err = capsys.readouterr().err
        assert "would write over the input" in err and "inputs are never written" in err and err.count("\n") == 1
    assert snapshot(s["root"]) == data
    cache_inside = s["out"] / "r" / "cache.sqlite"
    assert c2s_run({**s, "cache": cache_inside}) == 2  # the replaced folder would hold the pair cache
    assert "would write over the input" in capsys.readouterr().err


def test_a_yaml_config_inside_the_run_folder_is_an_input(setup, capsys):
    s = setup
    assert c2s_run(s, "--no-report") == 0
    config = s["out"] / "r" / "again.yaml"
    config.write_text(json.dumps({"model": "classical", "run_id": "r", "out_dir": str(s["out"]), "reports": False,
                                  "cache": str(s["cache"]), "anchors": {"source": str(s["anchors"])},
                                  "datasets": [{"name": "a", "source": str(s["a"]), "root": str(s["root"])}]}))
    assert main(["run", "--config", str(config)]) == 2
    assert f"would write over the input {config}" in capsys.readouterr().err
    assert config.is_file()


@pytest.mark.parametrize("target", ["image", "symlink", "hardlink", "anchors", "cache"])
def test_score_never_writes_its_csv_over_an_input(setup, target, monkeypatch, capsys):
    s = setup
    image = s["root"] / "img1.png"
    s["cache"].write_bytes(b"")  # an (empty) cache file
    out = {"image": image, "anchors": s["anchors"], "cache": s["cache"]}.get(target, s["tmp"] / f"{target}.csv")
    if target == "symlink":
        out.symlink_to(image)
    elif target == "hardlink":
        os.link(image, out)
    before = image.read_bytes(), s["anchors"].read_bytes()
    monkeypatch.setattr(executors, "load_comparator", lambda *a, **k: pytest.fail("model work before the refusal"))
    assert main(["score", "--model", "classical", "--images", str(image), str(s["root"] / "img2.png"), "--out",
                 str(out), "--anchors", str(s["anchors"]), "--cache", str(s["cache"])]) == 2
    assert "would write over the input" in capsys.readouterr().err
    assert (image.read_bytes(), s["anchors"].read_bytes()) == before


def test_anchors_leaderboard_and_rescore_outputs_never_write_over_inputs(setup, capsys):
    s = setup
    manifest = s["a"].read_bytes()
    anchors = s["anchors"].read_bytes()
    assert main(["anchors", "select", "--dataset", f"a={s['a']}", "--root", str(s["root"]), "--alpha", "2",
                 "--beta", "1", "--out", str(s["a"])]) == 2
    assert main(["anchors", "matrix", "--anchors", str(s["anchors"]), "--from-mos", "--out", str(s["anchors"])]) == 2
    assert main(["anchors", "matrix", "--anchors", str(s["anchors"]), "--from-mos", "--out",
                 str(s["tmp"] / "anchors" / "a0.png")]) == 2
    assert c2s_run(s, "--no-report") == 0
    run_dir = s["out"] / "r"
    run_files = snapshot(run_dir)
    capsys.readouterr()
    assert main(["leaderboard", str(run_dir), "--out", str(run_dir)]) == 2
    assert main(["rescore", str(run_dir), "--link", "logit", "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("would write over the input" in line for line in err)
    assert (s["a"].read_bytes(), s["anchors"].read_bytes(), snapshot(run_dir)) == (manifest, anchors, run_files)


# --- dropped items are counted and listed --------------------------------------------------------------------

def test_every_item_dropped_as_bad_is_counted_listed_and_kept_by_rescore(setup, capsys):
    s = setup
    root = s["root"]
    (root / "broken.png").write_bytes(b"not an image")
    # a: 5 bad items over two splits (2 duplicates, 2 missing files, 1 broken image); b: 4 (an unreadable row,
    # an unreadable score, a duplicate, a missing file): 9 in all
    good = [(f"img{k}.png", 1.0 + k, "1" if k % 2 else "2") for k in range(10)]
    _manifest(root, good[:6] + [("img0.png", 5, "2"), ("img1.png", 6, "1"), ("gone1.png", 2, "1"),
                                ("gone2.png", 2, "2"), ("broken.png", 2, "1")], "a.csv")
    _manifest(root, good[4:] + [("", 2, "1"), ("img5.png", "x", "2"), ("img4.png", 3, "2"), ("gone3.png", 1, "1")],
              "b.csv")
    assert c2s_run(s, "--dataset", f"b={s['b']}", "--drop-bad", run_id="d") == 3  # a partial result
    out = capsys.readouterr().out
    assert "items dropped as bad 9 (listed in the report)" in out
    run_dir = s["out"] / "d"
    md = (run_dir / "report.md").read_text()
    assert "DROPPED: 9 dataset item(s) left out as bad (--drop-bad)" in md
    assert "9 dataset item(s) left out as bad (--drop-bad):" in md
    listed = md.split("## Dropped items")[1].split("## Pair counts")[0]
    assert sum(line.startswith("| a |") for line in listed.splitlines()) == 5
    assert sum(line.startswith("| b |") for line in listed.splitlines()) == 4
    for item in ("gone1.png", "gone2.png", "gone3.png", "broken.png", "duplicate: img0.png", "duplicate: img4.png",
                 "score is not a number"):
        assert item in listed
    assert "| a | 6 | 0 | **5** |" in md and "| b | 6 | 0 | **4** |" in md
    html = (run_dir / "report.html").read_text()
    assert "DROPPED: 9 dataset item(s)" in html and html.count("<tr><td>a</td><td>") >= 5
    assert main(["rescore", str(run_dir), "--link", "logit"]) == 3
    (rescored,) = s["out"].glob("d-rescored-*")
    assert sum(len(d.dropped) for d in read_run(rescored).manifest.datasets) == 9
    assert "DROPPED: 9 dataset item(s)" in (rescored / "report.md").read_text()
    lb = s["tmp"] / "lb"
    assert main(["leaderboard", str(run_dir), "--out", str(lb)]) == 0
    row = next(line for line in (lb / "leaderboard.md").read_text().splitlines() if line.startswith("| classical"))
    assert "| 0 / 5 |" in row and "| 0 / 4 |" in row
    cells = json.loads((lb / "leaderboard.json").read_text())["cells"]
    assert {c["dataset"]: (c["n_failed"], c["n_dropped"]) for c in cells} == {"a": (0, 5), "b": (0, 4)}
    with open(lb / "leaderboard.csv", newline="") as f:
        assert {r["dataset"]: r["n_dropped"] for r in csv.DictReader(f)} == {"a": "5", "b": "4"}
    assert "0 / 5" in (lb / "leaderboard.html").read_text()
