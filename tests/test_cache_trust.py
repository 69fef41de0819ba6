"""The pair cache is not trusted blindly: an image replaced while judged is not stored under its old hash,
invalid rows are judged again and replaced, damaged or foreign files are refused with the way out, and
another process's lock is waited for with progress, never losing the batch in hand."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Pair, compare_batch, normalize_logprobs
from harness.cli import main
from harness.data.demo_data import build_demo_benchmark
from harness.data.images import content_hash
from harness.run.cache import PairCache
from harness.run.faults import RunAborted
from harness.run.judging import judge

CALLS: list[list[str]] = []


def raw_row(first, second) -> np.ndarray:
    """Deterministic logits per ordered pair of file CONTENTS: a replaced image gets other numbers."""
    key = f"{Path(first).read_bytes()!r}|{Path(second).read_bytes()!r}"
    return np.array([zlib.crc32(f"{key}|{k}".encode()) for k in range(5)], dtype=np.float64) / 2.0**32 * 6.0


class Judge:
    """Judges pairs from file contents; `during(pairs)` runs inside the call (e.g. replaces a file)."""

    def __init__(self, during=None):
        self.during = during

    def compare(self, pairs):
        CALLS.append([Path(p.second).name for p in pairs])
        if self.during:
            self.during(pairs)
        return np.array([raw_row(p.first, p.second) for p in pairs]).reshape(-1, 5)

    def fingerprint(self):
        return {"backend": "judge"}


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()


def images(folder: Path, names) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(f"<{name}>".encode() * 4)
    return [str(folder / n) for n in names]


def run_judge(comp, pairs, cache, batch_size=3, **kw):
    return judge(lambda b: compare_batch(comp, b), pairs, ["test"] * len(pairs), cache=cache, fp_hash="fp",
                 prompt_key="pr", batch_size=batch_size, **kw)


def keys_of(pairs):
    return [(content_hash(p.first), content_hash(p.second)) for p in pairs]


# --- a. an image replaced while its batch is judged ------------------------------------------------------

def bigger(path):
    Path(path).write_bytes(b"a new picture, longer than before" * 5)


def same_size_later(path):
    old = os.stat(path)
    Path(path).write_bytes(bytes(b ^ 1 for b in Path(path).read_bytes()))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))   # no reliance on timestamp granularity


def renamed_over(path):
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_bytes(b"x" * os.stat(path).st_size)
    os.utime(tmp, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    os.replace(tmp, path)


def deleted(path):
    os.unlink(path)


@pytest.mark.parametrize("change", [bigger, same_size_later, renamed_over, deleted])
@pytest.mark.parametrize("target", ["t1", "anchor"])
def test_an_image_replaced_while_judged_is_not_stored_under_its_old_hash(tmp_path, change, target):
    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "t1", "t2", "t3", "t4"])
    pairs = [Pair(anchor, x) for x in tests]
    path = str(tmp_path / "img" / target)
    old_keys = keys_of(pairs)
    done = []

    def replace_once(batch):
        if not done and any(path in (p.first, p.second) for p in batch):
            change(path)
            done.append(1)

    cache = tmp_path / "c.sqlite"
    with PairCache(cache) as c:
        judged = run_judge(Judge(replace_once), pairs, c)
        held = c.get_many("fp", "pr", old_keys).found
    shows = [path in (p.first, p.second) for p in pairs]
    for p, affected, err, key in zip(pairs, shows, judged.errors, old_keys):
        if affected:   # a deleted file may fail in the comparator first: either way, not stored
            assert err == f"image changed during the run: {path}" or change is deleted and path in err
            assert key not in held
        else:
            assert err is None and key in held
    if change is deleted:
        return
    # the next run judges the changed pairs again, under the new content's hash, with the new content's numbers
    CALLS.clear()
    with PairCache(cache) as c:
        again = run_judge(Judge(), pairs, c)
        assert c.count() == len(pairs)       # under the new hashes; the old ones never got a verdict
        assert not set(c.get_many("fp", "pr", [k for k, s in zip(old_keys, shows) if s]).found)
    assert again.errors == [None] * len(pairs) and sum(len(b) for b in CALLS) == sum(shows)
    for p, lp in zip(pairs, again.logprobs):
        np.testing.assert_allclose(lp, normalize_logprobs(raw_row(p.first, p.second)[None])[0], atol=1e-12)


# --- b. invalid rows are judged again and replaced -----------------------------------------------------------

GOOD = np.log([0.1, 0.2, 0.4, 0.2, 0.1])
ROW = np.log(np.full(5, 0.2))
TAMPERED = {
    "nan": np.full(5, np.nan).tobytes(),
    "one nan": np.where(np.arange(5) == 2, np.nan, GOOD).tobytes(),
    "+inf": np.where(np.arange(5) == 0, np.inf, GOOD).tobytes(),
    "1e308": np.full(5, 1e308).tobytes(),
    "all zero": np.zeros(5).tobytes(),
    "above 0": np.array([0.5, -1.0, -2.0, -3.0, -4.0]).tobytes(),
    "sum below 1": np.log(np.full(5, 0.1)).tobytes(),
    "all -inf": np.full(5, -np.inf).tobytes(),
    "short blob": GOOD.tobytes()[:39],
    "long blob": GOOD.tobytes() + b"\0" * 8,
    "empty blob": b"",
    "text": "not a row",
}


def tamper(cache, key, value):
    with sqlite3.connect(cache) as con:
        n = con.execute("UPDATE pairs SET logprobs = ? WHERE first = ? AND second = ?", (value, *key)).rowcount
    con.close()
    assert n == 1


@pytest.mark.parametrize("kinds", [["nan"], ["one nan", "+inf", "1e308"], ["all zero", "above 0", "sum below 1"],
                                   ["all -inf", "short blob", "long blob"], ["empty blob", "text"]])
def test_invalid_cached_rows_are_judged_again_replaced_and_counted(tmp_path, kinds):
    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "t1", "t2", "t3", "t4"])
    pairs = [Pair(anchor, x) for x in tests]
    cache = tmp_path / "c.sqlite"
    with PairCache(cache) as c:
        first = run_judge(Judge(), pairs, c)
    keys = keys_of(pairs)
    for k, kind in enumerate(kinds):
        tamper(cache, keys[k], TAMPERED[kind])
    CALLS.clear()
    with PairCache(cache) as c:
        hits = c.get_many("fp", "pr", keys)
        assert hits.invalid == set(keys[:len(kinds)]) and set(hits.found) == set(keys[len(kinds):])
        with pytest.warns(UserWarning, match=rf"{len(kinds)} row\(s\) of the pair cache .* are invalid"):
            again = run_judge(Judge(), pairs, c)
    assert again.cache_invalid == len(kinds) and again.errors == [None] * len(pairs)
    assert sorted(n for b in CALLS for n in b) == sorted(Path(p.second).name for p in pairs[:len(kinds)])
    np.testing.assert_array_equal(again.logprobs, first.logprobs)
    with PairCache(cache) as c:   # the fresh result replaced the bad row
        hits = c.get_many("fp", "pr", keys)
        assert not hits.invalid and len(hits.found) == len(pairs)
        third = run_judge(Judge(), pairs, c)
    assert third.cache_invalid == 0 and third.cached.all()


def test_every_adapters_kind_of_row_is_accepted_on_read(tmp_path):
    """Rows as compare_batch stores them: an API's -1e30 stand-in, -inf holes, a peaked classical row."""
    from adapters.classical import level_logprobs
    rows = np.array([[-1e30, -0.1, -1e30, -2.5, -1e30], [-np.inf, 0.0, -np.inf, -np.inf, -np.inf],
                     [-700.0, -3.0, -0.2, -1.5, -30.0], [1e4, 1e4 - 1, 0.0, 0.0, 0.0]])
    stored = np.vstack([normalize_logprobs(rows), level_logprobs(np.array([-40.0, 0.0, 3.0]), 1.0)])
    with PairCache(tmp_path / "c.sqlite") as c:
        c.put_many("fp", "pr", [(f"h{i}", "x", r, {}) for i, r in enumerate(stored)])
        hits = c.get_many("fp", "pr", [(f"h{i}", "x") for i in range(len(stored))])
    assert not hits.invalid and all(hits.found[(f"h{i}", "x")].tobytes() == r.tobytes() for i, r in enumerate(stored))


