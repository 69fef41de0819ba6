"""`--executor ray` against a cluster started apart from the run, as docs/scale-out.md describes it: a head
from `ray start --head` (tests/ray_support.RayHead: its own ports, temp dir and token), joined by address,
by `auto` and from inside `ray job submit`; with no address a run starts a cluster of its own even when
this machine runs one. Each run equals a local run. (An address nobody answers: tests/test_ray_executor.py.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("aiohttp", reason="ray job submit needs the job server: pip install 'c2s-harness[ray]'")

from tests.conftest import REPO  # noqa: E402
from tests.ray_support import RayHead  # noqa: E402
from tests.test_fp16_official import _tiny_manifest  # noqa: E402
from tests.test_ray_executor import _args, _run, _same_results  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@pytest.fixture(scope="module")
def head():
    h = RayHead()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _tiny_manifest(tmp_path_factory.mktemp("clusterdata"), n=6)


@pytest.fixture(scope="module")
def local(data, tmp_path_factory):
    return _run(data, tmp_path_factory.mktemp("clusterlocal"), "local")


def _cli(head, args: list, **env) -> tuple[subprocess.CompletedProcess, int]:
    """`c2s run ...` in a process of its own (a driver of its own), with the head's environment."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=REPO, text=True,
                            env={**head.env, "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_a_run_joins_a_cluster_started_with_ray_start_through_auto(head, data, local, tmp_path):
    """`auto` finds the head as on a head node (under RAY_TMPDIR). (A HOST:PORT address takes the path
    `ray job submit`'s RAY_ADDRESS takes below, and tests/test_ray_executor.py's killed driver's.)"""
    done, pid = _cli(head, _args(data, tmp_path, "ray", "--executor", "ray", "--ray-address", "auto",
                                 "--replicas", "2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert head.driver_logs(pid), "the run did not join the head"
    (run_dir,) = (tmp_path / "ray").iterdir()
    _same_results(local, run_dir)


def test_without_an_address_a_run_starts_its_own_cluster_even_beside_a_running_one(head, data, local, tmp_path):
    done, pid = _cli(head, _args(data, tmp_path, "ray", "--executor", "ray", "--replicas", "1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not head.driver_logs(pid), "the run joined the head instead of starting its own cluster"
    (run_dir,) = (tmp_path / "ray").iterdir()
    _same_results(local, run_dir)


def test_ray_job_submit_runs_c2s_on_the_cluster(head, data, local, tmp_path):
    """As docs/scale-out.md writes it: `ray job submit -- c2s run ... --executor ray` (no --ray-address:
    the job's driver is given the cluster through RAY_ADDRESS)."""
    c2s = Path(sys.executable).parent / "c2s"
    entry = [str(c2s)] if c2s.exists() else [sys.executable, "-m", "harness.cli"]
    job = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", head.jobs,
           "--runtime-env-json", f'{{"env_vars": {{"PYTHONPATH": "{REPO}"}}}}', "--",
           *entry, *_args(data, tmp_path, "job", "--executor", "ray", "--replicas", "2")]
    drivers = set(head.driver_logs())
    done = subprocess.run(job, env=head.env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert set(head.driver_logs()) - drivers, "the job's c2s did not join the head"
    (run_dir,) = (tmp_path / "job").iterdir()
    _same_results(local, run_dir)

