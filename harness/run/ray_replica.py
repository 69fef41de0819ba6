"""The Ray replica: one comparator in its own Ray worker process (an actor of `harness.run.ray_executor`).

Apart from the driver's module so that a replica process imports only what it needs to build a
comparator and judge (not the planner, the cache or the scorer): every replica start, and every restart
after a crash, pays that import.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import ray

from adapters.base import Comparisons, Pair, compare_batch, load_comparator, rate_batch
from adapters.fingerprint import checked_fingerprint
from harness.data.images import Limits, image_limits


class Replica:
    """One comparator with the run's image limits; `shipped` images are written to a local folder once,
    made at the first shipped image (a run on a shared filesystem makes none) and removed by `close`, which
    the driver calls before it ends the actor (a killed actor runs no finaliser)."""

    def __init__(self, spec: str, options: dict, limits: Limits):
        self._limits = image_limits(limits)
        self._limits.__enter__()  # process-wide, for the replica's whole life
        self.comparator = load_comparator(spec, **options)
        self.fingerprint = checked_fingerprint(self.comparator, f"model {spec}")
        self.images: dict[str, str] = {}
        self.folder: str | None = None

    def info(self) -> dict:
        return {"pid": os.getpid(), "fingerprint": self.fingerprint}

    def judge(self, kind: str, pairs: list[Pair], shipped: dict | None) -> Comparisons:
        if shipped:
            pairs = [Pair(self._local(p.first, shipped), self._local(p.second, shipped)) for p in pairs]
        if kind == "rating":
            return rate_batch(self.comparator, [p.first for p in pairs])
        return compare_batch(self.comparator, pairs)

    def _local(self, path: str, shipped: dict) -> str:
        """The replica's copy of a shipped image (written once per content, under its own file name)."""
        digest, ref = shipped[path]
        if digest not in self.images:
            self.folder = self.folder or tempfile.mkdtemp(prefix="c2s-ray-images-")
            target = Path(self.folder) / digest / Path(path).name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(ray.get(ref))
            self.images[digest] = str(target)
        return self.images[digest]

    def close(self) -> None:
        """Remove the shipped images' folder."""
        if getattr(self, "folder", None):
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self.images = None, {}

    def __del__(self):
        self.close()
