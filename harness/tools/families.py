"""The model families the harness knows: how to name one in a spec, which options to set, and which
tiny random model (harness.tools.tiny_vlm) stands for it offline. Shown by `c2s models`.

Why a table here and not in the adapters: a family is advice (recommended dtype, image size, context
length) across backends, while the adapters declare what each option means and check it. Every option a
family recommends is a declared option of its backend (tests/test_families.py), so the two cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    example: str                          # a model id or checkpoint folder of the family
    specs: tuple[str, ...]                # the spec forms that run it
    settings: tuple[tuple[str, str], ...]  # (backend, recommended -o options, as typed)
    note: str                             # image size and context: why those settings
    tiny: str | None = None               # the harness.tools.tiny_vlm family that stands for it offline


_LOCAL = ("hf:PATH_OR_ID", "vllm:PATH_OR_ID", "openai:MODEL (a vLLM server: -o server=vllm)")


def _qwen_pixels(tokens: int) -> str:
    """Qwen-VL processors count 28x28 pixels per image token."""
    return str(tokens * 28 * 28)


FAMILIES: tuple[Family, ...] = (
    Family("Qwen2-VL", "Qwen/Qwen2-VL-7B-Instruct", _LOCAL,
           (("hf", f"-o dtype=bfloat16 -o max_pixels={_qwen_pixels(1280)}"),
            ("vllm", f"-o dtype=bfloat16 -o max_model_len=8192 "
                     f"-o engine_options='{{mm_processor_kwargs: {{max_pixels: {_qwen_pixels(1280)}}}}}'")),
           "native resolution: one token per 28x28 pixels, so cap the pixels (1280 tokens per image here); "
           "two images and the prompt then fit in 8192 tokens", tiny="qwen2_vl"),
    Family("Qwen2.5-VL", "Qwen/Qwen2.5-VL-7B-Instruct", _LOCAL,
           (("hf", f"-o dtype=bfloat16 -o max_pixels={_qwen_pixels(1280)}"),
            ("vllm", f"-o dtype=bfloat16 -o max_model_len=8192 "
                     f"-o engine_options='{{mm_processor_kwargs: {{max_pixels: {_qwen_pixels(1280)}}}}}'")),
           "as Qwen2-VL: 28x28 pixels per token, cap the pixels", tiny="qwen2_5_vl"),
    Family("LLaVA (1.5)", "llava-hf/llava-1.5-7b-hf", _LOCAL,
           (("hf", "-o dtype=float16"), ("vllm", "-o dtype=float16 -o max_model_len=4096")),
           "every image is resized to 336x336 (576 tokens); the context is 4096 tokens", tiny="llava"),
    Family("LLaVA-OneVision", "llava-hf/llava-onevision-qwen2-7b-ov-hf", _LOCAL,
           (("hf", "-o dtype=bfloat16 -o max_pixels=1000000"),
            ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
           "AnyRes: 384x384 tiles of 729 tokens each, up to ~7,300 tokens per large image; downscaling "
           "large images keeps pairs short", tiny="llava_onevision"),
    Family("Idefics3 / SmolVLM", "HuggingFaceTB/SmolVLM-Instruct", _LOCAL,
           (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
           "images are split into 384x384 tiles (longest side 1536) plus a global view", tiny="idefics3"),
    Family("InternVL", "OpenGVLab/InternVL3-2B-hf", _LOCAL,
           (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
           "448x448 tiles of 256 tokens; use the transformers-format checkpoints (names ending in -hf)",
           tiny="internvl"),
    Family("Gemma 3", "google/gemma-3-4b-it", _LOCAL,
           (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
           "every image becomes 896x896 (256 tokens); bfloat16, not float16 (activations overflow)",
           tiny="gemma3"),
    Family("Compare2Score (the released model)", "q-future/Compare2Score", ("compare2score[:PATH]",),
           (("compare2score", "-o dtype=float16 -o device=cuda"),),
           "mPLUG-Owl2 on transformers 4.37 in its own environment: run `c2s setup compare2score` first; "
           "images padded to a square and resized to 448x448"),
    Family("OpenAI-compatible server", "gpt-4o, or any model a vLLM server serves", ("openai:MODEL",),
           (("openai", "-o server=vllm -o base_url=http://127.0.0.1:8000/v1 -o api_key_env=null"),
            ("openai", "-o server=generic -o api_key_env=OPENAI_API_KEY")),
           "server=vllm reads the exact level log-probs; server=generic the top-20 first-token ones (use the "
           "paper profile there: levels outside the top 20 count as 0)"),
)


def tiny_family(name: str) -> str:
    """The tiny_vlm key for a family named as the user likes ("Qwen2.5-VL", "qwen2_5_vl", "smolvlm")."""
    from harness.tools.tiny_vlm import FAMILIES as TINY

    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower().replace(".", "_").replace("-", "_") if ch.isalnum() or ch == "_")

    names = {norm(t): t for t in TINY}
    for f in FAMILIES:
        if f.tiny:
            names.update({norm(part.split("(")[0].strip()): f.tiny for part in f.name.split("/")})
    key = names.get(norm(name))
    if key is None:
        raise ValueError(f"no tiny model for {name!r}; choose one of {', '.join(TINY)}")
    return key


def describe_families() -> str:
    """The families for `c2s models`: spec forms, recommended options, why, and the tiny stand-in."""
    lines = ["model families (recommended settings; every option is listed under its backend above):"]
    for f in FAMILIES:
        lines.append(f"  {f.name}, e.g. {f.example}")
        lines.append(f"      spec: {' | '.join(f.specs)}")
        for backend, opts in f.settings:
            lines.append(f"      {backend}: {opts}")
        lines.append(f"      why: {f.note}")
        if f.tiny:
            lines.append(f"      offline: c2s models tiny {f.tiny} --out DIR  (random weights, then --model hf:DIR)")
    return "\n".join(lines) + "\n"
