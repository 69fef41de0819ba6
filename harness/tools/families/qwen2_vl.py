"""Qwen2-VL: two images in one prompt, native resolution (one token per 28x28 pixels)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny


def qwen_pixels(tokens: int) -> str:
    """Qwen-VL processors count 28x28 pixels per image token."""
    return str(tokens * 28 * 28)


def qwen_settings(tokens: int = 1280) -> tuple[tuple[str, str], ...]:
    """Cap the pixels so two images and the prompt fit in 8192 tokens (Qwen2-VL and Qwen2.5-VL alike)."""
    return (("hf", f"-o dtype=bfloat16 -o max_pixels={qwen_pixels(tokens)}"),
            ("vllm", f"-o dtype=bfloat16 -o max_model_len=8192 "
                     f"-o engine_options='{{mm_processor_kwargs: {{max_pixels: {qwen_pixels(tokens)}}}}}'"))


FAMILY = Family("Qwen2-VL", "Qwen/Qwen2-VL-7B-Instruct", LOCAL_SPECS, qwen_settings(),
                "native resolution: one token per 28x28 pixels, so cap the pixels (1280 tokens per image here); "
                "two images and the prompt then fit in 8192 tokens")


def qwen2_processor(size: int, processor: str, *, turns: tuple[str, ...] = ("<|im_start|>", "<|im_end|>"),
                    template=tiny.chatml):
    """Qwen2-VL's tokenizer, image processor and chat template (ChatML unless `template` and its `turns` tokens
    say otherwise) under `processor`; also the image token ids."""
    import transformers as T

    sp = ["<|endoftext|>", *turns, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = tiny.tokenizer(sp, eos=turns[-1], pad="<|endoftext|>")
    ids = tiny.ids(tok, sp)
    pixels = dict(min_pixels=(size // 2) ** 2, max_pixels=size * size)  # -> (size/28)^2 merged tokens
    proc = getattr(T, processor)(image_processor=tiny.image_processor("Qwen2VL")(**pixels),
                                 video_processor=T.Qwen2VLVideoProcessor(), tokenizer=tok,
                                 chat_template=template("<|vision_start|><|image_pad|><|vision_end|>"))
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    return proc, tok, tokens


#: Qwen2.5-VL's windowed-attention vision tower, tiny
VISION_25 = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                 fullatt_block_indexes=[1], window_size=56)


def build_qwen_vl(size: int, v25: bool):
    import transformers as T

    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]}  # sums to head_dim/2
    if v25:
        proc, tok, tokens = qwen2_processor(size, "Qwen2_5_VLProcessor")
        cfg = T.Qwen2_5_VLConfig(text_config=tiny.text_cfg(tok, rope_parameters=rope), vision_config=VISION_25,
                                 **tokens)
        return proc, T.Qwen2_5_VLForConditionalGeneration(cfg)
    proc, tok, tokens = qwen2_processor(size, "Qwen2VLProcessor")
    vis = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    cfg = T.Qwen2VLConfig(text_config=tiny.text_cfg(tok, rope_parameters=rope), vision_config=vis, **tokens)
    return proc, T.Qwen2VLForConditionalGeneration(cfg)


def build(size: int):
    return build_qwen_vl(size, v25=False)
