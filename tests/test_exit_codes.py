"""The exit-code contract (`c2s --help`, docs/architecture.md "Exit codes") through the real CLI, in process:
0 all scored, 1 internal error, 2 user error, 3 partial, 4 no result or undefined metrics, 5 aborted, 130
interrupted; and metrics that are undefined (null with a reason, never a number) when scores carry no
information (issue 10, class 7)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from harness import cli
from harness.cli import main
from harness.run.faults import RunAborted
from harness.run.record import read_run, run_dirs_in

EXITS = {"EXIT_OK": 0, "EXIT_INTERNAL": 1, "EXIT_USAGE": 2, "EXIT_PARTIAL": 3, "EXIT_NO_RESULT": 4,
         "EXIT_ABORTED": 5, "EXIT_INTERRUPTED": 130, "EXIT_BROKEN_PIPE": 141}
VERDICT = np.log([0.1, 0.2, 0.4, 0.2, 0.1])


class Constant:
    """Every pair the same verdict: every image the same score."""

    def __init__(self, model=None):
        pass

    def compare(self, pairs):
        return np.tile(VERDICT, (len(pairs), 1))

    def fingerprint(self):
        return {"backend": "constant-exit-codes"}


class Down(Constant):
    """Every batch raises: nothing can be judged."""

    def compare(self, pairs):
        raise ConnectionError("backend down")

    def fingerprint(self):
        return {"backend": "down-exit-codes"}


class ShunsOne(Constant):
    """The classical verdicts, except that every pair showing img3.png fails (an API rejecting one file)."""

    def __init__(self, model=None):
        from adapters.classical import ClassicalComparator

        self.inner = ClassicalComparator()

    def compare_detailed(self, pairs):
        res = self.inner.compare_detailed(pairs)
        for i, p in enumerate(pairs):
            if "img3.png" in (Path(p.first).name, Path(p.second).name):
                res.logprobs[i], res.errors[i] = np.nan, "HTTP 400: image rejected"
        return res

    def fingerprint(self):
        return {"backend": "shuns-one-exit-codes"}


class ExitsInFingerprint(Constant):
    def fingerprint(self):
        raise SystemExit(0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 images blurred 0..7 (MOS falls with blur) in a CSV manifest, and anchors files."""
    root = tmp_path_factory.mktemp("exit-data")
    base = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    lines = ["image,mos"]
    for k in range(8):
        base.filter(ImageFilter.GaussianBlur(k * 0.4)).save(root / f"img{k}.png")
        lines.append(f"img{k}.png,{5 - k * 0.5}")
    (root / "mine.csv").write_text("\n".join(lines) + "\n")
    for k in range(3):  # ascending MOS: the sharpest anchor last
        base.filter(ImageFilter.GaussianBlur((2 - k) * 1.5)).save(root / f"anc{k}.png")
    return root


def _anchors(root: Path, mos, name: str) -> Path:
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": [f"anc{k}.png" for k in range(3)], "mos": mos, "std": [0.5] * 3,
                                "root": str(root)}))
    return path


def _run(tmp_path, data, *more, model="classical", manifest="mine.csv"):
    argv = ["run", "--model", model, "--dataset", f"mine={data / manifest}", "--root", str(data),
            "--anchors", str(_anchors(data, [1, 3, 5], "spread")), "--out", str(tmp_path / "runs"), "--cache", "",
            "--no-report", "--summary", "all", *more]
    return main(argv)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_the_codes_are_constants_documented_in_help_and_architecture(capsys):
    for name, value in EXITS.items():
        assert getattr(cli, name) == value
    with pytest.raises(SystemExit):
        main(["--help"])
    epilog = capsys.readouterr().out.split("exit codes")[1]
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    section = doc.split("## Exit codes")[1].split("\n## ")[0]
    for value in EXITS.values():
        assert re.search(rf"^\s+{value}\b", epilog, re.M), value
        assert f"| {value} |" in section, value


def test_a_fully_scored_run_exits_0(tmp_path, data, capsys):
    assert _run(tmp_path, data) == 0
    assert "exit code" not in _err(capsys)


