"""One bad item costs only itself: a batch that fails as a whole is split down to single pairs (every
success kept and cached, each failure with its own reason), a comparator's SystemExit fails its call,
not the run, and -inf log-probs (probability 0 for a level) are judgements that score like any other."""
from __future__ import annotations

import csv
import json
import math
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Comparisons, Pair, compare_batch, normalize_logprobs, rate_batch
from harness.core.scaling import hard_preference, preference
from harness.data.demo_data import build_demo_benchmark
from harness.run.cache import PairCache
from harness.run.judging import calls, judge, matrix_from_comparator
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, plan_run, rescore, run

#: every call a test comparator gets: the number of items it was sent
CALLS: list[int] = []


def raw_row(first, second) -> np.ndarray:
    """Deterministic logits per ordered pair of file names (names survive tmp folders)."""
    z = [zlib.crc32(f"{Path(first).name}|{Path(second).name}|{k}".encode()) for k in range(5)]
    return np.array(z, dtype=np.float64) / 2.0**32 * 6.0


def answer(pairs, rows, failing, mode):
    """What a broken backend does with a batch that shows a failing image."""
    n = len(pairs)
    if not failing:
        return rows
    if mode == "raise":
        raise ValueError(f"{n} pair(s) sent; the backend cannot read {failing[0]}")
    if mode == "exit0":
        raise SystemExit(0)
    if mode == "exit3":
        raise SystemExit(3)
    if mode == "oom":
        raise MemoryError(f"{n} pair(s) did not fit")
    if mode == "ragged":  # one malformed item in the response: the batch cannot be read
        return [list(r) for r in rows[:-1]] + [list(rows[-1][:4])]
    if mode == "short":  # an answer that lost an item
        return rows[:-1]
    raise AssertionError(mode)


class Poisoned:
    """A user comparator that fails any batch showing an image whose name contains `poison` (a backend
    that cannot take one file), in the way `mode` says."""

    def __init__(self, model=None, poison="bad", mode="raise"):
        self.poison, self.mode = poison, mode

    def _failing(self, paths):
        return [p for p in paths if self.poison in Path(p).name]

    def compare(self, pairs):
        CALLS.append(len(pairs))
        rows = np.array([raw_row(p.first, p.second) for p in pairs]).reshape(-1, 5)
        return answer(pairs, rows, self._failing([x for p in pairs for x in (p.first, p.second)]), self.mode)

    def rate(self, images):
        CALLS.append(len(images))
        rows = np.array([raw_row(x, x) for x in images]).reshape(-1, 5)
        return answer(images, rows, self._failing(images), self.mode)

    def fingerprint(self):
        return {"backend": "poisoned", "poison": self.poison, "mode": self.mode}


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()


def images(folder: Path, names) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        (folder / name).write_bytes(name.encode() * 3)  # distinct content per name: distinct cache keys
        out.append(str(folder / name))
    return out


def judge_with(comp, pairs, cache, batch_size=8, rating=False, **kw):
    call = (lambda b: rate_batch(comp, [p.first for p in b])) if rating else (lambda b: compare_batch(comp, b))
    return judge(call, pairs, ["test"] * len(pairs), cache=cache, fp_hash="fp", prompt_key="pr",
                 batch_size=batch_size, **kw)


def stored(path, keys_of) -> dict:
    with PairCache(path) as c:
        return c.get_many("fp", "pr", keys_of).found


def content_keys(judged):
    from harness.data.images import content_hash
    return [(content_hash(p.first), content_hash(p.second)) for p in judged.pairs]


