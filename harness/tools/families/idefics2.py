"""Idefics2: two images in one prompt (a perceiver resampler gives 64 tokens per image)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Idefics2", "HuggingFaceM4/idefics2-8b", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=4096")),
                "images keep their aspect (shortest side 378, longest 980) and become 64 tokens each "
                "(320 with image splitting); the context is 4096 tokens")


def build(size: int):
    import transformers as T

    sp = ["<unk>", "<s>", "</s>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    tmpl = tiny.chat_template("<image>", begin="{{ bos_token }}", open_turn="{{ role | capitalize }}:",
                              close_turn="<end_of_utterance>\n", gen_prompt="Assistant:")
    tok = tiny.tokenizer(sp, bos="<s>", eos="</s>", pad="<unk>",
                         named={"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>"})
    ip = tiny.image_processor("Idefics2")(size={"shortest_edge": size // 2, "longest_edge": size},
                                          do_image_splitting=False)
    proc = T.Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=tmpl)
    vis = T.Idefics2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=size, patch_size=16)
    perceiver = T.Idefics2PerceiverConfig(hidden_size=64, resampler_n_latents=4, resampler_depth=1,
                                          resampler_n_heads=2, resampler_head_dim=32, num_key_value_heads=1)
    cfg = T.Idefics2Config(vision_config=vis, perceiver_config=perceiver,
                           text_config=T.MistralConfig(**tiny.text_cfg(tok)),
                           image_token_id=tok.convert_tokens_to_ids("<image>"))
    return proc, T.Idefics2ForConditionalGeneration(cfg)
