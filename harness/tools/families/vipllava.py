"""ViP-LLaVA: LLaVA-1.5 reading several vision layers, in its `###Human:` / `###Assistant:` format; two images in
one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.llava_next import clip, llama_tokenizer

FAMILY = Family("ViP-LLaVA", "llava-hf/vip-llava-7b-hf", LOCAL_SPECS,
                (("hf", "-o dtype=float16"), ("vllm", "-o dtype=float16 -o max_model_len=4096")),
                "every image is resized to 336x336 (576 tokens); the context is 4096 tokens")

TEMPLATE = tiny.chat_template("<image>\n", begin="{{ bos_token }}",
                              open_turn="###{{ 'Human' if role == 'user' else 'Assistant' }}: ", close_turn="",
                              gen_prompt="###Assistant:")


def build(size: int):
    import transformers as T

    tok = llama_tokenizer(TEMPLATE, image_token="<image>")
    ip = tiny.image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=16, num_additional_image_tokens=1,
                            vision_feature_select_strategy="default", chat_template=TEMPLATE)
    cfg = T.VipLlavaConfig(vision_config=clip(size), text_config=T.LlamaConfig(**tiny.text_cfg(tok)),
                           image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layers=[-2, -1],
                           image_seq_length=(size // 16) ** 2)
    return proc, T.VipLlavaForConditionalGeneration(cfg)
