"""No traceback, whatever the input (issue 10, class 8): the known cases one by one, several inputs each, then
a seeded fuzz over every sub-command with mutated arguments and mutated files (manifests, anchors files, run
folders, YAML configs), all in process through `harness.cli.main`.

Every outcome must be a code of the contract (docs/architecture.md, "Exit codes") other than 1 (a bug), and
a user error must be one `c2s COMMAND: error: ...` line naming the input."""
from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from harness.cli import main
from harness.run.record import run_dirs_in

SEED = 10
#: the codes a hostile input may earn: never 1 (internal error), 5 (no fault here) or 130
ALLOWED = {0, 2, 3, 4}
DEEP = "[" * 100_000 + "]" * 100_000


class Counting:
    """A comparator that counts its calls; the fingerprint variants below break the contract."""

    calls = 0

    def __init__(self, model=None):
        pass

    def compare(self, pairs):
        Counting.calls += 1
        return np.tile(np.log([0.1, 0.2, 0.4, 0.2, 0.1]), (len(pairs), 1))

    def fingerprint(self):
        return {"backend": "counting-fuzz"}


def _fp(value):
    return type("Fp", (Counting,), {"fingerprint": lambda self: value() if callable(value) else value})


def _raise():
    raise KeyError("model_path")


FP_NONE, FP_LIST, FP_SET, FP_TUPLE_KEY = _fp(None), _fp([1, 2]), _fp({"a": {1, 2}}), _fp({(1, 2): "x"})
FP_OBJECT, FP_INT_KEY, FP_RAISES = _fp({"a": {"b": object()}}), _fp({"a": {3: "x"}}), _fp(_raise)


def not_a_class():
    """A function where a py: spec needs a class."""


NUMBER = 3


