"""Molmo 2: two images in one prompt (a low-resolution view plus overlapping crops, pooled 2x2)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Molmo 2", "allenai/Molmo2-8B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
                "each image is a 378x378 low-resolution view plus up to 8 overlapping crops, 2x2-pooled "
                "(about 1500 tokens per image at most)")

_IMAGE_TOKENS = ["<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>", "<frame_start>", "<im_end>",
                 "<frame_end>", "<im_low>"]


def build(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image|>", "<|video|>"] + _IMAGE_TOKENS
    tok = tiny.tokenizer(sp, bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>")
    ids = tiny.ids(tok, sp)
    # 16-pixel patches; crops of `size` pixels overlapping by one patch on each side, at most 2 crops
    ip = T.Molmo2ImageProcessor(size={"height": size, "width": size}, patch_size=16, max_crops=2,
                                overlap_margins=[1, 1], pooling_size=[2, 2])
    proc = T.Molmo2Processor(image_processor=ip, video_processor=T.Molmo2VideoProcessor(), tokenizer=tok,
                             chat_template=tiny.chatml("<|image|>"))
    vis = T.Molmo2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=2, head_dim=16, image_size=[size, size], patch_size=16,
                               num_position_embeddings=(size // 16) ** 2)
    adapter = T.Molmo2AdapterConfig(vision_feature_layer=[-1], hidden_size=32, num_attention_heads=2,
                                    num_key_value_heads=2, head_dim=16, intermediate_size=64, text_hidden_size=64)
    text = T.Molmo2TextConfig(**tiny.text_cfg(tok, additional_vocab_size=0))
    cfg = T.Molmo2Config(vision_config=vis, adapter_config=adapter, text_config=text,
                         image_start_token_id=ids["<im_start>"], low_res_image_start_token_id=ids["<low_res_im_start>"],
                         image_end_token_id=ids["<im_end>"], image_patch_id=ids["<im_patch>"],
                         frame_start_token_id=ids["<frame_start>"], frame_end_token_id=ids["<frame_end>"])
    return proc, T.Molmo2ForConditionalGeneration(cfg)
