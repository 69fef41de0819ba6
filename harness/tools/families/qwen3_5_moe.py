"""Qwen3.5 MoE (Qwen3.5-35B-A3B, 397B-A17B): Qwen3.5's hybrid text model with mixture-of-experts MLPs;
two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen3_5 import FAMILY as QWEN3_5, HYBRID
from harness.tools.families.qwen3_vl import build_qwen3

FAMILY = Family("Qwen3.5-MoE", "Qwen/Qwen3.5-35B-A3B", LOCAL_SPECS, QWEN3_5.settings,
                QWEN3_5.note + "; the experts need the memory of the whole model, not of the active part")


def build(size: int):
    moe = dict(HYBRID, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
               shared_expert_intermediate_size=32)
    return build_qwen3(size, text_cfg=moe, vision={}, processor="Qwen3VLProcessor", config="Qwen3_5MoeConfig",
                       model="Qwen3_5MoeForConditionalGeneration")