def _call(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exits (--help, a parse error)
        return 0 if exc.code is None else exc.code


def _outcome(argv, capsys) -> tuple[int, str]:
    """Run `c2s ARGV`; assert the contract: no traceback, no internal error, an allowed code, and a user
    error is one `c2s COMMAND: error:` line."""
    rc = _call(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    assert rc in ALLOWED, (argv, rc, err)
    if rc == 2:
        assert re.search(r"^c2s( [a-z-]+)*: error: \S", err, re.M), (argv, err)
    return rc, err


def _error(argv, capsys, *needles: str) -> str:
    """Assert `c2s ARGV` is a user error (exit 2) whose message holds every needle."""
    rc, err = _outcome(argv, capsys)
    assert rc == 2, (argv, err)
    for needle in needles:
        assert needle in err, (argv, needle, err)
    return err


# --- the world every case works in ----------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    """6 images, a CSV and a JSON manifest, an anchors file, a YAML config, and one finished run folder.

    Every file has the same length on every machine and in every session (a folder name of fixed length, the
    run's clock-dependent fields fixed), so the seeded mutations cut and splice at the same places each time:
    the fuzz is deterministic, not a test whose cases depend on pytest's folder counter or a run's timings."""
    root = Path(tempfile.mkdtemp(prefix="c2s-fuzz-"))
    try:
        yield _build_world(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_world(root: Path):
    base = Image.fromarray(np.random.default_rng(SEED).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    rows = []
    for k in range(6):
        base.filter(ImageFilter.GaussianBlur(k * 0.5)).save(root / f"img{k}.png")
        rows.append((f"img{k}.png", 5 - k * 0.7))
    (root / "mine.csv").write_text("image,mos,split\n" + "".join(f"{i},{m},{'ab'[k % 2]}\n"
                                                                 for k, (i, m) in enumerate(rows)))
    (root / "mine.json").write_text(json.dumps([{"image": i, "gt_score": m, "std": 0.3} for i, m in rows]))
    (root / "anchors.json").write_text(json.dumps({"images": ["img5.png", "img2.png", "img0.png"], "mos": [1.5, 3.6, 5],
                                                   "std": [0.3, 0.3, 0.3], "root": str(root)}))
    (root / "run.yaml").write_text(f"models: [classical]\ndatasets: [{{name: mine, source: {root / 'mine.csv'}, "
                                   f"root: {root}}}]\nanchors: {{source: {root / 'anchors.json'}}}\n"
                                   f"out_dir: {root / 'yaml-runs'}\ncache: ''\nreports: false\nbatch_size: 4\n")
    (root / "folder").mkdir()
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (root / "empty.txt").write_text("")
    (root / "deep.json").write_text(DEEP)
    assert main(["run", "--model", "classical", "--dataset", f"mine={root / 'mine.csv'}", "--root", str(root),
                 "--anchors", str(root / "anchors.json"), "--out", str(root / "runs"), "--cache", "",
                 "--no-report"]) == 0
    (run_dir,) = run_dirs_in(root / "runs")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(created="2026-01-01T00:00:00+00:00", git_revision="0" * 40,
                    timings={k: 0.0 for k in manifest["timings"]})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root, run_dir


@pytest.fixture(autouse=True)
def _stay_in(tmp_path, monkeypatch):
    """Relative outputs of a mutated command land in the test's folder; nothing slow or networked runs."""
    monkeypatch.chdir(tmp_path)
    import harness.tools.demo as demo
    import harness.tools.parity as parity
    import harness.tools.tiny_vlm as tiny

    def refuse(*a, **k):
        raise ValueError("not in the fuzz test")

    for module, name in ((demo, "run_demo"), (parity, "check_parity"), (tiny, "build_tiny_vlm")):
        monkeypatch.setattr(module, name, refuse)
    Counting.calls = 0


def _run_argv(root: Path, *more, model="classical", dataset=None, anchors=None) -> list[str]:
    return ["run", "--model", model, "--dataset", dataset or f"mine={root / 'mine.csv'}", "--root", str(root),
            "--anchors", str(anchors or root / "anchors.json"), "--out", "runs", "--cache", "", "--no-report",
            "--summary", "all", *more]


# --- the known cases, several inputs each ----------------------------------------------------------

@pytest.mark.parametrize("option, needle", [
    ("foo=1", "unknown option 'foo'"), ("sigmaa=1", "did you mean 'sigma'"), ("sigma=abc", "option 'sigma'"),
    ("sigma=true", "option 'sigma'"), ("sigma", "expects KEY=VALUE"), ("=3", "expects KEY=VALUE"),
    ("sigma=1e400", "option 'sigma'"),
])
def test_unknown_or_mistyped_model_options(world, capsys, option, needle):
    root, _ = world
    _error(_run_argv(root, "-o", option), capsys, "c2s run: error:", needle)
    _error(["compare", "--model", "classical", "-o", option, str(root / "img0.png"), str(root / "img1.png")],
           capsys, "c2s compare: error:", needle)


@pytest.fixture
def boom_module(tmp_path, monkeypatch):
    (tmp_path / "c2s_fuzz_boom.py").write_text("raise RuntimeError('import-time boom')\n")
    (tmp_path / "c2s_fuzz_syntax.py").write_text("def (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("spec, needle", [
    ("py:c2s_no_such_module:X", "c2s_no_such_module"),
    (f"py:{__name__}:Nope", "has no attribute 'Nope'"),
    (f"py:{__name__}:not_a_class", "is a function, not a class"),
    (f"py:{__name__}:NUMBER", "not a class"),
    ("py:c2s_fuzz_boom:X", "spec 'py:c2s_fuzz_boom:X': importing c2s_fuzz_boom raised RuntimeError: import-time boom"),
    ("py:c2s_fuzz_syntax:X", "spec 'py:c2s_fuzz_syntax:X'"),
    ("py:json:JSONDecoder", "lacks compare and fingerprint()"),
    ("py:only_module", "write py:package.module:ClassName"),
    ("py:a:b:c", "write py:package.module:ClassName"),
    ("nope:x", "unknown model backend 'nope'"),
])
def test_py_specs_that_do_not_name_a_comparator_class(world, capsys, boom_module, spec, needle):
    root, _ = world
    _error(_run_argv(root, model=spec), capsys, needle)


@pytest.mark.parametrize("text, needle", [
    ("[1, 2]", "expected a JSON object with images, mos and std, got a list"),
    ('"anchors"', "got a str"),
    ('{"mos": [1, 2, 3], "std": [0, 0, 0]}', "missing images"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2]}', "missing std"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2, 3], "std": [0, 0, 0]}', "one MOS and std each"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 1e400], "std": [0, 0]}', "MOS must be finite"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, NaN], "std": [0, 0]}', "MOS must be finite"),
    ('{"images": ["img0.png", "img1.png"], "mos": ["a", "b"], "std": [0, 0]}', "mos must be a list of numbers"),
    ('{"images": ["img0.png", "img1.png"], "mos": [true, 2], "std": [0, 0]}', "mos must be a list of numbers"),
    ('{"images": ["img0.png", "img1.png"], "mos": 5, "std": [0, 0]}', "mos must be a list of numbers"),
    ('{"images": [1, 2], "mos": [1, 2], "std": [0, 0]}', "images must be a list of file names"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2], "std": [0, 0], "matrix": [[1]]}', "must be (2, 2)"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2], "std": [0, 0], "matrix": "x"}', "matrix must be"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2], "std": [0, 0], "matrix": [[0.5], [0.5, 0.5]]}',
     "equally long lists"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2], "std": [0, 0], "matrix": [[0.5, 2], [0.5, 0.5]]}',
     "must be probabilities"),
    ('{"images": ["img0.png", "img1.png"], "mos": [1, 2], "std": [0, 0], "root": 7}', "root must be a folder"),
    ('{"images": ["img0.png", "img1.png"], "mos": [2, 1], "std": [0, 0]}', "ascending MOS order"),
    ('{"images": ["img0.png", "img0.png"], "mos": [1, 2], "std": [0, 0]}', "must be distinct"),
    ("{{", "cannot be read as JSON"),
    (DEEP, "nested too deeply"),
])
def test_bad_anchors_files(world, capsys, tmp_path, text, needle):
    root, _ = world
    path = tmp_path / "a.json"
    path.write_text(text)
    _error(_run_argv(root, anchors=path), capsys, f"c2s run: error: anchors file {path}: ", needle)
    _error(["anchors", "matrix", "--anchors", str(path), "--root", str(root), "--from-mos", "--out", "m.json"], capsys,
           f"c2s anchors: error: anchors file {path}: ", needle)


