"""The runner end to end on real images: resume after SIGKILL, two processes on one cache,
rescore without a model, per-item failures recorded and counted."""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.data.demo_data import build_demo_benchmark
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, rescore, run
from tests.runner_support import calls

REPO = Path(__file__).resolve().parents[1]
SPEC = "py:tests.runner_support:CountingComparator"
UNIQUE = 52 * 5  # distinct pairs of the benchmark slice below


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A small slice of the embedded benchmark: 2 photos x (1 + 25) images at 64 px."""
    ds = build_demo_benchmark(tmp_path_factory.mktemp("bench"), size=64, sources=["camera", "coins"])
    return ds.root / "manifest.json"


def cli(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_args(bench, out, cache, log, delay=0.0, hang_after=0):
    return ["run", "--model", SPEC, "-o", f"log={log}", "-o", f"delay={delay}", "-o", f"hang_after={hang_after}",
            "--dataset", f"bench={bench}",
            "--anchors", "select", "--anchors-dataset", "bench", "--out", out, "--cache", cache,
            "--batch-size", "8", "--run-id", "r", "--no-report"]


def scores(run_dir) -> dict:
    with open(Path(run_dir) / "scores.csv") as f:
        return {(r["image"], r["split"]): r["score"] for r in csv.DictReader(f)}


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_sigkill_then_rerun_resumes_with_identical_scores(bench, tmp_path):
    ref_log = tmp_path / "ref.log"
    finish(cli(*run_args(bench, tmp_path / "ref", tmp_path / "ref.sqlite", ref_log)))
    total = sum(calls(ref_log))
    # tests x anchors; the anchor block is among them (the anchors are test images too): judged once
    assert total == UNIQUE

    log = tmp_path / "killed.log"
    cache = tmp_path / "cache.sqlite"
    # the 6th batch never returns: the kill lands mid-run however slowly the machine runs it
    proc = cli(*run_args(bench, tmp_path / "out", cache, log, hang_after=6))
    while len(calls(log)) < 6 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = calls(log)
    assert 6 <= len(first) and sum(first) < total  # killed mid-run
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cached = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
    assert 0 < cached <= sum(first) and cached % 8 == 0  # whole batches only

    open(log, "w").close()
    finish(cli(*run_args(bench, tmp_path / "out", cache, log)))
    assert sum(calls(log)) == total - cached  # only what the cache lacked
    assert scores(tmp_path / "out" / "r") == scores(tmp_path / "ref" / "r")


def test_two_processes_share_one_cache(bench, tmp_path):
    cache = tmp_path / "cache.sqlite"
    procs = [cli(*run_args(bench, tmp_path / f"out{k}", cache, tmp_path / f"{k}.log", delay=0.02)) for k in (0, 1)]
    for p in procs:
        finish(p)
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] == UNIQUE
    assert scores(tmp_path / "out0" / "r") == scores(tmp_path / "out1" / "r")


def _config(bench, tmp_path, **kw) -> RunConfig:
    args = dict(model=SPEC, model_options={"log": str(tmp_path / "calls.log")},
                datasets=[DatasetSpec("bench", source=str(bench))], anchors=AnchorSpec("select", dataset="bench"),
                out_dir=str(tmp_path / "runs"), cache=str(tmp_path / "c.sqlite"), reports=False)
    args.update(kw)
    return RunConfig(**args)


def test_rescore_is_bit_for_bit_and_follows_the_link(bench, tmp_path):
    (paper, official) = run(_config(bench, tmp_path, profiles=["paper", "official"]), progress=False)
    for run_dir in (paper, official):
        same = rescore(run_dir)
        assert (same / "metrics.json").read_text().split('"datasets"')[1] == \
            (run_dir / "metrics.json").read_text().split('"datasets"')[1]
        assert scores(same) == scores(run_dir)
    logit = rescore(paper, link="logit")
    a = json.loads((paper / "metrics.json").read_text())["datasets"]["bench"]["splits"]["all"]
    b = json.loads((logit / "metrics.json").read_text())["datasets"]["bench"]["splits"]["all"]
    assert a["plcc"] != b["plcc"]
    assert json.loads((logit / "manifest.json").read_text())["profile"]["link"] == "logit"


def test_rescore_never_imports_torch(bench, tmp_path):
    (run_dir,) = run(_config(bench, tmp_path), progress=False)
    code = ("import sys; from harness.cli import main; "
            f"rc = main(['rescore', {str(run_dir)!r}, '--link', 'logit', '--no-report']); "
            "assert rc == 0; print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_broken_image_is_recorded_and_counted(bench, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(bench.parent, root)
    victim = root / "coins" / "jpeg_3.png"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # truncated: header still reads
    (run_dir,) = run(_config(root / "manifest.json", tmp_path), progress=False)
    with open(run_dir / "scores.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["image"] == "coins/jpeg_3.png"]
    assert rows and all(r["status"] == "failed" and "truncated" in r["error"].lower() for r in rows)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"]["images_failed"] == 1 and manifest["counts"]["pairs_failed"] == 5
    metrics = json.loads((run_dir / "metrics.json").read_text())["datasets"]["bench"]
    assert metrics["n_failed"] == 1 and metrics["splits"]["all"]["n_dropped"] == 1


def test_anchors_that_are_test_images_are_named(bench, tmp_path):
    with pytest.warns(UserWarning, match="5 anchor image"):
        (run_dir,) = run(_config(bench, tmp_path), progress=False)
    m = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(m["anchors_in_test"]) == sorted(m["anchors"]["images"])


def test_both_orders_and_rating_mode(bench, tmp_path):
    (both,) = run(_config(bench, tmp_path, order="both"), progress=False)
    m = json.loads((both / "manifest.json").read_text())
    assert m["counts"]["pairs_total"] == 52 * 5 * 2 + 20
    srcc = json.loads((both / "metrics.json").read_text())["datasets"]["bench"]["splits"]["all"]["srcc"]
    assert srcc > 0.7
    (rating,) = run(_config(bench, tmp_path, modes=["rating"]), progress=False)
    m = json.loads((rating / "manifest.json").read_text())
    assert m["mode"] == "rating" and m["counts"]["pairs_total"] == 52
    assert json.loads((rating / "metrics.json").read_text())["datasets"]["bench"]["splits"]["all"]["srcc"] > 0.5


def test_rating_needs_a_rating_comparator(bench, tmp_path):
    with pytest.raises(ValueError, match="rating"):
        run(_config(bench, tmp_path, model="classical", model_options={}, modes=["rating"]), progress=False)


def test_score_command_writes_one_row_per_image(bench, tmp_path):
    folder = bench.parent / "camera"
    out = tmp_path / "scores.csv"
    proc = cli("score", "--model", "classical", "--images", folder, "--out", out, "--cache", tmp_path / "c.sqlite")
    finish(proc)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 26 and all(r["status"] == "ok" and np.isfinite(float(r["score"])) for r in rows)
    best = max(rows, key=lambda r: float(r["score"]))
    assert Path(best["image"]).name in {"pristine.png", "jpeg_1.png", "impulse_noise_1.png", "gaussian_blur_1.png",
                                        "gaussian_noise_1.png", "contrast_1.png"}


def test_official_splits_of_a_registered_dataset(shared_data, tmp_path, monkeypatch):
    """LIVE's official splits 1 and 2 (DMOS: lower is better) with stand-in images: metrics per
    split, the summary is their median, anchors are picked in ascending QUALITY."""
    import shutil

    from PIL import Image

    monkeypatch.setenv("C2S_HOME", str(tmp_path / "cache"))
    for k in ("1", "2"):
        dst = tmp_path / "cache" / "compare2score_splits" / k
        dst.mkdir(parents=True)
        shutil.copy(shared_data / "compare2score_splits" / k / "live_test.json", dst)
    items = json.loads((shared_data / "compare2score_splits" / "1" / "live_test.json").read_text()) + \
        json.loads((shared_data / "compare2score_splits" / "2" / "live_test.json").read_text())
    rng = np.random.default_rng(0)
    for it in items:  # blur grows with DMOS, so the classical index should follow the labels
        path = tmp_path / "iqa" / it["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        x = rng.integers(0, 256, (48, 48, 3)).astype(np.uint8)
        from scipy import ndimage
        x = ndimage.gaussian_filter(x.astype(float), sigma=(it["gt_score"] / 25, it["gt_score"] / 25, 0))
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path)
    cfg = RunConfig(model="classical", datasets=[DatasetSpec("live", root=str(tmp_path / "iqa"), splits=["1", "2"])],
                    anchors=AnchorSpec("select", dataset="live"), out_dir=str(tmp_path / "runs"),
                    cache=str(tmp_path / "c.sqlite"), reports=False)
    (run_dir,) = run(cfg, progress=False)
    m = json.loads((run_dir / "metrics.json").read_text())["datasets"]["live"]
    assert m["higher_is_better"] is False and set(m["splits"]) == {"all", "1", "2"}
    s1, s2 = m["splits"]["1"]["srcc"], m["splits"]["2"]["srcc"]
    assert m["summary"]["srcc"]["median"] == pytest.approx(np.median([s1, s2]))
    assert s1 > 0.5 and s2 > 0.5  # DMOS handled: a sharper image is better, not worse
    anchors = json.loads((run_dir / "manifest.json").read_text())["anchors"]
    assert anchors["mos"] == sorted(anchors["mos"])


def test_configuration_errors_stop_before_any_model_work(bench, tmp_path):
    import shutil

    log = tmp_path / "calls.log"
    root = tmp_path / "data"
    shutil.copytree(bench.parent, root)
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"images": ["camera/jpeg_5.png", "missing.png"], "mos": [0.0, 5.0],
                                   "std": [0.0, 0.0], "root": str(root)}))
    with pytest.raises(ValueError, match=r"1 anchor image\(s\) cannot be used:\n  - .*missing.png: missing file"):
        run(_config(root / "manifest.json", tmp_path, anchors=AnchorSpec(str(anchors))), progress=False)
    anchors.write_text(json.dumps({"images": ["camera/jpeg_5.png", "camera/pristine.png"], "mos": [0.0, 5.0],
                                   "std": [0.0, 0.0], "root": str(root)}))
    with pytest.raises(ValueError, match="carries no matrix"):
        run(_config(root / "manifest.json", tmp_path, anchors=AnchorSpec(str(anchors)),
                    profile_overrides={"anchor_matrix": "file"}), progress=False)
    with pytest.raises(ValueError, match="official is the paper's KonIQ matrix"):
        run(_config(root / "manifest.json", tmp_path, anchors=AnchorSpec(str(anchors)),
                    profile_overrides={"anchor_matrix": "official"}), progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,mos\n")
    with pytest.raises(ValueError, match="no images to score"):
        run(_config(empty, tmp_path, anchors=AnchorSpec(str(anchors))), progress=False)
    assert calls(log) == []


def test_an_anchor_that_always_fails_is_left_out_not_fatal(bench, tmp_path):
    (first,) = run(_config(bench, tmp_path), progress=False)
    victim = json.loads((first / "manifest.json").read_text())["anchors"]["images"][2]
    cfg = _config(bench, tmp_path, model="py:tests.runner_support:FailingOnComparator",
                  model_options={"log": str(tmp_path / "f.log"), "fail_on": victim}, cache=str(tmp_path / "f.sqlite"))
    (run_dir,) = run(cfg, progress=False)
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["anchors_unusable"] == [victim] and m["counts"]["pairs_failed"] > 0
    with open(run_dir / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["status"] == "ok" and r["n_anchors_ok"] == "4" for r in rows if r["path"] != victim)
    assert json.loads((run_dir / "metrics.json").read_text())["datasets"]["bench"]["splits"]["all"]["srcc"] > 0.7


def test_split_filter_keeps_only_the_requested_splits(tmp_path):
    from harness.data.datasets import Dataset, Record
    from harness.run.runner import _keep_splits

    ds = Dataset("d", tmp_path, [Record("a.png", 1.0, None, frozenset({"a", "b"})),
                                 Record("b.png", 2.0, None, frozenset({"b"}))])
    kept = _keep_splits(ds, ["a"])
    assert [r.path for r in kept.records] == ["a.png"] and kept.splits == ["a"]


def test_overridden_settings_get_their_own_leaderboard_row(bench, tmp_path):
    from harness.report.leaderboard import build_leaderboard

    (paper,) = run(_config(bench, tmp_path), progress=False)
    logit = rescore(paper, link="logit", temperature=5.0)
    lb = build_leaderboard([paper, logit])  # no conflict: two rows
    assert sorted(r.profile for r in lb.rows) == ["paper", "paper [link=logit, temperature=5.0]"]


def test_a_run_where_every_pair_fails_completes_with_every_image_failed(bench, tmp_path):
    cfg = _config(bench, tmp_path, model="py:tests.test_base:FixedComparator", model_options={"fail": "HTTP 503"})
    (run_dir,) = run(cfg, progress=False)
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["counts"]["images_failed"] == m["counts"]["images_total"] == 52
    with open(run_dir / "scores.csv") as f:
        assert all(r["status"] == "failed" and "HTTP 503" in r["error"] for r in csv.DictReader(f))
