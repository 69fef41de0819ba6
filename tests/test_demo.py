"""The offline demo through the real command line: clean, anchors apart from the test images, and the
committed table (results/demo_leaderboard.md, README.md) is what it prints."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.anchors import AnchorSet
from harness.tools.demo import COMMITTED, README_MARKERS, TINY_LABEL, UNSTABLE, publish, stable_part
from tests.conftest import REPO


def c2s(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = c2s("demo", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_the_demo_prints_no_warning(demo):
    _, res = demo
    assert "warning" not in res.stderr.lower(), res.stderr[-3000:]


def test_the_demo_anchors_are_not_test_images(demo):
    out, _ = demo
    manifests = list((out / "runs").glob("*/manifest.json"))
    assert len(manifests) == 6
    for manifest in manifests:
        anchors = [Path(a) for a in json.loads(manifest.read_text())["anchors"]["images"]]
        with open(manifest.parent / "scores.csv", newline="") as f:
            tests = [Path(row["path"]) for row in csv.DictReader(f)]
        assert len(anchors) == 5 and len({t for t in tests}) == 260
        assert not {a.parent.name for a in anchors} & {t.parent.name for t in tests}  # not even the photographs


def test_the_committed_leaderboard_is_what_the_demo_prints(demo):
    out, _ = demo
    committed = (REPO / COMMITTED).read_text()
    assert stable_part((out / "leaderboard.md").read_text()) == committed, \
        "the demo's table changed: run `c2s demo --publish` in the repository and commit the result"
    start, end = README_MARKERS
    readme = (REPO / "README.md").read_text()
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == committed.strip()


def test_stable_part_drops_run_ids_and_the_tiny_models_numeric_plcc():
    md = ("| Model | Mode | demo SRCC | demo PLCC |\n|---|---|---:|---:|\n| classical | soft | **0.878** | 0.882 |\n"
          f"| {TINY_LABEL} | soft | 0.056 | 0.110 |\n| {TINY_LABEL} | count | n/a (why) | n/a (why) |\n\n"
          "notes\n\nRuns: `a-1`, `b-2`.\n")
    text = stable_part(md)
    assert "Runs:" not in text and text.endswith("notes\n")
    assert "| classical | soft | **0.878** | 0.882 |" in text
    assert f"| {TINY_LABEL} | soft | 0.056 |{UNSTABLE}|" in text
    assert f"| {TINY_LABEL} | count | n/a (why) | n/a (why) |" in text


def test_publish_fills_the_readme_section_and_refuses_a_readme_without_one(tmp_path):
    (tmp_path / "results").mkdir()
    start, end = README_MARKERS
    (tmp_path / "README.md").write_text(f"intro\n{start}\nold table\n{end}\nafter\n")
    publish("| new | table |\n\nRuns: `x`.\n", tmp_path)
    assert (tmp_path / "README.md").read_text() == f"intro\n{start}\n| new | table |\n{end}\nafter\n"
    assert (tmp_path / COMMITTED).read_text() == "| new | table |\n"
    (tmp_path / "README.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="demo-leaderboard"):
        publish("| t |\n", tmp_path)


def test_publish_needs_the_whole_demo(tmp_path):
    res = c2s("demo", "--out", str(tmp_path), "--no-lmm", "--publish")
    assert res.returncode == 2 and "--publish needs the whole demo" in res.stderr
    assert not list(tmp_path.iterdir())


def test_anchor_digest_does_not_depend_on_where_the_anchor_folder_lives():
    def at(root):
        return AnchorSet(images=[f"{root}/a/x.png", f"{root}/b/y.png"], mos=[1.0, 2.0], std=[0.0, 0.0])

    assert at("/home/u/.cache/c2s/demo").digest() == at("/tmp/elsewhere").digest()
    assert at("/r").digest() != AnchorSet(images=["/r/a/x.png", "/r/b/z.png"], mos=[1.0, 2.0],
                                          std=[0.0, 0.0]).digest()


def test_the_readme_prose_quotes_the_committed_table():
    lines = (REPO / COMMITTED).read_text().splitlines()
    row = next(line for line in lines if line.startswith("| classical (weight-free NR index) | paper | soft |"))
    column = [c.strip() for c in lines[0].split("|")].index("demo SRCC")
    srcc = row.split("|")[column].strip().strip("*")
    assert f"ranks the benchmark's distortion levels with SRCC {srcc};" in (REPO / "README.md").read_text()
