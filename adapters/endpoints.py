"""Several servers behind one comparator: requests balanced, at most `limit` in flight per endpoint, and an
endpoint that keeps failing rested for a while (its requests go to the others) and then tried again.

Which server answered is no part of a verdict: the pair cache's key never names an endpoint, so the
same servers on other ports, or one more server, hit the same cache (docs/scale-out.md).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence


@dataclass
class Endpoint:
    name: str
    client: Any
    in_flight: int = 0
    failures: int = 0  # in a row
    resting_until: float = 0.0
    served: int = 0


class Endpoints:
    """`with endpoints.use() as ep: ep.client...`: the least busy endpoint that is not resting and has a
    free slot (waiting for one when all are busy; when all rest, the one that wakes first). A failure
    that `counts(exc)` (transient: connection, timeout, 5xx) adds to its endpoint's run; `cooldown_after`
    in a row rest it `cooldown` seconds. A success ends the run."""

    def __init__(self, endpoints: Sequence[tuple[str, Any]], *, limit: int, cooldown: float = 30.0,
                 cooldown_after: int = 3, counts: Callable[[BaseException], bool] = lambda exc: True,
                 clock: Callable[[], float] = time.monotonic):
        if not endpoints:
            raise ValueError("no endpoint")
        self.all = [Endpoint(name, client) for name, client in endpoints]
        self.limit, self.cooldown, self.cooldown_after = limit, cooldown, cooldown_after
        self.counts, self.clock = counts, clock
        self._cond = threading.Condition()

    def _pick(self) -> Endpoint | None:
        now = self.clock()
        free = [e for e in self.all if e.in_flight < self.limit]
        awake = [e for e in free if e.resting_until <= now]
        if awake:
            return min(awake, key=lambda e: (e.in_flight, e.served))
        if free and all(e.resting_until > now for e in self.all):  # everyone rests: try the first to wake
            return min(free, key=lambda e: e.resting_until)
        return None

    @contextmanager
    def use(self) -> Iterator[Endpoint]:
        with self._cond:
            while (ep := self._pick()) is None:
                self._cond.wait(0.5)  # (a resting endpoint wakes with time, not with a notify)
            ep.in_flight += 1
            ep.served += 1
        try:
            yield ep
        except BaseException as exc:
            with self._cond:
                if self.counts(exc):
                    ep.failures += 1
                    if ep.failures >= self.cooldown_after:
                        ep.resting_until = self.clock() + self.cooldown
                        ep.failures = 0
            raise
        else:
            with self._cond:
                ep.failures = 0
        finally:
            with self._cond:
                ep.in_flight -= 1
                self._cond.notify()
