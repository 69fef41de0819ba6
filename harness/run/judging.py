"""Judging: plan the pairs a run needs, read what the cache holds, send the rest to the comparator
in batches and store each batch as it returns (a kill loses at most the batch in flight). A batch
that fails as a whole is split down to single pairs, so one bad item costs only itself."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, fields, replace
from typing import Iterator

import numpy as np

from adapters.base import Comparisons, Pair, compare_batch
from harness.core.anchors import anchor_pairs, matrix_from_logprobs
from harness.core.levels import LEVEL_WEIGHTS, N_LEVELS
from harness.core.secrets import scrub_all
from harness.data.images import ImageError, content_hash
from harness.run.cache import Hits, PairCache, meta_shift, row_problem


@dataclass
class Judged:
    """Every planned pair's outcome: log-probs (NaN rows where failed), error, where it came from."""

    pairs: list[Pair]
    roles: list[str]
    logprobs: np.ndarray
    errors: list
    cached: np.ndarray
    #: planned pairs whose cached row was invalid (`harness.run.cache.stored_row_problems`): judged again
    cache_invalid: int = 0
    #: per pair, the log-sum-exp the backend subtracted from its raw level logits (meta "logsumexp"),
    #: NaN where it is unknown (an API's log-probs, a failed pair, an older run): raw = logprobs + shift
    shift: np.ndarray | None = None

    def __post_init__(self):
        if self.shift is None:
            self.shift = np.full(len(self.pairs), np.nan)

    def has_raw(self) -> np.ndarray:
        """Per pair, whether its raw level logits are known (a finite shift on a judged row)."""
        return np.isfinite(self.shift) & np.isfinite(self.logprobs).any(axis=1)

    def rows(self, raw: bool = False) -> np.ndarray:
        """The level rows scoring runs on: the log-probs, or with `raw` the raw level logits where they
        are known (log-probs + shift; the log-probs elsewhere). Only the float16 arithmetic tells them apart."""
        if not raw:
            return self.logprobs
        known = self.has_raw()
        # backends read their logits from float32 (or narrower) tensors: rounding the float64 sum back to
        # float32 gives those numbers exactly, so its last-bit error cannot tip a float16 rounding tie
        raw = (self.logprobs + np.where(known, self.shift, 0.0)[:, None]).astype(np.float32).astype(np.float64)
        return np.where(known[:, None], raw, self.logprobs)

    def lookup(self, raw: bool = False) -> dict[Pair, np.ndarray]:
        rows = self.rows(raw)
        return {p: rows[i] for i, p in enumerate(self.pairs)}

    def error_of(self) -> dict[Pair, str]:
        return {p: e for p, e in zip(self.pairs, self.errors) if e is not None}


def plan_pairs(tests: list[str], anchors: list[str], *, order: str, anchor_block: bool) -> tuple[list[Pair], list[str]]:
    """tests x anchors with the anchor shown first (+ swapped if order == "both"), then the anchor block."""
    pairs, roles = [], []
    for x in tests:
        for a in anchors:
            pairs.append(Pair(a, x)); roles.append("test")
            if order == "both":
                pairs.append(Pair(x, a)); roles.append("test")
    if anchor_block:
        block = anchor_pairs(anchors)
        pairs += block
        roles += ["anchor"] * len(block)
    return pairs, roles


