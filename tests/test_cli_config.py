"""The command line teaches (--help with examples everywhere) and YAML configs fail early and clearly."""
import subprocess
import sys

import pytest

from harness.cli import _parser, main
from harness.run.config import configs_from_dict, expand_env, load_config

COMMANDS = ["run", "score", "compare", "anchors", "datasets", "rescore", "leaderboard", "demo", "check-parity", "setup",
            "models"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"c2s {command}" in out


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, check=True)
    assert "quick start" in out.stdout


def test_config_expands_env_and_builds_one_run_per_model(monkeypatch, tmp_path):
    monkeypatch.setenv("IQA_ROOT", "/data/iqa")
    path = tmp_path / "run.yaml"
    path.write_text("""
models:
  - classical
  - {spec: "hf:/models/qwen", label: Qwen, options: {dtype: bfloat16, batch_size: 4}}
datasets:
  - {name: koniq, root: "${IQA_ROOT}", splits: ["1", "2"]}
  - {name: mine, source: "${MINE:-data/mine.csv}", root: data}
anchors: {source: koniq, root: "${IQA_ROOT}"}
profiles: [paper, official]
modes: [soft, count]
batch_size: 8
""")
    cfgs = load_config(path)
    assert [c.model for c in cfgs] == ["classical", "hf:/models/qwen"]
    assert cfgs[1].model_options == {"dtype": "bfloat16", "batch_size": 4} and cfgs[1].model_label == "Qwen"
    assert cfgs[0].datasets[0].root == "/data/iqa" and cfgs[0].datasets[1].source == "data/mine.csv"
    assert cfgs[0].anchors.root == "/data/iqa" and cfgs[0].profiles == ["paper", "official"]
    assert cfgs[0].batch_size == 8


@pytest.mark.parametrize("doc, message", [
    ({"models": ["classical"], "datasets": [{"name": "x", "rot": "/d"}]}, r"datasets\[0\]: unknown key"),
    ({"models": ["classical"], "datasets": ["demo"], "profile": "paper"}, "unknown key"),
    ({"models": ["classical"], "datasets": ["demo"], "profiles": ["nope"]}, "unknown profile"),
    ({"models": ["classical"], "datasets": ["demo"], "modes": ["hard"]}, "modes must be among"),
    ({"datasets": ["demo"]}, "models"),
    ({"models": ["classical"], "datasets": []}, "at least one dataset"),
    ({"models": [{"spec": "classical", "opts": {}}], "datasets": ["demo"]}, "unknown key"),
])
def test_bad_configs_fail_before_model_work(doc, message):
    with pytest.raises(ValueError, match=message):
        configs_from_dict(doc)


def test_missing_env_var_is_named(monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ValueError, match="NOPE_NOT_SET is not set"):
        expand_env({"a": ["${NOPE_NOT_SET}"]})


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [classical]\ndatasets: [{name: x, rot: y}]\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key" in err and "Traceback" not in err
    assert main(["run", "--model", "nope:x", "--dataset", "demo"]) == 2
    assert "unknown model backend" in capsys.readouterr().err


