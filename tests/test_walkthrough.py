"""The README, walked through: every `c2s` command in its code blocks and command table is either run here
through the real command line (placeholders such as M, DIR and RUN filled in) with its output checked, or
listed with the reason it cannot run offline. A command added to or changed in the README without a step
here fails `test_every_readme_command_has_a_step`, so the README and the code cannot drift apart. `make demo`
(its table in the README) is checked by tests/test_demo.py."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
TINY = "tiny-qwen2-vl"

#: README line -> why it is not run here (None: a step below runs it)
COMMANDS: dict[str, str | None] = {
    "c2s datasets fetch": "downloads the official split files (network)",
    "c2s run --model hf:/models/Qwen2.5-VL-7B-Instruct -o device=cuda -o dtype=bfloat16 -o batch_size=16 "
    "--dataset koniq --root /data/iqa --anchors-root /data/iqa --profile paper --profile official --mode soft "
    "--mode count": "needs real weights, a GPU and KonIQ-10k; the tiny-model steps run the same path",
    "c2s leaderboard results/runs --out results/leaderboard": None,
    "c2s run --model vllm:/models/Qwen2.5-VL-7B-Instruct -o max_model_len=8192 ...": "needs vLLM and weights "
                                                                                      "(make test-integration)",
    "c2s run --model openai:/models/Qwen2.5-VL-7B-Instruct -o base_url=http://127.0.0.1:8000/v1 "
    "-o api_key_env=null ...": "needs a running vLLM server (make test-integration)",
    "OPENAI_API_KEY=... c2s run --model openai:gpt-4o -o server=generic -o api_key_env=OPENAI_API_KEY ...":
        "needs a hosted API and its key",
    f"c2s models tiny qwen2_vl --out {TINY}": None,
    f"c2s run --model hf:{TINY} --dataset demo --anchors select --anchors-dataset demo --limit 10": None,
    "c2s score --model M --images DIR --out scores.csv": None,
    "c2s --version": None,
    "c2s compare --model M first.png second.png": None,
    "c2s anchors select --dataset koniq=/data/koniq/train.json --root /data/iqa --out anchors.json":
        None,  # run on the embedded benchmark instead of KonIQ-10k
    "c2s anchors matrix --anchors anchors.json --model M --out a.json": None,
    "c2s export-pairs --dataset koniq=/data/koniq/train.json --root /data/iqa --out c2s_train.json":
        None,  # run on the embedded benchmark (no std: --std-fallback) instead of KonIQ-10k
    "c2s datasets list / check NAME --root DIR / fetch": None,  # list and check; fetch: see above
    "c2s paper-tables results/runs --out results/paper": None,
    "c2s rescore RUN --link logit": None,
    "c2s check-parity MODEL": "needs the vLLM environment (make test-integration)",
    "c2s setup compare2score": "builds an environment from the package index (make worker-env)",
    "c2s models [BACKEND ...]": None,
    "c2s models tiny FAMILY --out DIR": None,  # the qwen2_vl line above
}


def readme_commands() -> list[str]:
    """`c2s` lines of the README's bash blocks (continuations joined, comments cut) and its command table."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if re.match(r"^(\w+=\S+ )*c2s ", line):
                found.append(line)
    return found + re.findall(r"^\| `(c2s [^`]*)`", README, flags=re.M)


def test_every_readme_command_has_a_step():
    assert sorted(readme_commands()) == sorted(COMMANDS)


def c2s(capsys, *args) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, f"c2s {' '.join(args)} -> {code}\n{err[-2000:]}"
    return out


def run_folders(parent: Path) -> list[Path]:
    return sorted(p.parent for p in parent.glob("*/manifest.json"))