@pytest.mark.parametrize("name, text, needle", [
    ("inf.json", '[{"image": "img0.png", "gt_score": 1e400}]', "gt_score is not finite"),
    ("ninf.json", '[{"image": "img0.png", "gt_score": -1e400}]', "gt_score is not finite"),
    ("nan.json", '[{"image": "img0.png", "gt_score": NaN}]', "gt_score is not finite"),
    ("text.json", '[{"image": "img0.png", "gt_score": "1e400"}]', "gt_score is not finite"),
    ("bool.json", '[{"image": "img0.png", "gt_score": true}]', "gt_score is a boolean"),
    ("noimage.json", '[{"gt_score": 1}]', "image path missing"),
    ("dict.json", '{"image": "img0.png"}', "expected a JSON list of records"),
    ("deep.json", DEEP, "nested too deeply"),
    ("dup.json", '[{"image": "img0.png", "gt_score": 1}, {"image": "img0.png", "gt_score": 2}]', "duplicate"),
    ("inf.csv", "image,mos\nimg0.png,1e400\nimg1.png,2\n", "score is not finite"),
    ("nan.csv", "image,mos\nimg0.png,nan\nimg1.png,2\n", "score is not finite"),
    ("text.csv", "image,mos\nimg0.png,abc\nimg1.png,2\n", "score is not a number"),
    ("onecol.csv", "image\nimg0.png\n", "expected at least 2 columns"),
    ("dup.csv", "image,mos\nimg0.png,1\nimg0.png,2\n", "duplicate"),
    ("empty.csv", "", "empty CSV file"),
    ("binary.csv", "\x00\x01\x02\n\x03", "expected at least 2 columns"),
])
def test_bad_manifests(world, capsys, tmp_path, name, text, needle):
    root, _ = world
    path = tmp_path / name
    path.write_text(text)
    _error(_run_argv(root, dataset=f"m={path}"), capsys, "c2s run: error:", needle)
    rc, out = _call(["datasets", "check", f"m={path}", "--root", str(root)]), capsys.readouterr()
    assert rc in (2, 3, 4) and needle in out.out + out.err and "Traceback" not in out.err


@pytest.mark.parametrize("comparator, needle", [
    ("FP_NONE", "fingerprint() returned NoneType"), ("FP_LIST", "fingerprint() returned list"),
    ("FP_SET", "fingerprint.a is a set"), ("FP_TUPLE_KEY", "has the key (1, 2), not text"),
    ("FP_OBJECT", "fingerprint.a.b is a object"), ("FP_INT_KEY", "has the key 3, not text"),
    ("FP_RAISES", "fingerprint() raised KeyError: 'model_path'"),
])
def test_a_broken_fingerprint_stops_the_run_before_any_judging(world, capsys, tmp_path, comparator, needle):
    root, _ = world
    _error(_run_argv(root, model=f"py:{__name__}:{comparator}"), capsys, f"model py:{__name__}:{comparator}:", needle)
    assert Counting.calls == 0 and not (tmp_path / "runs").exists()


