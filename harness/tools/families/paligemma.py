"""PaliGemma: ONE image per prompt (the image tokens come first, then the text), so pairs are judged under
the composite protocol: both images side by side in one image (harness/data/composite.py)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family, composite_settings
from harness.tools.families import _tiny as tiny

FAMILY = Family("PaliGemma", "google/paligemma2-3b-mix-448", LOCAL_SPECS,
                composite_settings("bfloat16"),
                "one image per prompt: the composite is resized to the checkpoint's square (224/448/896), so each "
                "half keeps under half the width; a mix checkpoint answers prompts, a pt one only continues text",
                protocol="composite")

SPECIAL = ["<pad>", "<eos>", "<bos>", "<image>"]
#: the mix checkpoints' prompt: image tokens, <bos>, the question, a newline, then the answer
TEMPLATE = tiny.chat_template("<image>", open_turn="", close_turn="{% if role == 'user' %}{{ '\\n' }}{% endif %}",
                              gen_prompt="")


def build(size: int):
    import transformers as T

    tok = tiny.tokenizer(SPECIAL, bos="<bos>", eos="<eos>", pad="<pad>", sentencepiece=True,
                         named={"image_token": "<image>"})
    seq = (size // 16) ** 2
    ip = tiny.image_processor("Siglip")(size={"height": size, "width": size}, image_seq_length=seq)
    proc = T.PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=TEMPLATE)  # adds <loc>/<seg> tokens
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16, projection_dim=64)
    text = T.GemmaConfig(**tiny.text_cfg(proc.tokenizer))
    cfg = T.PaliGemmaConfig(vision_config=vis, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                            projection_dim=64)
    return proc, T.PaliGemmaForConditionalGeneration(cfg)
