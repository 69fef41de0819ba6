"""Pairs per second through vLLM (offline engine; OpenAI-compatible server at concurrency 1, 8, 32)
against the transformers adapter at its best batch size: same tiny model, same run.

    .venv/bin/python bench/vllm_throughput.py [--vllm-python .venv-vllm/bin/python] [--tests 16] [--anchors 5]

The model is the tiny Idefics3 built offline with 256-pixel images (64 image tokens each), so an
anchor-first prompt starts with ~70 tokens that every pair with that anchor shares: enough for two
full 32-token KV blocks, the unit vLLM's prefix cache reuses. Each vLLM measurement gets FRESH test
images (the anchors are shared, as in a real run), so cache hits can only come from the anchors;
the offline engine is measured with prefix caching on and off. Hit rates are vLLM's own counters
(tokens). All figures are wall-clock on whatever machine runs this; on a 2-core CPU, vLLM's
scheduler and process hops can cost more than they save for a model this small: that is reported
as measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_like_jpegs  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from adapters.base import Pair, compare_batch  # noqa: E402
from adapters.hf import HFComparator  # noqa: E402
from adapters.openai_api import OpenAIComparator  # noqa: E402
from adapters.vllm import VLLMServer, run_in_env  # noqa: E402
from harness.data.images import ImageStore  # noqa: E402
from harness.tools.tiny_vlm import build_tiny_vlm  # noqa: E402

IMAGE_SIZE = 256
BLOCK = 32  # vLLM CPU attention needs a multiple of 32
ENGINE = {"dtype": "float32", "max_model_len": 1024, "kv_cache_memory_bytes": 512 * 2**20, "enforce_eager": True,
          "block_size": BLOCK}
SERVER_CONCURRENCY = (1, 8, 32)


def make_images(folder: Path, n: int, seed: int) -> list[str]:
    return photo_like_jpegs(folder, n, width=320, height=240, seed=seed)


def anchor_first(anchors: list[str], tests: list[str]) -> list[Pair]:
    return [Pair(a, t) for t in tests for a in anchors]


def shared_prefix_tokens(comp: HFComparator, pair: Pair) -> tuple[int, int]:
    """(tokens before the second image's placeholders, prompt length): the prefix two anchor-first
    prompts with the same anchor can share, at most."""
    ids = comp.processed_inputs([(pair.first, pair.second)])["input_ids"][0].tolist()
    img = comp.model.config.image_token_id
    runs = [i for i in range(len(ids)) if ids[i] == img and (i == 0 or ids[i - 1] != img)]
    if len(runs) < 2:
        raise SystemExit("could not locate the two images in the prompt")
    return runs[1], len(ids)


def hit_text(stats: dict, n_pairs: int) -> str:
    q, h = stats["queries"], stats["hits"]
    return f"{h / q:6.1%} ({h / n_pairs:5.1f} of {q / n_pairs:5.1f} tokens/pair)" if q else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-python", default=os.environ.get("C2S_VLLM_PYTHON") or ".venv-vllm/bin/python")
    ap.add_argument("--tests", type=int, default=16, help="fresh test images per measurement")
    ap.add_argument("--anchors", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="transformers: best of this many runs per batch size")
    a = ap.parse_args()
    have_vllm = Path(a.vllm_python).is_file()
    with tempfile.TemporaryDirectory(prefix="c2s-bench-vllm-") as tmp:
        tmp = Path(tmp)
        model = str(build_tiny_vlm("idefics3", tmp / "idefics3", seed=0, image_size=IMAGE_SIZE))
        anchors = make_images(tmp, a.anchors, seed=1)
        fresh = iter(range(100, 200))
        new_pairs = lambda: anchor_first(anchors, make_images(tmp, a.tests, seed=next(fresh)))  # noqa: E731
        warm = anchor_first(anchors[:1], make_images(tmp, 2, seed=99))

        hf = HFComparator(model, batch_size=8)
        prefix, prompt_len = shared_prefix_tokens(hf, warm[0])
        pairs = new_pairs()
        n = len(pairs)
        print(f"tiny idefics3, {IMAGE_SIZE}px images, prompt {prompt_len} tokens, anchor prefix {prefix} tokens "
              f"(at most {prefix // BLOCK * BLOCK} reusable in {BLOCK}-token blocks); "
              f"{a.anchors} anchors x {a.tests} tests = {n} pairs per measurement")
        rows = []
        hf.compare(warm)
        for bs in (1, 4, 16, 32):
            hf.batch_size = bs
            best = float("inf")
            for _ in range(a.repeats):
                hf.store = ImageStore()  # decoding counted every time
                t0 = time.perf_counter()
                res = compare_batch(hf, pairs)
                best = min(best, time.perf_counter() - t0)
            assert all(e is None for e in res.errors), res.errors
            rows.append((f"transformers, batch {bs}", n, best, None))
        hf.close()
        base_name, _, base_t, _ = min(rows, key=lambda r: r[2])
        base_rate = n / base_t

        if not have_vllm:
            print(f"no vLLM interpreter at {a.vllm_python} (make vllm-env, or --vllm-python): vLLM rows skipped")
        else:
            for caching in (True, False):
                timed = new_pairs()
                out = run_in_env(a.vllm_python, model, [warm, timed],
                                 {**ENGINE, "enable_prefix_caching": caching}, timeout=900)
                b = out["batches"][1]
                assert not any(b["errors"]), b["errors"]
                rows.append((f"vLLM offline, prefix cache {'on' if caching else 'off'}", len(timed), b["seconds"],
                             b["prefix_cache"]))
            server_opts = {**ENGINE, "limit_mm_per_prompt": {"image": 2}, "enable_prefix_caching": True}
            with VLLMServer(a.vllm_python, model, options=server_opts) as server:
                for conc in SERVER_CONCURRENCY:
                    comp = OpenAIComparator(model, base_url=server.base_url, server="vllm", api_key_env=None,
                                            tokenizer=model, concurrency=conc, timeout=300)
                    compare_batch(comp, warm)
                    timed = new_pairs()
                    before = server.prefix_cache_stats()
                    t0 = time.perf_counter()
                    res = compare_batch(comp, timed)
                    dt = time.perf_counter() - t0
                    after = server.prefix_cache_stats()
                    assert all(e is None for e in res.errors), res.errors
                    rows.append((f"vLLM server, concurrency {conc}", len(timed), dt,
                                 {k: after[k] - before[k] for k in after}))
                print(f"(server ready in {server.startup_seconds:.1f} s)")

        print(f"\n{'backend':34s} {'pairs':>5s} {'wall s':>7s} {'pairs/s':>8s} {'vs best hf':>10s}  prefix-cache hits")
        for name, k, t, stats in rows:
            print(f"{name:34s} {k:5d} {t:7.3f} {k / t:8.1f} {k / t / base_rate:9.2f}x  "
                  f"{hit_text(stats, k) if stats else '-'}")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\nbaseline: {base_name} ({base_rate:.1f} pairs/s); CPU cores: {os.cpu_count()}; load average "
              f"(1, 5, 15 min) at the end: {load} (a shared machine makes every row noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
