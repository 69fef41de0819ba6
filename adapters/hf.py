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
import inspect
import os
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np

from adapters.base import Comparator, Comparisons, Pair
from adapters.chat import (IMAGE_PART, PAIRINGS, chat_renderer, chat_template_kwargs, checked_pair_prompt,
                           checked_prompt, conversation)
from adapters.fingerprint import build_fingerprint, model_identity
from adapters.hf_quirks import PIL_ONLY_PROCESSORS
from adapters.level_tokens import Strategy, resolve_level_tokens
from harness.core.levels import LEVELS, N_LEVELS, RATING_LEVELS
from harness.core.options import option
from harness.data.composite import pairing_record

#: images kept ready for the processor (a run's anchors stay resident)
_READY_IMAGES = 64
#: batches prepared ahead of the forward, each on its own helper thread with its own processor copy
_PREFETCH = 2


class _Prompted:
    """One wording bound to one processor: the rendered chat text and its level-token ids."""

    def __init__(self, processor, wording: tuple, words: Sequence[str], strategy: str, composite: bool = False):
        self.template, rendered = wording  # as checked_prompt returns it
        self.composite = composite  # a pair is shown as one side-by-side image (harness/data/composite.py)
        messages = conversation(rendered, [IMAGE_PART] * rendered.n_images)
        self.text = chat_renderer(processor).apply_chat_template(messages, tokenize=False,
                                                                 **chat_template_kwargs(rendered))
        self.tokens = resolve_level_tokens(processor.tokenizer, words, prefill=rendered.prefill, strategy=strategy)

    def fingerprint(self) -> dict:
        return {**self.template.fingerprint(), "rendered": self.text}