# --- c. damaged, foreign and misplaced files -----------------------------------------------------------------

WAY_OUT = r"move it aside \(mv (\S+) \1\.broken\) or give --cache NEW\.sqlite"


def real_cache(path, n=3000):
    rows = [(f"{i:06d}" * 8, "anchor" * 10, ROW, {"i": i}) for i in range(n)]
    with PairCache(path) as c:
        c.put_many("fp", "pr", rows)
    return [r[:2] for r in rows]


@pytest.mark.parametrize("pages", [[1, 2], [3, 7, 11], list(range(20, 60)), [5], [100]])
def test_a_damaged_cache_is_one_message_with_the_way_out(tmp_path, pages):
    path = tmp_path / "c.sqlite"
    keys = real_cache(path)
    rng = np.random.default_rng(len(pages))
    with open(path, "r+b") as f:
        for page in pages:          # page numbers from 0: page 0 holds the header and the schema
            f.seek(4096 * page)
            f.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=WAY_OUT):
        with PairCache(path) as c:
            c.get_many("fp", "pr", keys)
            c.put_many("fp", "pr", [(k[0], "new", ROW, {}) for k in keys])


@pytest.mark.parametrize("garbage", [b"\xff" * 8, b"\x00" * 16, np.float64(0.5).tobytes(), np.float64(1e308).tobytes()])
def test_damage_sqlite_cannot_see_is_caught_by_the_row_check(tmp_path, garbage):
    path = tmp_path / "c.sqlite"
    keys = real_cache(path)
    data = bytearray(path.read_bytes())
    at = data.index(ROW.tobytes(), 4096 * 50) + 8   # inside one stored row, deep in the file
    data[at:at + len(garbage)] = garbage
    path.write_bytes(bytes(data))
    with PairCache(path) as c:
        hits = c.get_many("fp", "pr", keys)
        assert c.integrity_check() == "ok"    # SQLite sees nothing wrong
    assert len(hits.invalid) == 1 and len(hits.found) == len(keys) - 1
    assert all(np.array_equal(v, ROW) for v in hits.found.values())