def _damage(run_dir: Path, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(run_dir, folder)
    name, _, action = how.partition(":")
    path = folder / name
    if action == "delete":
        path.unlink()
    elif action == "garble":
        path.write_bytes(b"\x00garbage{{")
    elif action == "empty":
        path.write_text("")
    elif action == "list":
        path.write_text("[1, 2]")
    elif action == "deep":
        path.write_text(DEEP)
    elif action == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif action.startswith("sub="):
        old, new = action[4:].split("->")
        text = path.read_text()
        assert re.search(old, text), (how, text[:300])
        path.write_text(re.sub(old, new, text, count=1))
    return folder


@pytest.mark.parametrize("how, needle", [
    ("manifest.json:delete", "missing manifest.json"), ("manifest.json:garble", "not valid JSON"),
    ("manifest.json:list", "expected a JSON object"), ("manifest.json:deep", "nested too deeply"),
    ("manifest.json:truncate", "not valid JSON"), ("metrics.json:empty", "not valid JSON"),
    ("manifest.json:sub=\"format_version\": 2->\"format_version\": 99", "newer than this"),
    ("manifest.json:sub=\"batch_size\": \\d+->\"batch_size\": \"x\"", "batch_size"),
    ("manifest.json:sub=\"mode\": \"soft\"->\"mode\": 1e400", "mode"),
    ("scores.csv:delete", "missing scores.csv"), ("scores.csv:garble", "scores.csv"),
    ("comparisons.csv:delete", "missing comparisons.csv"), ("comparisons.csv:empty", "comparisons.csv"),
    ("comparisons.csv:truncate", "comparisons.csv"),
    ("comparisons.csv:sub=,ok,->,1e400,", "comparisons.csv line"),
])
def test_rescore_and_leaderboard_of_a_damaged_run_folder(world, capsys, tmp_path, how, needle):
    _, run_dir = world
    folder = _damage(run_dir, tmp_path, how)
    rc, err = _outcome(["rescore", str(folder), "--no-report", "--out", str(tmp_path / "re")], capsys)
    assert rc == 2 and needle in err and str(folder) in err, err
    _outcome(["leaderboard", str(folder), "--out", str(tmp_path / "lb")], capsys)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "abc", "1e400", ""])
def test_temperature_must_be_finite_and_positive_everywhere(world, capsys, tmp_path, value):
    root, run_dir = world
    images = [str(root / "img0.png"), str(root / "img1.png")]
    needle = f"must be a finite number > 0 (e.g. 1 or 100), got {value!r}"
    flag = f"--temperature={value}"  # one token: "-inf" alone would read as an option
    _error(["compare", "--model", "classical", *images, flag], capsys, "c2s compare: error:", needle)
    _error(_run_argv(root, flag), capsys, "c2s run: error:", needle)
    _error(_run_argv(root, f"--anchor-temperature={value}"), capsys, "c2s run: error:", needle)
    _error(["score", "--model", "classical", "--images", *images, "--out", "s.csv", flag], capsys,
           "c2s score: error:", needle)
    _error(["rescore", str(run_dir), flag], capsys, "c2s rescore: error:", needle)
    _error(["anchors", "matrix", "--anchors", str(root / "anchors.json"), "--model", "classical", flag,
            "--out", "m.json"], capsys, "c2s anchors matrix: error:", needle)
    config = tmp_path / "t.yaml"
    config.write_text((root / "run.yaml").read_text() + f"profile_overrides: {{temperature: {value or 'null'}}}\n")
    rc, err = _outcome(["run", "--config", str(config)], capsys)
    assert rc == 2 and "temperature" in err or value == "" and rc == 0, err


