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

Nothing read is trusted blindly (docs/architecture.md, "The pair cache's checks"): a row that is not a
log-softmax row of five levels (NaN, +inf, a wrong blob length, probabilities that do not sum to 1:
all-zero rows, 1e308) is reported as invalid and judged again; a damaged file, another program's
database or a folder is refused with one message naming the way out; another process's lock is
waited for with a line on stderr every `LOCK_NOTE_EVERY_S`, and after `LOCK_LIMIT_S` the run stops
(`RunAborted`) with the batch in hand named as not stored.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from adapters.base import row_problems
from harness.core.jsontext import strict_json
from harness.core.levels import N_LEVELS
from harness.run.faults import RunAborted

#: seconds a read or write waits for another process's lock before the run stops (`RunAborted`): a
#: batch of another run holds it for well under a second, so minutes mean that process is stuck
LOCK_LIMIT_S = 600.0
#: seconds between the lines on stderr that say a read or write is waiting for a lock
LOCK_NOTE_EVERY_S = 10.0
#: SQLite's own wait per attempt; between attempts the wait is reported and the limit checked
_BUSY_SLICE_MS = 200
_RETRY_PAUSE_S = 0.05
#: largest |log(sum of the five probabilities)| of a stored row (rows are stored log-softmax normalised)
SUM_TOLERANCE = 1e-6
_DTYPE = np.dtype("<f8")
_ROW_BYTES = N_LEVELS * _DTYPE.itemsize
_COLUMNS = {"pairs": ["fingerprint", "prompt", "first", "second", "logprobs", "meta", "created"],
            "batches": ["fingerprint", "prompt", "config", "pairs", "seconds", "created"]}

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


def stored_row_problems(values: np.ndarray) -> list:
    """Per row (n, 5), why it cannot be a stored judgement, None where it can: every row the harness
    stores is a judgement (`adapters.base.row_problems`: -inf allowed) normalised to log-softmax, so
    its probabilities sum to 1; all-zero rows (five probabilities of 1), values above 0 or 1e308 do not."""
    x = np.asarray(values, dtype=np.float64).reshape(-1, N_LEVELS)
    problems = row_problems(x)
    ok = np.array([p is None for p in problems], dtype=bool)
    log_total = np.zeros(len(x))
    top = np.max(x[ok], axis=1, keepdims=True)
    log_total[ok] = top[:, 0] + np.log(np.sum(np.exp(x[ok] - top), axis=1))
    for i in np.flatnonzero(ok & ~(np.abs(log_total) <= SUM_TOLERANCE)):
        with np.errstate(over="ignore"):
            problems[i] = f"level probabilities sum to {np.exp(log_total[i]):.6g}, not 1"
    return problems


def row_problem(lp, meta) -> str | None:
    """Why a judged pair cannot be stored (its log-probs or its metadata), None when it can."""
    arr = np.asarray(lp, dtype=np.float64)
    if arr.shape != (N_LEVELS,):
        return f"log-probs have shape {arr.shape}, expected ({N_LEVELS},)"
    problem = stored_row_problems(arr)[0]
    if problem:
        return problem
    if not isinstance(meta, dict):
        return f"metadata must be a dict, got {type(meta).__name__}"
    try:
        _meta_json(meta)
    except (TypeError, ValueError) as exc:
        return f"metadata is not JSON-serialisable: {exc}"
    return None


def _meta_json(meta: dict) -> str:
    return json.dumps(strict_json(meta), sort_keys=True, separators=(",", ":"), allow_nan=False)


def meta_shift(meta) -> float:
    """A pair's metadata "logsumexp" (what the backend subtracted from its raw level logits: raw = log-probs
    + shift), NaN when there is no finite number."""
    value = meta.get("logsumexp") if isinstance(meta, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return np.nan
    return float(value)


def _stored_shift(text) -> float:
    """`meta_shift` of a stored metadata blob (NaN for a damaged one: the row is still good, only its raw
    logits are unknown); rows without the key skip the JSON parse."""
    if '"logsumexp"' not in str(text):
        return np.nan
    try:
        return meta_shift(json.loads(text))
    except ValueError:
        return np.nan


def _is_lock(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)) or \
        any(w in str(exc) for w in ("locked", "busy"))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Hits:
    """What the cache holds for some keys: valid rows, the keys whose row is invalid (to judge again), and
    per valid key whose metadata has one, the shift to its raw level logits (meta "logsumexp")."""

    found: dict
    invalid: set
    shifts: dict = field(default_factory=dict)


