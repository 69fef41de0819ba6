"""`c2s models`: the model families, their recommended options (checked against what the backends
declare), the py: contract, and `c2s models tiny FAMILY --out DIR` followed by a run on that model."""
from __future__ import annotations

import csv
import json
import shlex

import pytest

from adapters.base import check_model_options
from harness.cli import _kv, main
from harness.tools import tiny_vlm
from harness.tools.families import FAMILIES, tiny_family

ISSUE_FAMILIES = ["Qwen2-VL", "Qwen2.5-VL", "LLaVA", "LLaVA-OneVision", "Idefics3", "SmolVLM", "InternVL", "Gemma 3",
                  "Compare2Score", "OpenAI-compatible"]


@pytest.mark.parametrize("family,backend,opts", [(f.name, b, o) for f in FAMILIES for b, o in f.settings])
def test_every_recommended_option_is_declared_by_its_backend(family, backend, opts):
    words = shlex.split(opts)
    assert words[::2] == ["-o"] * (len(words) // 2) and len(words) % 2 == 0, opts
    spec = backend if backend == "compare2score" else f"{backend}:some-model"
    check_model_options(spec, _kv(words[1::2]))  # raises on an unknown key or a wrong type


def test_every_tiny_family_stands_for_a_listed_family():
    assert sorted(f.tiny for f in FAMILIES if f.tiny) == sorted(tiny_vlm.FAMILIES)


@pytest.mark.parametrize("name,key", [("Qwen2.5-VL", "qwen2_5_vl"), ("qwen2-vl", "qwen2_vl"), ("SmolVLM", "idefics3"),
                                      ("Gemma 3", "gemma3"), ("LLaVA-OneVision", "llava_onevision"),
                                      ("llava", "llava"), ("InternVL", "internvl")])
def test_family_names_as_users_write_them(name, key):
    assert tiny_family(name) == key


def test_c2s_models_lists_families_settings_and_the_py_contract(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ISSUE_FAMILIES:
        assert name in out
    assert "max_model_len=8192" in out and "max_pixels=1003520" in out and "dtype=bfloat16" in out
    assert "c2s models tiny qwen2_vl --out DIR" in out
    assert "Constructor contract: `Class(model, **options)`" in out and "UserComparator" in out
    assert main(["models", "hf"]) == 0
    assert "model families" not in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["models", "tiny", "qwen2_vl"], "usage: c2s models tiny FAMILY --out DIR"),
    (["models", "tiny", "--out", "x"], "usage: c2s models tiny FAMILY --out DIR"),
    (["models", "tiny", "mistral", "--out", "x"], "no tiny model for 'mistral'; choose one of "),
    (["models", "hf", "--out", "x"], "--out goes with `c2s models tiny FAMILY --out DIR`"),
])
def test_c2s_models_tiny_usage_errors(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_c2s_models_tiny_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["models", "tiny", "idefics3", "--out", str(tmp_path)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert main(["models", "tiny", "idefics3", "--out", str(tmp_path / "keep.txt")]) == 2
    assert "keep.txt exists and is not an empty folder" in capsys.readouterr().err


def test_a_tiny_model_runs_the_whole_path_offline(tmp_path, capsys):
    model = tmp_path / "tiny-idefics3"
    assert main(["models", "tiny", "SmolVLM", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"built a tiny RANDOM idefics3 model in {model}" in out and f"--model hf:{model}" in out
    assert main(["run", "--model", f"hf:{model}", "--dataset", "demo", "--anchors", "select", "--anchors-dataset",
                 "demo", "--limit", "4", "--out", str(tmp_path / "runs"), "--cache", str(tmp_path / "pairs.sqlite"),
                 "--no-report"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["spec"] == f"hf:{model}" and manifest["limit"] == 4
    assert manifest["counts"]["pairs_failed"] == 0 and manifest["counts"]["images_failed"] == 0
    with open(run_dir / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["image"] for r in rows}) == 4 and {r["status"] for r in rows} == {"ok"}
