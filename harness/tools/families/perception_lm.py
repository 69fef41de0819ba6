"""Perception LM: two images in one prompt (a Perception Encoder through timm, Llama 3 turns)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.mllama import LLAMA3_SPECIAL, llama3_template

FAMILY = Family("Perception LM", "facebook/Perception-LM-1B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=11264")),
                "each image is a 448x448 thumbnail plus up to 36 tiles, 256 tokens each after 2x2 pooling; "
                "the vision tower needs timm")


def build(size: int):
    import transformers as T

    sp = LLAMA3_SPECIAL + ["<|video|>"]
    tok = tiny.tokenizer(sp, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                         named={"image_token": "<|image|>", "video_token": "<|video|>"})
    ip = T.PerceptionLMImageProcessor(tile_size=size, max_num_tiles=1)
    proc = T.PerceptionLMProcessor(video_processor=T.PerceptionLMVideoProcessor(), image_processor=ip, tokenizer=tok,
                                   patch_size=16, pooling_ratio=2, chat_template=llama3_template("<|image|>"))
    vis = T.TimmWrapperConfig(architecture="vit_pe_core_tiny_patch16_384", do_pooling=False,
                              model_args={"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": size,
                                          "patch_size": 16})
    cfg = T.PerceptionLMConfig(vision_config=vis, text_config=T.LlamaConfig(**tiny.text_cfg(tok)),
                               projector_pooling_ratio=2, image_token_id=tok.convert_tokens_to_ids("<|image|>"),
                               video_token_id=tok.convert_tokens_to_ids("<|video|>"))
    return proc, T.PerceptionLMForConditionalGeneration(cfg)
