"""The run record: one schema, one writer, one reader; old folders read, newer and malformed ones refused
with one error naming the file and the field (through read_run, `c2s rescore` and `c2s leaderboard`)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness.run.record as record
from harness.cli import main
from harness.run.record import FORMAT_VERSION, RunFolderError, is_run_dir, read_run, run_dirs_in, write_run
from harness.run.runner import rescore
from tests.test_reports import edit_json, make_run, synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
#: written by c2s-harness at commit aa973b8 (format version 1: no format_version, NaN in its JSON):
#: the classical comparator on two small CSV datasets (one with a constant MOS, so its correlations
#: are undefined) and one truncated image (its pairs and its score failed)
V1_RUN = REPO / "tests" / "data" / "run_v1" / "v1-run"


def _nan_text(obj) -> str:
    """JSON text in which NaN compares equal to NaN (for comparing parsed metrics)."""
    return json.dumps(obj, sort_keys=True, allow_nan=True)


@pytest.fixture
def v1_run(tmp_path) -> Path:
    return Path(shutil.copytree(V1_RUN, tmp_path / "runs" / V1_RUN.name))


@pytest.fixture
def run_dir(tmp_path) -> Path:
    rows, ds = synthetic_dataset(3, n_images=20, splits=("1", "2"), n_failed=2)
    return make_run(tmp_path / "runs", "r", {"LIVE": ds}, scores={"LIVE": rows})


# --- versions ------------------------------------------------------------------------------------

def test_a_version_1_folder_is_read_and_upgraded_in_memory(v1_run):
    assert "format_version" not in json.loads((v1_run / "manifest.json").read_text())
    assert "NaN" in (v1_run / "metrics.json").read_text()
    rec = read_run(v1_run)
    assert (rec.source_version, rec.manifest.format_version) == (1, FORMAT_VERSION)
    flat = rec.metrics.datasets["flat"].splits["all"]
    assert flat.n == 3 and math.isnan(flat.srcc) and not flat.logistic_ok
    failed = [r for r in rec.scores if r.status == "failed"]
    assert [r.image for r in failed] == ["img/jpeg_5.png"] and math.isnan(failed[0].score)
    assert "truncated" in failed[0].error
    bad_pairs = [c for c in rec.comparisons if c.status == "failed"]
    assert len(bad_pairs) == rec.manifest.counts.pairs_failed == 3
    assert all(math.isnan(v) for c in bad_pairs for v in c.logprobs)


def test_rescore_of_a_version_1_folder_reproduces_its_metrics_bit_for_bit(v1_run):
    old = json.loads((v1_run / "metrics.json").read_text())
    new_dir = rescore(v1_run)
    new_text = (new_dir / "metrics.json").read_text()
    assert "NaN" not in new_text and "null" in new_text  # strict JSON now
    new = read_run(new_dir)
    assert new.source_version == FORMAT_VERSION
    assert json.loads((new_dir / "manifest.json").read_text())["format_version"] == FORMAT_VERSION
    numbers = new.metrics.model_dump(exclude_none=True)["datasets"]
    # version 1 had no `undefined` (why a split's metrics are null): now it is said; the numbers are the same
    reasons = {name: {s: c.pop("undefined") for s, c in d["splits"].items()} for name, d in numbers.items()}
    assert reasons == {"bench": {"all": ""}, "flat": {"all": "constant ground truth: no correlation is defined"}}
    # ... and the pairwise accuracy, which version 1 did not have, is added from the recorded comparisons
    assert all(set(d.pop("pair_accuracy")) == {"all"} and d.pop("pair_accuracy_summary") for d in numbers.values())
    assert _nan_text(numbers) == _nan_text(old["datasets"])
    for table in ("scores.csv", "comparisons.csv"):
        assert (new_dir / table).read_text() == (v1_run / table).read_text()


def test_a_leaderboard_mixes_version_1_and_current_runs(v1_run, run_dir, tmp_path, capsys):
    assert main(["leaderboard", str(v1_run), str(run_dir), "--out", str(tmp_path / "lb"), "--formats", "json"]) == 0
    cells = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["cells"]
    assert sorted((c["run_id"], c["dataset"]) for c in cells) == [("r", "LIVE"), ("v1-run", "bench"),
                                                                  ("v1-run", "flat")]
    assert next(c for c in cells if c["dataset"] == "flat")["srcc_median"] is None  # undefined, not NaN


def test_a_newer_format_version_is_refused_naming_both(run_dir):
    edit_json(run_dir / "manifest.json", lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(RunFolderError, match=f"format version {FORMAT_VERSION + 1} is newer than this c2s-harness "
                                             f"reads \\(versions 1 to {FORMAT_VERSION}\\)"):
        read_run(run_dir)
    for bad in ("2", 0, True, None):
        edit_json(run_dir / "manifest.json", lambda m: m.update(format_version=bad))
        with pytest.raises(RunFolderError, match="field 'format_version' must be a whole number >= 1"):
            read_run(run_dir)


# --- writing -------------------------------------------------------------------------------------

def test_written_json_is_strict_and_round_trips(run_dir, tmp_path):
    rows, ds = synthetic_dataset(4, n_images=10, splits=("1", "2"), n_failed=10)  # every correlation undefined
    nan_run = make_run(tmp_path, "nan", {"BID": ds}, scores={"BID": rows})
    for folder in (run_dir, nan_run):
        for name in ("manifest.json", "metrics.json"):
            def refuse(token):
                raise AssertionError(f"{name} holds {token}")
            json.loads((folder / name).read_text(), parse_constant=refuse)
    rec = read_run(nan_run)
    assert math.isnan(rec.metrics.datasets["BID"].splits["1"].srcc)
    assert math.isnan(rec.metrics.datasets["BID"].summary["srcc"].median)
    # written again from what was read: the same files, byte for byte
    again = write_run(tmp_path / "again" / "nan", rec.manifest, rec.metrics, rec.scores, rec.comparisons)
    for name in ("manifest.json", "metrics.json", "scores.csv", "comparisons.csv"):
        assert (again / name).read_bytes() == (nan_run / name).read_bytes(), name


def test_a_crash_while_writing_leaves_the_old_folder_whole(run_dir, monkeypatch):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    rec = read_run(run_dir)
    manifest = rec.manifest.model_copy(update={"git_revision": "new"})

    def crash(path, doc):
        raise OSError("disk full")
    monkeypatch.setattr(record, "_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        write_run(run_dir, manifest, rec.metrics, rec.scores, rec.comparisons)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]  # no half-written folder left behind


def test_a_rewrite_replaces_the_whole_folder(run_dir):
    (run_dir / "report.md").write_text("a report of the old numbers")
    rec = read_run(run_dir)
    write_run(run_dir, rec.manifest.model_copy(update={"git_revision": "new"}), rec.metrics, rec.scores, [])
    assert sorted(p.name for p in run_dir.iterdir()) == ["comparisons.csv", "manifest.json", "metrics.json",
                                                         "scores.csv"]
    assert read_run(run_dir).manifest.git_revision == "new"
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]


def test_hidden_and_incomplete_folders_are_not_runs(run_dir):
    parent = run_dir.parent
    shutil.copytree(run_dir, parent / ".r.tmp-123-abcd")  # a writer's temporary folder
    (parent / "empty").mkdir()
    assert is_run_dir(run_dir) and not is_run_dir(parent / ".r.tmp-123-abcd") and not is_run_dir(parent / "empty")
    assert run_dirs_in(parent) == [run_dir]


def test_working_folders_are_told_from_runs_by_name(run_dir):
    parent = run_dir.parent
    for name, run_id in ((".r.tmp-123-0123abcd", "r"), (".my.run.old-9-deadbeef", "my.run"), (".r.tmp-1-xyz", None),
                         ("r.tmp-123-0123abcd", None), (".hidden", None)):
        (parent / name).mkdir()
        assert record.leftover_of(parent / name) == run_id, name
    assert [p.name for p in record.leftovers_in(parent)] == [".my.run.old-9-deadbeef", ".r.tmp-123-0123abcd"]
    with pytest.raises(RunFolderError, match="unfinished folder of an interrupted write of run 'my.run'"):
        record.check_not_leftover(parent / ".my.run.old-9-deadbeef")
    record.check_not_leftover(run_dir)


def test_check_outputs_compares_real_files_and_folders(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    image = data / "sub" / "img.png"
    image.write_bytes(b"x")
    (tmp_path / "link").symlink_to(data / "sub")
    os.link(image, tmp_path / "hard.png")
    folder = data / "sub"
    refused = {image: image, tmp_path / "link" / "img.png": image, tmp_path / "hard.png": image, data: image,
               folder / "new.csv": folder, tmp_path / "link" / "new.csv": folder, image / "run": image}
    for out, hit in refused.items():
        with pytest.raises(ValueError) as exc:
            record.check_outputs([out], [image, folder])
        assert str(exc.value).startswith(f"--out {out} would write over the input {hit}: inputs are never written")
    # a sibling with a common prefix, a missing input and a fresh file are no conflict
    record.check_outputs([data / "sub2" / "x.csv", tmp_path / "out.csv"], [image, data / "sub", tmp_path / "gone.png"])


# --- malformed folders ---------------------------------------------------------------------------

def _replace_cell(path: Path, line: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


MALFORMED = {
    "missing metrics": (lambda d: (d / "metrics.json").unlink(), r"missing metrics.json"),
    "bad JSON": (lambda d: (d / "manifest.json").write_text('{"run_id": '), r"manifest.json: not valid JSON"),
    "not an object": (lambda d: (d / "metrics.json").write_text("[1, 2]"),
                      r"metrics.json: expected a JSON object, got list"),
    "missing field": (lambda d: edit_json(d / "manifest.json", lambda m: m["model"].pop("fingerprint_hash")),
                      r"manifest.json: field 'model.fingerprint_hash': missing"),
    "mistyped field": (lambda d: edit_json(d / "metrics.json", lambda m: m["datasets"]["LIVE"].update(n_images="20")),
                       r"metrics.json: field 'datasets.LIVE.n_images': Input should be a valid integer \(got '20'\)"),
    "unknown field": (lambda d: edit_json(d / "manifest.json", lambda m: m["counts"].update(pairs_skipped=1)),
                      r"manifest.json: field 'counts.pairs_skipped': unknown field"),
    "bad time": (lambda d: edit_json(d / "manifest.json", lambda m: m.update(created="yesterday")),
                 r"manifest.json: field 'created': not an ISO 8601 time: 'yesterday'"),
    "bad profile": (lambda d: edit_json(d / "manifest.json", lambda m: m["profile"].update(link="cauchit")),
                    r"manifest.json: field 'profile': profile 'paper': link must be one of"),
    "other run's metrics": (lambda d: edit_json(d / "metrics.json", lambda m: m.update(run_id="other")),
                            r"manifest.json is run 'r' but metrics.json is run 'other'"),
}
#: case -> (damage, the table that is then unreadable, the error)
MALFORMED_CSV = {
    "bad number": (lambda d: _replace_cell(d / "scores.csv", 3, "score", "high"), "scores",
                   r"scores.csv line 3: column 'score': Input should be a valid number.*\(got 'high'\)"),
    "bad status": (lambda d: _replace_cell(d / "scores.csv", 2, "status", "maybe"), "scores",
                   r"scores.csv line 2: column 'status': Input should be 'ok' or 'failed' \(got 'maybe'\)"),
    "missing column": (lambda d: (d / "scores.csv").write_text("dataset,image\nLIVE,a.png\n"), "scores",
                       r"scores.csv: missing column\(s\) \['split', 'path'"),
    "short row": (lambda d: (d / "scores.csv").write_text((d / "scores.csv").read_text() + "LIVE,1\n"), "scores",
                  r"scores.csv line \d+: 2 cells, 11 expected"),
    "missing comparisons": (lambda d: (d / "comparisons.csv").unlink(), "comparisons", r"missing comparisons.csv"),
    "truncated comparisons": (lambda d: (d / "comparisons.csv").write_text(
        "\n".join((d / "comparisons.csv").read_text().splitlines()[:3]) + "\n"), "comparisons",
        r"comparisons.csv: 2 rows, but manifest.json field 'counts.pairs_total' says \d+"),
    "bad log-prob": (lambda d: (d / "comparisons.csv").write_text(
        "first,second,role,inferior,worse,similar,better,superior,preference,status,error,cached\n"
        "a.png,b.png,test,-1,-2,x,-4,-5,0.5,ok,,0\n"), "comparisons",
                     r"comparisons.csv line 2: column 'similar': Input should be a valid number"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_json_is_one_error_naming_file_and_field(run_dir, case):
    damage, message = MALFORMED[case]
    damage(run_dir)
    with pytest.raises(RunFolderError, match=message):
        read_run(run_dir)


@pytest.mark.parametrize("case", sorted(MALFORMED_CSV))
def test_malformed_csv_is_one_error_naming_line_and_column(run_dir, case):
    damage, table, message = MALFORMED_CSV[case]
    damage(run_dir)
    rec = read_run(run_dir)  # the JSON files are fine: the tables are read when first used
    with pytest.raises(RunFolderError, match=message):
        getattr(rec, table)


@pytest.mark.parametrize("case", ["missing field", "mistyped field", "bad JSON", "bad number", "missing column",
                                  "bad log-prob", "missing comparisons", "truncated comparisons"])
def test_rescore_of_a_malformed_folder_says_what_is_wrong(run_dir, case, capsys):
    damage, message = MALFORMED[case] if case in MALFORMED else MALFORMED_CSV[case][::2]
    damage(run_dir)
    assert main(["rescore", str(run_dir), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s rescore: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("case", ["missing field", "mistyped field", "unknown field", "bad time"])
def test_leaderboard_of_a_malformed_folder_says_what_is_wrong(run_dir, case, tmp_path, capsys):
    good = make_run(tmp_path / "runs", "good", {"CSIQ": synthetic_dataset(5, splits=("all",))[1]})
    damage, message = MALFORMED[case]
    damage(run_dir)
    assert main(["leaderboard", str(good.parent), "--out", str(tmp_path / "lb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s leaderboard: error: ") and len(err.strip().splitlines()) == 1
    assert str(run_dir / "manifest.json") in err or str(run_dir / "metrics.json") in err
    assert re.search(message, err), err
    assert not (tmp_path / "lb").exists()


# --- layers --------------------------------------------------------------------------------------

def test_the_run_layer_does_not_load_the_report_layer_and_plots_do_not_load_reports():
    code = ("import sys; import harness.run.runner, harness.run.record; "
            "assert not [m for m in sys.modules if m.startswith('harness.report')]; "
            "import harness.report.plots; assert 'harness.report.reports' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "ok", out.stderr
