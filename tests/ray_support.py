"""For the Ray tests: comparators loaded through the `py:` spec inside Ray replicas (faults, what a
replica was given), and a Ray head in a process of its own (`RayHead`), as `ray start --head` starts one."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.core.options import option
from tests.runner_support import CountingComparator


class DyingComparator(CountingComparator):
    """Its process exits (as on a segfault) whenever a batch holds the pair `poison` ("first|second")."""

    @dataclass(frozen=True, kw_only=True)
    class Options(CountingComparator.Options):
        poison: str = option(help="FIRST|SECOND: a batch holding this pair kills the process")

    def compare_detailed(self, pairs):
        if any(f"{p.first}|{p.second}" == self.options.poison for p in pairs):
            os._exit(3)
        return super().compare_detailed(pairs)


class BrokenComparator(CountingComparator):
    """Cannot start (e.g. its weights do not fit in the GPU's memory)."""

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")


class GpuProbe(CountingComparator):
    """Writes, once per process, what Ray gave it (GPU ids, CUDA_VISIBLE_DEVICES, its placement group) to
    the folder `probe`: how a test sees a tensor-parallel replica's layout on logical GPUs."""

    @dataclass(frozen=True, kw_only=True)
    class Options(CountingComparator.Options):
        probe: str = option(help="a folder: one JSON file per replica process")

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        Path(self.options.probe, f"{os.getpid()}.json").write_text(json.dumps(self.seen()))

    def seen(self) -> dict:
        import ray
        from ray.util import get_current_placement_group, placement_group_table

        group = get_current_placement_group()
        table = placement_group_table(group) if group else {}
        return {"gpu_ids": sorted(map(str, ray.get_gpu_ids())), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "bundles": list(table.get("bundles", {}).values()), "strategy": table.get("strategy"),
                "group": group.id.hex() if group else None}


class VllmLikeProbe(GpuProbe):
    """Stands in for vLLM's engine in a tensor-parallel replica (no vLLM, no GPU here): `backend` "vllm"
    gets vLLM's layout, and the engine's start is reproduced as vLLM 0.32's Ray executor does it
    (vllm/v1/executor/ray_utils.py `initialize_ray_cluster`, ray_executor.py): the current placement
    group, no bundle with more than one GPU, at least tensor_parallel_size GPU bundles, then one worker
    actor per GPU bundle (num_cpus=0, num_gpus=1, placement_group_bundle_index=k), which must start."""

    backend = "vllm"

    @dataclass(frozen=True, kw_only=True)
    class Options(GpuProbe.Options):
        tensor_parallel_size: int = option(1, "workers, one GPU each", minimum=1)

    def seen(self) -> dict:
        import ray
        from ray.util import get_current_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        out = super().seen()
        group = get_current_placement_group()
        gpu_bundles = [k for k, b in enumerate(group.bundle_specs) if b.get("GPU")]
        assert all(b.get("GPU", 0) <= 1 for b in group.bundle_specs), "Placement group bundle cannot have more than 1 GPU"
        assert len(gpu_bundles) >= self.options.tensor_parallel_size, "too few GPU bundles for the workers"

        @ray.remote(num_cpus=0, num_gpus=1)
        def worker():
            return sorted(map(str, ray.get_gpu_ids())), os.environ.get("CUDA_VISIBLE_DEVICES")

        refs = [worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k))
                .remote() for k in gpu_bundles[:self.options.tensor_parallel_size]]
        out["workers"] = ray.get(refs, timeout=60)
        return out


class RayHead:
    """A Ray head started as `ray start --head --block` in a process group of its own, on 127.0.0.1 with
    free ports (never Ray's defaults, which other clusters on the machine may hold), its own temp dir and
    its own token (token authentication, as Ray enables it; RAY_AUTH_TOKEN_PATH), 2 CPUs, 2 logical GPUs
    and the dashboard (the job server). Its temp dir is `RAY_TMPDIR`/ray, where `address: auto` looks for
    the cluster this machine runs: `env` holds what a process needs to see this head as the local one.
    `stop` kills that process group only: `ray stop` would stop every Ray cluster on the machine."""

    def __init__(self):
        self.temp = Path(tempfile.mkdtemp(prefix="c2s-rayhead-", dir="/tmp"))
        (self.temp / "token").write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_TMPDIR": str(self.temp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.temp / "token"),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        ports = {name: _free_port() for name in (
            "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
            "object-manager-port")}
        self.address = f"127.0.0.1:{ports['port']}"
        self.jobs = f"http://127.0.0.1:{ports['dashboard-port']}"
        args = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address",
                "127.0.0.1", "--num-cpus", "2", "--num-gpus", "2",
                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--disable-usage-stats",
                "--object-store-memory", str(80 * 1024 ** 2), *[a for k, v in ports.items() for a in (f"--{k}", str(v))]]
        self.log = open(self.temp / "head.log", "w")
        self.proc = subprocess.Popen(args, env=self.env, start_new_session=True, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            self._wait_up(ports["dashboard-port"])
            self.session = (self.temp / "ray" / "session_latest").resolve()  # (a later local cluster's is elsewhere)
        except BaseException:
            self.stop()
            raise

    def _wait_up(self, port: int, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start --head exited: {(self.temp / 'head.log').read_text()[-2000:]}")
            try:  # any answer (401 without the token) means the dashboard, started last, is up
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the Ray head did not come up within {limit:g} s")

    def driver_logs(self, pid: int | str = "*") -> list[Path]:
        """The head's logs of the driver with process id `pid` (present only if it joined this cluster)."""
        return list(self.session.glob(f"logs/python-core-driver-*_{pid}.log"))

    def stop(self) -> None:
        """SIGKILL to the head's whole process group (a test cluster keeps nothing worth a graceful stop)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
