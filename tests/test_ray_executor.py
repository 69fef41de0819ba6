"""`--executor ray` (harness.run.ray_executor, docs/scale-out.md): the same scores, metrics and pair cache
rows as a local run, replicas that die, a driver that is killed, and Ray's own errors as one line each.
Tensor-parallel replicas get their GPUs through placement groups in the layout vLLM expects.
One local Ray cluster (2 CPUs, 2 logical GPUs: Ray schedules on them, nothing uses a GPU, a small object
store) serves every test here."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from harness.cli import main  # noqa: E402
from harness.run import ray_executor  # noqa: E402
from harness.run.record import read_run  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.runner_support import calls  # noqa: E402
from tests.test_fp16_official import _tiny_manifest  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for these tests (the runner joins it instead of starting its own), shut down
    after them so no later test shares a process with Ray."""
    ctx = ray.init(num_cpus=2, num_gpus=2, object_store_memory=80 * 1024 ** 2, include_dashboard=False,
                   logging_level="ERROR", log_to_driver=False)
    yield ctx.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    where = tmp_path_factory.mktemp("raydata")
    return _tiny_manifest(where, n=8)


def _args(manifest, where: Path, name: str, *extra, model="classical"):
    return ["run", "--model", model, "--dataset", f"mine={manifest}", "--anchors", "select", "--anchors-dataset",
            "mine", "--no-report", "--batch-size", "3", "--order", "both", "--cache", str(where / f"{name}.sqlite"),
            "--out", str(where / name), *extra]


def _run(manifest, where, name, *extra, model="classical", code=0):
    assert main(_args(manifest, where, name, *extra, model=model)) == code
    (run_dir,) = (where / name).iterdir()
    return run_dir


def _cache_rows(path) -> list:
    """The pair cache's rows without their creation times: (fingerprint, prompt, first, second, log-probs, meta)."""
    with sqlite3.connect(path) as db:
        return sorted(db.execute("select fingerprint, prompt, first, second, logprobs, meta from pairs").fetchall())


def _same_results(a: Path, b: Path, run_id: bool = True, tables=("scores.csv", "comparisons.csv")) -> None:
    """Scores, comparisons and metrics byte for byte (`run_id=False`: runs whose options differ only in
    what names no result, e.g. a log file, so their ids differ); fingerprints equal."""
    for name in tables:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    if not run_id:
        for m in (ma, mb):
            m.pop("run_id"), m.pop("model_label")
    assert ma == mb
    ma, mb = read_run(a).manifest, read_run(b).manifest
    assert ma.model.fingerprint_hash == mb.model.fingerprint_hash
    assert not run_id or (ma.run_id, ma.counts) == (mb.run_id, mb.counts)


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory):
    where = tmp_path_factory.mktemp("local")
    return where, _run(data, where, "local")


COUNTING = "py:tests.runner_support:CountingComparator"


@pytest.fixture(scope="module")
def local_counting(data, tmp_path_factory):
    """A local run of the logging comparator (what the fault tests' Ray runs must equal)."""
    where = tmp_path_factory.mktemp("local_counting")
    return where, _run(data, where, "local", "-o", f"log={where / 'calls.log'}", model=COUNTING)


@pytest.mark.parametrize("extra", [["--replicas", "2"], ["--replicas", "1", "--ship-images"]])
def test_a_ray_run_equals_a_local_run_bit_for_bit(cluster, data, local_run, tmp_path, extra):
    where, local = local_run
    run_dir = _run(data, tmp_path, "ray", "--executor", "ray", *extra)
    _same_results(local, run_dir)
    assert _cache_rows(where / "local.sqlite") == _cache_rows(tmp_path / "ray.sqlite")
    executor = read_run(run_dir).manifest.executor
    assert executor["kind"] == "ray" and executor["replicas"] == int(extra[1])
    assert executor["ship_images"] == ("--ship-images" in extra)
    assert read_run(local).manifest.executor == {"kind": "local"}