def test_walkthrough(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # c2s models [BACKEND ...]
    out = c2s(capsys, "models")
    assert "hf:PATH_OR_ID" in out and "model families" in out and "Constructor contract" in out
    assert "vllm" not in c2s(capsys, "models", "hf").split("\n", 1)[1]

    # c2s models tiny qwen2_vl --out tiny-qwen2-vl, then the run on it (--limit 10; into results/runs)
    assert "built a tiny RANDOM qwen2_vl model" in c2s(capsys, "models", "tiny", "qwen2_vl", "--out", TINY)
    out = c2s(capsys, "run", "--model", f"hf:{TINY}", "--dataset", "demo", "--anchors", "select",
              "--anchors-dataset", "demo", "--limit", "10")
    assert "LIMITED RUN: only the first 10 images" in out
    (run,) = run_folders(tmp_path / "results" / "runs")
    assert json.loads((run / "manifest.json").read_text())["limit"] == 10

    # c2s leaderboard results/runs --out results/leaderboard (needs the run above)
    out = c2s(capsys, "leaderboard", "results/runs", "--out", "results/leaderboard")
    assert f"hf:{TINY}" in out and (tmp_path / "results" / "leaderboard" / "leaderboard.md").is_file()

    # c2s paper-tables results/runs --out results/paper (the same run: a dataset the paper has no column for)
    out = c2s(capsys, "paper-tables", "results/runs", "--out", "results/paper")
    assert "Other datasets" in out and (tmp_path / "results" / "paper" / "paper_tables.tex").is_file()

    # c2s score --model M --images DIR --out scores.csv: a few demo images in a folder
    demo = sorted(Path(json.loads((run / "manifest.json").read_text())["datasets"][0]["root"]).glob("coffee/*.png"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in demo[:4]:
        shutil.copy(p, photos / p.name)
    out = c2s(capsys, "score", "--model", "classical", "--images", "photos", "--out", "scores.csv")
    assert "scores.csv" in out
    with open("scores.csv", newline="") as f:
        rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
    assert sorted(Path(r["image"]).name for r in rows) == sorted(p.name for p in demo[:4])

    # c2s --version
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and re.fullmatch(r"c2s \S+\n", capsys.readouterr().out)

    # c2s compare --model M first.png second.png
    out = c2s(capsys, "compare", "--model", "classical", str(demo[-1]), str(demo[0]))
    assert "P(second better)" in out and "superior" in out

    # c2s anchors select (on the embedded benchmark), then c2s anchors matrix --anchors anchors.json --model M
    assert "5 anchors" in c2s(capsys, "anchors", "select", "--dataset", "demo", "--out", "anchors.json")
    assert "wrote a.json" in c2s(capsys, "anchors", "matrix", "--anchors", "anchors.json", "--model", "classical",
                                 "--out", "a.json")
    assert len(json.loads(Path("a.json").read_text())["matrix"]) == 5

    # c2s export-pairs (on the embedded benchmark, which has no std)
    assert "520 pairs of 260 images" in c2s(capsys, "export-pairs", "--dataset", "demo", "--std-fallback", "0.5",
                                            "--pairs-per-image", "2", "--out", "train.json")
    assert len(json.loads(Path("train.json").read_text())) == 520

    # c2s datasets list / check NAME
    assert "koniq" in c2s(capsys, "datasets", "list")
    assert "demo: 260 images usable, 0 problem(s)" in c2s(capsys, "datasets", "check", "demo")

    # c2s rescore RUN --link logit
    c2s(capsys, "rescore", str(run), "--link", "logit", "--no-report")
    (new,) = [p for p in run_folders(tmp_path / "results" / "runs") if p != run]
    assert json.loads((new / "manifest.json").read_text())["profile"]["link"] == "logit"



def test_the_readme_yaml_grid_passes_every_check(tmp_path, monkeypatch):
    """The YAML example (`c2s run --config runs/zero_shot.yaml`) needs weights to run, but every key, model
    option and ${ENV} of it is checked before any model work: it must pass those checks as printed."""
    from harness.run.config import load_config

    (block,) = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    path = tmp_path / "zero_shot.yaml"
    path.write_text(block)
    monkeypatch.setenv("IQA_ROOT", "/data/iqa")
    configs = load_config(path)
    assert [c.model for c in configs] == ["hf:/models/Qwen2.5-VL-7B-Instruct",
                                          "vllm:/models/llava-onevision-qwen2-7b-ov-hf", "classical"]
    assert configs[0].model_options == {"device": "cuda", "dtype": "bfloat16"}
    assert [d.root for d in configs[0].datasets] == ["/data/iqa", "/data/iqa", "data/mine"]
    assert configs[0].profiles == ["paper", "official"] and configs[0].modes == ["soft", "count"]
