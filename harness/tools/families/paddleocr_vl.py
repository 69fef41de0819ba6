"""PaddleOCR-VL: a NaViT-style SigLIP tower (native resolution, 28x28 pixels per merged token) and an ERNIE-4.5
text model with multimodal rope, trained for page parsing; its processor expands every image of the prompt, so
two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.qwen2_vl import qwen_settings

FAMILY = Family("PaddleOCR-VL", "PaddlePaddle/PaddleOCR-VL", LOCAL_SPECS, qwen_settings(),
                "native resolution as Qwen2-VL: 28x28 pixels per token, cap the pixels; trained for documents, "
                "not for judging photographs")

SPECIAL = ["<|endoftext|>", "<|begin_of_sentence|>", "</s>", "<|IMAGE_START|>", "<|IMAGE_END|>",
           "<|IMAGE_PLACEHOLDER|>", "<|video_pad|>"]


def build(size: int):
    import transformers as T

    tok = tiny.tokenizer(SPECIAL, bos="<|begin_of_sentence|>", eos="</s>", pad="<|endoftext|>",
                         named={"image_token": "<|IMAGE_PLACEHOLDER|>"})
    ids = tiny.ids(tok, SPECIAL)
    ip = tiny.image_processor("PaddleOCRVL")(min_pixels=(size // 2) ** 2, max_pixels=size * size, patch_size=14,
                                             merge_size=2)
    proc = T.PaddleOCRVLProcessor(image_processor=ip, tokenizer=tok,
                                  chat_template=tiny.chat_template(  # the documented "User: ...\nAssistant: " turns
                                      "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>", begin="<|begin_of_sentence|>",
                                      open_turn="{{ role | capitalize }}: ", close_turn="\n",
                                      gen_prompt="Assistant: "))
    vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
               patch_size=14, spatial_merge_size=2)
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]}  # sums to head_dim/2
    cfg = T.PaddleOCRVLConfig(text_config=tiny.text_cfg(tok, rope_parameters=rope), vision_config=vis,
                              image_token_id=ids["<|IMAGE_PLACEHOLDER|>"], video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|IMAGE_START|>"], vision_end_token_id=ids["<|IMAGE_END|>"])
    return proc, T.PaddleOCRVLForConditionalGeneration(cfg)