def test_a_tiny_transformers_model_gives_the_same_rows_on_ray(cluster, data, tmp_path_factory):
    pytest.importorskip("torch")
    from harness.tools.tiny_vlm import build_tiny_vlm

    tiny = build_tiny_vlm("idefics3", tmp_path_factory.mktemp("tiny") / "idefics3", seed=0)
    where = tmp_path_factory.mktemp("hf")
    model = f"hf:{tiny}"
    local = _run(data, where, "local", "--limit", "4", model=model)
    remote = _run(data, where, "ray", "--limit", "4", "--executor", "ray", "--replicas", "1", model=model)
    _same_results(local, remote)
    assert _cache_rows(where / "local.sqlite") == _cache_rows(where / "ray.sqlite")


def _capture_sessions(monkeypatch) -> list:
    sessions = []
    original = ray_executor.RaySession.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        sessions.append(self)

    monkeypatch.setattr(ray_executor.RaySession, "__init__", init)
    return sessions


def test_a_replica_killed_mid_run_is_replaced_and_the_results_do_not_change(cluster, data, local_counting, tmp_path,
                                                                             monkeypatch):
    where, local = local_counting
    sessions = _capture_sessions(monkeypatch)
    log = tmp_path / "calls.log"
    killed = []

    def killer():  # once two batches are in, kill the first replica's process (found through its actor)
        while len(calls(log)) < 2:
            time.sleep(0.05)
        pid = sessions[0].pid_of(0)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    run_dir = _run(data, tmp_path, "ray", "--executor", "ray", "--replicas", "2", "-o", f"log={log}",
                   "-o", "delay=0.2", model=COUNTING)
    t.join(timeout=5)
    assert killed, "the replica was never killed"
    _same_results(local, run_dir, run_id=False)
    assert _cache_rows(tmp_path / "ray.sqlite") == _cache_rows(where / "local.sqlite")


def test_a_pair_that_kills_every_replica_is_narrowed_down_and_recorded(cluster, data, local_counting, tmp_path):
    first, second = str(data.parent / "im5.png"), str(data.parent / "im0.png")
    run_dir = _run(data, tmp_path, "ray", "--executor", "ray", "--replicas", "2", "-o",
                   f"log={tmp_path / 'calls.log'}", "-o", f"poison={first}|{second}",
                   model="py:tests.ray_support:DyingComparator", code=3)
    rows = read_run(run_dir).comparisons
    failed = [r for r in rows if r.error]  # the pair itself, wherever the plan holds it (test and anchor block)
    assert failed and {(r.first, r.second) for r in failed} == {(first, second)}
    assert len(failed) == sum((r.first, r.second) == (first, second) for r in rows)
    assert all(r.error.startswith("the Ray replica process died 2 times judging this batch") for r in failed)
    local = {(r.first, r.second): r.logprobs for r in read_run(local_counting[1]).comparisons}
    assert all(r.logprobs == local[r.first, r.second] for r in rows if not r.error)


def test_a_killed_driver_resumes_with_only_the_missing_pairs(cluster, data, local_counting, tmp_path):
    where, local = local_counting
    model = COUNTING
    log = tmp_path / "first.log"
    args = _args(data, tmp_path, "ray", "--executor", "ray", "--ray-address", cluster, "--replicas", "1",
                 "-o", f"log={log}", "-o", "delay=0.2", model=model)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(calls(log)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls(log)) >= 4, "the run did not reach its fourth batch"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stored = len(_cache_rows(tmp_path / "ray.sqlite"))
    everything = len(_cache_rows(where / "local.sqlite"))
    assert 0 < stored < everything
    again = tmp_path / "again.log"
    run_dir = _run(data, tmp_path, "resumed", "--executor", "ray", "--replicas", "1", "--cache",
                   str(tmp_path / "ray.sqlite"), "-o", f"log={again}", model=model)
    assert sum(calls(again)) == everything - stored  # only the missing pairs were judged
    assert _cache_rows(tmp_path / "ray.sqlite") == _cache_rows(where / "local.sqlite")
    _same_results(local, run_dir, run_id=False, tables=["scores.csv"])  # (comparisons.csv: its cached column)


