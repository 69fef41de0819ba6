"""DeepSeek-VL hybrid: two images in one prompt (SigLIP 384x384 plus a SAM encoder at 1024x1024)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.deepseek_vl import build_deepseek_vl

FAMILY = Family("DeepSeek-VL hybrid", "deepseek-community/deepseek-vl-7b-chat", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=4096")),
                "every image is read at 384x384 (SigLIP) and 1024x1024 (SAM), 576 tokens; the context is "
                "4096 tokens")


def build(size: int):
    return build_deepseek_vl(size, hybrid=True)
