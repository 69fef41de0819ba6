"""Friendly failures through the real CLI (issue 11): one-line errors, install hints, silent broken pipes,
one-line warnings, --version, and help text for every option."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import EXIT_BROKEN_PIPE, _parser, main

REPO = Path(__file__).resolve().parents[1]


def _c2s(*args, code: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`c2s ARGS` in a fresh interpreter (`code` runs first, e.g. to hide a module)."""
    prelude = (code or "") + "\nimport sys\nfrom harness.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", prelude, *args], capture_output=True, text=True, cwd=cwd or REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)


#: makes `import MODULE` fail in a fresh interpreter as if it were not installed (sys.modules[name] = None would
#: also break libraries that look modules up there, e.g. scipy probing for torch)
HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
"""


@pytest.mark.parametrize("spec, module, extra", [("hf:/models/x", "torch", "hf"), ("vllm:/models/x", "vllm", "vllm")])
def test_missing_optional_dependency_is_one_line_with_the_install_command(spec, module, extra, tmp_path):
    proc = _c2s("compare", "--model", spec, str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                code=HIDE.format(module=module))
    assert proc.returncode == 2
    assert proc.stderr == (f"c2s compare: error: the Python module {module!r} is not installed; "
                           f"install it with: pip install 'c2s-harness[{extra}]'\n")


def test_version(capsys):
    from harness import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"c2s {__version__}\n"


def _walk(parser, path=("c2s",)):
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            for choice in act._choices_actions:
                yield (*path, choice.dest), choice.help
            for name, sub in act.choices.items():
                yield from _walk(sub, (*path, name))
        elif not isinstance(act, argparse._HelpAction):
            yield (*path, "/".join(act.option_strings) or act.dest), act.help


def test_every_sub_command_and_flag_has_help_text():
    items = list(_walk(_parser()))
    assert len(items) > 80  # the walk reaches the nested sub-commands
    assert [where for where, text in items if not text] == []


def test_check_parity_help_lists_the_parity_tools_own_options(capsys):
    with pytest.raises(SystemExit):
        main(["check-parity", "--help"])
    out = capsys.readouterr().out
    for flag in ("--backends", "--images", "--tol", "--prompt", "--vllm-python", "--server-url", "--option"):
        assert flag in out
    assert "rest" not in out


def test_check_parity_options_are_checked_by_the_parity_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check-parity", "/models/m", "--images", "only-one.png"])
    assert exc.value.code == 2
    assert "c2s check-parity: error: --images needs at least two images" in capsys.readouterr().err


def test_fetch_offline_reports_the_reason_once_and_each_file_once(tmp_path, capsys):
    assert main(["datasets", "fetch", "--dest", str(tmp_path), "--base-url", "http://127.0.0.1:9"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("c2s datasets: error: 90 of 90 official split files could not be fetched from "
                        "http://127.0.0.1:9:")
    assert lines[1].startswith("  cannot reach http://127.0.0.1:9 (") and lines[1].endswith(
        "the other files were not tried: 90 file(s)")
    assert len(lines) == 92 and len(set(lines[2:])) == 90 and all(line.startswith("    ") for line in lines[2:])


def test_fetch_from_a_mirror_without_the_files_names_each_file(tmp_path, capsys):
    assert main(["datasets", "fetch", "--dest", str(tmp_path / "d"), "--base-url", (tmp_path / "none").as_uri()]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == "  no such file: 90 file(s)" and len(lines) == 92


def test_broken_pipe_is_silent_with_status_141(tmp_path):
    """`c2s leaderboard ... | head -1`: the reader goes away. Here it is gone before c2s writes (its end of
    the pipe closed at once), so the write fails every time, whatever the machine's speed."""
    runs = tmp_path / "runs"
    assert main(["run", "--model", "classical", "--dataset", "demo", "--anchors", "select", "--anchors-dataset",
                 "demo", "--limit", "4", "--no-report", "--out", str(runs), "--cache", ""]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "leaderboard", str(runs), "--out",
                             str(tmp_path / "lb")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == EXIT_BROKEN_PIPE == 141
    assert err == ""
    assert (tmp_path / "lb" / "leaderboard.md").is_file()  # the work was done; only the printing was cut


def test_python_warnings_are_one_c2s_line(tmp_path):
    code = ("import warnings, harness.cli as c\n"
            "def noisy(a):\n    warnings.warn('first part\\n  second part', UserWarning)\n    return 0\n"
            "c.COMMANDS['models'] = noisy")
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys\nsys.exit(c.main(['models']))"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=600)
    assert proc.returncode == 0
    assert proc.stderr == "c2s: warning: first part second part\n"


# --- c2s score never aborts on a bad file; hints name flags and commands -------------------------------------------

@pytest.fixture
def photos(tmp_path):
    """A folder of three images and one file that only looks like one."""
    from tests.conftest import noise_pngs

    folder = tmp_path / "photos"
    folder.mkdir()
    good = noise_pngs(folder, [(64, 48), (40, 40), (50, 30)], seed=1)
    (folder / "broken.jpg").write_text("not an image")
    return folder, good


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_gives_one_row_per_input_and_scores_every_readable_image(photos, tmp_path, capsys):
    folder, good = photos
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", "classical", "--images", str(folder), "--out", str(out)]) == 3  # partial
    rows = {Path(r["image"]).name: r for r in _csv_rows(out)}
    assert sorted(rows) == ["broken.jpg", "img0.png", "img1.png", "img2.png"]
    assert rows["broken.jpg"]["status"] == "failed" and "not an image" in rows["broken.jpg"]["error"]
    for name in ("img0.png", "img1.png", "img2.png"):
        assert rows[name]["status"] == "ok" and rows[name]["error"] == "" and float(rows[name]["score"]) == float(
            rows[name]["score"])  # a number, not NaN
    assert "(1 failed;" in capsys.readouterr().out


def test_score_strict_stops_before_any_model_work(photos, tmp_path, capsys):
    folder, _ = photos
    out = tmp_path / "scores.csv"
    assert main(["score", "--model", "classical", "--images", str(folder), "--out", str(out), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "1 of 4 image(s) cannot be scored (--strict" in err and "broken.jpg: not an image" in err
    assert not out.exists()


def test_run_hint_names_the_drop_bad_flag(photos, tmp_path, capsys):
    folder, _ = photos
    assert main(["run", "--model", "classical", "--dataset", f"mine={folder}", "--anchors", "select",
                 "--anchors-dataset", "demo", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "pass --drop-bad (drop_bad: true in YAML) to run without these items" in err


def test_koniq_anchors_hint_names_the_flags(photos, tmp_path, capsys):
    folder, _ = photos
    assert main(["run", "--model", "classical", "--dataset", f"mine={folder}", "--drop-bad",
                 "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "need --anchors-root (anchors: root: in YAML)" in err and "--anchors select --anchors-dataset" in err


#: what a hint must never name (the user cannot type it): Python keywords and functions, YAML dotted keys
PYTHON_HINT = r"\b[a-z]+_[a-z_]+=(True|False|None)\b|pass [a-z_]+=[)\s\"]|setup_worker_env\(\)|\banchors\.(root|source|dataset)\b"
#: solve_map's disconnected-design error names the c2s remedy first, then its own Python keyword
PYTHON_ONLY = {"harness/core/scaling.py"}


def _message_texts(path: Path):
    """Every string literal of a module except docstrings (those document the Python API): what users may read."""
    import ast

    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_message_texts_name_no_python_keyword():
    import re

    assert re.search(PYTHON_HINT, "fix them or pass drop_bad=True to run")  # the old hint is caught
    found = [f"{path.relative_to(REPO)}:{line}: {text[:100]}"
             for path in sorted([*REPO.glob("harness/**/*.py"), *REPO.glob("adapters/*.py")])
             if path.relative_to(REPO).as_posix() not in PYTHON_ONLY
             for line, text in _message_texts(path) if re.search(PYTHON_HINT, text)]
    assert found == []


# --- anchor matrices named for what they are ---------------------------------------------------------------------

def _run_matrix_source(tmp_path, photos, *extra) -> str:
    from harness.run.record import read_run

    folder, _ = photos
    out = tmp_path / "runs"
    assert main(["run", "--model", "classical", "--dataset", f"mine={folder}", "--drop-bad", "--profile", "official",
                 "--out", str(out), "--no-report", *extra]) == 3  # broken.jpg dropped: partial
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return read_run(run_dir).manifest.anchors.matrix_source


@pytest.fixture
def own_anchors(tmp_path):
    """An anchors file of the user's own with a fixed matrix."""
    import json

    from tests.conftest import noise_pngs

    (tmp_path / "anchors").mkdir()
    images = noise_pngs(tmp_path / "anchors", [(32, 32)] * 3, seed=7, prefix="a")
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"images": images, "mos": [1.0, 2.0, 3.0], "std": [0.3, 0.3, 0.3],
                                "matrix": [[0.5, 0.2, 0.1], [0.8, 0.5, 0.3], [0.9, 0.7, 0.5]]}))
    return path


def test_anchor_matrix_file_is_the_users_matrix_and_auto_names_it_file(photos, own_anchors, tmp_path):
    assert _run_matrix_source(tmp_path / "auto", photos, "--anchors", str(own_anchors)) == "file"
    assert _run_matrix_source(tmp_path / "file", photos, "--anchors", str(own_anchors),
                              "--anchor-matrix", "file") == "file"


def test_anchor_matrix_official_is_only_the_papers_koniq_matrix(photos, own_anchors, tmp_path, capsys):
    folder, _ = photos
    assert main(["run", "--model", "classical", "--dataset", f"mine={folder}", "--drop-bad", "--anchors",
                 str(own_anchors), "--anchor-matrix", "official", "--out", str(tmp_path / "runs")]) == 2
    assert "--anchor-matrix official is the paper's KonIQ matrix" in capsys.readouterr().err


def test_official_profile_auto_picks_the_koniq_matrix_for_the_koniq_anchors(photos, tmp_path):
    """Stand-in files under the KonIQ anchors' names: the set is the paper's by names, MOS and std."""
    from PIL import Image

    from harness.core.anchors import koniq_default

    root = tmp_path / "iqa"
    for k, rel in enumerate(koniq_default().images):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (40 * k, 90, 200 - 30 * k)).save(root / rel)
    assert _run_matrix_source(tmp_path, photos, "--anchors-root", str(root)) == "official"


def test_mos_matrix_without_std_warns_once_on_one_line(tmp_path):
    import json

    from tests.conftest import noise_pngs

    images = noise_pngs(tmp_path, [(16, 16)] * 2, seed=3)
    (tmp_path / "a.json").write_text(json.dumps({"images": images, "mos": [1.0, 4.0], "std": [0.0, 0.0]}))
    proc = _c2s("anchors", "matrix", "--anchors", str(tmp_path / "a.json"), "--from-mos", "--out",
                str(tmp_path / "m.json"))
    assert proc.returncode == 0
    assert proc.stderr == ("c2s: warning: the anchor matrix from MOS is all 0/1: the anchors carry no std, so every "
                           "anchor pair is a certain win; give std in the anchors file or use --anchor-matrix "
                           "comparator\n")


# --- c2s score says what it does ---------------------------------------------------------------------------------

def test_score_names_its_anchors_warns_about_one_photograph_states_the_scale_and_hides_nothing(
        photos, tmp_path, monkeypatch, capsys):
    folder, _ = photos
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["score", "--model", "classical", "--images", str(folder), "--out", "scores.csv"]) == 3
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "anchors: demo Eqn. 4 (alpha=5, beta=1) (5 images, matrix from comparator)"
    assert len([line for line in lines if line.startswith("  MOS ")]) == 5
    assert "scores on the latent scale: the MAP latent quality" in captured.out
    warned = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("c2s: warning: the 5 anchors are all degraded copies of one "
                                                     "photograph (")
    rows = _csv_rows(cwd / "scores.csv")
    assert {r["scale"] for r in rows} == {"latent"}
    assert sorted(p.name for p in cwd.iterdir()) == ["scores.csv"]  # no cache or run folder beside it


def test_score_with_anchors_from_several_photographs_does_not_warn(photos, own_anchors, tmp_path, capsys):
    folder, _ = photos
    assert main(["score", "--model", "classical", "--images", str(folder), "--out", str(tmp_path / "s.csv"),
                 "--anchors", str(own_anchors), "--profile", "official"]) == 3      # broken.jpg: partial
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert captured.out.startswith("anchors: anchors (3 images, matrix from file)")
    assert {r["scale"] for r in _csv_rows(tmp_path / "s.csv")} == {"minmax"}


def test_rating_mode_needs_no_anchor_flags(tmp_path, capsys):
    """No --anchors-root for the default KonIQ anchors: a rating-only run resolves no anchors at all."""
    from harness.run.record import read_run
    from tests.conftest import noise_pngs

    (tmp_path / "imgs").mkdir()
    noise_pngs(tmp_path / "imgs", [(32, 32), (40, 24), (24, 40)], seed=5)
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,mos\nimgs/img0.png,1\nimgs/img1.png,2\nimgs/img2.png,3\n")
    out = tmp_path / "runs"
    assert main(["run", "--model", "py:tests.runner_support:CountingComparator", "-o", f"log={tmp_path / 'log'}",
                 "--dataset", f"mine={manifest}", "--mode", "rating", "--out", str(out),
                 "--cache", str(tmp_path / "c.sqlite")]) == 0, capsys.readouterr().err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    rec = read_run(run_dir)
    assert rec.manifest.anchors.images == [] and rec.manifest.anchors.name == "none (rating mode)"
    assert [r.status for r in rec.scores] == ["ok"] * 3
    assert "| Anchors | none (rating mode) |" in (run_dir / "report.md").read_text()
    assert "## Anchors" not in (run_dir / "report.md").read_text()
