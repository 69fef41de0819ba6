"""SmolVLM2: two images in one prompt (the Idefics3 design with its own classes; SmolVLM v1 is idefics3)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.idefics3 import build_idefics3

FAMILY = Family("SmolVLM2", "HuggingFaceTB/SmolVLM2-2.2B-Instruct", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "images are split into 384x384 tiles (longest side 1536) plus a global view, 64 tokens each")


def build(size: int):
    return build_idefics3(size, smolvlm=True)
