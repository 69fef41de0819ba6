"""Judging on a Ray cluster: replicas are actors that build the comparator in their own processes.

The driver (`RaySession`) keeps a bounded number of batches in flight, one driver thread each, and
hands every result back to `harness.run.judging.judge`, which alone writes the pair cache. A replica
whose process dies is restarted by Ray (`max_restarts`); the batch it held goes to the next free
replica. A batch during which replicas keep dying comes back as failed as a whole, so judging's own
bisection narrows it down to the pair that kills them, recorded with its reason (docs/scale-out.md).
"""
from __future__ import annotations

import math
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError, RayTaskError

from adapters.base import Comparisons, comparator_class
from harness.core.levels import N_LEVELS
from harness.core.secrets import redact
from harness.data.images import Limits, content_hash
from harness.run.faults import RunAborted
from harness.run.judging import calls, scrubbed
from harness.run.ray_replica import Replica

#: how many times a batch is sent again after the replica judging it died, before it counts as failed
BATCH_ATTEMPTS = 2
#: seconds the replicas may take to start (load the model) when the run sets no stall timeout
START_TIMEOUT = 3600.0
#: seconds the replicas get to remove their shipped images' folders when the run ends
CLOSE_TIMEOUT = 30.0


class RaySession:
    """A `harness.run.executors.Session` on Ray (module docstring)."""

    def __init__(self, ex, spec: str, options: dict, *, limits: Limits, stall_timeout: float = 0.0):
        self.ex, self.spec = ex, spec
        self.timeout = stall_timeout or None
        self.started = connect(ex)
        self.actors: list = []
        self.groups: list = []
        self.shipped: dict[str, tuple[str, object]] = {}
        self.lock = threading.Lock()
        try:
            check_resources(ex)
            self.layout = layout(ex, spec, options)
            self.actors = [self._start(options, limits) for _ in range(ex.replicas)]
            infos = self._ready()
        except BaseException:
            self.close()
            raise
        self.pids = [i["pid"] for i in infos]
        fps = {repr(i["fingerprint"]) for i in infos}
        if len(fps) > 1:
            self.close()
            raise RuntimeError(f"the {ex.replicas} Ray replicas of {spec} report different model fingerprints (a "
                               "node with other weights or library versions?): their results may not share a cache")
        self.fingerprint = redact(infos[0]["fingerprint"])
        self.alive = len(self.actors)
        self.free: queue.Queue = queue.Queue()
        depth = ex.max_in_flight or ex.replicas
        for k in range(depth):
            self.free.put(self.actors[k % len(self.actors)])
        self.depth = depth

    # --- replicas -----------------------------------------------------------------------------

    def _start(self, options: dict, limits: Limits):
        ex = self.ex
        bundles, gpus = self.layout
        opts = {"num_cpus": ex.cpus_per_replica, "num_gpus": gpus, "max_restarts": ex.max_restarts,
                "max_task_retries": 0}
        if bundles:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            group = placement_group(bundles, strategy="STRICT_PACK")
            self.groups.append(group)
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
        return ray.remote(Replica).options(**opts).remote(self.spec, options, limits)

    def _ready(self) -> list[dict]:
        try:
            return ray.get([a.info.remote() for a in self.actors], timeout=self.timeout or START_TIMEOUT)
        except GetTimeoutError:
            raise RuntimeError(f"the Ray replicas of {self.spec} did not start within "
                               f"{self.timeout or START_TIMEOUT:g} s (is the cluster busy?)") from None
        except RayError as exc:
            raise RuntimeError(f"a Ray replica of {self.spec} failed to start: {cause(exc)}{_oom_hint(exc)}") from None

    def pid_of(self, replica: int) -> int:
        """The process id of replica number `replica` now (after a restart: the new one)."""
        return ray.get(self.actors[replica].info.remote(), timeout=self.timeout or START_TIMEOUT)["pid"]

    # --- batches ----------------------------------------------------------------------------

    def call(self, kind):
        return lambda batch: scrubbed(self._remote(kind, list(batch)))

    def _remote(self, kind: str, batch: list) -> Comparisons:
        deaths = []
        while True:
            actor = self._take()
            ref = actor.judge.remote(kind, batch, self._ship(batch) if self.ex.ship_images else None)
            try:
                res = ray.get(ref, timeout=self.timeout)
            except GetTimeoutError:
                self.free.put(actor)
                raise RunAborted(f"no answer from a Ray replica of {self.spec} within {self.timeout:g} s for a batch "
                                 f"of {len(batch)} (first: {batch[0]}); everything judged before is in the pair "
                                 "cache: rerun to resume") from None
            except RayActorError as exc:  # the replica's process died (Ray restarts it, up to max_restarts)
                deaths.append(cause(exc))
                self._back_when_restarted(actor)
                if len(deaths) >= BATCH_ATTEMPTS:
                    return _failed(len(batch), f"the Ray replica process died {len(deaths)} times judging this "
                                               f"batch: {deaths[-1]}")
                continue
            except RayTaskError as exc:  # raised outside the comparator's call (e.g. a result Ray cannot move)
                self.free.put(actor)
                return _failed(len(batch), f"Ray replica error: {cause(exc)}")
            self.free.put(actor)
            return res

    def _take(self):
        actor = self.free.get()
        if actor is None:
            self.free.put(None)  # for the other threads
            raise RunAborted(f"every Ray replica of {self.spec} died and could not be restarted (max_restarts="
                             f"{self.ex.max_restarts}; -1: always); everything judged before is in the pair cache: rerun to resume")
        return actor

    def _back_when_restarted(self, actor) -> None:
        """Back in the pool once Ray has restarted it; gone when Ray will not (max_restarts used up, or its
        comparator fails to load again): when every replica is gone the run stops, resumable."""
        waited = 0.0
        while True:
            try:
                ray.get(actor.info.remote(), timeout=self.timeout or START_TIMEOUT)
                self.free.put(actor)
                return
            except ActorUnavailableError:  # still restarting
                time.sleep(0.5)
                waited += 0.5
                if waited < (self.timeout or START_TIMEOUT):
                    continue
            except (RayActorError, GetTimeoutError):
                pass
            with self.lock:
                self.alive -= 1
                if not self.alive:
                    self.free.put(None)
            return

    def _ship(self, batch: list) -> dict:
        """Each image of the batch in the object store, once per content: {path: (content hash, ref)}."""
        out = {}
        for path in {p for pair in batch for p in (pair.first, pair.second)}:
            digest = content_hash(path)
            with self.lock:
                if digest not in self.shipped:
                    self.shipped[digest] = ray.put(Path(path).read_bytes())
                out[path] = (digest, self.shipped[digest])
        return out

    def run_batches(self, call, batches: list[list]) -> Iterator[tuple[int, list[int], Comparisons, float]]:
        """Up to `depth` batches at once, one driver thread each (each bisects its own batch with
        `calls`); results are yielded in the order they come back, on the caller's thread."""
        todo: queue.Queue = queue.Queue()
        for b in range(len(batches)):
            todo.put(b)
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def worker():
            try:
                while not stop.is_set():
                    try:
                        b = todo.get_nowait()
                    except queue.Empty:
                        return
                    for part, res, seconds in calls(call, batches[b]):
                        out.put((b, part, res, seconds))
                    out.put((b, None, None, None))
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                out.put(exc)

        threads = [threading.Thread(target=worker, daemon=True, name=f"c2s-ray-{k}")
                   for k in range(min(self.depth, len(batches)))]
        for t in threads:
            t.start()
        done = 0
        try:
            while done < len(batches):
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                b, part, res, seconds = item
                if part is None:
                    done += 1
                else:
                    yield b, part, res, seconds
        finally:
            stop.set()

    def close(self) -> None:
        if self.ex.ship_images:  # each replica removes its copies first (a killed actor cleans up nothing)
            try:
                ray.get([a.close.remote() for a in self.actors], timeout=CLOSE_TIMEOUT)
            except Exception:  # noqa: BLE001 - a dead or stuck replica: its copies stay in its temp folder
                pass
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.groups:
            from ray.util.placement_group import remove_placement_group

            for g in self.groups:
                remove_placement_group(g)
            self.groups = []
        self.shipped.clear()
        if self.started:
            ray.shutdown()
            self.started = False


