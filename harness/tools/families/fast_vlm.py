"""FastVLM: two images in one prompt (a FastViTHD convolutional encoder through timm, Qwen2 text, LLaVA-style)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("FastVLM", "KamilaMila/FastVLM-7B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "every image is resized to 1024x1024 and downsampled 64x by the convolutional encoder (256 tokens); "
                "the vision tower needs timm; use transformers-format checkpoints (apple/ ones need remote code)")


def build(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>", named={"image_token": "<image>"})
    ip = tiny.image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    # the encoder downsamples 64x: a stem (4x) and four stride-2 stages
    proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=64, num_additional_image_tokens=0,
                            vision_feature_select_strategy="full", chat_template=tiny.chatml("<image>\n"))
    vis = dict(model_type="timm_wrapper", architecture="fastvit_mci3", do_pooling=False, hidden_size=64,
               model_args={"inference_mode": True, "layers": (1, 1, 1, 1, 1), "embed_dims": (8, 8, 16, 32, 32)})
    cfg = T.FastVlmConfig(vision_config=vis, text_config=dict(model_type="qwen2", **tiny.text_cfg(tok)),
                          image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=(size // 64) ** 2,
                          vision_feature_select_strategy="full")
    return proc, T.FastVlmForConditionalGeneration(cfg)
