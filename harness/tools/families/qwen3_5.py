"""Qwen3.5: natively multimodal, Qwen3-VL's processor and chat format, a hybrid text model (gated
DeltaNet linear-attention layers between full-attention ones); two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen3_vl import FAMILY as QWEN3_VL, build_qwen3

FAMILY = Family("Qwen3.5", "Qwen/Qwen3.5-9B", LOCAL_SPECS, QWEN3_VL.settings,
                QWEN3_VL.note + "; the prefilled answer starts the reply directly")

#: one linear-attention layer then one full-attention layer, each kind tiny; mrope as Qwen3-VL
HYBRID = dict(layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4,
              linear_key_head_dim=32, linear_value_head_dim=32, linear_num_key_heads=1, linear_num_value_heads=2,
              rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [6, 5, 5],
                               "mrope_interleaved": True, "partial_rotary_factor": 1.0})


def build(size: int):
    return build_qwen3(size, text_cfg=HYBRID, vision={}, processor="Qwen3VLProcessor", config="Qwen3_5Config",
                       model="Qwen3_5ForConditionalGeneration")
