"""Any image-text-to-text model through transformers (model spec `hf:PATH_OR_ID`).

Why this adapter exists: lmms-eval has no log-likelihood for several of these families and the
official Compare2Score code runs one pair per forward, re-decoding the test image for every
anchor. Here the prompt is rendered once with the model's own chat template (the assistant turn
prefilled, `continue_final_message`), each image is decoded once per run (the shared image store),
the processor runs once per batch, and one left-padded forward per batch reads the five level
logits at the last position, the next batches being preprocessed meanwhile on helper threads.
Temperature is NOT applied here (the scaling module does it).
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import os
import queue
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from adapters.base import Comparisons, Pair
from adapters.chat import IMAGE_PART, chat_template_kwargs, conversation, fold_orders, plan_orders
from adapters.level_tokens import resolve_level_tokens
from harness.core.levels import LEVELS, N_LEVELS, RATING_LEVELS
from prompts import load_prompt

DTYPES = ("float32", "bfloat16", "float16")
#: images kept ready for the processor (a run's anchors stay resident)
_READY_IMAGES = 64
#: batches prepared ahead of the forward, each on its own helper thread with its own processor copy
_PREFETCH = 2


def _torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def checkpoint_identity(model: str) -> dict:
    """What identifies a local checkpoint cheaply: the config's hash and each weight file's size and
    modification time (a checkpoint re-saved into the same folder keeps its sizes, not its times)."""
    path = Path(model)
    if not path.is_dir():
        return {}
    cfg = path / "config.json"
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {"config_sha256": hashlib.sha256(cfg.read_bytes()).hexdigest() if cfg.is_file() else None,
            "weight_files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


class _Prompted:
    """One wording bound to one processor: the rendered chat text and its level-token ids."""

    def __init__(self, processor, name: str, words: Sequence[str], n_images: int, strategy: str):
        self.template = load_prompt(name)
        rendered = self.template.render()
        if rendered.n_images != n_images:
            raise ValueError(f"prompt {name!r} shows {rendered.n_images} image(s); this use needs {n_images}")
        messages = conversation(rendered, [IMAGE_PART] * n_images)
        self.text = processor.apply_chat_template(messages, tokenize=False, **chat_template_kwargs(rendered))
        self.tokens = resolve_level_tokens(processor.tokenizer, words, prefill=rendered.prefill, strategy=strategy)

    def fingerprint(self) -> dict:
        return {**self.template.fingerprint(), "rendered": self.text, "level_tokens": self.tokens.as_dict()}


class HFComparator:
    """Pairs -> (n, 5) level log-probs with a local transformers model (see the module docstring).

    `order`: "anchor_first" (the pair as given; a runner's Pair is (anchor, test)), "test_first"
    (swapped, verdict reversed back) or "both" (both orders averaged in probability space).
    `max_pixels`: images larger than this are downscaled (aspect kept) before the processor;
    None leaves sizing to the processor. `model` is a folder or hub id, or a model already in
    memory together with its `processor=` (benchmarks, notebooks); its dtype must match `dtype`.
    """

    backend = "hf"

    def __init__(self, model, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 8,
                 prompt: str = "official", rating_prompt: str = "rating", order: str = "anchor_first",
                 level_strategy: str = "single", max_pixels: int | None = None,
                 trust_remote_code: bool = False, image_store=None, processor=None):
        if model is None or (isinstance(model, str) and not model):
            raise ValueError("hf: give a model folder or hub id, e.g. hf:/models/Qwen2.5-VL-7B-Instruct")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_pixels is not None and int(max_pixels) < 1:
            raise ValueError(f"max_pixels must be a positive pixel count or None, got {max_pixels}")
        plan_orders([], order)  # validates the option before any model work
        torch_dtype = _torch_dtype(dtype)
        in_memory = not isinstance(model, (str, os.PathLike))
        if in_memory and processor is None:
            raise ValueError("hf: a model object needs its processor= (e.g. AutoProcessor of the same checkpoint)")
        if in_memory and model.dtype != torch_dtype:
            raise ValueError(f"hf: the model object is {model.dtype}, but dtype={dtype!r} was asked for")
        import torch
        import transformers
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_id = (model.config._name_or_path or type(model).__name__) if in_memory else os.fspath(model)
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)
        self.order, self.level_strategy = order, level_strategy
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.processor = processor or AutoProcessor.from_pretrained(self.model_id, trust_remote_code=trust_remote_code)
        self.processor.tokenizer.padding_side = "left"  # the last position is every row's next token
        self.pair_prompt = _Prompted(self.processor, prompt, LEVELS, 2, level_strategy)
        self._rating_name = rating_prompt
        self._rating_template = load_prompt(rating_prompt)  # an unknown name fails here, not mid-run
        self._rating: _Prompted | None = None
        if not in_memory:
            model = AutoModelForImageTextToText.from_pretrained(
                self.model_id, dtype=torch_dtype, trust_remote_code=trust_remote_code)
        self.model = model.to(device).eval()
        self._keep_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        if image_store is None:
            from harness.data.images import default_store

            image_store = default_store()
        self.store = image_store
        self._ready: OrderedDict = OrderedDict()
        self._ready_lock = threading.Lock()
        self._spare_processors: queue.SimpleQueue = queue.SimpleQueue()
        image_processor = getattr(self.processor, "image_processor", None)
        self._tensor_input = getattr(image_processor, "backend", None) == "torchvision"
        self._versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    # --- public interface ---

    def compare(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.compare_detailed(pairs).logprobs

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """Per-pair log-probs; a pair whose image cannot be loaded is a NaN row with the reason."""
        pairs = list(pairs)
        plan = plan_orders(pairs, self.order)
        lp, errors, mass = self._score([item for _, _, item in plan], self.pair_prompt)
        out, out_errors = fold_orders(len(pairs), plan, lp, errors)
        meta = [{} for _ in pairs]
        for (i, swapped, _), m in zip(plan, mass):  # probability the model put on the 5 level tokens
            meta[i]["level_mass_swapped" if swapped else "level_mass"] = m
        return Comparisons(out, out_errors, meta)

    def rate(self, images: Sequence) -> np.ndarray:
        """Single-image baseline: (n, 5) log-probs over `RATING_LEVELS` (bad .. excellent)."""
        return self.rate_detailed(images).logprobs

    def rate_detailed(self, images: Sequence) -> Comparisons:
        if self._rating is None:
            self._rating = _Prompted(self.processor, self._rating_name, RATING_LEVELS, 1, self.level_strategy)
        lp, errors, mass = self._score([(os.fspath(p),) for p in images], self._rating)
        return Comparisons(lp, errors, [{"level_mass": m} for m in mass])

    def fingerprint(self) -> dict:
        return {
            "backend": self.backend,
            "model": self.model_id,
            "model_class": type(self.model).__name__,
            "revision": getattr(self.model.config, "_commit_hash", None),
            **checkpoint_identity(self.model_id),
            "processor_class": type(self.processor).__name__,
            "dtype": self.dtype,
            "device_type": str(self.device).split(":")[0],
            "prompt": self.pair_prompt.fingerprint(),
            # the template decides the rating numbers; its level tokens are resolved on first use
            "rating_prompt": {**self._rating_template.fingerprint(), "level_strategy": self.level_strategy},
            "order": self.order,
            "preprocessing": {"max_pixels": self.max_pixels, "loader": "harness.data.images",
                              "image_processor": type(getattr(self.processor, "image_processor", None)).__name__},
            "versions": self._versions,
        }

    def close(self) -> None:
        """Free the model (and GPU memory) now rather than at garbage collection."""
        import gc

        import torch

        self.model = None
        self._ready.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- internals ---

    def processed_inputs(self, items: Sequence[tuple], prompt: _Prompted | None = None):
        """The processor's batch for `items` (tuples of image paths, in the order shown)."""
        prompt = prompt or self.pair_prompt
        images = [[self._image(p) for p in item] for item in items]
        # helper threads never share a processor: tokenizers keep per-call padding state
        try:
            processor = self._spare_processors.get_nowait()
        except queue.Empty:
            processor = copy.deepcopy(self.processor)
        try:
            return processor(text=[prompt.text] * len(items), images=images, padding=True,
                             add_special_tokens=False, return_tensors="pt")
        finally:
            self._spare_processors.put(processor)

    def _image(self, path: str):
        """One image as the processor will take it, ready for every pair it appears in.

        The store's decoded image, downscaled to `max_pixels` if asked, and for torchvision-backed
        image processors a CHW uint8 tensor: bit-identical there to passing the PIL image, and
        2-3x cheaper per use. Kept while the store still holds the same decoded image.
        """
        src = self.store.get(path)
        with self._ready_lock:
            hit = self._ready.get(path)
            if hit is not None and hit[0] is src:
                self._ready.move_to_end(path)
                return hit[1]
        img = src
        if self.max_pixels is not None and img.width * img.height > self.max_pixels:
            from PIL import Image

            scale = (self.max_pixels / (img.width * img.height)) ** 0.5
            size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
            img = img.resize(size, Image.Resampling.BICUBIC)
        if self._tensor_input:
            import torch

            img = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
        with self._ready_lock:
            self._ready[path] = (src, img)
            if len(self._ready) > _READY_IMAGES:
                self._ready.popitem(last=False)
        return img

    def _prepare(self, items: list[tuple], positions, prompt: _Prompted):
        """Load and process one batch: (positions that loaded, {position: error}, processor output)."""
        ok, failed = [], {}
        for i in positions:
            try:
                for path in items[i]:
                    self._image(path)
            except (ValueError, OSError) as exc:  # harness.data.images.ImageError is a ValueError
                failed[i] = f"{type(exc).__name__}: {exc}"
                continue
            ok.append(i)
        return ok, failed, (self.processed_inputs([items[i] for i in ok], prompt) if ok else None)

    def _score(self, items: list[tuple], prompt: _Prompted):
        """Level log-probs (n, 5), per-item errors and the level tokens' full-vocabulary mass.

        The next `_PREFETCH` batches are loaded and processed on helper threads while the model
        runs the current one, so CPU preprocessing overlaps the forward (on a GPU it mostly
        disappears) and uses the cores the forward leaves idle.
        """
        from concurrent.futures import ThreadPoolExecutor

        n = len(items)
        lp = np.full((n, N_LEVELS), np.nan)
        mass: list = [None] * n
        errors: list = [None] * n
        chunks = [range(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]
        if not chunks:
            return lp, errors, mass
        with ThreadPoolExecutor(max_workers=_PREFETCH, thread_name_prefix="hf-preprocess") as pool:
            jobs = [pool.submit(self._prepare, items, c, prompt) for c in chunks[:_PREFETCH]]
            for k in range(len(chunks)):
                ok, failed, inputs = jobs[k].result()
                if k + _PREFETCH < len(chunks):
                    jobs.append(pool.submit(self._prepare, items, chunks[k + _PREFETCH], prompt))
                for i, err in failed.items():
                    errors[i] = err
                if ok:
                    level_lp, level_mass = self._forward(inputs, prompt)
                    lp[ok] = level_lp
                    for i, m in zip(ok, level_mass):
                        mass[i] = m
        return lp, errors, mass

    def _forward(self, inputs, prompt: _Prompted):
        import torch

        if self.model is None:
            raise RuntimeError("this HFComparator was closed")
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        kw = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.inference_mode():
            logits = self.model(**inputs, **kw).logits[:, -1, :].float()
        full = torch.log_softmax(logits, dim=-1)[:, prompt.tokens.ids]
        level_lp = torch.log_softmax(full, dim=-1)
        return level_lp.cpu().numpy().astype(np.float64), torch.logsumexp(full, dim=-1).exp().cpu().tolist()
