"""Ovis2: two images in one prompt (visual tokens as probabilistic embeddings, Qwen2 ChatML turns)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Ovis2", "thisisiron/Ovis2-1B-hf", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "each image is a 448x448 global view plus up to 9 tiles, 256 tokens each; use the "
                "transformers-format checkpoints (-hf), the original ones need remote code")

#: the visual indicator tokens, in the order of Ovis2Config.visual_indicator_token_ids
_INDICATORS = ["<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"]


def build(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<IMG_ATOM>"] + _INDICATORS
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>")
    seq = (size // 32) ** 2  # 16-pixel patches, merged 2x2 (hidden_stride)
    ip = tiny.image_processor("Ovis2")(size={"height": size, "width": size}, max_patches=2)
    proc = T.Ovis2Processor(image_processor=ip, tokenizer=tok, chat_template=tiny.chatml("<image>\n"),
                            image_seq_length=seq)
    vis = T.Ovis2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=size, patch_size=16, vocab_size=64, hidden_stride=2)
    cfg = T.Ovis2Config(vision_config=vis, text_config=dict(model_type="qwen2", **tiny.text_cfg(tok)),
                        vocab_size=len(tok), hidden_size=64, image_token_id=tok.convert_tokens_to_ids("<IMG_ATOM>"),
                        visual_indicator_token_ids=[tok.convert_tokens_to_ids(t) for t in _INDICATORS])
    return proc, T.Ovis2ForConditionalGeneration(cfg)
