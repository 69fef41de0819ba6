"""LLaVA-OneVision: two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("LLaVA-OneVision", "llava-hf/llava-onevision-qwen2-7b-ov-hf", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1000000"),
             ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
                ("AnyRes: 384x384 tiles of 729 tokens each, up to ~7,300 tokens per large image; downscaling "
         "large images keeps pairs short"))


def build(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>",
                     named={"image_token": "<image>", "video_token": "<video>"})
    pinpoints = [[size, size]]
    ip = tiny.image_processor("LlavaOnevision")(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints)
    proc = T.LlavaOnevisionProcessor(image_processor=ip, video_processor=T.LlavaOnevisionVideoProcessor(),
                                     tokenizer=tok, num_image_tokens=(size // 16) ** 2,
                                     vision_feature_select_strategy="full", chat_template=tiny.chatml("<image>"))
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    ids = tiny.ids(tok, ["<image>", "<video>"])
    cfg = T.LlavaOnevisionConfig(vision_config=vis, text_config=dict(model_type="qwen2", **tiny.text_cfg(tok)),
                                 image_token_index=ids["<image>"], video_token_index=ids["<video>"],
                                 image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full",
                                 vision_feature_layer=-1)
    return proc, T.LlavaOnevisionForConditionalGeneration(cfg)
