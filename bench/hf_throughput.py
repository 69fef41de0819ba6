"""Comparisons per second of the transformers adapter vs a naive official-style loop, same run.

    python bench/hf_throughput.py [--family idefics3] [--image-size 64] [--tests 16] [--anchors 5] [--side 768]

The naive loop is what the official Compare2Score code does: one pair per forward, the test image
re-opened and re-preprocessed for every anchor (anchors kept decoded in memory), the chat prompt
rendered per pair. The adapter decodes each image once per run (a fresh image store per
measurement, so decoding is counted), runs the processor once per batch and one left-padded
forward per batch. Both read the same five level logits from the same tiny random model built
offline; the script checks that they agree before timing. Goal: >= 3x at batch 8.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_like_jpegs  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from adapters.base import Pair  # noqa: E402
from adapters.hf import HFComparator  # noqa: E402
from harness.data.images import ImageStore  # noqa: E402
from harness.core.levels import LEVELS  # noqa: E402
from harness.tools.tiny_vlm import FAMILIES, build_tiny_vlm  # noqa: E402

QUESTION = " Compared with the first image, what is your quality rating for second image?"
PREFILL = "The quality of the second image is"


def make_images(folder: Path, n: int, side: int, seed: int) -> list[str]:
    """JPEGs of a realistic size (side x 3/4 side)."""
    return photo_like_jpegs(folder, n, width=side, height=side * 3 // 4, seed=seed)


def naive_loop(model, processor, pairs: list[Pair], anchors: dict) -> np.ndarray:
    """One pair per forward; the test image re-opened and re-preprocessed for every anchor."""
    ids = [processor.tokenizer.encode(f"{PREFILL} {w}", add_special_tokens=False)[-1] for w in LEVELS]
    out = []
    for p in pairs:
        test = Image.open(p.second).convert("RGB")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " "}, {"type": "image"},
                                                 {"type": "text", "text": QUESTION}]},
                    {"role": "assistant", "content": [{"type": "text", "text": PREFILL}]}]
        text = processor.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        inputs = processor(text=[text], images=[[anchors[p.first], test]], return_tensors="pt",
                           add_special_tokens=False)
        with torch.inference_mode():
            logits = model(**inputs).logits[0, -1]
        out.append(torch.log_softmax(logits[ids].float(), dim=0).numpy())
    return np.array(out)


def best_time(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall and best CPU seconds of `repeats` runs (CPU time of this process, all threads:
    less sensitive than wall time to other jobs on a shared machine)."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="idefics3", choices=FAMILIES)
    ap.add_argument("--tests", type=int, default=16)
    ap.add_argument("--anchors", type=int, default=5)
    ap.add_argument("--side", type=int, default=768, help="width of the generated JPEGs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64, help="the tiny model's input side (a multiple of 32)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two OpenMP threads thrash, "
                         "and a tiny model's forward gains nothing from them)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = build_tiny_vlm(a.family, tmp / a.family, image_size=a.image_size)
        anchor_paths = make_images(tmp, a.anchors, a.side, seed=1)
        test_paths = make_images(tmp, a.tests, a.side, seed=2)
        pairs = [Pair(anc, t) for t in test_paths for anc in anchor_paths]
        n = len(pairs)
        comp = HFComparator(str(folder), batch_size=8)
        anchors = {p: Image.open(p).convert("RGB") for p in anchor_paths}
        naive_loop(comp.model, comp.processor, pairs[:2], anchors)  # warm-up
        t_naive, c_naive, ref = best_time(lambda: naive_loop(comp.model, comp.processor, pairs, anchors), a.repeats)
        print(f"family {a.family} (input side {a.image_size}), {a.tests} test x {a.anchors} anchor images of {a.side}x{a.side * 3 // 4} "
              f"= {n} comparisons, torch threads {torch.get_num_threads()}, best of {a.repeats}")
        print(f"{'method':26s} {'wall s':>7s} {'comp/s':>7s} {'ratio':>7s} {'CPU s':>7s} {'comp/CPU s':>10s} {'ratio':>7s}")
        print(f"{'naive official-style loop':26s} {t_naive:7.3f} {n / t_naive:7.1f} {1:6.2f}x "
              f"{c_naive:7.3f} {n / c_naive:10.1f} {1:6.2f}x")
        for bs in (1, 8, 32):
            comp.batch_size = bs

            def run():
                comp.store = ImageStore()  # decoding counted in every measurement
                return comp.compare(pairs)

            t, c, lp = best_time(run, a.repeats)
            err = float(np.abs(np.exp(lp) - np.exp(ref)).max())
            if err > 1e-4:
                raise SystemExit(f"adapter and naive loop disagree (max prob diff {err:.2e}) at batch {bs}")
            print(f"{'adapter, batch ' + str(bs):26s} {t:7.3f} {n / t:7.1f} {t_naive / t:6.2f}x "
                  f"{c:7.3f} {n / c:10.1f} {c_naive / c:6.2f}x")
        comp.close()


if __name__ == "__main__":
    main()