def test_some_failed_pairs_give_3_and_say_how_many(tmp_path, data, capsys):
    assert _run(tmp_path, data, model=f"py:{__name__}:ShunsOne") == 3
    err = _err(capsys)
    # img3 fails against its 3 anchors: the image is not scored, the other 7 are
    assert re.search(r"c2s run: partial result: 3 of \d+ pair\(s\) failed, 1 of 8 image\(s\) not scored", err)
    assert "exit code 3" in err


def test_dropped_items_give_3(tmp_path, data, capsys):
    (data / "holes.csv").write_text((data / "mine.csv").read_text() + "missing.png,2.2\n")
    assert _run(tmp_path, data, "--drop-bad", manifest="holes.csv") == 3
    assert "1 dataset item(s) dropped as bad" in _err(capsys)
    assert _run(tmp_path / "b", data, manifest="holes.csv") == 2   # without --drop-bad: refused, nothing done
    assert "c2s run: error: dataset 'mine' has 1 problem(s)" in _err(capsys)
    assert not (tmp_path / "b" / "runs").exists()


def test_a_run_where_every_pair_failed_exits_4_not_0(tmp_path, data, capsys):
    assert _run(tmp_path, data, model=f"py:{__name__}:Down") == 4
    err = _err(capsys)
    assert "c2s run: no result: none of the 8 image(s) could be scored (first reason: ConnectionError: backend down" \
           in err
    (run_dir,) = run_dirs_in(tmp_path / "runs")          # the failures are recorded, the run can be resumed
    assert read_run(run_dir).manifest.counts.pairs_failed == read_run(run_dir).manifest.counts.pairs_total


def test_constant_scores_give_undefined_metrics_and_4(tmp_path, data, capsys):
    assert _run(tmp_path, data, "--bootstrap", "20", model=f"py:{__name__}:Constant") == 4
    err = _err(capsys)
    assert "no result: the metrics are undefined: mine: constant predictions" in err
    (run_dir,) = run_dirs_in(tmp_path / "runs")
    doc = json.loads((run_dir / "metrics.json").read_text())["datasets"]["mine"]
    split = doc["splits"]["all"]
    assert split["srcc"] is None and split["plcc"] is None and split["krcc"] is None
    assert split["srcc_ci95"] == [None, None] and split["undefined"].startswith("constant predictions")
    assert doc["summary"]["srcc"]["median"] is None


@pytest.mark.parametrize("extra", [["--profile", "official", "--anchor-matrix", "mos"],
                                   ["--scale", "minmax", "--anchor-matrix", "mos"],
                                   ["--mode", "count", "--anchor-matrix", "mos"],
                                   []])
def test_anchors_of_equal_mos_give_no_scale_so_no_metric(tmp_path, data, capsys, extra):
    """Anchors of one MOS are one point: min-max scores become 0 or 100, and their rank correlation with
    MOS (0.80 in the issue) is an artefact. Every correlation is undefined, whatever the profile."""
    argv = ["run", "--model", "classical", "--dataset", f"mine={data / 'mine.csv'}", "--root", str(data),
            "--anchors", str(_anchors(data, [3, 3, 3], "flat")), "--out", str(tmp_path / "runs"), "--cache", "",
            "--summary", "all", *extra]
    assert main(argv) == 4
    err = _err(capsys)
    assert "the anchors' MOS are all equal (3): they give the scores no scale" in err
    assert "logistic fit failed" not in err and "no metric is defined in" not in err   # said once, in red
    (run_dir,) = run_dirs_in(tmp_path / "runs")
    rec = read_run(run_dir)
    for corr in rec.metrics.datasets["mine"].splits.values():
        assert all(math.isnan(getattr(corr, k)) for k in ("srcc", "krcc", "plcc", "plcc_logistic", "rmse_logistic"))
    report = (run_dir / "report.md").read_text()
    assert "headline SRCC is n/a (the anchors' MOS are all equal" in report
    assert main(["rescore", str(run_dir), "--link", "logit", "--no-report"]) == 4   # rescore keeps the verdict
    _err(capsys)