def connect(ex) -> bool:
    """Join the cluster at `ex.address` (else at $RAY_ADDRESS, which `ray job submit` sets for its driver),
    or start a local one sized to the replicas; True if connected here. A process already connected (a
    test session's cluster) keeps its connection."""
    if ray.is_initialized():
        return False
    address = ex.address or os.environ.get("RAY_ADDRESS")
    if address:
        where = "--ray-address; executor.address in YAML" if ex.address else "from $RAY_ADDRESS"
        _reachable(address, where)
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise _unreachable(address, where, exc) from None
        return True
    cpus = max(1, math.ceil(ex.replicas * ex.cpus_per_replica))
    # "local": a new cluster even where `ray start` runs one on this machine (ray.init would join it)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    return True


def _reachable(address: str, where: str) -> None:
    """A host:port address answers (Ray itself keeps retrying an unreachable one for minutes)."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise _unreachable(address, where, exc) from None


def _unreachable(address: str, where: str, exc: BaseException) -> RuntimeError:
    return RuntimeError(f"cannot reach the Ray cluster at {address!r} ({where}): "
                        f"{' '.join(str(exc).split())[:300]}; start one with `ray start --head`, or give no "
                        "address for a local cluster")


#: backends whose engine starts its own Ray worker per GPU of a tensor-parallel replica (vLLM's Ray executor)
OWN_RAY_WORKERS = ("vllm",)


def layout(ex, spec: str, options: dict) -> tuple[list[dict], float]:
    """(placement-group bundles, GPUs the replica actor holds itself) for one replica of `spec`.

    Up to 1 GPU: no group; the actor holds its GPU (share). A tensor-parallel replica (G > 1 GPUs) gets a
    STRICT_PACK group (its GPUs on one node), the actor in bundle 0, child tasks captured:
    * vLLM: G bundles of 1 GPU, the actor holding none. vLLM's engine finds the group
      (`ray.util.get_current_placement_group`, also from its engine-core subprocess), chooses its Ray
      executor for it and starts one worker per GPU bundle; it refuses a bundle of more than one GPU and a
      group with fewer GPU bundles than tensor x pipeline parallel workers (docs/scale-out.md).
    * any other comparator (transformers with `device_map`): one bundle of G GPUs, all held by the actor
      (`ray.get_gpu_ids()`, CUDA_VISIBLE_DEVICES: G ids).
    """
    g, cpus = ex.gpus_per_replica, ex.cpus_per_replica
    if g <= 1:
        return [], g
    own_workers = comparator_class(spec).backend in OWN_RAY_WORKERS
    first = {"GPU": 1.0 if own_workers else g, **({"CPU": cpus} if cpus else {})}
    if not own_workers:
        return [first], g
    workers = (options.get("tensor_parallel_size") or 1) * int((options.get("engine_options") or {})
                                                                .get("pipeline_parallel_size", 1))
    if workers != g:
        raise RuntimeError(f"--gpus-per-replica {g:g} for {spec} needs as many vLLM workers: set the model option "
                           f"tensor_parallel_size (x engine_options pipeline_parallel_size) to {g:g}, not {workers}")
    return [first] + [{"GPU": 1.0}] * int(g - 1), 0.0


def check_resources(ex) -> None:
    """Refuse a layout the cluster's nodes cannot hold (Ray would wait for it forever)."""
    fit = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        counts = [math.floor(have.get(k, 0.0) / need + 1e-9)
                  for k, need in (("GPU", ex.gpus_per_replica), ("CPU", ex.cpus_per_replica)) if need > 0]
        fit += min(counts) if counts else ex.replicas
    if fit < ex.replicas:
        total = ray.cluster_resources()
        raise RuntimeError(f"the Ray cluster cannot hold {ex.replicas} replica(s) of {ex.gpus_per_replica:g} GPU(s) "
                           f"and {ex.cpus_per_replica:g} CPU(s) each on its nodes (it has {total.get('GPU', 0):g} GPUs "
                           f"and {total.get('CPU', 0):g} CPUs in all, {fit} such replica(s) fit); lower --replicas or "
                           "--gpus-per-replica (replicas:, gpus_per_replica:, cpus_per_replica: in YAML)")


def cause(exc: BaseException) -> str:
    """The first line of what went wrong under Ray's wrappers (the exception a replica raised)."""
    seen = exc
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    if seen is not exc and not isinstance(seen, RayError):
        return f"{type(seen).__name__}: {' '.join(str(seen).split())[:300]}"
    text = getattr(exc, "error_msg", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _oom_hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "out of memory" in text or "outofmemory" in text:
        return ("; the replica ran out of memory: give each replica more GPUs (--gpus-per-replica), fewer "
                "replicas per GPU, or a smaller dtype / max_model_len (model options)")
    return ""


def _failed(n: int, reason: str) -> Comparisons:
    return Comparisons(np.full((n, N_LEVELS), np.nan), [reason] * n, [{} for _ in range(n)], batch_error=reason)
