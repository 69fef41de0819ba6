"""Why a run stopped before its end although the user's input was fine (docs/architecture.md, "Exit codes").

A stalled backend or a cache locked by another process for too long is not a user error (exit 2) and
not a per-item failure (those are recorded and the run goes on): the run stops, everything judged so
far is already in the pair cache, and running the same command again resumes from there.
"""
from __future__ import annotations


class RunAborted(RuntimeError):
    """The run stopped on a fault outside the user's input; its message says what is stuck and that
    rerunning the same command resumes (everything judged so far is cached)."""