class HFComparator(Comparator):
    """Pairs -> (n, 5) level log-probs with a local transformers model (see the module docstring).

    `model` is a folder or hub id. Python-only arguments (not options): a model already in memory
    as `model` together with its `processor=` (benchmarks, notebooks; its dtype must match `dtype`),
    and `image_store=` (default: the process-wide store).
    """

    backend = "hf"
    model_help = "a model folder or hub id, e.g. hf:/models/Qwen2.5-VL-7B-Instruct"
    can_rate = True

    @dataclass(frozen=True)
    class Options:
        device: str = option("cpu", "torch device: cpu, cuda, cuda:1, mps")
        dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "weights and compute dtype")
        batch_size: int = option(8, "pairs per forward", minimum=1)
        prompt: str = option("official", "pair wording: a bundled prompt name or a .j2 file (pairing=composite: "
                                          "'official' means the bundled 'composite' wording)")
        pairing: Literal[PAIRINGS] = option("two-image", "two images in one prompt, or 'composite': both side by "
                                                        "side in one image, for single-image models (a different "
                                                        "protocol, docs/models.md)")
        rating_prompt: str = option("rating", "single-image wording (mode rating)")
        level_strategy: Strategy = option("single", "a level word that is not one token: refuse ('single') "
                                                    "or read its first sub-token ('first_subtoken', official)")
        max_pixels: Optional[int] = option(None, "downscale larger images to this many pixels (aspect kept); "
                                                 "None leaves sizing to the processor", minimum=1)
        trust_remote_code: bool = option(False, "run the checkpoint's own modelling code")

    @classmethod
    def validate_options(cls, options, where: str) -> None:
        checked_pair_prompt(options.prompt, options.pairing, where)
        checked_prompt(options.rating_prompt, 1, where)

    def __init__(self, model, *, processor=None, image_store=None, **options):
        super().__init__(model, **options)
        o = self.options
        in_memory = not isinstance(model, (str, os.PathLike))
        if in_memory and processor is None:
            raise ValueError("hf: a model object needs its processor= (e.g. AutoProcessor of the same checkpoint)")
        import torch
        import transformers
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch_dtype = getattr(torch, o.dtype)
        if in_memory and model.dtype != torch_dtype:
            raise ValueError(f"hf: the model object is {model.dtype}, but dtype={o.dtype!r} was asked for")
        if in_memory:
            self.model_id = model.config._name_or_path or type(model).__name__
        self.batch_size = o.batch_size
        self.processor = processor or AutoProcessor.from_pretrained(self.model_id,
                                                                    trust_remote_code=o.trust_remote_code)
        self.processor.tokenizer.padding_side = "left"  # the last position is every row's next token
        where = f"model {self.spec_of(self.model_id)}"
        self.pair_prompt = _Prompted(self.processor, checked_pair_prompt(o.prompt, o.pairing, where), LEVELS,
                                     o.level_strategy, composite=o.pairing == "composite")
        self._rating_wording = checked_prompt(o.rating_prompt, 1, where)
        self._rating: _Prompted | None = None  # its level tokens are resolved at the first rate
        if not in_memory:
            model = AutoModelForImageTextToText.from_pretrained(
                self.model_id, dtype=torch_dtype, trust_remote_code=o.trust_remote_code)
        self.model = model.to(o.device).eval()
        self._keep_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        if image_store is None:
            from harness.data.images import default_store

            image_store = default_store()
        self.store = image_store
        self._ready: OrderedDict = OrderedDict()
        self._ready_lock = threading.Lock()
        self._spare_processors: queue.SimpleQueue = queue.SimpleQueue()
        image_processor = getattr(self.processor, "image_processor", None)
        self._tensor_input = (getattr(image_processor, "backend", None) == "torchvision"
                              and type(self.processor).__name__ not in PIL_ONLY_PROCESSORS)
        self._versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    # --- public interface ---

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """Per-pair log-probs, each pair shown as given; a pair whose image cannot be loaded is a NaN
        row with the reason. Metadata: `level_mass`, the probability the model put on the five level
        tokens; `logsumexp`, what was subtracted from their raw logits (raw = log-probs + it)."""
        return self._score([(p.first, p.second) for p in pairs], self.pair_prompt)

    def rate_detailed(self, images: Sequence) -> Comparisons:
        """Single-image baseline: per-image log-probs over `RATING_LEVELS` (bad .. excellent)."""
        if self._rating is None:
            self._rating = _Prompted(self.processor, self._rating_wording, RATING_LEVELS, self.options.level_strategy)
        return self._score([(os.fspath(p),) for p in images], self._rating)

    def fingerprint(self) -> dict:
        o = self.options
        return build_fingerprint(
            backend=self.backend,
            model=model_identity(self.model_id, revision=getattr(self.model.config, "_commit_hash", None),
                                 cls=type(self.model).__name__),
            dtype=o.dtype,
            prompt=self.pair_prompt.fingerprint(),
            level_tokens=self.pair_prompt.tokens.as_dict(),
            # the template decides the rating numbers; its level tokens are resolved on first use
            rating_prompt={**self._rating_wording[0].fingerprint(), "level_strategy": o.level_strategy},
            preprocessing={"max_pixels": o.max_pixels, "loader": "harness.data.images",
                           "image_processor": type(getattr(self.processor, "image_processor", None)).__name__,
                           **pairing_record(o.pairing)},
            versions=self._versions,
            extra={"processor_class": type(self.processor).__name__, "device_type": str(o.device).split(":")[0]})

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
        images = [[self._composite(item)] if prompt.composite else [self._image(p) for p in item] for item in items]
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
        img = self._fit(src)
        with self._ready_lock:
            self._ready[path] = (src, img)
            if len(self._ready) > _READY_IMAGES:
                self._ready.popitem(last=False)
        return img

    def _fit(self, img):
        """A PIL image as the processor takes it: downscaled to `max_pixels` if asked, a tensor where the
        image processor is torchvision-backed."""
        max_pixels = self.options.max_pixels
        if max_pixels is not None and img.width * img.height > max_pixels:
            from PIL import Image

            scale = (max_pixels / (img.width * img.height)) ** 0.5
            size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
            img = img.resize(size, Image.Resampling.BICUBIC)
        if self._tensor_input:
            import torch

            img = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
        return img

    def _composite(self, item: tuple):
        """The pair (first, second) as one side-by-side image; `max_pixels` bounds the whole composite."""
        from harness.data.composite import side_by_side

        return self._fit(side_by_side(self.store.get(item[0]), self.store.get(item[1])))

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

    def _score(self, items: list[tuple], prompt: _Prompted) -> Comparisons:
        """Level log-probs (n, 5), per-item errors, and per item the level tokens' full-vocabulary mass
        and the log-sum-exp of their raw logits (`level_rows`).

        The next `_PREFETCH` batches are loaded and processed on helper threads while the model
        runs the current one, so CPU preprocessing overlaps the forward (on a GPU it mostly
        disappears) and uses the cores the forward leaves idle.
        """
        from concurrent.futures import ThreadPoolExecutor

        n = len(items)
        lp = np.full((n, N_LEVELS), np.nan)
        meta: list = [{"level_mass": None} for _ in range(n)]
        errors: list = [None] * n
        chunks = [range(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]
        if not chunks:
            return Comparisons(lp, errors, meta)
        with ThreadPoolExecutor(max_workers=_PREFETCH, thread_name_prefix="hf-preprocess") as pool:
            jobs = [pool.submit(self._prepare, items, c, prompt) for c in chunks[:_PREFETCH]]
            for k in range(len(chunks)):
                ok, failed, inputs = jobs[k].result()
                if k + _PREFETCH < len(chunks):
                    jobs.append(pool.submit(self._prepare, items, chunks[k + _PREFETCH], prompt))
                for i, err in failed.items():
                    errors[i] = err
                if ok:
                    level_lp, level_mass, lse = self._forward(inputs, prompt)
                    lp[ok] = level_lp
                    for i, m, shift in zip(ok, level_mass, lse):
                        meta[i] = {"level_mass": m, "logsumexp": shift}
        return Comparisons(lp, errors, meta)

    def _forward(self, inputs, prompt: _Prompted):
        import torch

        if self.model is None:
            raise RuntimeError("this HFComparator was closed")
        inputs = inputs.to(self.options.device)
        inputs.pop("labels", None)  # PaliGemma's processor adds training labels: no loss is wanted here
        for key in [k for k in inputs if k.startswith("pixel_values")]:  # Video-LLaVA: pixel_values_images
            if inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(self.model.dtype)
        kw = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.inference_mode():
            logits = self.model(**inputs, **kw).logits[:, -1, :]
        return level_rows(logits, prompt.tokens.ids)


def level_rows(logits, ids):
    """(level log-probs (n, 5), full-vocabulary mass of the five, their log-sum-exp) from one position's
    logits (n, vocab). In float64 from the model's own numbers (float16 ones are exact in it), so that
    log-probs + log-sum-exp rounds back to the raw level logits bit for bit: the official float16
    arithmetic runs on those (docs/method.md, item 7)."""
    import torch

    raw = logits[:, ids].double()
    lse = torch.logsumexp(raw, dim=-1)
    mass = (lse - torch.logsumexp(logits.float(), dim=-1).double()).exp()
    return (raw - lse[:, None]).cpu().numpy(), mass.cpu().tolist(), lse.cpu().tolist()