@pytest.mark.parametrize("mode, own_reason", [
    ("raise", r"^ValueError: 1 pair\(s\) sent; the backend cannot read .*bad"),
    ("exit0", r"^SystemExit: 0$"),
    ("exit3", r"^SystemExit: 3$"),
    ("oom", r"^MemoryError: 1 pair\(s\) did not fit$"),
    ("ragged", r"^comparator returned shape \(1, 4\)"),
    ("short", r"^comparator returned shape \(0, 5\)"),
])
@pytest.mark.parametrize("names", [
    ["t0", "t1", "t2", "t3", "t4", "bad5", "t6", "t7"],                 # one bad item mid-batch
    ["bad0", "t1", "t2", "t3", "t4", "t5", "t6", "bad7", "t8", "t9"],   # first and last, batches of 8 and 2
    ["t0", "bad1", "bad2", "t3", "t4"],                                 # neighbours, an odd batch
])
def test_a_failing_batch_is_split_and_only_the_bad_pairs_fail(tmp_path, mode, own_reason, names):
    anchor, *tests = images(tmp_path / "img", ["anchor", *names])
    pairs = [Pair(anchor, x) for x in tests]
    cache = tmp_path / "c.sqlite"
    with PairCache(cache) as c:
        judged = judge_with(Poisoned(mode=mode), pairs, c)
    bad = ["bad" in Path(p.second).name for p in pairs]
    for p, is_bad, err, lp in zip(pairs, bad, judged.errors, judged.logprobs):
        if is_bad:
            assert err is not None and np.isnan(lp).all()
            assert __import__("re").search(own_reason, err), err   # its own reason, not the batch's
        else:
            assert err is None
            np.testing.assert_allclose(lp, normalize_logprobs(raw_row(p.first, p.second)[None])[0], atol=1e-12)
    held = stored(cache, content_keys(judged))
    assert len(held) == sum(not b for b in bad) == len(set(held))  # every success cached, no failure
    keys = content_keys(judged)
    assert all((k in held) != b for k, b in zip(keys, bad))


def test_the_split_leaves_good_halves_whole_and_times_only_whole_calls(tmp_path):
    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "t1", "t2", "t3", "t4", "bad5", "t6", "t7"])
    with PairCache(tmp_path / "c.sqlite") as c:
        judge_with(Poisoned(), [Pair(anchor, x) for x in tests], c, config_key="cfg")
    # 8 fails; 0-3 stands; 4-7 fails; 4-5 fails; 4 stands; 5 fails alone; 6-7 stands
    assert CALLS == [8, 4, 4, 2, 1, 1, 2]
    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        timed = [r[0] for r in con.execute("SELECT pairs FROM batches ORDER BY rowid")]
    assert timed == [4, 1, 2]   # only calls that succeeded as a whole: seconds per pair stay meaningful


def test_every_item_failing_costs_each_its_own_call_once(tmp_path):
    anchor, *tests = images(tmp_path / "img", ["anchor", "bad0", "bad1", "bad2", "bad3", "bad4"])
    judged = judge_with(Poisoned(), [Pair(anchor, x) for x in tests], None, batch_size=5)
    assert len(CALLS) == 2 * 5 - 1 and CALLS.count(1) == 5
    assert all(e.startswith("ValueError: 1 pair(s) sent") for e in judged.errors)


def test_per_item_errors_are_answers_and_never_retried(tmp_path):
    class Detailed(Poisoned):
        def compare_detailed(self, pairs):
            CALLS.append(len(pairs))
            errors = ["HTTP 400: image rejected" if "bad" in Path(p.second).name else None for p in pairs]
            return Comparisons(np.array([raw_row(p.first, p.second) for p in pairs]), errors)

    anchor, *tests = images(tmp_path / "img", ["anchor", "bad0", "t1", "t2", "bad3", "t4", "t5"])
    with PairCache(tmp_path / "c.sqlite") as c:
        judged = judge_with(Detailed(), [Pair(anchor, x) for x in tests], c, batch_size=4, config_key="cfg")
        assert c.count() == 4 and c.history("cfg")["pairs"] == 6   # both calls whole: both timed
    assert CALLS == [4, 2]
    assert judged.errors == ["HTTP 400: image rejected", None, None, "HTTP 400: image rejected", None, None]