def test_datasets_check_lists_every_problem_and_decode_adds_truncated_files(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("good.jpg", "cut.jpg"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # the header still reads
    (tmp_path / "d.csv").write_text("path,mos\ngood.jpg,3\ncut.jpg,2\nmissing.jpg,1\n")
    assert main(["datasets", "check", f"d={tmp_path / 'd.csv'}"]) == 3  # some items unusable (exit-code contract)
    out = capsys.readouterr().out
    assert "1 problem" in out and "missing.jpg" in out and "cut.jpg" not in out
    assert main(["datasets", "check", f"d={tmp_path / 'd.csv'}", "--decode"]) == 3
    out = capsys.readouterr().out
    assert "2 problem" in out and "missing.jpg" in out and "cut.jpg" in out


def test_run_id_with_several_models_gives_one_folder_each():
    cfgs = configs_from_dict({"models": ["classical", {"spec": "hf:/m/qwen", "label": "Qwen VL"}],
                              "datasets": ["demo"], "run_id": "exp1"})
    assert [c.run_id for c in cfgs] == ["exp1-classical", "exp1-Qwen-VL"]
    assert configs_from_dict({"models": ["classical"], "datasets": ["demo"], "run_id": "exp1"})[0].run_id == "exp1"


def test_every_model_of_a_grid_is_checked_before_the_first_runs(tmp_path, capsys):
    """A typo in the second model's options stops the whole grid at load time (nothing judged)."""
    path = tmp_path / "grid.yaml"
    path.write_text("""
models:
  - classical
  - {spec: classical, options: {sigmaa: 0.5}}
datasets: [demo]
anchors: {source: select, dataset: demo}
""")
    with pytest.raises(ValueError, match=r"model classical: unknown option 'sigmaa' \(did you mean 'sigma'\?\); "
                                         r"valid options: .*sigma"):
        load_config(path)
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s run: error: model classical: unknown option 'sigmaa'") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_yaml_and_cli_option_values_are_checked_and_typed(tmp_path, capsys):
    (cfg,) = configs_from_dict({"models": [{"spec": "classical", "options": {"sigma": "1e-3"}}],
                                "datasets": ["demo"]})
    assert cfg.model_options == {"sigma": 0.001}
    with pytest.raises(ValueError, match=r"option 'batch_size' = True \(bool\) is not int"):
        configs_from_dict({"models": [{"spec": "hf:/models/x", "options": {"batch_size": True}}],
                           "datasets": ["demo"]})
    assert main(["run", "--model", "classical", "-o", "sigma=fast", "--dataset", "demo",
                 "--out", str(tmp_path / "runs")]) == 2
    assert "option 'sigma' = 'fast' (str) is not float" in capsys.readouterr().err


def test_model_options_in_help_and_models_come_from_the_declarations(capsys):
    from dataclasses import fields

    from adapters.base import backends

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for b in backends():
        assert f"  {b.spec()}: {b.summary}" in out
        for f in fields(b.load().Options):
            assert f"      {f.name} (" in out, (b.name, f.name)
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--help"])
    assert "model options (-o KEY=VALUE" in capsys.readouterr().out
    assert main(["models", "nope"]) == 2
    assert "unknown backend(s) ['nope']; known: hf" in capsys.readouterr().err


def test_models_lists_a_registered_plain_class(capsys, monkeypatch):
    from adapters import base

    monkeypatch.setitem(base._REGISTRY, "mine", base.Backend("mine", "tests.test_base:FixedComparator", "a test"))
    assert main(["models", "mine"]) == 0
    assert "mine[:MODEL]: a test\n      (no declared options: given to the class as they are)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    ({"batch_size": 2.5}, r"config: 'batch_size' = 2.5 \(float\) is not int"),
    ({"seed": "x"}, r"config: 'seed' = 'x' \(str\) is not int"),
    ({"bootstrap": "many"}, r"config: 'bootstrap' = 'many' \(str\) is not int"),
    ({"reports": "no"}, r"config: 'reports' = 'no' \(str\) is not bool"),
    ({"drop_bad": "no"}, r"config: 'drop_bad' = 'no' \(str\) is not bool"),
    ({"profiles": "paper"}, r"config: 'profiles' = 'paper' \(str\) is not list"),
    ({"bootstrap": -1}, r"bootstrap must be between 0 and 100000"),
    ({"anchors": {"alpha": "five"}}, r"anchors: 'alpha' = 'five' \(str\) is not int"),
    ({"anchors": {"beta": 0}}, r"anchors: alpha and beta must be >= 1"),
    ({"datasets": [{"name": "d", "splits": "1"}]}, r"dataset 'd': 'splits' = '1' \(str\) is not list or None"),
])
def test_run_settings_have_strict_types_checked_before_any_work(extra, message):
    doc = {"models": ["classical"], "datasets": ["demo"], **extra}
    with pytest.raises(ValueError, match=message):
        configs_from_dict(doc)


def test_yaml_numbers_become_the_declared_types():
    (cfg,) = configs_from_dict({"models": ["classical"], "batch_size": "8", "bootstrap": 1e3,
                                "datasets": [{"name": "d", "source": "x.csv", "splits": [1, 2]}]})
    assert (cfg.batch_size, cfg.bootstrap, cfg.datasets[0].splits) == (8, 1000, ["1", "2"])


def test_rating_capability_of_every_model_is_checked_before_the_first_runs():
    with pytest.raises(ValueError, match=r"mode rating needs a comparator with single-image rating; 'classical'"):
        configs_from_dict({"models": ["py:tests.test_base:NoModelComparator", "classical"],
                           "datasets": ["demo"], "modes": ["soft", "rating"]})