@pytest.mark.parametrize("line, needle", [
    ("drop_bad: 'no'", "'drop_bad' = 'no' (str) is not bool"), ("drop_bad: 'yes'", "'drop_bad' = 'yes' (str)"),
    ("drop_bad: 1", "'drop_bad' = 1 (int) is not bool"), ("drop_bad: 'false'", "is not bool"),
    ("batch_size: true", "'batch_size' = True (bool) is not int"), ("batch_size: 2.5", "is not int"),
    ("batch_size: '8x'", "is not int"), ("bootstrap: true", "'bootstrap' = True (bool) is not int"),
    ("limit: 1.5", "'limit' = 1.5 (float) is not int"), ("reports: 'off'", "'reports' = 'off' (str) is not bool"),
    ("profile_overrides: {steps: true}", "'steps' = True (bool) is not int"),
    ("profile_overrides: {temperature: 'hot'}", "'temperature' = 'hot' (str) is not float"),
    ("profile_overrides: {temperature: .nan}", "temperature must be a finite number > 0"),
    ("profile_overrides: {anchor_temperature: .inf}", "anchor_temperature must be a finite number > 0"),
    ("profile_overrides: [1]", "'profile_overrides' = [1] (list) is not dict"),
    ("order: 3", "order must be one of"),
])
def test_yaml_values_have_one_declared_type(world, capsys, tmp_path, line, needle):
    root, _ = world
    config = tmp_path / "c.yaml"
    config.write_text((root / "run.yaml").read_text() + line + "\n")
    _error(["run", "--config", str(config)], capsys, "c2s run: error:", needle)


@pytest.mark.parametrize("text, needle", [
    ("models: 3\ndatasets: [demo]\n", "`models` must be a list"), ("model: 3\ndatasets: [demo]\n", "models[0]"),
    ("model: classical\ndatasets: 3\n", "`datasets` must be a list"),
    ("models: [{spec: classical, options: [1]}]\ndatasets: [demo]\n", "models[0].options: expected a mapping"),
    ("models: [{spec: classical, gpu: 1}]\ndatasets: [demo]\n", "models[0]: unknown key(s) ['gpu']"),
    ("model: classical\ndatasets: [demo]\n1: 2\n", "unknown key(s) ['1']"),
    ("model: classical\ndatasets: [{name: d, 2: x}]\n", "datasets[0]: unknown key(s) ['2']"),
    ("model: classical\ndatasets: [demo]\nanchors: [1]\n", "anchors: expected a mapping"),
    ("a: [", "is not valid YAML"), ("- 1\n", "a run config is a YAML mapping"), ("", "a run config is a YAML"),
    ("a: " + "[" * 50_000 + "]" * 50_000, "is nested too deeply to read"), ("a: \udcff", "is not text (UTF-8)"),
    ("model: classical\ndatasets: ['${C2S_FUZZ_UNSET}']\n", "environment variable C2S_FUZZ_UNSET is not set"),
])
def test_malformed_yaml_configs(capsys, tmp_path, text, needle):
    config = tmp_path / "c.yaml"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    _error(["run", "--config", str(config), "--dry-run"], capsys, "c2s run: error:", needle)


@pytest.mark.parametrize("cache", ["folder", "/proc/c2s-fuzz.sqlite", "garbage.bin", "missing/dir/pairs.sqlite"])
def test_a_cache_path_that_cannot_be_a_cache(world, capsys, cache):
    root, _ = world
    path = cache if cache.startswith("/") else str(root / cache)
    rc, err = _outcome([*_run_argv(root)[:-5], "--cache", path, "--no-report", "--summary", "all"], capsys)
    assert rc in (0, 2) and (rc == 0 or path in err), err


@pytest.mark.parametrize("argv", [
    ["run", "--config", "{root}/img0.png"], ["run", "--config", "{root}/folder"], ["run", "--config", "{root}/nope"],
    ["score", "--model", "classical", "--images", "{root}/mine.csv", "--anchors", "{root}/anchors.json", "--out",
     "s.csv"],
    ["score", "--model", "classical", "--images", "{root}/img0.png", "--anchors", "{root}/anchors.json", "--out",
     "{root}/folder"],
    ["run", "--model", "classical", "--dataset", "m={root}/img0.png", "--root", "{root}"],
    ["run", "--model", "classical", "--dataset", "m={root}/garbage.bin", "--root", "{root}"],
    ["run", "--model", "classical", "--dataset", "mine={root}/mine.csv", "--root", "{root}", "--anchors",
     "{root}/folder"],
    ["rescore", "{root}/mine.csv"], ["rescore", "{root}/folder"], ["leaderboard", "{root}/img0.png"],
    ["leaderboard", "{root}/folder"], ["datasets", "check", "m={root}/deep.json"], ["models", "nope"],
    ["anchors", "select", "--dataset", "m={root}/empty.txt", "--out", "a.json"],
    ["anchors", "select", "--dataset", "m={root}/mine.csv", "--root", "{root}", "--out", "{root}/folder"],
])
def test_files_of_the_wrong_kind(world, capsys, argv):
    root, _ = world
    _outcome([a.replace("{root}", str(root)) for a in argv], capsys)


