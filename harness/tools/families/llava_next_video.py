"""LLaVA-NeXT-Video: LLaVA-NeXT's AnyRes images (and videos) in the Vicuna format; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.llava_next import FAMILY as NEXT, VICUNA, anyres, clip, llama_tokenizer

FAMILY = Family("LLaVA-NeXT-Video", "llava-hf/LLaVA-NeXT-Video-7B-hf", LOCAL_SPECS,
                (("hf", "-o dtype=float16 -o max_pixels=1000000"), ("vllm", "-o dtype=float16 -o max_model_len=4096")),
                NEXT.note + "; the context is 4096 tokens")


def build(size: int):
    import transformers as T

    tok = llama_tokenizer(VICUNA, image_token="<image>", video_token="<video>")
    proc = T.LlavaNextVideoProcessor(video_processor=T.LlavaNextVideoVideoProcessor(), image_processor=anyres(size),
                                     tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                                     num_additional_image_tokens=1, chat_template=VICUNA)
    ids = tiny.ids(tok, ["<image>", "<video>"])
    cfg = T.LlavaNextVideoConfig(vision_config=clip(size), text_config=T.LlamaConfig(**tiny.text_cfg(tok)),
                                 image_token_index=ids["<image>"], video_token_index=ids["<video>"],
                                 vision_feature_layer=-1, vision_feature_select_strategy="default",
                                 image_grid_pinpoints=[[size, size]])
    return proc, T.LlavaNextVideoForConditionalGeneration(cfg)
