"""The run's "no progress for N seconds" guard (docs/architecture.md, "Secrets and deadlines").

A backend can hang where no per-request timeout reaches (a wedged GPU, a plug-in waiting on a lock, a
server that never answers a client without a deadline). `StallGuard` runs each batch call on one
worker thread and waits at most `seconds` for it; when nothing comes back in time the run stops with
`RunAborted`, naming the model, the batch and how long it has waited. Everything judged before is in the
pair cache, so running the same command again resumes.

Why a worker thread rather than interrupting the main thread: a thread blocked in a socket read or in
native code cannot be interrupted from Python, but it can be abandoned. Its result can only come back
through the guard, which drops it after an abort (and refuses every later call), so a stalled call that
wakes up later writes nothing. The worker is a daemon and ends after its call returns; closing the
comparator (the runner does, on the way out) is what wakes a call stuck on a network read.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness.run.faults import RunAborted

#: how many items of the stuck batch the message names
_SHOWN = 3


class StallGuard:
    """`with StallGuard(900, "openai:m") as guard: judge(guard.wrap(call, "pair"), ...)`; 0 seconds: off
    (calls run on the caller's thread, as without a guard)."""

    def __init__(self, seconds: float, model: str):
        self.seconds, self.model = float(seconds), model
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._aborted: str | None = None

    def wrap(self, call: Callable[[list], Any], unit: str) -> Callable[[list], Any]:
        """`call` (a batch -> its result) under the guard; `unit` names the items ("pair", "image")."""
        return lambda batch: self._run(call, list(batch), unit)

    def _run(self, call: Callable[[list], Any], batch: list, unit: str) -> Any:
        if self._aborted:
            raise RunAborted(self._aborted)
        if self.seconds <= 0:
            return call(batch)
        outcome: dict = {}
        done = threading.Event()

        def job() -> None:
            try:
                outcome["result"] = call(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
                outcome["error"] = exc
            finally:
                done.set()

        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, name="c2s-stall-guard", daemon=True)
            self._worker.start()
        started = time.monotonic()
        self._jobs.put(job)
        if not done.wait(self.seconds):
            self._aborted = self._stuck(batch, unit, time.monotonic() - started)
            self._jobs.put(None)  # the worker ends once the abandoned call returns, if it ever does
            raise RunAborted(self._aborted)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def _stuck(self, batch: list, unit: str, waited: float) -> str:
        shown = "; ".join(_describe(item, unit) for item in batch[:_SHOWN]) + ("; ..." if len(batch) > _SHOWN else "")
        return (f"no progress for {waited:.0f} s: model {self.model} has not returned a batch of {len(batch)} "
                f"{unit}{'s' if len(batch) != 1 else ''} ({shown}); stall_timeout is {self.seconds:g} s "
                "(--stall-timeout SECONDS, stall_timeout: in YAML; 0 turns the check off). Everything judged "
                "before is in the pair cache: run the same command again to resume")

    def close(self) -> None:
        """Let the worker end (after the call it may still be running)."""
        if self._worker is not None:
            self._jobs.put(None)
            self._worker = None

    def __enter__(self) -> "StallGuard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _describe(item: Any, unit: str) -> str:
    """A pair as "first vs second" (file names); an image (the runner passes Pair(x, x)) as its name."""
    parts = (item.first, item.second) if unit == "pair" else (getattr(item, "first", item),)
    return " vs ".join(Path(str(p)).name for p in parts)