@pytest.mark.parametrize("flag, value, needle", [
    ("--bootstrap", "99999999999999999999", "bootstrap must be between 0 and 100000 resamples"),
    ("--bootstrap", "100001", "bootstrap must be between 0 and 100000 resamples"),
    ("--alpha", "99999999999999999999", "at most 10000"), ("--alpha", "10001", "at most 10000"),
])
def test_numbers_too_large_to_compute_with_are_refused_before_any_work(world, capsys, flag, value, needle):
    root, _ = world
    argv = ["run", "--model", "classical", "--dataset", f"mine={root / 'mine.csv'}", "--root", str(root), "--anchors",
            "select", "--anchors-dataset", "mine", "--cache", "", "--out", "runs", flag, value]
    _error(argv, capsys, "c2s run: error:", needle)
    if flag == "--alpha":
        _error(["anchors", "select", "--dataset", f"m={root / 'mine.csv'}", "--root", str(root), flag, value, "--out",
                "a.json"], capsys, "c2s anchors: error:", needle)


@pytest.mark.parametrize("base", ["file:///c2s-fuzz/{foo}", "file:///c2s-fuzz/{0}", "file:///c2s-fuzz/{revision.x}",
                                  "file:///c2s-fuzz/{", "file:///c2s-fuzz/}{revision}", "abc", ""])
def test_fetch_from_a_base_url_that_is_no_format_string(capsys, tmp_path, base):
    _error(["datasets", "fetch", "--dest", str(tmp_path / "splits"), "--base-url", base], capsys,
           "c2s datasets: error: 90 of 90 official split files could not be fetched from")


# --- the fuzz -------------------------------------------------------------------------------------

def _templates(root: Path, run_dir: Path) -> list[list[str]]:
    """One valid command line per sub-command (and some variants)."""
    img = [str(root / "img0.png"), str(root / "img3.png")]
    anchors = str(root / "anchors.json")
    return [
        _run_argv(root),
        _run_argv(root, "--mode", "count", "--profile", "official", "--bootstrap", "5", "--batch-size", "3"),
        ["run", "--config", str(root / "run.yaml")],
        ["run", "--config", str(root / "run.yaml"), "--dry-run", "--limit", "2"],
        ["score", "--model", "classical", "--images", *img, "--anchors", anchors, "--out", "s.csv", "--cache", ""],
        ["compare", "--model", "classical", *img, "--temperature", "2"],
        ["anchors", "select", "--dataset", f"m={root / 'mine.json'}", "--root", str(root), "--alpha", "2", "--beta",
         "1", "--out", "sel.json"],
        ["anchors", "matrix", "--anchors", anchors, "--from-mos", "--out", "mat.json"],
        ["datasets", "check", f"m={root / 'mine.csv'}", "--root", str(root), "--splits", "a"],
        ["datasets", "list"],
        ["rescore", str(run_dir), "--link", "logit", "--no-report", "--out", "re"],
        ["leaderboard", str(run_dir), "--out", "lb", "--formats", "md,csv"],
        ["models", "classical"],
        ["models", "tiny", "qwen2_vl", "--out", "tiny"],
        ["demo", "--out", "demo", "--no-lmm"],
        ["check-parity", "/models/x", "--backends", "hf,vllm"],
    ]


def _pool(root: Path, run_dir: Path, broken: list[Path]) -> list[str]:
    """Values a mutation puts where a value was: wrong types, extremes, absent and wrong-kind files."""
    return ["", "0", "-1", "2.5", "1e400", "nan", "inf", "true", "no", "abc", "=", "key=value", "sigma=x",
            "py:c2s_no_module:X", f"py:{__name__}:not_a_class", f"py:{__name__}:FP_SET", "hf:", "classical:x",
            "nope:x", "x" * 300, "../../etc", "/proc/c2s-fuzz", str(root / "missing.png"), str(root / "folder"),
            str(root / "garbage.bin"), str(root / "empty.txt"), str(root / "deep.json"), str(root / "img0.png"),
            str(root / "mine.csv"), str(root / "anchors.json"), str(root / "run.yaml"), str(run_dir),
            f"m={root / 'garbage.bin'}", f"m={root / 'deep.json'}", *map(str, broken)]