def sqlite_file(path, *statements):
    con = sqlite3.connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


@pytest.mark.parametrize("make, why", [
    (lambda p: sqlite_file(p, "CREATE TABLE pairs (a TEXT, b TEXT)"), r"table 'pairs' has columns \['a', 'b'\]"),
    (lambda p: sqlite_file(p, "CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')"),
     r"it holds other tables \(users\)"),
    (lambda p: (real_cache(p, 3), sqlite_file(p, "CREATE TABLE notes (t TEXT)")), r"other tables \(notes\)"),
    (lambda p: sqlite_file(p, "CREATE TABLE batches (x)"), r"table 'batches' has columns \['x'\]"),
    (lambda p: p.write_text("first,second\na,b\n"), "file is not a database"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4000)), "file is not a database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(50)), "not usable"),
])
def test_a_foreign_file_is_refused_and_left_untouched(tmp_path, make, why):
    path = tmp_path / "mine.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=why) as exc:
        PairCache(path)
    assert re.search(WAY_OUT, str(exc.value)) and str(path) in str(exc.value)
    assert path.read_bytes() == before and not Path(f"{path}-wal").exists()


def test_an_empty_file_becomes_a_cache(tmp_path):
    (tmp_path / "c.sqlite").write_bytes(b"")
    with PairCache(tmp_path / "c.sqlite") as c:
        assert c.count() == 0


@pytest.mark.parametrize("where, why", [
    (lambda t: t, r"is a folder, not a file; give --cache .*pairs\.sqlite"),
    (lambda t: t / "file.txt" / "c.sqlite", r"cannot be created .*give --cache PATH in a writable folder"),
    (lambda t: Path("/proc/c2s-no-such-folder/c.sqlite"), "cannot be created"),
    (lambda t: Path("/proc/c2s-cache.sqlite"), "cannot be created"),   # refused even to root
])
def test_a_cache_path_that_cannot_be_a_cache_file(tmp_path, where, why):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=why):
        PairCache(where(tmp_path))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder holding a real cache that this process cannot write: chmod for a user; for root (which
    ignores modes) a tmpfs remounted read-only, a real read-only file system."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        real_cache(ro / "c.sqlite", 3)
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.fail("root cannot mount a tmpfs here: run the suite as a user, or give the container CAP_SYS_ADMIN")
    try:
        real_cache(ro / "c.sqlite", 3)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True, capture_output=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True, capture_output=True)


def test_a_read_only_folder(read_only_folder):
    for name in ("c.sqlite", "new.sqlite"):
        with pytest.raises(ValueError, match="give --cache PATH in a writable folder"):
            PairCache(read_only_folder / name)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    ds = build_demo_benchmark(tmp_path_factory.mktemp("bench"), size=48, sources=["coins"])
    return ds.root / "manifest.json"


def c2s(bench, tmp_path, cache, *extra):
    return main(["run", "--model", "classical", "--dataset", f"bench={bench}", "--anchors", "select",
                 "--anchors-dataset", "bench", "--out", str(tmp_path / "runs"), "--cache", str(cache),
                 "--run-id", "r", "--no-report", *extra])