def test_an_item_the_cache_cannot_store_fails_alone(tmp_path):
    class OddMeta(Poisoned):
        def compare_detailed(self, pairs):
            meta = [{"raw": {1, 2}} if "bad" in Path(p.second).name else {"ok": 1} for p in pairs]
            return Comparisons(np.array([raw_row(p.first, p.second) for p in pairs]), [], meta)

    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "bad1", "t2"])
    with PairCache(tmp_path / "c.sqlite") as c:
        judged = judge_with(OddMeta(), [Pair(anchor, x) for x in tests], c)
        assert c.count() == 2
    assert judged.errors[0] is None and judged.errors[2] is None
    assert "metadata is not JSON-serialisable" in judged.errors[1]


def test_rating_batches_are_split_too(tmp_path):
    names = images(tmp_path / "img", ["r0", "bad1", "r2", "r3"])
    with PairCache(tmp_path / "c.sqlite") as c:
        judged = judge_with(Poisoned(), [Pair(x, x) for x in names], c, rating=True)
        assert c.count() == 3
    assert [e is None for e in judged.errors] == [True, False, True, True]


def test_keyboard_interrupt_stops_judging_and_keeps_what_was_stored(tmp_path):
    class Interrupted(Poisoned):
        def compare(self, pairs):
            if any("stop" in Path(p.second).name for p in pairs):
                raise KeyboardInterrupt
            return super().compare(pairs)

    anchor, *tests = images(tmp_path / "img", ["anchor", "t0", "t1", "stop2", "t3"])
    with PairCache(tmp_path / "c.sqlite") as c:
        with pytest.raises(KeyboardInterrupt):
            judge_with(Interrupted(), [Pair(anchor, x) for x in tests], c, batch_size=2)
        assert c.count() == 2   # the first batch, stored before the interrupted one


def test_the_anchor_matrix_of_a_comparator_survives_one_bad_anchor(tmp_path):
    anchors = images(tmp_path / "img", ["a0", "a1", "bad2"])
    C = matrix_from_comparator(Poisoned(), anchors)
    assert np.isfinite(C[0, 1]) and np.isfinite(C[1, 0]) and np.isnan(C[0, 2]) and np.isnan(C[2, 1])


def test_calls_yields_each_item_once_whatever_the_failures():
    for n in range(1, 12):
        for bad in ({0}, {n - 1}, set(range(0, n, 3)), set(range(n))):
            seen = []

            def call(batch, bad=bad):
                fail = any(i in bad for i in batch)
                return Comparisons(np.zeros((len(batch), 5)), ["x" if fail else None] * len(batch),
                                   batch_error="x" if fail else None)

            for part, res, _ in calls(call, list(range(n))):
                seen += part
                assert res.batch_error is None or (len(part) == 1 and part[0] in bad)
            assert sorted(seen) == list(range(n))


# --- end to end: the runner with a py: comparator that exits for one image -------------------------------

@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    ds = build_demo_benchmark(tmp_path_factory.mktemp("bench"), size=48, sources=["camera"])
    return ds.root / "manifest.json"


def config(bench, tmp_path, **kw) -> RunConfig:
    args = dict(datasets=[DatasetSpec("bench", source=str(bench))], anchors=AnchorSpec("select", dataset="bench"),
                out_dir=str(tmp_path / "runs"), cache=str(tmp_path / "c.sqlite"), reports=False, batch_size=8)
    args.update(kw)
    return RunConfig(**args)


