"""Judging: plan the pairs a run needs, read what the cache holds, send the rest to the comparator
in batches and store each batch as it returns (a kill loses at most the batch in flight)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from adapters.base import Pair, compare_batch
from harness.core.anchors import anchor_pairs, matrix_from_logprobs
from harness.core.levels import LEVEL_WEIGHTS, N_LEVELS
from harness.data.images import ImageError, content_hash
from harness.run.cache import PairCache


@dataclass
class Judged:
    """Every planned pair's outcome: log-probs (NaN rows where failed), error, where it came from."""

    pairs: list[Pair]
    roles: list[str]
    logprobs: np.ndarray
    errors: list
    cached: np.ndarray

    def lookup(self) -> dict[Pair, np.ndarray]:
        return {p: self.logprobs[i] for i, p in enumerate(self.pairs)}

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


def cache_lookup(pairs: list[Pair], cache: PairCache | None, fp_hash: str, prompt_key: str,
                 progress: bool = False) -> tuple[dict[int, tuple[str, str]], dict[int, str], dict]:
    """The content key of each pair whose images are readable (pair index -> key), why the others
    are not, and what the cache holds for those keys (key -> log-probs)."""
    hashes, bad = hash_images({p.first for p in pairs} | {p.second for p in pairs}, progress)
    keys, unreadable = {}, {}
    for i, p in enumerate(pairs):
        reason = bad.get(p.first) or bad.get(p.second)
        if reason:
            unreadable[i] = f"image unreadable: {reason}"
        else:
            keys[i] = (hashes[p.first], hashes[p.second])
    found = cache.get_many(fp_hash, prompt_key, list(set(keys.values()))) if cache else {}
    return keys, unreadable, found


def judge(call, pairs: list[Pair], roles: list[str], *, cache: PairCache | None, fp_hash: str,
          prompt_key: str, batch_size: int, progress: bool = False, timings: dict | None = None,
          config_key: str | None = None) -> Judged:
    """Cached pairs are read; the rest go to `call` (a batch of pairs -> `Comparisons`, e.g.
    `lambda b: compare_batch(comparator, b)`) in batches, each batch stored in the cache (one
    transaction) as soon as it returns, with its seconds under `config_key` (for dry-run estimates).
    Failed pairs are recorded, never retried here."""
    t0 = time.perf_counter()
    n = len(pairs)
    lp = np.full((n, N_LEVELS), np.nan)
    errors: list = [None] * n
    cached = np.zeros(n, dtype=bool)
    keys, unreadable, found = cache_lookup(pairs, cache, fp_hash, prompt_key, progress)
    for i, reason in unreadable.items():
        errors[i] = reason
    todo: dict[tuple[str, str], list[int]] = {}
    for i in keys:
        k = keys[i]
        if k in found:
            lp[i], cached[i] = found[k], True
        else:
            todo.setdefault(k, []).append(i)  # identical content is judged once
    t_lookup = time.perf_counter()
    work = [idx[0] for idx in todo.values()]
    bar = _bar(len(work), progress, "comparing", "pair")
    for start in range(0, len(work), batch_size):
        batch = work[start:start + batch_size]
        t_batch = time.perf_counter()
        res = call([pairs[i] for i in batch])
        seconds = time.perf_counter() - t_batch
        rows = []
        for j, i in enumerate(batch):
            for same in todo[keys[i]]:
                lp[same], errors[same] = res.logprobs[j], res.errors[j]
            if res.errors[j] is None:
                rows.append((*keys[i], res.logprobs[j], res.meta[j] or {}))
        if cache and rows:
            cache.put_many(fp_hash, prompt_key, rows,
                           timing=(config_key, len(batch), seconds) if config_key else None)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    if timings is not None:
        timings["hash_and_cache_lookup"] = timings.get("hash_and_cache_lookup", 0.0) + t_lookup - t0
        timings["compare"] = timings.get("compare", 0.0) + time.perf_counter() - t_lookup
    return Judged(pairs, roles, lp, errors, cached)


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
    """Judge every ordered anchor pair with a comparator and combine both orders
    (`harness.core.anchors.matrix_from_logprobs`)."""
    pairs = anchor_pairs(images)
    result = compare_batch(comparator, pairs)
    return matrix_from_logprobs(pairs, result.logprobs, images, temperature, weights)
