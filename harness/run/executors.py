"""Where judging runs: in this process (`local`, the default) or on a Ray cluster (`ray`), same results.

An executor opens a `Session` for one run: it builds the comparator (here, or once per Ray replica in
the replica's own process), reports the model's fingerprint (which keys the pair cache) and runs
batches of pairs. Planning, cache look-ups, the bisection of failing batches (`harness.run.judging.calls`)
and every cache write stay in the driver, so the executor is no part of a run's identity or its cache
key: a Ray run and a local run of the same configuration write the same rows (docs/scale-out.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from adapters.base import Comparisons, as_comparator, compare_batch, load_comparator, rate_batch
from adapters.fingerprint import checked_fingerprint
from harness.core.options import check_fields
from harness.core.secrets import redact, redact_url
from harness.data.images import Limits
from harness.run.judging import in_order, scrubbed
from harness.run.watchdog import StallGuard

KINDS = ("local", "ray")


@dataclass
class ExecutorSpec:
    """How judging is spread. `local`: this process. `ray`: `replicas` Ray actors, each with
    `gpus_per_replica` GPUs (more than 1: a tensor-parallel replica, its GPUs reserved together by a
    placement group) and `cpus_per_replica` CPUs, on the cluster at `address` ("auto": the one this
    machine belongs to; none: a local cluster started for the run). `ship_images` sends the images
    through Ray's object store (content-hashed, once each) for nodes without a shared filesystem."""

    kind: str = "local"
    address: str | None = None
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    ship_images: bool = False
    #: batches in flight at once (default: one per replica; more keep replicas busy while the driver
    #: stores a result, but a batch queued behind one that kills its replica shares that death)
    max_in_flight: int = 0
    #: how often Ray restarts a replica whose process died (-1: always)
    max_restarts: int = -1

    def __post_init__(self):
        check_fields(self, "executor")
        if self.kind not in KINDS:
            raise ValueError(f"executor: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "local":
            given = [k for k, v in asdict(self).items() if k != "kind" and v != getattr(ExecutorSpec, k)]
            if given:
                raise ValueError(f"executor: {', '.join(given)} apply only to kind 'ray' (--executor ray)")
        if self.replicas < 1 or self.gpus_per_replica < 0 or self.cpus_per_replica < 0 or self.max_in_flight < 0 \
                or self.max_restarts < -1:
            raise ValueError("executor: replicas must be >= 1; gpus_per_replica, cpus_per_replica and max_in_flight "
                             ">= 0; max_restarts >= -1 (-1: always)")
        if self.gpus_per_replica > 1 and self.gpus_per_replica != int(self.gpus_per_replica):
            raise ValueError(f"executor: gpus_per_replica above 1 must be a whole number, got {self.gpus_per_replica}")

    @classmethod
    def parse(cls, value) -> "ExecutorSpec":
        """From YAML: a kind ("ray") or a mapping of the fields."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(kind=value)
        if not isinstance(value, dict):
            raise ValueError(f"executor: write a kind (local, ray) or a mapping, got {type(value).__name__}")
        unknown = sorted(map(str, set(value) - set(cls.__dataclass_fields__)))
        if unknown:
            raise ValueError(f"executor: unknown key(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**value)

    def recorded(self) -> dict:
        """What a run record keeps: the kind and, for Ray, the layout (the address without credentials)."""
        return {**asdict(self), "address": redact_url(self.address)} if self.kind == "ray" else {"kind": "local"}


class Session:
    """One run's judging: `fingerprint` (checked, redacted), `call(kind)` (a batch -> Comparisons, for
    `harness.run.judging.judge`), `run_batches` (several batches, results as they come) and `close`."""

    fingerprint: dict

    def call(self, kind: str) -> Callable[[list], Comparisons]:
        raise NotImplementedError

    def run_batches(self, call, batches: list[list]) -> Iterator[tuple[int, list[int], Comparisons, float]]:
        """(batch number, positions in it, result, seconds) per call that stands (`calls`)."""
        return in_order(call, batches)

    def close(self) -> None:
        pass


class LocalSession(Session):
    """The comparator in this process (given, or built from the spec and closed at the end)."""

    def __init__(self, spec: str, options: dict, *, comparator=None, stall_timeout: float = 0.0):
        self.owned = comparator is None
        self.comparator = load_comparator(spec, **options) if self.owned else as_comparator(comparator)
        self.guard = StallGuard(stall_timeout, spec)
        try:
            self.fingerprint = redact(checked_fingerprint(self.comparator, f"model {spec}"))
        except BaseException:
            self.close()
            raise

    def call(self, kind):
        comp = self.comparator
        if kind == "rating":
            return self.guard.wrap(lambda b: scrubbed(rate_batch(comp, [p.first for p in b])), "image")
        return self.guard.wrap(lambda b: scrubbed(compare_batch(comp, b)), "pair")

    def close(self):
        self.guard.close()
        if self.owned:
            self.comparator.close()


def open_session(executor: ExecutorSpec, spec: str, options: dict, *, limits: Limits, comparator=None,
                 stall_timeout: float = 0.0) -> Session:
    """The session `executor` describes. A comparator object (not a spec) runs only locally: Ray replicas
    build theirs from the spec and options in their own processes."""
    if executor.kind == "local":
        return LocalSession(spec, options, comparator=comparator, stall_timeout=stall_timeout)
    if comparator is not None:
        raise ValueError("executor ray builds the comparator from its spec in each replica; pass a model spec, "
                         "not a comparator object (or use executor local)")
    from harness.run.ray_executor import RaySession

    return RaySession(executor, spec, options, limits=limits, stall_timeout=stall_timeout)
