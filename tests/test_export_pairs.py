"""c2s export-pairs: comparative training data with Eqn. 2 labels (docs/method.md, "Training data")."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.data.datasets import Dataset, Record
from harness.tools.export_pairs import build_pairs, sample_pairs, write_export

NAMES = ("inferior", "worse", "similar", "better", "superior")


def eqn2_reference(q_first, s_first, q_second, s_second) -> str:
    """Eqn. 2 written out from docs/method.md: the second image against the first, boundaries to the milder level."""
    d = q_first - q_second
    s = math.sqrt(s_first ** 2 + s_second ** 2)
    if abs(d) <= s:
        return "similar"
    if abs(d) <= 2 * s:
        return "worse" if d > 0 else "better"
    return "inferior" if d > 0 else "superior"


def _dataset(mos, std, *, root="/data/set", higher_is_better=True, name="set") -> Dataset:
    recs = [Record(f"img/{k:03d}.png", float(q), None if s is None else float(s)) for k, (q, s) in enumerate(zip(mos, std))]
    return Dataset(name=name, root=Path(root), records=recs, higher_is_better=higher_is_better)


RNG = np.random.default_rng(11)
DATASETS = {
    # integer MOS with std 3 and 4 (sigma exactly 5): many pairs exactly on the +-s and +-2s boundaries
    "boundaries": _dataset(RNG.integers(0, 25, 60), RNG.choice([3.0, 4.0], 60)),
    "zero std (CSIQ, KADID)": _dataset(RNG.integers(1, 4, 40), np.zeros(40)),
    "mixed scales": _dataset(RNG.uniform(1, 5, 120), RNG.uniform(0, 1.2, 120)),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_labels_follow_an_independent_eqn2(name):
    ds = DATASETS[name]
    export = build_pairs(ds, per_image=7, seed=3)
    for r in export.records:
        (q1, q2), (s1, s2) = r["mos"], r["std"]
        assert r["level"] == eqn2_reference(q1, s1, q2, s2)
    assert Counter(r["level"] for r in export.records) == export.counts
    assert sum(export.counts.values()) == 7 * len(ds.records)


def test_lower_is_better_scores_are_labelled_the_other_way():
    mos, std = RNG.uniform(0, 100, 50), RNG.uniform(1, 8, 50)
    up = build_pairs(_dataset(mos, std), per_image=5, seed=1).records
    down = build_pairs(_dataset(-mos, std, higher_is_better=False), per_image=5, seed=1).records
    assert [r["level"] for r in up] == [r["level"] for r in down]
    assert [r["mos"][0] for r in down] == [-r["mos"][0] for r in up]  # the file keeps the dataset's own values


@pytest.mark.parametrize("n, k", [(2, 1), (5, 4), (30, 3), (200, 10)])
def test_sampling_is_deterministic_within_the_dataset_and_never_self(n, k):
    a, b, c = sample_pairs(n, k, 7), sample_pairs(n, k, 7), sample_pairs(n, k, 8)
    assert np.array_equal(a, b) and a.shape == (n * k, 2)
    assert n * k < 4 or not np.array_equal(a, c)
    assert (a[:, 0] != a[:, 1]).all() and (a >= 0).all() and (a < n).all()
    assert np.array_equal(np.bincount(a[:, 0], minlength=n), np.full(n, k))
    assert len({tuple(p) for p in a}) == n * k  # distinct second images per first image


def test_the_wording_is_the_papers_question_and_answer():
    ds = DATASETS["mixed scales"]
    recs = build_pairs(ds, per_image=5, seed=0).records
    for r in recs:
        human, gpt = r["conversations"]
        assert human == {"from": "human", "value": "Compared with the first image <|image|>, how is the quality of "
                                                   "the second image <|image|>?"}
        prep = "than" if r["level"] in ("worse", "better") else "to"
        assert gpt == {"from": "gpt", "value": f"The quality of the second image is {r['level']} {prep} the first"}
    llava = build_pairs(ds, per_image=1, seed=0, image_token="<image>").records[0]["conversations"][0]["value"]
    assert llava.count("<image>") == 2 and "<|image|>" not in llava
    assert {r["level"] for r in recs} == set(NAMES)


def test_paths_are_relative_to_a_root():
    ds = _dataset([1, 2, 3], [0.1, 0.1, 0.1], root="/data/set")
    recs = build_pairs(ds, per_image=2, seed=0).records
    assert {p for r in recs for p in r["image"]} == {"img/000.png", "img/001.png", "img/002.png"}
    recs = build_pairs(ds, per_image=2, seed=0, image_root="/data").records
    assert {p for r in recs for p in r["image"]} == {"set/img/000.png", "set/img/001.png", "set/img/002.png"}
    with pytest.raises(ValueError, match="not under --image-root"):
        build_pairs(ds, per_image=2, seed=0, image_root="/elsewhere")


def test_both_formats_hold_the_same_records(tmp_path):
    export = build_pairs(DATASETS["mixed scales"], per_image=2, seed=5)
    write_export(export, tmp_path / "a.json", "conversation")
    write_export(export, tmp_path / "a.jsonl", "jsonl")
    as_json = json.loads((tmp_path / "a.json").read_text())
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert as_json == [json.loads(line) for line in lines] == export.records
    assert isinstance(as_json, list) and len(lines) == 240


def test_missing_std_is_refused_unless_a_fallback_is_given():
    ds = _dataset([1.0, 2.0, 3.0, 4.0], [0.2, None, None, 0.3])
    with pytest.raises(ValueError, match=r"2 of 4 image\(s\) have no std.*--std-fallback"):
        build_pairs(ds, per_image=2)
    export = build_pairs(ds, per_image=3, std_fallback=0.25)
    assert export.std_filled == 2
    for r in export.records:
        assert r["level"] == eqn2_reference(r["mos"][0], r["std"][0], r["mos"][1], r["std"][1])
    with pytest.raises(ValueError, match="no MOS"):
        build_pairs(Dataset("x", Path("/d"), [Record("a.png", None, 0.1), Record("b.png", 1.0, 0.1)]))


# --- the real command -------------------------------------------------------------------------------

def _manifest(tmp_path, n=9, std=True) -> Path:
    folder = tmp_path / "mine"
    (folder / "pics").mkdir(parents=True)
    rows = ["image,mos" + (",std" if std else "")]
    for k in range(n):
        Image.new("RGB", (16, 16), (20 * k, 0, 0)).save(folder / "pics" / f"p{k}.png")
        rows.append(f"pics/p{k}.png,{1 + 0.4 * k:.1f}" + (f",{0.1 * (k % 3):.1f}" if std else ""))
    (folder / "mine.csv").write_text("\n".join(rows) + "\n")
    return folder / "mine.csv"


def test_cli_on_a_manifest_both_formats_deterministic(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    args = ["export-pairs", "--dataset", f"mine={manifest}", "--root", str(manifest.parent), "--pairs-per-image", "3"]
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "27 pairs of 9 images of mine (3 per image, seed 0, conversation)" in out
    assert main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert main([*args, "--format", "jsonl", "--seed", "4", "--out", str(tmp_path / "c.jsonl")]) == 0
    summary = capsys.readouterr().out.splitlines()
    recs = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    counts = Counter(r["level"] for r in recs)
    for name in NAMES:  # the printed distribution is the file's
        assert any(line.split()[:2] == [name, str(counts[name])] for line in summary)
    for r in recs:
        assert all((manifest.parent / p).is_file() for p in r["image"]) and r["image"][0].startswith("pics/")
        assert r["level"] == eqn2_reference(r["mos"][0], r["std"][0], r["mos"][1], r["std"][1])
    assert recs != json.loads((tmp_path / "a.json").read_text())
    assert main([*args, "--image-root", str(tmp_path), "--out", str(tmp_path / "d.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())[0]["image"][0].startswith("mine/pics/")


def test_cli_on_the_embedded_benchmark(tmp_path, capsys):
    assert main(["export-pairs", "--dataset", "demo", "--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("c2s export-pairs: error: dataset 'demo': 260 of 260") and "--std-fallback" in err[0]
    assert main(["export-pairs", "--dataset", "demo", "--std-fallback", "0.5", "--pairs-per-image", "2",
                 "--out", str(tmp_path / "d.json")]) == 0
    assert "std 0.5 for 260 image(s) without one" in capsys.readouterr().out
    recs = json.loads((tmp_path / "d.json").read_text())
    assert len(recs) == 520 and all(not Path(p).is_absolute() for r in recs for p in r["image"])
    assert all(r["level"] == eqn2_reference(r["mos"][0], 0.5, r["mos"][1], 0.5) for r in recs)


@pytest.mark.parametrize("extra, message", [
    (["--pairs-per-image", "0"], "--pairs-per-image must be between 1 and 8"),
    (["--pairs-per-image", "9"], "--pairs-per-image must be between 1 and 8"),
    (["--std-fallback", "-1"], "--std-fallback must be a finite number >= 0"),
    (["--prompt", "rating"], "shows 1 image(s); a comparison needs 2"),
    (["--prompt", "nope"], "unknown prompt 'nope'"),
    (["--image-root", "/nonexistent/elsewhere"], "is not under --image-root"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, extra, message):
    manifest = _manifest(tmp_path)
    assert main(["export-pairs", "--dataset", f"mine={manifest}", "--root", str(manifest.parent), *extra,
                 "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("c2s export-pairs: error: ") and message in err[0]
    assert not (tmp_path / "x.json").exists()


def test_inputs_are_never_written_and_a_dataset_needs_std(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    base = ["export-pairs", "--dataset", f"mine={manifest}", "--root", str(manifest.parent)]
    before = manifest.read_bytes()
    for target in (manifest, manifest.parent / "pics" / "p0.png"):
        assert main([*base, "--out", str(target)]) == 2
        assert "would write over the input" in capsys.readouterr().err
    assert manifest.read_bytes() == before
    assert main(["export-pairs", "--dataset", f"nostd={_manifest(tmp_path / 'n', std=False)}",
                 "--out", str(tmp_path / "y.json")]) == 2
    assert "9 of 9 image(s) have no std" in capsys.readouterr().err
    assert main(["export-pairs", "--dataset", f"gone={tmp_path / 'missing.csv'}", "--out", str(tmp_path / "z.json")]) == 2
    with pytest.raises(SystemExit) as exc:
        main([*base, "--format", "csv", "--out", str(tmp_path / "w.json")])
    assert exc.value.code == 2


def test_drop_bad_leaves_out_a_missing_image(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    (manifest.parent / "pics" / "p4.png").unlink()
    args = ["export-pairs", "--dataset", f"mine={manifest}", "--root", str(manifest.parent), "--out", str(tmp_path / "x.json")]
    assert main(args) == 2 and "--drop-bad" in capsys.readouterr().err
    assert main([*args, "--drop-bad", "--pairs-per-image", "2"]) == 0
    recs = json.loads((tmp_path / "x.json").read_text())
    assert len(recs) == 16 and "pics/p4.png" not in {p for r in recs for p in r["image"]}
