"""Qwen2.5-VL: as Qwen2-VL, with a windowed-attention vision tower."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen2_vl import build_qwen_vl, qwen_settings

FAMILY = Family("Qwen2.5-VL", "Qwen/Qwen2.5-VL-7B-Instruct", LOCAL_SPECS, qwen_settings(),
                "as Qwen2-VL: 28x28 pixels per token, cap the pixels")


def build(size: int):
    return build_qwen_vl(size, v25=True)
