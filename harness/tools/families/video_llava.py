"""Video-LLaVA: images (and videos) through a LanguageBind encoder, Vicuna format; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.llava_next import VICUNA, clip, llama_tokenizer

FAMILY = Family("Video-LLaVA", "LanguageBind/Video-LLaVA-7B-hf", LOCAL_SPECS,
                (("hf", "-o dtype=float16"), ("vllm", "-o dtype=float16 -o max_model_len=4096")),
                "every image is resized to 224x224 (256 tokens); the context is 4096 tokens")


def build(size: int):
    import transformers as T

    tok = llama_tokenizer(VICUNA, image_token="<image>", video_token="<video>")
    ip = T.VideoLlavaImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.VideoLlavaProcessor(image_processor=ip, video_processor=T.VideoLlavaVideoProcessor(), tokenizer=tok,
                                 patch_size=16, vision_feature_select_strategy="default",
                                 num_additional_image_tokens=1, chat_template=VICUNA)
    ids = tiny.ids(tok, ["<image>", "<video>"])
    cfg = T.VideoLlavaConfig(vision_config=clip(size), text_config=T.LlamaConfig(**tiny.text_cfg(tok)),
                             image_token_index=ids["<image>"], video_token_index=ids["<video>"],
                             vision_feature_layer=-1, vision_feature_select_strategy="default",
                             image_seq_length=(size // 16) ** 2)
    return proc, T.VideoLlavaForConditionalGeneration(cfg)
