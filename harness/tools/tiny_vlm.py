"""Tiny randomly initialised vision-language models, built fully offline.

Why: the tests and the offline demo must exercise real architectures (their processors, chat
templates, `from_pretrained` loading and forward passes) without a model hub. Each family module
(harness/tools/families/<model_type>.py) builds its own processor, a chat template in the family's
documented shape and a 2-layer model with head dim 32, on a tokenizer trained on the fly
(harness/tools/families/_tiny.py); this module saves it.

    build_tiny_vlm("idefics3", "/tmp/tiny-idefics3")  # -> Path, loadable with AutoProcessor /
                                                      #    AutoModelForImageTextToText
"""
from __future__ import annotations

from pathlib import Path

from harness.tools.families import FAMILIES as _ALL, tiny_builder

#: The families with a tiny build, by key (transformers' model_type): one module each in harness/tools/families.
FAMILIES: tuple[str, ...] = tuple(f.tiny for f in _ALL if f.tiny)


def build_tiny_vlm(family: str, out_dir, *, seed: int = 0, image_size: int = 64) -> Path:
    """Build a tiny random `family` model + processor and `save_pretrained` both into `out_dir`.

    Deterministic for a given seed. `image_size` (a multiple of 32) is the side the processor
    resizes images to; the model's vision tower is sized to match.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    if image_size <= 0 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        proc, model = tiny_builder(family)(image_size)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
