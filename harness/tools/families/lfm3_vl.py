"""LFM3-VL: Qwen3-VL's processor and chat layout, a conv/attention hybrid vision tower and LFM3's hybrid
conv/attention text model; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen3_vl import FAMILY as QWEN3_VL, build_qwen3

FAMILY = Family("LFM3-VL", "LiquidAI/LFM3-VL-2B", LOCAL_SPECS, QWEN3_VL.settings,
                "as Qwen3-VL: one token per 32x32 pixels, cap the pixels")

_LAYERS = ["conv", "full_attention"]


def build(size: int):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, patch_size=16, spatial_merge_size=2, layer_types=_LAYERS)
    return build_qwen3(size, text_cfg=dict(layer_types=_LAYERS), vision={}, vision_base=vision,
                       processor="Lfm3VlProcessor", config="Lfm3VlConfig", model="Lfm3VlForConditionalGeneration",
                       text_model_type="lfm3", projector_hidden_size=64)
