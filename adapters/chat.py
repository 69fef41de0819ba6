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

from prompts import PromptTemplate, RenderedPrompt, load_prompt

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


def chat_renderer(processor):
    """What renders a model's chat template: its processor, or its tokenizer where the processor keeps none
    (BLIP-2 and InstructBLIP processors take no chat template: theirs lives in tokenizer_config.json)."""
    return processor if getattr(processor, "chat_template", None) else processor.tokenizer


def chat_template_kwargs(prompt: RenderedPrompt) -> dict:
    """How to render the messages: continue the prefill, or open a fresh answer when there is none."""
    if prompt.prefill:
        return {"continue_final_message": True, "add_generation_prompt": False}
    return {"continue_final_message": False, "add_generation_prompt": True}


#: how a pair reaches the model: two images in one prompt, or one side-by-side image (harness/data/composite.py)
PAIRINGS = ("two-image", "composite")


def checked_prompt(name: str, n_images: int, where: str, *,
                   prefill: bool = False, use: str | None = None) -> tuple[PromptTemplate, RenderedPrompt]:
    """A wording by name or `.j2` path and its rendering, checked for its use: `n_images` image slots
    (2: a comparison, 1: a rating) and, for backends that read the level word right after the
    prefilled answer, a prefill. Cheap (no model): adapters call it when they check their options."""
    template = load_prompt(name)
    rendered = template.render()
    if rendered.n_images != n_images:
        use = use or ("a comparison" if n_images == 2 else "a rating")
        raise ValueError(f"{where}: prompt {template.name!r} shows {rendered.n_images} image(s); "
                         f"{use} needs {n_images}")
    if prefill and not rendered.prefill:
        raise ValueError(f"{where}: prompt {template.name!r} has no prefill: this backend reads the level "
                         "word right after the prefilled answer")
    return template, rendered


def checked_pair_prompt(name: str, pairing: str, where: str, *,
                        prefill: bool = False) -> tuple[PromptTemplate, RenderedPrompt]:
    """The pair wording under `pairing` (PAIRINGS), checked like `checked_prompt`: a composite shows ONE
    image (the pair side by side), and its wording defaults to the bundled `composite` one (the default
    `official` wording places two images, which a composite cannot fill)."""
    if pairing == "composite":
        return checked_prompt("composite" if name == "official" else name, 1, where, prefill=prefill,
                              use="a composite comparison")
    return checked_prompt(name, 2, where, prefill=prefill)