@pytest.mark.parametrize("make", ["folder", "foreign", "damaged"])
@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_the_cli_says_what_to_do_in_one_line(bench, tmp_path, capsys, make, extra):
    cache = tmp_path / "c.sqlite"
    if make == "folder":
        cache.mkdir()
    elif make == "foreign":
        sqlite_file(cache, "CREATE TABLE pairs (a, b)")
    else:
        real_cache(cache, 500)
        with open(cache, "r+b") as f:
            f.seek(4096)
            f.write(b"\xff" * 4096 * 3)
    assert c2s(bench, tmp_path, cache, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"c2s run: error: the pair cache {cache}"), err
    assert "Traceback" not in err[0]


def test_the_cli_reports_and_counts_invalid_rows(bench, tmp_path, capsys):
    cache = tmp_path / "c.sqlite"
    assert c2s(bench, tmp_path, cache) == 0
    with sqlite3.connect(cache) as con:
        keys = con.execute("SELECT first, second FROM pairs ORDER BY first, second LIMIT 3").fetchall()
        for key, kind in zip(keys, ["nan", "all zero", "1e308"]):
            con.execute("UPDATE pairs SET logprobs = ? WHERE first = ? AND second = ?", (TAMPERED[kind], *key))
    con.close()
    capsys.readouterr()
    assert c2s(bench, tmp_path, cache, "--run-id", "r2") == 0
    err = capsys.readouterr().err
    assert re.search(r"c2s: warning: 3 row\(s\) of the pair cache .* are invalid", err), err
    manifest = json.loads((tmp_path / "runs" / "r2" / "manifest.json").read_text())
    assert manifest["counts"]["pairs_cache_invalid"] == 3 and manifest["counts"]["pairs_failed"] == 0


# --- d. another process's lock -----------------------------------------------------------------------------

class Holder:
    """A second connection that holds the cache's write lock (BEGIN IMMEDIATE) until released."""

    def __init__(self, path):
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("BEGIN IMMEDIATE")

    def release(self):
        self.con.execute("COMMIT")
        self.con.close()




def test_a_write_waits_for_the_lock_with_progress_and_loses_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    real_cache(path, 3)
    lines, told = [], threading.Event()

    def notify(line):
        lines.append(line)
        told.set()

    def write():
        try:
            with PairCache(path, note_every_s=0.0, notify=notify) as cache:   # a connection per thread
                result["n"] = cache.put_many("fp", "pr", [("a", "b", ROW, {})])
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            result["error"] = exc
            told.set()

    result: dict = {}
    holder = Holder(path)
    writer = threading.Thread(target=write)
    writer.start()
    assert told.wait(60) and "error" not in result, result
    assert "n" not in result                     # still waiting: nothing was lost or skipped
    holder.release()                             # only after the waiting line was seen: no race
    writer.join(60)
    assert result == {"n": 1}
    with PairCache(path) as cache:
        assert cache.get_many("fp", "pr", [("a", "b")]).found
    assert re.match(rf"c2s: process {os.getpid()} waits for the pair cache {re.escape(str(path))}, locked by "
                    r"another process, while storing 1 judged pairs \(\d+ s so far; gives up after 600 s\)", lines[0])


def test_a_lock_held_past_the_limit_aborts_the_run_naming_the_unsaved_batch(tmp_path):
    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "t1", "t2", "t3"])
    path = tmp_path / "c.sqlite"
    held = []

    def lock_on_second_call(batch):
        if len(CALLS) == 2:
            held.append(Holder(path))   # another process takes the lock while this batch is judged

    with PairCache(path, lock_limit_s=0.0, notify=lambda line: None) as c:
        with pytest.raises(RunAborted, match=r"stayed locked by another process .* storing 2 judged pairs \(those "
                                             r"2 pairs were not stored\); run the same command again to resume"):
            run_judge(Judge(lock_on_second_call), [Pair(anchor, x) for x in tests], c, batch_size=2)
    held[0].release()
    with PairCache(path) as c:
        assert c.count() == 2                     # the first batch, stored before the lock was taken
        again = run_judge(Judge(), [Pair(anchor, x) for x in tests], c, batch_size=2)
    assert again.cached.tolist() == [True, True, False, False]


def test_opening_waits_for_an_exclusive_lock_too(tmp_path):
    """Readers never wait for a writer in WAL mode; a process holding the file exclusively stops them too."""
    path = tmp_path / "c.sqlite"
    keys = real_cache(path, 3)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA locking_mode = EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RunAborted, match="stayed locked by another process for 0 s while opening it; run the same"):
            PairCache(path, lock_limit_s=0.0, notify=lambda line: None)
    finally:
        con.execute("COMMIT")
        con.close()
    with PairCache(path) as c:
        assert len(c.get_many("fp", "pr", keys).found) == 3
