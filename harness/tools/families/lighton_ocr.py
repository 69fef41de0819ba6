"""LightOnOCR: two images in one prompt (Pixtral vision, Qwen3 text, ChatML); an OCR model, so a stress case."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("LightOnOCR", "lightonai/LightOnOCR-1B-1025", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1048576"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "Pixtral native resolution (one token per 28x28 pixels, pages up to 1540 px), so cap the pixels; "
                "trained to transcribe documents, not to judge quality")


def build(size: int):
    import transformers as T

    marks = {"image_token": "<|image_pad|>", "image_break_token": "<|vision_pad|>", "image_end_token": "<|vision_end|>"}
    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + list(marks.values())
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>", named=marks)
    ip = tiny.image_processor("Pixtral")(size={"longest_edge": size}, patch_size={"height": 16, "width": 16})
    proc = T.LightOnOcrProcessor(image_processor=ip, tokenizer=tok, patch_size=16, spatial_merge_size=2,
                                 chat_template=tiny.chatml("<|image_pad|>"))
    vis = T.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=size, patch_size=16)
    cfg = T.LightOnOcrConfig(vision_config=vis, text_config=dict(model_type="qwen3", **tiny.text_cfg(tok)),
                             spatial_merge_size=2, image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
    return proc, T.LightOnOcrForConditionalGeneration(cfg)
