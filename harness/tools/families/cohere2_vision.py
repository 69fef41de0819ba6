"""Command A Vision (cohere2_vision): two images in one prompt (512x512 tiles, a Cohere2 language model)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.aya_vision import _END, _ROLE, _TURN

FAMILY = Family("Command A Vision", "CohereLabs/command-a-vision-07-2025", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=16384")),
                "each image is up to 12 tiles of 512x512 plus a thumbnail, 256 tokens each (up to 3328 per "
                "image); the answer opens with <|START_RESPONSE|>")

_ANSWER = "{% if role == 'assistant' %}<|START_RESPONSE|>{% endif %}"


def build(size: int):
    import transformers as T

    sp = ["<PAD>", "<BOS_TOKEN>", _END, _TURN, "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>",
          "<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>",
          "<|IMG_LINE_BREAK|>"]
    tmpl = tiny.chat_template(
        "<|IMG_PATCH|>", begin="{{ bos_token }}", open_turn=_TURN + _ROLE + _ANSWER,
        close_turn="{% if role == 'assistant' %}<|END_RESPONSE|>{% endif %}" + _END,
        gen_prompt=_TURN + "<|CHATBOT_TOKEN|><|START_RESPONSE|>")
    tok = tiny.tokenizer(sp, bos="<BOS_TOKEN>", eos=_END, pad="<PAD>",
                         named={"boi_token": "<|START_OF_IMG|>", "eoi_token": "<|END_OF_IMG|>",
                                "image_token": "<|IMG_PATCH|>", "img_line_break_token": "<|IMG_LINE_BREAK|>"})
    # tiles of `size` pixels; patch_size counts image tokens per tile side (16-pixel patches, 2x2 shuffle)
    ip = T.Cohere2VisionImageProcessor(size={"height": size, "width": size}, max_patches=2, patch_size=size // 32)
    proc = T.Cohere2VisionProcessor(image_processor=ip, tokenizer=tok, chat_template=tmpl)
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    cfg = T.Cohere2VisionConfig(vision_config=vis, text_config=dict(model_type="cohere2", **tiny.text_cfg(tok)),
                                downsample_factor=2, alignment_intermediate_size=64,
                                image_token_id=tok.convert_tokens_to_ids("<|IMG_PATCH|>"))
    return proc, T.Cohere2VisionForConditionalGeneration(cfg)