def test_a_replica_that_cannot_start_is_one_line(cluster, data, tmp_path, capsys):
    code = main(_args(data, tmp_path, "ray", "--executor", "ray", "-o", f"log={tmp_path / 'l'}",
                      model="py:tests.ray_support:BrokenComparator"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("c2s run: error: a Ray replica")
    assert "CUDA out of memory" in err[0] and "--gpus-per-replica" in err[0]


def test_a_layout_the_cluster_cannot_hold_is_refused_before_any_work(cluster, data, tmp_path, capsys):
    assert main(_args(data, tmp_path, "ray", "--executor", "ray", "--replicas", "3", "--gpus-per-replica", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot hold 3 replica(s) of 2 GPU(s)" in err[0] and "it has 2 GPUs" in err[0]
    assert not ray.util.placement_group_table()  # no group was reserved for it


def _probed(tmp_path, data, model: str, *options) -> dict:
    """A run of one replica of 2 GPUs; what the replica's process was given (tests.ray_support.GpuProbe)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    _run(data, tmp_path, "ray", "--executor", "ray", "--replicas", "1", "--gpus-per-replica", "2", "--limit", "3",
         "-o", f"probe={probe}", "-o", f"log={tmp_path / 'calls.log'}", *options, model=model)
    (seen,) = [json.loads(f.read_text()) for f in probe.iterdir()]
    assert all(g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())  # given back at the end
    return seen


def test_a_tensor_parallel_replica_holds_its_gpus_in_one_bundle(cluster, data, tmp_path):
    """transformers with device_map: the replica's own process sees both GPUs."""
    seen = _probed(tmp_path, data, "py:tests.ray_support:GpuProbe")
    assert seen["group"] and seen["strategy"] == "STRICT_PACK"
    assert seen["bundles"] == [{"GPU": 2.0, "CPU": 1.0}]
    assert seen["gpu_ids"] == ["0", "1"] and sorted(seen["cuda"].split(",")) == ["0", "1"]


def test_a_tensor_parallel_vllm_replica_leaves_one_gpu_bundle_per_engine_worker(cluster, data, tmp_path):
    """vLLM's Ray executor: one bundle per GPU, the engine's workers (one per bundle) take the GPUs."""
    seen = _probed(tmp_path, data, "py:tests.ray_support:VllmLikeProbe", "-o", "tensor_parallel_size=2")
    assert seen["group"] and seen["strategy"] == "STRICT_PACK"
    assert seen["bundles"] == [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0}]
    assert seen["gpu_ids"] == []  # the replica (the engine's driver) holds none itself
    assert sorted(ids for ids, _ in seen["workers"]) == [["0"], ["1"]]
    assert all(cuda == ids[0] for ids, cuda in seen["workers"])


def test_a_vllm_replica_whose_workers_do_not_match_its_gpus_is_one_line(cluster, data, tmp_path, capsys):
    code = main(_args(data, tmp_path, "ray", "--executor", "ray", "--gpus-per-replica", "2", "-o",
                      f"probe={tmp_path}", "-o", f"log={tmp_path / 'l'}", model="py:tests.ray_support:VllmLikeProbe"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "set the model option tensor_parallel_size" in err[0]
    assert "to 2, not 1" in err[0]


def test_an_unreachable_cluster_is_one_line(data, tmp_path):
    args = _args(data, tmp_path, "ray", "--executor", "ray", "--ray-address", "127.0.0.1:9")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_gcs_rpc_server_connect_timeout_s": "2"}
    out = subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and lines[-1].startswith("c2s run: error: cannot reach the Ray cluster at '127.0.0.1:9'")


def test_shipped_images_live_in_one_folder_per_replica_that_close_removes(cluster, tmp_path):
    import hashlib

    import ray
    from PIL import Image

    from adapters.base import Pair
    from harness.data.images import Limits
    from harness.run.ray_replica import Replica

    paths = []
    for k, colour in enumerate(("red", "blue")):
        Image.new("RGB", (64, 48), colour).save(tmp_path / f"{k}.png")
        paths.append(str(tmp_path / f"{k}.png"))
    shipped = {p: (hashlib.sha256(Path(p).read_bytes()).hexdigest(), ray.put(Path(p).read_bytes())) for p in paths}
    replica = Replica("classical", {}, Limits())
    assert replica.folder is None  # nothing shipped, nothing written (the shared-filesystem default)
    direct = replica.judge("pair", [Pair(*paths)], None)
    via_copies = replica.judge("pair", [Pair(*paths)], shipped)
    folder = Path(replica.folder)
    assert sorted(f.name for f in folder.rglob("*.png")) == ["0.png", "1.png"]  # each under its own name
    assert via_copies.logprobs.tobytes() == direct.logprobs.tobytes()
    replica.close()
    assert not folder.exists() and replica.folder is None