def hash_images(paths, progress: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Content hashes (cache keys) and, per unreadable image, why."""
    hashes, errors = {}, {}
    for p in _progress(sorted(set(paths)), progress, "hashing", "img"):
        try:
            hashes[p] = content_hash(p)
        except (OSError, ImageError) as exc:
            errors[p] = f"{type(exc).__name__}: {exc}"
    return hashes, errors


@dataclass
class Lookup:
    """Per pair index, its content key (readable images) or why not; the images' hashes; the cache's hits."""

    keys: dict[int, tuple[str, str]]
    unreadable: dict[int, str]
    hashes: dict[str, str]
    hits: Hits


def cache_lookup(pairs: list[Pair], cache: PairCache | None, fp_hash: str, prompt_key: str,
                 progress: bool = False) -> Lookup:
    """The content key of each pair whose images are readable, why the others are not, and what the
    cache holds for those keys (valid rows, and keys whose row is invalid)."""
    hashes, bad = hash_images({p.first for p in pairs} | {p.second for p in pairs}, progress)
    keys, unreadable = {}, {}
    for i, p in enumerate(pairs):
        reason = bad.get(p.first) or bad.get(p.second)
        if reason:
            unreadable[i] = f"image unreadable: {reason}"
        else:
            keys[i] = (hashes[p.first], hashes[p.second])
    hits = cache.get_many(fp_hash, prompt_key, list(set(keys.values()))) if cache else Hits({}, set())
    return Lookup(keys, unreadable, hashes, hits)


def judge(call, pairs: list[Pair], roles: list[str], *, cache: PairCache | None, fp_hash: str,
          prompt_key: str, batch_size: int, progress: bool = False, timings: dict | None = None,
          config_key: str | None = None, run_batches=None) -> Judged:
    """Cached pairs are read; the rest go to `call` (a batch of pairs -> `Comparisons`, e.g.
    `lambda b: compare_batch(comparator, b)`) in batches (`calls`: a batch that fails as a whole is
    split down to single pairs), each successful call stored in the cache (one transaction) as soon as
    it returns, with its seconds under `config_key` (for dry-run estimates). A pair whose image
    changed while it was judged is failed, not stored (its verdict may be of either content). Failed
    pairs are recorded, never retried here; a cached row that is invalid is judged again and replaced.
    `run_batches(call, batches)` runs the batches (`harness.run.executors.Session.run_batches`: one after
    the other, or several at once on a cluster) and yields (batch number, positions, result, seconds)."""
    t0 = time.perf_counter()
    n = len(pairs)
    lp = np.full((n, N_LEVELS), np.nan)
    shift = np.full(n, np.nan)
    errors: list = [None] * n
    cached = np.zeros(n, dtype=bool)
    look = cache_lookup(pairs, cache, fp_hash, prompt_key, progress)
    for i, reason in look.unreadable.items():
        errors[i] = reason
    todo: dict[tuple[str, str], list[int]] = {}
    for i, k in look.keys.items():
        if k in look.hits.found:
            lp[i], cached[i] = look.hits.found[k], True
            shift[i] = look.hits.shifts.get(k, np.nan)
        else:
            todo.setdefault(k, []).append(i)  # identical content is judged once
    n_invalid = sum(len(todo[k]) for k in look.hits.invalid if k in todo)
    if n_invalid:
        warnings.warn(f"{len(look.hits.invalid)} row(s) of the pair cache {cache.path} are invalid (NaN, +inf, "
                      f"probabilities that do not sum to 1 or a damaged value): {n_invalid} pair(s) are judged "
                      "again and their rows replaced", stacklevel=2)
    t_lookup = time.perf_counter()
    work = [idx[0] for idx in todo.values()]
    bar = _bar(len(work), progress, "comparing", "pair")
    try:  # the bar is closed whatever stops the loop, so an abort message starts on its own line
        batches = [work[start:start + batch_size] for start in range(0, len(work), batch_size)]
        for b, part, res, seconds in (run_batches or in_order)(call, [[pairs[i] for i in bt] for bt in batches]):
            idx = [batches[b][j] for j in part]
            check = _ChangeCheck(look.hashes)
            rows = []
            for j, i in enumerate(idx):
                reason = res.errors[j] or check.pair(pairs[i])
                if reason is None and cache:
                    problem = row_problem(res.logprobs[j], res.meta[j])
                    reason = problem and f"cannot be cached: {problem}"
                for same in todo[look.keys[i]]:
                    errors[same] = reason or check.pair(pairs[same])
                    lp[same] = np.nan if errors[same] else res.logprobs[j]
                    shift[same] = np.nan if errors[same] else meta_shift(res.meta[j])
                if not reason:
                    rows.append((*look.keys[i], res.logprobs[j], res.meta[j]))
            if cache and rows:
                whole = res.batch_error is None and config_key is not None  # failed halves are not timed
                cache.put_many(fp_hash, prompt_key, rows, timing=(config_key, len(idx), seconds) if whole else None,
                               replace=look.hits.invalid)
            if bar:
                bar.update(len(idx))
    finally:
        if bar:
            bar.close()
    if timings is not None:
        timings["hash_and_cache_lookup"] = timings.get("hash_and_cache_lookup", 0.0) + t_lookup - t0
        timings["compare"] = timings.get("compare", 0.0) + time.perf_counter() - t_lookup
    return Judged(pairs, roles, lp, errors, cached, n_invalid, shift)


def scrubbed(res: Comparisons) -> Comparisons:
    """A batch's outcome without any remembered secret in its reasons or metadata, before the pair cache
    or a run folder sees them: a server or a plug-in may quote a key in an error (harness.core.secrets)."""
    return replace(res, **{f.name: scrub_all(getattr(res, f.name)) for f in fields(res) if f.name != "logprobs"})


def in_order(call, batches: list[list]) -> Iterator[tuple[int, list[int], Comparisons, float]]:
    """Each batch through `calls`, one after the other: (batch number, positions in it, result, seconds)."""
    for b, batch in enumerate(batches):
        for part, res, seconds in calls(call, batch):
            yield b, part, res, seconds


def calls(call, items: list) -> Iterator[tuple[list[int], Comparisons, float]]:
    """Run `call` on `items` and yield (positions in `items`, its result, seconds) per call whose result
    stands: a call that fails as a whole (`Comparisons.batch_error`: the comparator raised or answered
    no readable batch) is retried on each half, down to single items, so one item that makes the
    backend fail costs only that item, with its own reason. Per-item errors are answers, not retried."""
    stack = [list(range(len(items)))]
    while stack:
        part = stack.pop()
        t = time.perf_counter()
        res = call([items[j] for j in part])
        seconds = time.perf_counter() - t
        if res.batch_error is not None and len(part) > 1:
            mid = len(part) // 2
            stack += [part[mid:], part[:mid]]  # the first half next
            continue
        yield part, res, seconds


class _ChangeCheck:
    """Whether a pair's images still have the content hash they were judged under (one look per image
    and call). `content_hash` is memoised by (path, mtime, size), so any write that changes the file's
    time or size is seen (docs/architecture.md, "The pair cache's checks")."""

    def __init__(self, before: dict[str, str]):
        self.before, self.seen = before, {}

    def pair(self, pair: Pair) -> str | None:
        for path in (pair.first, pair.second):
            if path not in self.seen:
                try:
                    self.seen[path] = content_hash(path) == self.before[path]
                except (OSError, ImageError):
                    self.seen[path] = False
            if not self.seen[path]:
                return f"image changed during the run: {path}"
        return None


def _bar(total, progress, desc, unit):
    if not progress or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)


def _progress(items, progress, desc, unit):
    if not progress or len(items) < 200:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def prompt_key(fp: dict, rating: bool = False) -> str:
    """The prompt part of the cache key: the template hash an adapter reports (fingerprint()["prompt"]
    ["sha256"] by convention), else a fixed tag (the fingerprint hash covers everything anyway)."""
    entry = fp.get("rating_prompt" if rating else "prompt")
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    return ("rating:" if rating else "") + (sha or "no-prompt")


def matrix_from_comparator(comparator, images, temperature: float = 1.0,
                           weights=LEVEL_WEIGHTS) -> np.ndarray:
    """Judge every ordered anchor pair with a comparator (one batch, split where it fails as a whole)
    and combine both orders (`harness.core.anchors.matrix_from_logprobs`)."""
    pairs = anchor_pairs(images)
    lp = np.full((len(pairs), N_LEVELS), np.nan)
    for part, res, _ in calls(lambda batch: compare_batch(comparator, batch), pairs):
        lp[part] = res.logprobs
    return matrix_from_logprobs(pairs, lp, images, temperature, weights)
