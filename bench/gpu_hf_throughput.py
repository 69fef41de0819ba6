"""GPU throughput of the transformers adapter on a full-size architecture with random weights.

    python bench/gpu_hf_throughput.py                     # Qwen2.5-VL-7B shapes, bf16, CUDA
    python bench/gpu_hf_throughput.py --size tiny --device cpu --dtype float32 --pairs 16   # CPU proof

Random weights are enough to time an architecture: the work per comparison (two images through
the vision tower, ~600 tokens through the decoder, five logits read) does not depend on the
values. The tokenizer and chat template are the tiny offline ones (no hub), with the model's
full vocabulary size. Prints comparisons/s at each batch size, the ratio against batch 1 measured
in the same run, peak GPU memory, and the largest probability difference between batch sizes.
Sized to finish in well under 10 minutes on one H100.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_like_jpegs  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import transformers as T  # noqa: E402
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from adapters.base import Pair  # noqa: E402
from adapters.hf import HFComparator  # noqa: E402
from harness.tools.tiny_vlm import build_tiny_vlm  # noqa: E402

#: Qwen2.5-VL-7B-Instruct's published shapes
QWEN25_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, head_dim=128, vocab_size=152064, max_position_embeddings=128000,
                         rms_norm_eps=1e-6, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
QWEN25_VL_7B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)


def build(size: str, folder: Path, device: str, dtype: torch.dtype):
    """The tiny offline processor, and a model of the asked size on the device with random weights."""
    tiny = build_tiny_vlm("qwen2_5_vl", folder)
    processor = AutoProcessor.from_pretrained(tiny)
    config = AutoConfig.from_pretrained(tiny)
    if size == "7b":
        ids = {k: getattr(config, k) for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                               "vision_end_token_id")}
        text = dict(QWEN25_VL_7B_TEXT, pad_token_id=config.get_text_config().pad_token_id,
                    eos_token_id=config.get_text_config().eos_token_id)
        config = T.Qwen2_5_VLConfig(text_config=text, vision_config=QWEN25_VL_7B_VISION, **ids)
        processor = type(processor)(image_processor=T.Qwen2VLImageProcessor(), tokenizer=processor.tokenizer,
                                    video_processor=processor.video_processor,
                                    chat_template=processor.chat_template)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.eval(), processor


def photos(folder: Path, n: int, seed: int) -> list[str]:
    return photo_like_jpegs(folder, n, width=640, height=480, seed=seed)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["7b", "tiny"], default="7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--pairs", type=int, default=64, help="comparisons per timed run (tests x 4 anchors)")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--max-pixels", type=int, default=448 * 448, help="images downscaled to at most this")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: skipped (`--size tiny --device cpu --dtype float32` checks the script on CPU)")
        return
    t_start = time.perf_counter()
    batch_sizes = [int(b) for b in a.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model, processor = build(a.size, tmp / "model", a.device, getattr(torch, a.dtype))
        n_params = sum(p.numel() for p in model.parameters())
        anchors = photos(tmp, 4, seed=1)
        tests = photos(tmp, max(1, a.pairs // 4), seed=2)
        pairs = [Pair(anc, t) for t in tests for anc in anchors][: a.pairs]
        comp = HFComparator(model, processor=processor, device=a.device, dtype=a.dtype, max_pixels=a.max_pixels)
        n_tokens = comp.processed_inputs([(pairs[0].first, pairs[0].second)])["input_ids"].shape[1]
        name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
        print(f"{a.size} Qwen2.5-VL architecture, {n_params / 1e9:.2f} B parameters, {a.dtype}, {name}; "
              f"{len(pairs)} comparisons of 640x480 JPEGs (max_pixels {a.max_pixels}), {n_tokens} tokens per "
              f"prompt; built in {time.perf_counter() - t_start:.1f} s")
        results = {}
        for bs in batch_sizes:
            comp.batch_size = bs
            comp.compare(pairs[:bs])  # warm-up (kernels, allocator)
            if a.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            sync(a.device)
            t0 = time.perf_counter()
            lp = comp.compare(pairs)
            sync(a.device)
            dt = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else float("nan")
            results[bs] = (dt, lp)
            base = results[batch_sizes[0]][0]
            diff = float(np.abs(np.exp(lp) - np.exp(results[batch_sizes[0]][1])).max())
            print(f"batch {bs:3d}: {dt:7.3f} s, {len(pairs) / dt:8.2f} comparisons/s, {base / dt:5.2f}x vs batch "
                  f"{batch_sizes[0]}, peak GPU memory {peak:.1f} GiB, max prob diff vs batch {batch_sizes[0]} "
                  f"{diff:.2e}, finite {bool(np.isfinite(lp).all())}")
        comp.close()
    print(f"total {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