_FLAGS = ["--model", "--dataset", "--root", "--anchors", "--out", "--cache", "--profile", "--mode", "--link",
          "--temperature", "--steps", "--scale", "--anchor-matrix", "--batch-size", "--bootstrap", "--limit",
          "--alpha", "--beta", "--images", "--splits", "--run-id", "-o", "--drop-bad", "--strict", "--decode",
          "--no-report", "--from-mos", "--keep-latest", "--summary", "--order", "--bogus", "-x", "--"]


def _mutate(argv: list[str], rng: random.Random, pool: list[str]) -> list[str]:
    out = list(argv)
    for _ in range(rng.choice([1, 1, 2, 3])):
        op, k = rng.randrange(6), rng.randrange(len(out)) if out else 0
        if op == 0 and len(out) > 1:
            del out[k]
        elif op == 1 and out:
            out.insert(k, out[k])
        elif op in (2, 3) and len(out) > 1:  # a value replaced (never the sub-command itself)
            k = max(k, 1)
            out[k] = rng.choice(pool)
        elif op == 4:
            flag = rng.choice(_FLAGS)
            out[k + 1:k + 1] = [flag] + ([rng.choice(pool)] if rng.random() < 0.7 else [])
        elif op == 5:
            out = out[:max(1, k)]
    return out


def _mutate_text(text: str, rng: random.Random) -> str:
    """A structural or byte-level mutation of a manifest, anchors file, YAML config or run-folder file
    ("\udcff" is written as the byte 0xff: not UTF-8)."""
    op = rng.randrange(8)
    numbers = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w.])", text))
    if op < 3 and numbers:
        m = rng.choice(numbers)
        return text[:m.start()] + rng.choice(["1e400", "-1e400", "NaN", "nan", "true", '"x"', "null", "[]", "{}",
                                             "-1", "0", "99999999999999999999"]) + text[m.end():]
    if op == 3:
        lines = text.splitlines(keepends=True)
        if len(lines) > 1:
            k = rng.randrange(len(lines))
            return "".join(lines[:k] + lines[k + 1:]) if rng.random() < 0.5 else "".join(lines + [lines[k]])
    if op == 4:
        return text[:rng.randrange(len(text) + 1)]
    if op == 5:
        k = rng.randrange(len(text) + 1)
        junk = ["\x00", "\n", ",", '"', "{", "[" * 50_000, "\ufeff", ":", "- ", "\udcff"]
        return text[:k] + rng.choice(junk) + text[k:]
    if op == 6:
        return re.sub(r'"\w+"', lambda m: '"' + m.group(0)[1:-1][::-1] + '"', text, count=1)  # a key misspelt
    return text.replace(",", ";", 1)


def test_fuzz_every_sub_command_with_mutated_arguments_and_files(world, capsys, tmp_path, boom_module):
    root, run_dir = world
    rng = random.Random(SEED)
    broken = []
    for k, name in enumerate(["mine.csv", "mine.json", "anchors.json", "run.yaml"] * 3):
        path = tmp_path / f"m{k}-{name}"
        path.write_bytes(_mutate_text((root / name).read_text(), rng).encode("utf-8", "surrogateescape"))
        broken.append(path)
    for k, name in enumerate(["manifest.json", "metrics.json", "scores.csv", "comparisons.csv"] * 2):
        folder = tmp_path / f"run{k}"
        shutil.copytree(run_dir, folder)
        text = _mutate_text((folder / name).read_text(), rng)
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
        broken.append(folder)
    pool = _pool(root, run_dir, broken)
    templates = _templates(root, run_dir)
    codes: dict[int, int] = {}
    for template in templates:
        for _ in range(14):
            rc, _ = _outcome(_mutate(template, rng, pool), capsys)
            codes[rc] = codes.get(rc, 0) + 1
    for path in broken:  # each mutated file in the command that reads it
        where = str(path)
        argv = (["rescore", where, "--no-report", "--out", "re"] if path.is_dir() else
                ["run", "--config", where] if path.suffix == ".yaml" else
                _run_argv(root, anchors=path) if "anchors" in path.name else _run_argv(root, dataset=f"m={path}"))
        rc, _ = _outcome(argv, capsys)
        codes[rc] = codes.get(rc, 0) + 1
    assert codes.get(2, 0) > 40 and codes.get(0, 0) > 5, codes   # the fuzz reached both errors and real work
