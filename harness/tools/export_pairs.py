"""Comparative instruction data for fine-tuning, as Compare2Score was trained (docs/method.md, "Training data").

Pairs are drawn within one dataset (MOS of different datasets are never compared), each labelled by
Eqn. 2 from both images' MOS and std (`levels.level_from_mos`, the one implementation the metrics use
too), and worded with a prompt template's question (default: the paper's training wording) and the
paper's answer "The quality of the second image is <level> to/than the first". Why a tool and not part
of a run: it needs no model, only a dataset with MOS and std.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.jsontext import strict_json
from harness.core.levels import LEVELS, level_from_mos
from harness.data.datasets import Dataset
from prompts import load_prompt

FORMATS = ("conversation", "jsonl")
#: the paper's answer says "inferior to / similar to / superior to" but "worse than / better than"
PREPOSITION = {"inferior": "to", "worse": "than", "similar": "to", "better": "than", "superior": "to"}
#: mPLUG-Owl2's image placeholder (LLaVA uses "<image>": --image-token)
DEFAULT_IMAGE_TOKEN = "<|image|>"
#: 180,000 training pairs over about 18,900 training images of the six datasets: about 9.5 per image
DEFAULT_PAIRS_PER_IMAGE = 10


def sample_pairs(n_images: int, per_image: int, seed: int) -> np.ndarray:
    """(n_images * per_image, 2) index pairs: every image is the FIRST image of `per_image` pairs whose
    second images are distinct others drawn uniformly (no image with itself), in a shuffled order;
    the same seed gives the same pairs (numpy default_rng)."""
    if n_images < 2:
        raise ValueError(f"pairs need at least 2 images with MOS, got {n_images}")
    if not 1 <= per_image <= n_images - 1:
        raise ValueError(f"--pairs-per-image must be between 1 and {n_images - 1} (the number of other images), "
                         f"got {per_image}")
    rng = np.random.default_rng(seed)
    offsets = np.stack([rng.choice(n_images - 1, size=per_image, replace=False) + 1 for _ in range(n_images)])
    first = np.repeat(np.arange(n_images), per_image)
    pairs = np.stack([first, (first + offsets.ravel()) % n_images], axis=1)
    return pairs[rng.permutation(len(pairs))]


def quality_inputs(ds: Dataset, std_fallback: float | None) -> tuple[np.ndarray, np.ndarray, int]:
    """MOS oriented so that higher is better (DMOS negated), std, and how many std values the fallback
    supplied. A record without MOS, or without std and no fallback, is an error naming the fix."""
    missing_mos = [r.path for r in ds.records if r.mos is None]
    if missing_mos:
        raise ValueError(f"dataset {ds.name!r}: {len(missing_mos)} image(s) have no MOS (e.g. {missing_mos[0]}); "
                         "training labels need MOS for every image")
    no_std = sum(r.std is None for r in ds.records)
    if no_std and std_fallback is None:
        raise ValueError(f"dataset {ds.name!r}: {no_std} of {len(ds.records)} image(s) have no std, which Eqn. 2 "
                         "needs; add a std column to the manifest, or give --std-fallback VALUE (one std, in MOS "
                         "units, for every image that lacks one)")
    if std_fallback is not None and not (np.isfinite(std_fallback) and std_fallback >= 0):
        raise ValueError(f"--std-fallback must be a finite number >= 0, got {std_fallback}")
    sign = 1.0 if ds.higher_is_better else -1.0
    mos = sign * np.array([r.mos for r in ds.records], dtype=np.float64)
    std = np.array([std_fallback if r.std is None else r.std for r in ds.records], dtype=np.float64)
    return mos, std, no_std


def relative_paths(ds: Dataset, image_root: str | None) -> list[str]:
    """Each image's path relative to `image_root` (default: the dataset's root), '/'-separated; an image
    outside that root is an error, since a training loader joins the path to its own image folder."""
    root = Path(os.path.abspath(image_root if image_root is not None else ds.root))
    out = []
    for rec in ds.records:
        path = Path(os.path.abspath(ds.abspath(rec)))
        if not path.is_relative_to(root):
            raise ValueError(f"image {path} is not under --image-root {root}; give a folder that holds every image")
        out.append(path.relative_to(root).as_posix())
    return out


@dataclass
class Export:
    records: list[dict]
    counts: Counter
    std_filled: int


def build_pairs(ds: Dataset, *, per_image: int = DEFAULT_PAIRS_PER_IMAGE, seed: int = 0, prompt: str = "paper",
                image_token: str = DEFAULT_IMAGE_TOKEN, image_root: str | None = None,
                std_fallback: float | None = None) -> Export:
    """The training records: id, the two image paths (first, second), the conversation (question, answer),
    and the label's inputs (level, MOS and std of both images, as the dataset gives them)."""
    mos, std, filled = quality_inputs(ds, std_fallback)
    paths = relative_paths(ds, image_root)
    rendered = load_prompt(prompt).render()
    if rendered.n_images != 2:
        raise ValueError(f"--prompt {prompt!r} shows {rendered.n_images} image(s); a comparison needs 2")
    question = "".join(image_token if isinstance(s, int) else s for s in rendered.segments)
    pairs = sample_pairs(len(ds.records), per_image, seed)
    levels = level_from_mos(mos[pairs[:, 0]], std[pairs[:, 0]], mos[pairs[:, 1]], std[pairs[:, 1]])
    records = []
    for k, ((i, j), lv) in enumerate(zip(pairs, levels)):
        word = LEVELS[lv]
        a, b = ds.records[i], ds.records[j]
        records.append({
            "id": f"{ds.name}-{k}",
            "image": [paths[i], paths[j]],
            "conversations": [{"from": "human", "value": question},
                              {"from": "gpt", "value": f"{rendered.prefill} {word} {PREPOSITION[word]} the first"}],
            "level": word,
            "mos": [a.mos, b.mos],
            "std": [float(std[i]), float(std[j])],
        })
    return Export(records, Counter(LEVELS[v] for v in levels), filled)


def write_export(export: Export, out, fmt: str) -> None:
    """One JSON array (the LLaVA / mPLUG-Owl2 training file) or JSON Lines (one record per line)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    records = strict_json(export.records)
    if fmt == "jsonl":
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    else:
        text = json.dumps(records, indent=1, allow_nan=False) + "\n"
    Path(out).write_text(text, encoding="utf-8")


def level_summary(export: Export) -> str:
    """The level distribution, one line per level (the paper's corpus is skewed by each dataset's std scale)."""
    total = sum(export.counts.values())
    return "\n".join(f"  {lv:9s} {export.counts[lv]:7d}  {100 * export.counts[lv] / total:5.1f} %" for lv in LEVELS)
