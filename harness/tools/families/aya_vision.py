"""Aya Vision: two images in one prompt (SigLIP tiles, pixel shuffle, a Cohere2 language model)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Aya Vision", "CohereLabs/aya-vision-8b", LOCAL_SPECS,
                (("hf", "-o dtype=float16"), ("vllm", "-o dtype=float16 -o max_model_len=16384")),
                "each image is up to 12 tiles of 364x364 plus a global view, 169 tokens each (up to 2197 per "
                "image); the context is 16k tokens")

#: Cohere's turn markers
_TURN = "<|START_OF_TURN_TOKEN|>"
_END = "<|END_OF_TURN_TOKEN|>"
_ROLE = "{{ '<|CHATBOT_TOKEN|>' if role == 'assistant' else '<|' + role | upper + '_TOKEN|>' }}"


def build(size: int):
    import transformers as T

    sp = ["<PAD>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", _TURN, "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
          "<|SYSTEM_TOKEN|>", "<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>",
          "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL"]
    tmpl = tiny.chat_template("<image>", begin="{{ bos_token }}", open_turn=_TURN + _ROLE, close_turn=_END,
                              gen_prompt=_TURN + "<|CHATBOT_TOKEN|>")
    tok = tiny.tokenizer(sp, bos="<BOS_TOKEN>", eos=_END, pad="<PAD>")
    # the processor always tiles (crop_to_patches): at most 2 tiles plus the global view
    ip = tiny.image_processor("GotOcr2")(size={"height": size, "width": size}, max_patches=2)
    proc = T.AyaVisionProcessor(image_processor=ip, tokenizer=tok, patch_size=16, img_size=size,
                                downsample_factor=2, chat_template=tmpl)
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    cfg = T.AyaVisionConfig(vision_config=vis, text_config=dict(model_type="cohere2", **tiny.text_cfg(tok)),
                            downsample_factor=2, image_token_index=tok.convert_tokens_to_ids("<|IMG_PATCH|>"))
    return proc, T.AyaVisionForConditionalGeneration(cfg)