def test_a_comparator_exiting_for_one_image_costs_that_image_only(bench, tmp_path):
    cfg = config(bench, tmp_path, model="py:tests.test_judging_faults:Poisoned", model_options={"mode": "exit0"})
    plan = plan_run(cfg)
    victim = Path(next(x for x in plan.tests if x not in plan.anchors.images)).name
    cfg.model_options["poison"] = victim
    (run_dir,) = run(cfg, progress=False)
    m = json.loads((run_dir / "manifest.json").read_text())
    with open(run_dir / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    failed = [r for r in rows if r["status"] != "ok"]
    assert [Path(r["image"]).name for r in failed] == [victim] and "SystemExit: 0" in failed[0]["error"]
    assert m["counts"]["images_failed"] == 1 and m["counts"]["pairs_failed"] == len(m["anchors"]["images"])
    # the next run judges only the failed pairs again: one batch of them, split down to each
    CALLS.clear()
    run(cfg, progress=False)
    n = len(m["anchors"]["images"])
    assert CALLS[0] == n and CALLS.count(1) == n and len(CALLS) == 2 * n - 1


# --- -inf: probability 0 for a level -------------------------------------------------------------------

W = [0.0, 0.25, 0.5, 0.75, 1.0]
NEG = -math.inf
PATTERNS = [
    [NEG, NEG, 0.0, -1.0, -2.0],
    [-0.1, NEG, NEG, NEG, NEG],
    [NEG, -3.0, NEG, -0.2, NEG],
    [-2.0, -1.0, -0.5, -1.0, NEG],
    [NEG, NEG, NEG, NEG, -5.0],
    [-1.5, -1.5, NEG, -1.5, -1.5],   # tied arg-max around a hole
]


def independent_preference(row, t):
    num = sum(w * math.exp(v / t) for w, v in zip(W, row) if v != NEG)
    return num / sum(math.exp(v / t) for v in row if v != NEG)


def independent_count(row):
    top = max(row)
    verdict = [0.0, 0.0, 0.5, 1.0, 1.0]
    wins = [verdict[k] for k, v in enumerate(row) if v == top]
    return sum(wins) / len(wins)


@pytest.mark.parametrize("t", [0.5, 1.0, 100.0])
def test_preference_with_minus_inf_matches_an_independent_computation(t):
    got = preference(np.array(PATTERNS), t)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, [independent_preference(r, t) for r in PATTERNS], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(hard_preference(np.array(PATTERNS)), [independent_count(r) for r in PATTERNS])


class Holes:
    """Log-probs with levels of probability 0 (-inf, or `floor` in its place) chosen per pair."""

    def __init__(self, model=None, floor=None):
        self.floor = floor

    def compare(self, pairs):
        out = []
        for p in pairs:
            row = raw_row(p.first, p.second)
            h = zlib.crc32(f"{Path(p.first).name}|{Path(p.second).name}".encode())
            for k in range(5):
                if (h >> k) & 1 and (h >> 5) % 5 != k:   # a hole, never all five
                    row[k] = NEG if self.floor is None else self.floor
            out.append(row)
        return np.array(out)

    def fingerprint(self):
        return {"backend": "holes", "floor": self.floor}


@pytest.mark.parametrize("profile, mode", [("paper", "soft"), ("official", "soft"), ("paper", "count")])
def test_runs_with_minus_inf_score_as_with_probability_exactly_zero(bench, tmp_path, profile, mode):
    def scores_of(floor, where):
        cfg = config(bench, tmp_path / where, model="py:tests.test_judging_faults:Holes", profiles=[profile],
                     modes=[mode], model_options={} if floor is None else {"floor": floor},
                     cache=str(tmp_path / "c.sqlite"))
        (run_dir,) = run(cfg, progress=False)
        with open(run_dir / "scores.csv") as f:
            rows = list(csv.DictReader(f))
        counts = json.loads((run_dir / "manifest.json").read_text())["counts"]
        return run_dir, {r["image"]: float(r["score"]) for r in rows}, [r["status"] for r in rows], counts

    inf_dir, with_inf, status, counts = scores_of(None, "inf")
    # exp(-1e300 / T) is exactly 0 as well: the same numbers, computed without any -inf
    _, with_floor, _, _ = scores_of(-1e300, "floor")
    assert set(status) == {"ok"} and counts["pairs_failed"] == 0
    assert all(math.isfinite(v) for v in with_inf.values()) and len(set(with_inf.values())) > 5
    assert with_inf == with_floor
    with open(inf_dir / "comparisons.csv") as f:
        assert any("-inf" in row for row in f)           # recorded as judged
    _, again, _, counts = scores_of(None, "inf-again")   # all from the cache: -inf stored exactly
    assert counts["pairs_cached"] == counts["pairs_total"] and again == with_inf
    again_dir = rescore(inf_dir)
    with open(again_dir / "scores.csv") as f:
        assert {r["image"]: float(r["score"]) for r in csv.DictReader(f)} == with_inf
