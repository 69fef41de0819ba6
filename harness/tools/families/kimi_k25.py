"""Kimi K2.5: two images in one prompt, native resolution (MoonViT) on a DeepSeek-V3 mixture of experts."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Kimi K2.5", "moonshotai/Kimi-K2.6", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1048576"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
                "native resolution, one token per 28x28 pixels (up to 16384 patches an image), so cap the pixels; "
                "a 1T-parameter mixture of experts: a multi-GPU server, usually through vLLM")

_MEDIA = "<|media_begin|>image<|media_content|><|media_pad|><|media_end|>"


def build(size: int):
    import transformers as T

    sp = ["[PAD]", "[BOS]", "[EOS]", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>",
          "<|im_end|>", "<|media_begin|>", "<|media_content|>", "<|media_end|>", "<|media_pad|>",
          "<|kimi_k25_video_placeholder|>"]
    tmpl = tiny.chat_template(_MEDIA, open_turn="<|im_{{ role }}|>{{ role }}<|im_middle|>", close_turn="<|im_end|>",
                              gen_prompt="<|im_assistant|>assistant<|im_middle|>")
    tok = tiny.tokenizer(sp, bos="[BOS]", eos="<|im_end|>", pad="[PAD]")
    ids = tiny.ids(tok, sp)
    ip = T.Kimi_K25ImageProcessor(size={"max_height": size, "max_width": size}, patch_size=16, merge_size=2,
                                  max_patches=(size // 16) ** 2)
    proc = T.Kimi_K25Processor(image_processor=ip, tokenizer=tok, video_processor=T.Kimi_K25VideoProcessor(),
                               chat_template=tmpl)
    vis = T.Kimi_K25VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 patch_size=16, pos_emb_height=16, pos_emb_width=16)
    # multi-head latent attention with 32-wide rotary and value heads; two routed experts after one dense layer
    text = dict(model_type="deepseek_v3", **tiny.text_cfg(
        tok, num_key_value_heads=2, kv_lora_rank=32, q_lora_rank=32, qk_rope_head_dim=32, qk_nope_head_dim=32,
        v_head_dim=32, n_routed_experts=2, num_experts_per_tok=1, n_group=1, topk_group=1, first_k_dense_replace=1,
        moe_intermediate_size=32, n_shared_experts=1, num_mtp_layers=0))
    cfg = T.Kimi_K25Config(vision_config=vis, text_config=text, projection_hidden_size=32,
                           image_token_id=ids["<|media_pad|>"], video_token_id=ids["<|kimi_k25_video_placeholder|>"],
                           vision_start_token_id=ids["<|media_begin|>"], vision_end_token_id=ids["<|media_end|>"])
    return proc, T.Kimi_K25ForConditionalGeneration(cfg)
