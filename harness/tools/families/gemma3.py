"""Gemma 3: two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Gemma 3", "google/gemma-3-4b-it", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "every image becomes 896x896 (256 tokens); bfloat16, not float16 (activations overflow)")


def build(size: int):
    import transformers as T

    sp = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
          "<image_soft_token>"]
    tmpl = tiny.chat_template(
        "<start_of_image>", begin="{{ bos_token }}",
        open_turn="<start_of_turn>{{ 'model' if role == 'assistant' else role }}\n",
        close_turn="<end_of_turn>\n", gen_prompt="<start_of_turn>model\n")
    tok = tiny.tokenizer(sp, bos="<bos>", eos="<end_of_turn>", pad="<pad>",
                     named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                            "image_token": "<image_soft_token>"})
    proc = T.Gemma3Processor(image_processor=tiny.image_processor("Gemma3")(size={"height": size, "width": size}),
                             tokenizer=tok, chat_template=tmpl, image_seq_length=4)
    ids = tiny.ids(tok, sp)
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    text = T.Gemma3TextConfig(**tiny.text_cfg(tok, sliding_window=64, query_pre_attn_scalar=32))
    cfg = T.Gemma3Config(text_config=text, vision_config=vis, mm_tokens_per_image=4,  # a square on the grid
                         boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                         image_token_index=ids["<image_soft_token>"])
    return proc, T.Gemma3ForConditionalGeneration(cfg)
