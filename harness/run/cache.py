"""The pair cache: one SQLite row per judged pair, so runs resume and rescore without a model.

Key: (comparator fingerprint hash, prompt hash, content hash of the FIRST image, content hash of
the SECOND image); order matters because the verdict is on the second image relative to the first.
Value: the five level log-probs (stored as 40 little-endian float64 bytes, so every bit survives)
and a small JSON metadata blob. Only successful comparisons belong here: a failed pair is simply
absent and is retried on the next run.

Why SQLite in WAL mode: readers never block the writer, several processes can share one file
(busy timeout instead of errors), and each `put_many` is one transaction, so a kill at any
moment loses at most the batch in flight and never corrupts the file.

The `batches` table records how long each stored batch took and which run configuration (model
spec and options, `config` key) produced it, so `c2s run --dry-run` can find the fingerprint and
estimate the time of a model it has not loaded. A cache file written before that table existed
gets it empty when opened: its pairs are read as before.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from harness.core.jsontext import strict_json
from harness.core.levels import N_LEVELS

#: seconds a connection waits for another process's write lock before giving up
BUSY_TIMEOUT_S = 60.0
_DTYPE = np.dtype("<f8")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    fingerprint TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    first       TEXT NOT NULL,
    second      TEXT NOT NULL,
    logprobs    BLOB NOT NULL,
    meta        TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (fingerprint, prompt, first, second)
) WITHOUT ROWID
"""
_BATCHES = """
CREATE TABLE IF NOT EXISTS batches (
    fingerprint TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    config      TEXT NOT NULL,
    pairs       INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    created     REAL NOT NULL
)
"""


def _check_text(name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"PairCache: {name} must be a non-empty string, got {value!r}")
    return value


def _encode(lp, where: str) -> bytes:
    arr = np.asarray(lp, dtype=np.float64)
    if arr.shape != (N_LEVELS,):
        raise ValueError(f"PairCache: log-probs for {where} have shape {arr.shape}, expected ({N_LEVELS},)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"PairCache: log-probs for {where} are not finite ({arr.tolist()}); "
                         "only successful comparisons are cached")
    return arr.astype(_DTYPE, copy=False).tobytes()


