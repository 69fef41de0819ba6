"""The pair cache: exact round trips, two writer processes on one file, and SIGKILL mid-write."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.run.cache import PairCache

REPO = Path(__file__).resolve().parents[1]

# One deterministic value per ordered key, used by the test process AND the writer children, so a
# row read back can be checked against an independent recomputation.
VALUE_SRC = '''
import zlib
import numpy as np
def value_for(first, second):
    raw = np.array([zlib.crc32(f"{first}|{second}|{k}".encode()) for k in range(5)], dtype=np.float64)
    z = raw / 2.0**32 * 6.0
    return z - np.log(np.exp(z).sum())
'''
_ns: dict = {}
exec(VALUE_SRC, _ns)
value_for = _ns["value_for"]

# A child that writes batches into one cache. argv: path, fingerprint, JSON spec.
WRITER_SRC = VALUE_SRC + '''
import json, sys, time, os
from harness.run.cache import PairCache
path, fp, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print("ready", flush=True)
while spec.get("go") and not os.path.exists(spec["go"]):
    time.sleep(0.001)
cache = PairCache(path)     # after the barrier: concurrent writers also create the file together
if spec.get("spill"):
    cache._conn.execute("PRAGMA cache_size = 5")   # uncommitted pages spill into the WAL mid-transaction
if spec.get("stall_at_row"):
    seen = [0]
    def stall(statement):
        if statement.startswith("INSERT OR IGNORE INTO pairs"):
            seen[0] += 1
            if seen[0] == spec["stall_at_row"]:
                print("stalled", flush=True)
                while True:  # until the test kills it: no sleep of N seconds racing the kill
                    time.sleep(3600)
    cache._conn.set_trace_callback(stall)
batch_no = spec.get("first_batch", 0)
batches = spec.get("batches")
while batches is None or batches:
    keys = batches.pop(0) if batches is not None else [[f"{spec['tag']}{batch_no}", str(i)] for i in range(spec["size"])]
    rows = [(a, b, value_for(a, b), {"writer": spec["tag"], "batch": batch_no, "t": time.time()}) for a, b in keys]
    print("begin", batch_no, flush=True)
    cache.put_many(fp, "p", rows)
    print("done", batch_no, flush=True)
    if spec.get("meet"):  # after its first batch, wait for the other writer's first: the writes interleave
        mine, theirs = spec.pop("meet")
        open(mine, "w").close()
        while not os.path.exists(theirs):
            time.sleep(0.001)
    batch_no += 1
cache.close()
'''


def _start_writer(path, fp, spec) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SRC, str(path), fp, json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _rows(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT first, second, logprobs, meta FROM pairs").fetchall()
    finally:
        con.close()


def _assert_healthy(path):
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()


def test_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 5)) * 30
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    lp[0] = [0.0, -745.0, -np.finfo(float).max, -1e308, -np.inf]   # awkward values (probabilities sum to 1)
    lp[1] = [-1e-300, -np.inf, -np.inf, -np.inf, -800.0 - 2**-40]
    keys = [(f"a{i}", f"b{i}") for i in range(50)]
    path = tmp_path / "sub" / "dir" / "cache.sqlite"   # parent folders are created
    with PairCache(path) as cache:
        assert cache.put_many("fp1", "pr1", [(a, b, lp[i], {"i": i}) for i, (a, b) in enumerate(keys)]) == 50
        got = cache.get_many("fp1", "pr1", keys + [("zz", "zz")]).found
    assert set(got) == set(keys)
    for i, k in enumerate(keys):
        assert got[k].dtype == np.float64 and got[k].shape == (5,)
        assert got[k].tobytes() == lp[i].tobytes()
    # a second connection (as another process would) sees the same bits and the metadata
    with PairCache(path) as cache:
        again = cache.get_many("fp1", "pr1", keys[:3]).found
        assert again[keys[0]].tobytes() == lp[0].tobytes()
    meta = {r[0]: json.loads(r[3]) for r in _rows(path)}
    assert meta["a7"] == {"i": 7}


def test_key_parts_are_distinct(tmp_path):
    lp = value_for("x", "y")
    with PairCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("fpA", "pr", [("x", "y", lp, {})])
        assert cache.get_many("fpA", "pr", [("y", "x")]).found == {}          # order matters
        assert cache.get_many("fpB", "pr", [("x", "y")]).found == {}          # fingerprint matters
        assert cache.get_many("fpA", "other", [("x", "y")]).found == {}       # prompt matters
        assert set(cache.get_many("fpA", "pr", [("x", "y")]).found) == {("x", "y")}
        # writing the same key again is not an error and keeps one row with the first value
        cache.put_many("fpA", "pr", [("x", "y", lp, {"again": True})])
        assert cache.count() == 1 and cache.count("fpA") == 1 and cache.count("fpB") == 0


def test_get_many_many_keys(tmp_path):
    n = 20000
    keys = [(f"t{i:05d}", f"a{i % 7}") for i in range(n)]
    present = keys[::2]
    with PairCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("fp", "pr", [(a, b, value_for(a, b), {}) for a, b in present])
        got = cache.get_many("fp", "pr", keys).found
        assert cache.get_many("fp", "pr", []).found == {}
    assert set(got) == set(present)
    for a, b in present[::997]:
        np.testing.assert_array_equal(got[(a, b)], value_for(a, b))


def test_bad_input_raises_and_writes_nothing(tmp_path):
    good = value_for("a", "b")
    with PairCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(ValueError, match="NaN"):
            cache.put_many("fp", "pr", [("a", "b", good, {}), ("c", "d", np.full(5, np.nan), {})])
        with pytest.raises(ValueError, match=r"shape \(4,\)"):
            cache.put_many("fp", "pr", [("a", "b", good[:4], {})])
        with pytest.raises(ValueError, match="JSON"):
            cache.put_many("fp", "pr", [("a", "b", good, {"x": object()})])
        with pytest.raises(ValueError, match="fingerprint"):
            cache.put_many("", "pr", [("a", "b", good, {})])
        with pytest.raises(ValueError, match="second image hash"):
            cache.put_many("fp", "pr", [("a", None, good, {})])
        assert cache.count() == 0
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="is not usable .* move it aside"):
        PairCache(junk)


def test_stats(tmp_path):
    with PairCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("fp1", "p", [(f"a{i}", "b", value_for(f"a{i}", "b"), {}) for i in range(3)])
        cache.put_many("fp2", "p", [("a", "b", value_for("a", "b"), {})])
        st = cache.stats()
    assert st["pairs"] == 4 and st["bytes_on_disk"] > 0
    assert [(g["fingerprint"], g["pairs"]) for g in st["groups"]] == [("fp1", 3), ("fp2", 1)]


def test_two_processes_write_one_cache(tmp_path):
    """Both write 1500 shared pairs (in opposite orders) and 1000 of their own, at the same time."""
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    shared = [[f"s{i}", f"a{i % 5}"] for i in range(1500)]

    def batches(own_tag, order):
        keys = (shared if order > 0 else shared[::-1]) + [[f"{own_tag}{i}", "a0"] for i in range(1000)]
        random.Random(order).shuffle(keys)
        return [keys[i:i + 50] for i in range(0, len(keys), 50)]

    meet = {"A": [str(tmp_path / "A.first"), str(tmp_path / "B.first")],
            "B": [str(tmp_path / "B.first"), str(tmp_path / "A.first")]}
    procs = [_start_writer(path, "fp", {"tag": tag, "go": str(go), "batches": batches(tag, order), "meet": meet[tag]})
             for tag, order in (("A", 1), ("B", -1))]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    _assert_healthy(path)
    rows = _rows(path)
    expected = {tuple(k) for k in shared} | {(f"{t}{i}", "a0") for t in "AB" for i in range(1000)}
    assert {(a, b) for a, b, _, _ in rows} == expected and len(rows) == len(expected)
    for a, b, blob, _ in rows:
        assert np.frombuffer(blob, "<f8").tobytes() == value_for(a, b).tobytes()
    # the writes really interleaved in time (each waited after its first batch for the other's first,
    # so this holds however the two processes are scheduled)
    times = {w: sorted(json.loads(m)["t"] for *_, m in rows if json.loads(m)["writer"] == w) for w in "AB"}
    assert times["A"][0] < times["B"][-1] and times["B"][0] < times["A"][-1]


def test_many_processes_create_one_cache_at_once(tmp_path):
    path, go = tmp_path / "new.sqlite", tmp_path / "go"
    procs = [_start_writer(path, "fp", {"tag": f"w{i}", "go": str(go), "batches": [[[f"w{i}", "x"]]]})
             for i in range(6)]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    _assert_healthy(path)
    assert sorted(a for a, *_ in _rows(path)) == [f"w{i}" for i in range(6)]


def _whole_batches(path, size):
    """Batch numbers present; asserts each present batch is complete."""
    counts: dict = {}
    for *_, meta in _rows(path):
        b = json.loads(meta)["batch"]
        counts[b] = counts.get(b, 0) + 1
    assert all(n == size for n in counts.values()), counts
    return sorted(counts)


def test_sigkill_during_write_keeps_whole_batches(tmp_path):
    path, size = tmp_path / "killed.sqlite", 2000
    # 1) deterministic: the child stalls inside a transaction (1500 of 2000 rows inserted, pages
    #    spilled into the WAL) of its third batch, and is killed there.
    proc = _start_writer(path, "fp", {"tag": "k", "size": size, "spill": True, "stall_at_row": 2 * size + 1500})
    lines = [proc.stdout.readline().strip() for _ in range(6)]
    assert lines[-1] == "stalled", lines
    assert Path(f"{path}-wal").stat().st_size > 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _assert_healthy(path)
    assert _whole_batches(path, size) == [0, 1]
    # 2) kills at random moments while a writer loops; each restart appends after the last batch.
    rng = random.Random(1234)
    done_before = 2
    for _ in range(3):
        proc = _start_writer(path, "fp", {"tag": "k", "size": size, "spill": True, "first_batch": done_before})
        while not proc.stdout.readline().startswith("begin"):
            pass
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _assert_healthy(path)
        present = _whole_batches(path, size)
        assert present == list(range(len(present))), present
        done_before = len(present)
    with PairCache(path) as cache:   # the file opens as a cache and its values are right
        got = cache.get_many("fp", "p", [("k1", "7")]).found
        np.testing.assert_array_equal(got[("k1", "7")], value_for("k1", "7"))
        assert cache.integrity_check() == "ok"


def test_a_cache_file_from_before_timings_is_read_and_gains_them(tmp_path):
    path = tmp_path / "old.sqlite"
    lp = np.log(np.full(5, 0.2))
    with PairCache(path) as c:
        c.put_many("fp", "pr", [("h1", "h2", lp, {})])
    with sqlite3.connect(path) as conn:          # the file as written before the batches table existed
        conn.execute("DROP TABLE batches")
    with PairCache(path) as c:
        assert np.array_equal(c.get_many("fp", "pr", [("h1", "h2")]).found[("h1", "h2")], lp)
        assert c.history("cfg") is None
        c.put_many("fp", "pr", [("h3", "h4", lp, {})], timing=("cfg", 2, 0.5))
        c.put_many("fp", "rating:pr", [("h3", "h3", lp, {})], timing=("cfg", 1, 0.25))
        assert c.history("cfg") == {"fingerprint": "fp", "prompt": "pr", "pairs": 2, "seconds": 0.5}
        assert c.history("cfg", rating=True)["prompt"] == "rating:pr"


def test_metadata_is_stored_as_strict_json(tmp_path):
    with PairCache(tmp_path / "c.sqlite") as c:
        c.put_many("fp", "pr", [("h1", "h2", np.log(np.full(5, 0.2)), {"margin": float("nan"), "top": [np.float32(1.5)]})])
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        (text,) = conn.execute("SELECT meta FROM pairs").fetchone()

    def refuse(token):
        raise ValueError(token)
    assert json.loads(text, parse_constant=refuse) == {"margin": None, "top": [1.5]}
