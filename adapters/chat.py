"""The conversation shown to a chat model: one piece for every backend.

Why: transformers (`processor.apply_chat_template`), vLLM (`LLM.chat`) and the OpenAI-compatible
API all take the same structured messages: a user turn whose content is a list of text and image
parts, then an assistant turn holding the prefill, rendered with `continue_final_message=True,
add_generation_prompt=False` so the model's next token is the level word. Backends differ only in
how an image part is spelled, so the caller passes the image parts:

    conversation(load_prompt("official").render(), [IMAGE_PART, IMAGE_PART])        # transformers
    conversation(prompt, [image_url_part(url_a), image_url_part(url_b)])              # vLLM / API

Every content is a list of parts (never a bare string): real chat templates such as SmolVLM's
index `message['content'][0]['type']`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from prompts import RenderedPrompt

#: an image part for transformers processors, which receive the pixels separately
IMAGE_PART: dict = {"type": "image"}


def image_url_part(url: str) -> dict:
    """An OpenAI-style image part (`https://...` or a `data:image/...;base64,` URL)."""
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def conversation(prompt: RenderedPrompt, image_parts: Sequence[dict]) -> list[dict]:
    """Messages for one item: `image_parts[k]` goes where the template placed image(k+1)."""
    if len(image_parts) != prompt.n_images:
        raise ValueError(f"the prompt places {prompt.n_images} image(s) but {len(image_parts)} were given")
    content = [image_parts[s] if isinstance(s, int) else text_part(s) for s in prompt.segments]
    messages = [{"role": "user", "content": content}]
    if prompt.prefill:
        messages.append({"role": "assistant", "content": [text_part(prompt.prefill)]})
    return messages


def chat_template_kwargs(prompt: RenderedPrompt) -> dict:
    """How to render the messages: continue the prefill, or open a fresh answer when there is none."""
    if prompt.prefill:
        return {"continue_final_message": True, "add_generation_prompt": False}
    return {"continue_final_message": False, "add_generation_prompt": True}


# --- image order: which image is shown first, and how verdicts come back to the pair's orientation ---

#: `anchor_first`: as given (a runner's Pair is (anchor, test)); `test_first`: swapped, verdict
#: reversed back; `both`: the two orders averaged in probability space (symmetrised).
ORDERS = ("anchor_first", "test_first", "both")


def plan_orders(pairs: Sequence, order: str) -> list[tuple[int, bool, tuple[str, str]]]:
    """What to show: (pair index, swapped?, (first image, second image)) per forward item."""
    if order not in ORDERS:
        raise ValueError(f"unknown image order {order!r}; choose one of {', '.join(ORDERS)}")
    plan = []
    for i, p in enumerate(pairs):
        if order in ("anchor_first", "both"):
            plan.append((i, False, (p.first, p.second)))
        if order in ("test_first", "both"):
            plan.append((i, True, (p.second, p.first)))
    return plan


def fold_orders(n: int, plan, logprobs: np.ndarray, errors: Sequence) -> tuple[np.ndarray, list]:
    """Per-pair level log-probs in the pair's own orientation from per-item results.

    A swapped item's verdict is on the pair's FIRST image, so its level order is reversed
    (superior <-> inferior). A pair fails when any of its items failed.
    """
    total = np.zeros((n, logprobs.shape[1]))
    count = np.zeros(n)
    out_errors: list = [None] * n
    for (i, swapped, _), lp, err in zip(plan, logprobs, errors):
        if err is not None:
            out_errors[i] = out_errors[i] or err
            continue
        total[i] += np.exp(lp[::-1] if swapped else lp)
        count[i] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(total / count[:, None])
    for i, e in enumerate(out_errors):
        if e is not None:
            out[i] = np.nan
    return out, out_errors
