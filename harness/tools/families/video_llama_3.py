"""VideoLLaMA 3: a SigLIP-based native-resolution vision tower and a Qwen2 text model behind Qwen-style
`<|image_pad|>` expansion; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.qwen2_vl import qwen_settings
from harness.tools.families.qwen3_vl import build_qwen3

FAMILY = Family("VideoLLaMA 3", "lkhl/VideoLLaMA3-2B-Image-HF", LOCAL_SPECS, qwen_settings(),
                "native resolution: the token count grows with the pixels, so cap them")


def build(size: int):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16)
    return build_qwen3(size, text_cfg={}, vision={}, vision_base=vision, processor="VideoLlama3Processor",
                       image_processor="VideoLlama3", video_processor="VideoLlama3VideoProcessor",
                       config="VideoLlama3Config", model="VideoLlama3ForConditionalGeneration", text_model_type="qwen2")
