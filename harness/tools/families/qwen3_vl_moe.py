"""Qwen3-VL MoE (Qwen3-VL-30B-A3B, 235B-A22B): Qwen3-VL's processor and vision tower, a mixture-of-experts
text model; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen3_vl import FAMILY as QWEN3_VL, MROPE, build_qwen3

FAMILY = Family("Qwen3-VL-MoE", "Qwen/Qwen3-VL-30B-A3B-Instruct", LOCAL_SPECS, QWEN3_VL.settings,
                QWEN3_VL.note + "; the experts need the memory of the whole model (30B), not of the active 3B")


def build(size: int):
    moe = dict(rope_parameters=MROPE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    return build_qwen3(size, text_cfg=moe, vision=dict(deepstack_visual_indexes=[0]),
                       processor="Qwen3VLProcessor", config="Qwen3VLMoeConfig",
                       model="Qwen3VLMoeForConditionalGeneration")