class PairCache:
    """A shared, crash-safe store of level log-probs per ordered image pair.

    >>> with PairCache(harness.core.home.pair_cache_path()) as cache:
    ...     cache.put_many(fp_hash, prompt_hash, [(h1, h2, logprobs, {"backend": "hf"})])
    ...     hits = cache.get_many(fp_hash, prompt_hash, [(h1, h2)])

    A file that cannot serve as the cache raises ValueError naming it and the way out; `lock_limit_s`,
    `note_every_s` and `notify` (where the waiting lines go) are there for tests and embedding.
    """

    def __init__(self, path, *, lock_limit_s: float = LOCK_LIMIT_S, note_every_s: float = LOCK_NOTE_EVERY_S,
                 notify: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.lock_limit_s, self.note_every_s = lock_limit_s, note_every_s
        self._notify = notify or _to_stderr
        if self.path.is_dir():
            raise ValueError(f"the pair cache {self.path} is a folder, not a file; give --cache "
                             f"{self.path / 'pairs.sqlite'} (cache: in YAML) or another file name")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN ourselves (BEGIN IMMEDIATE takes the write lock up
            # front, so the wait below applies instead of a deadlock on lock upgrade).
            self._conn = sqlite3.connect(str(self.path), timeout=_BUSY_SLICE_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from exc
        try:
            self._run(self._setup, "opening it")
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_SLICE_MS}")
        self._check_schema()
        # switching a NEW file to WAL needs an exclusive lock that SQLite's busy handler does not
        # wait for: two processes creating one cache at once retry in `_run`
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ValueError(f"the pair cache {self.path} cannot use WAL mode (got {mode!r}); is it on a network "
                             "file system? Give --cache a path on a local disk (cache: in YAML)")
        # NORMAL in WAL mode: a committed batch survives a process kill; the file never corrupts.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.execute(_BATCHES)

    def _check_schema(self) -> None:
        """Refuse another program's SQLite file before anything is written into it."""
        tables = {name: [c[1] for c in self._conn.execute(f"PRAGMA table_info({name!r})")]
                  for (name,) in self._conn.execute(
                      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'")}
        foreign = sorted(set(tables) - set(_COLUMNS))
        wrong = [t for t in _COLUMNS if t in tables and tables[t] != _COLUMNS[t]]
        if foreign or wrong:
            what = (f"table {wrong[0]!r} has columns {tables[wrong[0]]}" if wrong
                    else f"it holds other tables ({', '.join(foreign[:5])})")
            raise self._unusable(f"not a pair cache: {what}")

    def _unusable(self, why) -> ValueError:
        """The one message for a file that cannot serve as the cache, with the way out."""
        text = str(why)
        writable = os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK)
        if not self.path.exists() or "readonly" in text or not writable:
            return ValueError(f"the pair cache {self.path} cannot be {'written' if self.path.exists() else 'created'} "
                              f"({text}); give --cache PATH in a writable folder (cache: in YAML)")
        return ValueError(f"the pair cache {self.path} is not usable ({text}); move it aside "
                          f"(mv {self.path} {self.path}.broken) or give --cache NEW.sqlite (cache: in YAML): "
                          "a fresh cache is rebuilt from the model")

    def _run(self, work: Callable, what: str, lost: str = ""):
        """`work()`, waiting for another process's lock (a line every `note_every_s`, `RunAborted` after
        `lock_limit_s`; `work` must leave no transaction open when it raises) with any other SQLite
        error turned into the one message with the way out."""
        start = noted = time.monotonic()
        while True:
            try:
                return work()
            except sqlite3.DatabaseError as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and _is_lock(exc)):
                    raise self._unusable(exc) from exc
                waited = time.monotonic() - start
                if waited >= self.lock_limit_s:
                    raise RunAborted(f"the pair cache {self.path} stayed locked by another process for "
                                     f"{waited:.0f} s while {what}{lost}; run the same command again to resume "
                                     "(everything stored before is kept)") from exc
                if time.monotonic() - noted >= self.note_every_s:
                    self._notify(f"c2s: process {os.getpid()} waits for the pair cache {self.path}, locked by "
                                 f"another process, while {what} ({waited:.0f} s so far; gives up after "
                                 f"{self.lock_limit_s:.0f} s)")
                    noted = time.monotonic()
                time.sleep(_RETRY_PAUSE_S)

    # --- context manager -------------------------------------------------------------------
    def __enter__(self) -> "PairCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # --- reads -------------------------------------------------------------------------------
    def get_many(self, fingerprint: str, prompt_hash: str, keys: Sequence[tuple[str, str]]) -> Hits:
        """What the cache holds for the (first, second) content-hash keys: the valid rows, and the keys
        whose row is invalid (`stored_row_problems`, or a blob of the wrong size): to judge again; and
        each valid row's "logsumexp" from its metadata, where it has one (`Hits.shifts`).

        Keys go through a temporary table joined on the primary key, so 100k look-ups cost one
        index probe each and no per-key round trip.
        """
        _check_text("fingerprint", fingerprint)
        _check_text("prompt_hash", prompt_hash)
        keys = list(keys)
        if not keys:
            return Hits({}, set())
        found = self._run(lambda: self._select(fingerprint, prompt_hash, keys), "reading it")
        sized = [r for r in found if isinstance(r[2], bytes) and len(r[2]) == _ROW_BYTES]
        invalid = {(r[0], r[1]) for r in found if not (isinstance(r[2], bytes) and len(r[2]) == _ROW_BYTES)}
        # one decode for the whole result: rows are views into one (n, 5) float64 array
        values = np.frombuffer(b"".join(r[2] for r in sized), dtype=_DTYPE).astype(np.float64).reshape(-1, N_LEVELS)
        good, shifts = {}, {}
        for r, row, problem in zip(sized, values, stored_row_problems(values)):
            if problem is None:
                good[(r[0], r[1])] = row
                shift = _stored_shift(r[3])
                if np.isfinite(shift):
                    shifts[(r[0], r[1])] = shift
            else:
                invalid.add((r[0], r[1]))
        return Hits(good, invalid, shifts)

    def _select(self, fingerprint: str, prompt_hash: str, keys: list) -> list:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN")
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (first TEXT NOT NULL, second TEXT NOT NULL)")
            cur.execute("DELETE FROM temp.wanted")
            cur.executemany("INSERT INTO temp.wanted VALUES (?, ?)", keys)
            cur.execute(
                "SELECT p.first, p.second, p.logprobs, p.meta FROM temp.wanted AS w "
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
        return found

    def _read(self, sql: str, args: tuple = ()) -> list:
        return self._run(lambda: self._conn.execute(sql, args).fetchall(), "reading it")

    def count(self, fingerprint: str | None = None) -> int:
        """Number of cached pairs, for one comparator fingerprint or all."""
        if fingerprint is None:
            return self._read("SELECT COUNT(*) FROM pairs")[0][0]
        return self._read("SELECT COUNT(*) FROM pairs WHERE fingerprint = ?", (fingerprint,))[0][0]

    def history(self, config: str, rating: bool = False) -> dict | None:
        """What the cache knows of a run configuration (`config` key) from the batches it timed: the
        latest fingerprint and prompt it ran with, and the pairs and seconds timed under them; None
        when it never ran (or its batches were stored before timings were recorded)."""
        rows = self._read("SELECT fingerprint, prompt FROM batches WHERE config = ? AND (prompt LIKE 'rating:%') = ? "
                          "ORDER BY created DESC LIMIT 1", (config, int(rating)))
        if not rows:
            return None
        ((pairs, seconds),) = self._read(
            "SELECT SUM(pairs), SUM(seconds) FROM batches WHERE fingerprint = ? AND prompt = ?", rows[0])
        return {"fingerprint": rows[0][0], "prompt": rows[0][1], "pairs": int(pairs), "seconds": float(seconds)}

    def stats(self) -> dict:
        """What the cache holds: total rows, rows per (fingerprint, prompt), file size."""
        groups = self._read(
            "SELECT fingerprint, prompt, COUNT(*), MIN(created), MAX(created) FROM pairs "
            "GROUP BY fingerprint, prompt ORDER BY fingerprint, prompt")
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
                 timing: tuple[str, int, float] | None = None, replace: frozenset | set = frozenset()) -> int:
        """Store one batch of successful comparisons in ONE transaction; returns rows given.
        `timing` (config key, pairs judged, seconds) is recorded in the same transaction.

        The whole batch is validated before anything is written (`row_problem`), so bad input raises
        and leaves the cache untouched. A pair already present (e.g. written by a concurrent process)
        is kept as is: values are deterministic for a given key, so that is not an error; a key in
        `replace` (its row was read as invalid) is overwritten. Another process's lock is waited for;
        past `lock_limit_s` the run stops (`RunAborted`) saying this batch was not stored.
        """
        _check_text("fingerprint", fingerprint)
        _check_text("prompt_hash", prompt_hash)
        now = time.time()
        fresh, again = [], []
        for i, row in enumerate(rows):
            if len(row) != 4:
                raise ValueError(f"PairCache.put_many: row {i} must be (first, second, logprobs, meta)")
            first, second, lp, meta = row
            key = (_check_text("first image hash", first), _check_text("second image hash", second))
            problem = row_problem(lp, meta)
            if problem:
                raise ValueError(f"PairCache.put_many: row {i} ({first!r}, {second!r}): {problem}; "
                                 "only successful comparisons are cached")
            record = (fingerprint, prompt_hash, *key, np.asarray(lp, dtype=_DTYPE).tobytes(), _meta_json(meta), now)
            (again if key in replace else fresh).append(record)
        if not fresh and not again:
            return 0
        if timing is not None:
            timing = (_check_text("config", timing[0]), int(timing[1]), float(timing[2]))

        def write() -> None:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)", fresh)
                cur.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)", again)
                if timing is not None:
                    cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)", (fingerprint, prompt_hash, *timing, now))
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise

        n = len(fresh) + len(again)
        self._run(write, f"storing {n} judged pairs", f" (those {n} pairs were not stored)")
        return n

    def integrity_check(self) -> str:
        """SQLite's own consistency check: "ok" for a healthy file."""
        return "; ".join(r[0] for r in self._read("PRAGMA integrity_check"))