class PairCache:
    """A shared, crash-safe store of level log-probs per ordered image pair.

    >>> with PairCache(harness.core.home.pair_cache_path()) as cache:
    ...     cache.put_many(fp_hash, prompt_hash, [(h1, h2, logprobs, {"backend": "hf"})])
    ...     found = cache.get_many(fp_hash, prompt_hash, [(h1, h2)])
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves (BEGIN IMMEDIATE takes the write lock up
        # front, so the busy timeout applies instead of a deadlock on lock upgrade).
        self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._setup()
                break
            except sqlite3.OperationalError as exc:
                # switching a NEW file to WAL needs an exclusive lock that SQLite's busy handler
                # does not wait for: two processes creating one cache at once retry here
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                self._conn.close()
                raise ValueError(f"PairCache: {self.path} is not a usable SQLite cache: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                self._conn.close()
                raise ValueError(f"PairCache: {self.path} is not a usable SQLite cache: {exc}") from exc

    def _setup(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            self._conn.close()
            raise ValueError(f"PairCache: {self.path} cannot use WAL mode (got {mode!r}); "
                             "is it on a network file system?")
        # NORMAL in WAL mode: a committed batch survives a process kill; the file never corrupts.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.execute(_BATCHES)

    # --- context manager -------------------------------------------------------------------
    def __enter__(self) -> "PairCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # --- reads -------------------------------------------------------------------------------
    def get_many(self, fingerprint: str, prompt_hash: str,
                 keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        """Cached log-probs for the (first, second) content-hash keys that are present.

        Keys go through a temporary table joined on the primary key, so 100k look-ups cost one
        index probe each and no per-key round trip.
        """
        _check_text("fingerprint", fingerprint)
        _check_text("prompt_hash", prompt_hash)
        keys = list(keys)
        if not keys:
            return {}
        cur = self._conn.cursor()
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (first TEXT NOT NULL, second TEXT NOT NULL)")
        try:
            cur.execute("BEGIN")
            cur.execute("DELETE FROM temp.wanted")
            cur.executemany("INSERT INTO temp.wanted VALUES (?, ?)", keys)
            cur.execute(
                "SELECT p.first, p.second, p.logprobs FROM temp.wanted AS w "
                "JOIN pairs AS p ON p.fingerprint = ? AND p.prompt = ? "
                "AND p.first = w.first AND p.second = w.second",
                (fingerprint, prompt_hash))
            found = cur.fetchall()
            cur.execute("DELETE FROM temp.wanted")
            cur.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        # one decode for the whole result: rows are views into one (n, 5) float64 array
        values = np.frombuffer(b"".join(r[2] for r in found), dtype=_DTYPE).astype(np.float64).reshape(-1, N_LEVELS)
        return {(r[0], r[1]): values[i] for i, r in enumerate(found)}

    def count(self, fingerprint: str | None = None) -> int:
        """Number of cached pairs, for one comparator fingerprint or all."""
        if fingerprint is None:
            return self._conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM pairs WHERE fingerprint = ?",
                                  (fingerprint,)).fetchone()[0]

    def history(self, config: str, rating: bool = False) -> dict | None:
        """What the cache knows of a run configuration (`config` key) from the batches it timed: the
        latest fingerprint and prompt it ran with, and the pairs and seconds timed under them; None
        when it never ran (or its batches were stored before timings were recorded)."""
        row = self._conn.execute(
            "SELECT fingerprint, prompt FROM batches WHERE config = ? AND (prompt LIKE 'rating:%') = ? "
            "ORDER BY created DESC LIMIT 1", (config, int(rating))).fetchone()
        if row is None:
            return None
        pairs, seconds = self._conn.execute(
            "SELECT SUM(pairs), SUM(seconds) FROM batches WHERE fingerprint = ? AND prompt = ?", row).fetchone()
        return {"fingerprint": row[0], "prompt": row[1], "pairs": int(pairs), "seconds": float(seconds)}

    def stats(self) -> dict:
        """What the cache holds: total rows, rows per (fingerprint, prompt), file size."""
        groups = self._conn.execute(
            "SELECT fingerprint, prompt, COUNT(*), MIN(created), MAX(created) FROM pairs "
            "GROUP BY fingerprint, prompt ORDER BY fingerprint, prompt").fetchall()
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path),
            "pairs": sum(g[2] for g in groups),
            "bytes_on_disk": size,
            "groups": [{"fingerprint": fp, "prompt": pr, "pairs": n, "first_created": t0, "last_created": t1}
                       for fp, pr, n, t0, t1 in groups],
        }

    # --- writes ------------------------------------------------------------------------------
    def put_many(self, fingerprint: str, prompt_hash: str,
                 rows: Iterable[tuple[str, str, np.ndarray, dict]], *,
                 timing: tuple[str, int, float] | None = None) -> int:
        """Store one batch of successful comparisons in ONE transaction; returns rows given.
        `timing` (config key, pairs judged, seconds) is recorded in the same transaction.

        The whole batch is validated before anything is written, so bad input raises and leaves
        the cache untouched. A pair already present (e.g. written by a concurrent process) is
        kept as is: values are deterministic for a given key, so that is not an error.
        """
        _check_text("fingerprint", fingerprint)
        _check_text("prompt_hash", prompt_hash)
        now = time.time()
        records = []
        for i, row in enumerate(rows):
            if len(row) != 4:
                raise ValueError(f"PairCache.put_many: row {i} must be (first, second, logprobs, meta)")
            first, second, lp, meta = row
            where = f"row {i} ({first!r}, {second!r})"
            if not isinstance(meta, dict):
                raise ValueError(f"PairCache.put_many: metadata for {where} must be a dict, got {type(meta).__name__}")
            try:
                meta_json = json.dumps(strict_json(meta), sort_keys=True, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"PairCache.put_many: metadata for {where} is not JSON-serialisable: {exc}") from exc
            records.append((fingerprint, prompt_hash, _check_text("first image hash", first),
                            _check_text("second image hash", second), _encode(lp, where), meta_json, now))
        if not records:
            return 0
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)", records)
            if timing is not None:
                cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                            (fingerprint, prompt_hash, _check_text("config", timing[0]), int(timing[1]),
                             float(timing[2]), now))
            cur.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        return len(records)

    def integrity_check(self) -> str:
        """SQLite's own consistency check: "ok" for a healthy file."""
        return "; ".join(r[0] for r in self._conn.execute("PRAGMA integrity_check").fetchall())
