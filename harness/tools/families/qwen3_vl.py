"""Qwen3-VL: two images in one prompt, native resolution (one token per 32x32 pixels), DeepStack vision
features fed into the first text layers."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Qwen3-VL", "Qwen/Qwen3-VL-8B-Instruct", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1310720"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=8192 "
                          "-o engine_options='{mm_processor_kwargs: {max_pixels: 1310720}}'")),
                "native resolution: one token per 32x32 pixels, so cap the pixels (1280 tokens per image here); "
                "two images and the prompt then fit in 8192 tokens")

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]


#: Qwen3-VL's vision tower, tiny
QWEN3_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                    out_hidden_size=64, num_position_embeddings=64)


def build_qwen3(size: int, *, text_cfg: dict, vision: dict, processor: str, config: str, model: str,
                text_model_type: str | None = None, vision_base: dict | None = None, image_processor: str = "Qwen2VL",
                video_processor: str = "Qwen3VLVideoProcessor", **config_kw):
    """A Qwen3-VL-shaped model (Qwen3-VL, Qwen3.5 and their MoE variants share the processor and layout)."""
    import transformers as T

    tok = tiny.tokenizer(QWEN_SPECIAL, eos="<|im_end|>", pad="<|endoftext|>")
    ids = tiny.ids(tok, QWEN_SPECIAL)
    ip = tiny.image_processor(image_processor)(patch_size=16, merge_size=2, min_pixels=(size // 2) ** 2,
                                         max_pixels=size * size)
    proc = getattr(T, processor)(image_processor=ip, video_processor=getattr(T, video_processor)(), tokenizer=tok,
                                 chat_template=tiny.chatml("<|vision_start|><|image_pad|><|vision_end|>"))
    vis = dict(vision_base or QWEN3_VISION, **vision)
    text = tiny.text_cfg(tok, **text_cfg)
    if text_model_type:
        text["model_type"] = text_model_type
    cfg = getattr(T, config)(text_config=text, vision_config=vis, image_token_id=ids["<|image_pad|>"],
                             video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                             vision_end_token_id=ids["<|vision_end|>"], **config_kw)
    return proc, getattr(T, model)(cfg)


#: interleaved multimodal rope: the section sums to head_dim / 2
MROPE = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [6, 5, 5], "mrope_interleaved": True}


def build(size: int):
    return build_qwen3(size, text_cfg=dict(rope_parameters=MROPE), vision=dict(deepstack_visual_indexes=[0]),
                       processor="Qwen3VLProcessor", config="Qwen3VLConfig", model="Qwen3VLForConditionalGeneration")