def test_a_split_without_a_metric_is_flagged_beside_a_defined_headline(tmp_path, data, capsys):
    lines = (data / "mine.csv").read_text().splitlines()
    (data / "splits.csv").write_text("image,mos,split\n" + "".join(f"{line},{'b' if k < 2 else 'a'}\n"
                                                                   for k, line in enumerate(lines[1:])))
    assert _run(tmp_path, data, manifest="splits.csv") == 0     # --summary all: the headline is defined
    err = _err(capsys)
    assert "amber: mine: no metric is defined in 1 of 3 group(s) (only 2 scored image(s)" in err
    (run_dir,) = run_dirs_in(tmp_path / "runs")
    split_b = read_run(run_dir).metrics.datasets["mine"].splits["b"]
    assert math.isnan(split_b.srcc) and split_b.undefined.startswith("only 2 scored image(s)")


def test_the_worst_outcome_of_several_runs_is_the_exit_code(tmp_path, data, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text(f"models: [classical, 'py:{__name__}:Constant']\n"
                      f"datasets: [{{name: mine, source: {data / 'mine.csv'}, root: {data}, summary: all}}]\n"
                      f"anchors: {{source: {_anchors(data, [1, 3, 5], 'spread')}}}\n"
                      f"out_dir: {tmp_path / 'runs'}\ncache: ''\nreports: false\n")
    assert main(["run", "--config", str(config)]) == 4
    assert len(run_dirs_in(tmp_path / "runs")) == 2 and _err(capsys).count("exit code") == 1


def test_score_exits_3_when_some_images_fail_and_4_when_none_is_scored(tmp_path, data, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    anchors = str(_anchors(data, [1, 3, 5], "spread"))
    argv = ["score", "--model", "classical", "--anchors", anchors, "--cache", ""]
    assert main([*argv, "--images", str(data / "img0.png"), str(data / "img1.png"), "--out",
                 str(tmp_path / "a.csv")]) == 0
    assert main([*argv, "--images", str(data / "img0.png"), str(tmp_path / "broken.png"), "--out",
                 str(tmp_path / "b.csv")]) == 3
    assert "1 of 2 image(s) not scored" in _err(capsys)
    assert main([*argv, "--images", str(tmp_path / "broken.png"), "--out", str(tmp_path / "c.csv")]) == 4
    assert "none of the 1 image(s) could be scored" in _err(capsys)
    assert "failed" in (tmp_path / "c.csv").read_text()                 # the row is still written


def test_compare_of_a_pair_that_fails_exits_4(tmp_path, data, capsys):
    assert main(["compare", "--model", "classical", str(data / "img0.png"), str(data / "img1.png")]) == 0
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["compare", "--model", "classical", str(data / "img0.png"), str(tmp_path / "x.png")]) == 4
    assert "c2s compare: no result: the pair failed:" in _err(capsys)


def test_an_anchor_matrix_with_unjudged_pairs_exits_3_or_4(tmp_path, data, capsys):
    doc = {"images": ["img0.png", "img3.png", "img6.png"], "mos": [1, 2, 3], "std": [0.5] * 3, "root": str(data)}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    argv = ["anchors", "matrix", "--anchors", str(tmp_path / "a.json"), "--out", str(tmp_path / "m.json"), "--model"]
    assert main([*argv, "classical"]) == 0
    assert main([*argv, f"py:{__name__}:ShunsOne"]) == 3                 # img3's pairs: 4 of 6 entries
    assert "4 of 6 anchor-matrix entries have no judgement" in _err(capsys)
    matrix = json.loads((tmp_path / "m.json").read_text())["matrix"]
    assert matrix[0][2] is not None and matrix[0][1] is None and matrix[1][2] is None
    assert main([*argv, f"py:{__name__}:Down"]) == 4
    assert "6 of 6 anchor-matrix entries have no judgement" in _err(capsys)


def test_datasets_check_exits_0_clean_3_with_problems_4_when_nothing_is_usable(tmp_path, data, capsys):
    assert main(["datasets", "check", f"d={data / 'mine.csv'}", "--root", str(data)]) == 0
    some = tmp_path / "some.csv"
    some.write_text("image,mos\nimg0.png,1\nnope.png,2\n")
    assert main(["datasets", "check", f"d={some}", "--root", str(data)]) == 3
    assert "1 problem(s), 1 image(s) usable [exit code 3]" in _err(capsys)
    none = tmp_path / "none.csv"
    none.write_text("image,mos\nnope.png,1\ngone.png,2\n")
    assert main(["datasets", "check", f"d={none}", "--root", str(data)]) == 4


@pytest.mark.parametrize("ok, code", [(True, 0), (False, 3)])
def test_check_parity_exits_3_when_the_backends_disagree(monkeypatch, capsys, ok, code):
    import harness.tools.parity as parity

    class Report:
        def format(self):
            return "PARITY OK" if ok else "PARITY FAILED"

    Report.ok = ok
    monkeypatch.setattr(parity, "check_parity", lambda *a, **k: Report())
    assert main(["check-parity", "/models/m", "--backends", "hf,vllm"]) == code
    assert ("exit code 3" in _err(capsys)) == (not ok)


def test_a_fault_outside_the_input_exits_5_and_an_interrupt_130(tmp_path, data, capsys, monkeypatch):
    import harness.run.runner as runner

    def stalled(*a, **k):
        raise RunAborted("no progress for 60 s: batch 3 of 9 (openai:x) is stuck; everything judged so far is "
                         "cached: run the same command again to resume")

    monkeypatch.setattr(runner, "run", stalled)
    assert _run(tmp_path, data) == 5
    assert _err(capsys).startswith("c2s run: aborted: no progress for 60 s")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    assert _run(tmp_path, data) == 130
    assert "interrupted; run the same command again to resume" in _err(capsys)


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), KeyError("k"), AttributeError("x"),
                                 IndexError("list index out of range"), RecursionError("maximum recursion depth"),
                                 NotImplementedError()])
