"""LLaVA (1.5): two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("LLaVA (1.5)", "llava-hf/llava-1.5-7b-hf", LOCAL_SPECS,
                (("hf", "-o dtype=float16"), ("vllm", "-o dtype=float16 -o max_model_len=4096")),
                "every image is resized to 336x336 (576 tokens); the context is 4096 tokens")


def build(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<s>", "</s>", "<image>"]
    tmpl = tiny.chat_template("<image>\n", begin="<s>", open_turn="{{ role | upper }}: ", close_turn=" ",
                          gen_prompt="ASSISTANT:")
    tok = tiny.tokenizer(sp, bos="<s>", eos="</s>", pad="<|endoftext|>", named={"image_token": "<image>"})
    ip = tiny.image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=16, num_additional_image_tokens=1,
                            vision_feature_select_strategy="default", chat_template=tmpl)
    vis = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=size, patch_size=16, projection_dim=32)
    cfg = T.LlavaConfig(vision_config=vis, text_config=T.LlamaConfig(**tiny.text_cfg(tok)), vision_feature_layer=-1,
                        image_token_id=tok.convert_tokens_to_ids("<image>"),
                        vision_feature_select_strategy="default")
    return proc, T.LlavaForConditionalGeneration(cfg)