def test_a_bug_is_one_line_exit_1_never_a_user_error(tmp_path, data, capsys, monkeypatch, exc):
    import harness.run.runner as runner

    def buggy(*a, **k):
        raise exc

    monkeypatch.setattr(runner, "run", buggy)
    assert _run(tmp_path, data) == 1
    err = _err(capsys)
    assert err.count("\n") == 1 and err.startswith(f"c2s run: internal error: {type(exc).__name__}")
    assert "this is a bug, please report it" in err and "C2S_DEBUG=1" in err
    monkeypatch.setenv("C2S_DEBUG", "1")
    assert _run(tmp_path, data) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("c2s run: ")
    monkeypatch.delenv("C2S_DEBUG")
    assert main(["--debug", "run", "--model", "classical"]) == 2       # --debug: a user error's traceback too
    err = capsys.readouterr().err
    assert "Traceback" in err and "c2s run: error: give --config, or --model" in err


def test_a_plug_in_calling_sys_exit_is_not_a_clean_exit(tmp_path, data, capsys):
    assert _run(tmp_path, data, model=f"py:{__name__}:ExitsInFingerprint") == 1
    assert _err(capsys).startswith("c2s run: internal error: code called sys.exit(0) inside c2s")


def test_argparse_errors_are_one_line_exit_2(capsys):
    for argv in (["run", "--bogus"], ["anchors", "select", "--out", "x", "--dataset", "d", "--alpha", "two"],
                 ["compare", "--model", "classical", "a.png"], ["nope"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = _err(capsys)
        assert err.count("\n") == 1 and re.match(r"c2s( [a-z-]+)*: error: ", err), err
    with pytest.raises(SystemExit):
        main(["run", "--model", "classical", "--dataset", "demo", "--frobnicate", "3"])
    assert _err(capsys).startswith("c2s run: error: unrecognized argument(s): --frobnicate 3")
