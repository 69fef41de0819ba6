"""Gemma 4: two images in one prompt, each at its own aspect ratio with a soft-token budget."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Gemma 4", "google/gemma-4-e4b-it", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "each image keeps its aspect ratio within a budget of 280 soft tokens (the processor's default; "
                "70 to 1120 are supported), so two images and the prompt fit easily in 8192 tokens")


def build(size: int):
    import transformers as T

    sp = ["<pad>", "<eos>", "<bos>", "<|turn>", "<turn|>", "<|image>", "<image|>", "<|image|>", "<|audio>",
          "<audio|>", "<|audio|>"]
    tmpl = tiny.chat_template(
        "<|image|>", begin="{{ bos_token }}", open_turn="<|turn>{{ 'model' if role == 'assistant' else role }}\n",
        close_turn="<turn|>\n", gen_prompt="<|turn>model\n")
    tok = tiny.tokenizer(sp, bos="<bos>", eos="<turn|>", pad="<pad>",
                         named={"boi_token": "<|image>", "eoi_token": "<image|>", "image_token": "<|image|>",
                                "boa_token": "<|audio>", "eoa_token": "<audio|>", "audio_token": "<|audio|>"})
    ids = tiny.ids(tok, sp)
    # 4-pixel patches keep the smallest soft-token budget (70 tokens = 630 patches) near `size` pixels a side
    ip = tiny.image_processor("Gemma4")(patch_size=4, max_soft_tokens=70, pooling_kernel_size=3)
    proc = T.Gemma4Processor(feature_extractor=T.Gemma4AudioFeatureExtractor(), image_processor=ip, tokenizer=tok,
                             video_processor=T.Gemma4VideoProcessor(), chat_template=tmpl, image_seq_length=70)
    vis = T.Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=2, head_dim=16, patch_size=4, pooling_kernel_size=3,
                               position_embedding_size=128)  # patch positions per side, up to 630 patches
    text = T.Gemma4TextConfig(**tiny.text_cfg(tok, sliding_window=64,
                                              layer_types=["sliding_attention", "full_attention"],
                                              vocab_size_per_layer_input=len(tok), hidden_size_per_layer_input=8,
                                              global_head_dim=32))
    cfg = T.Gemma4Config(text_config=text, vision_config=vis, audio_config=None,
                         boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"],
                         boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"], audio_token_id=ids["<|audio|>"],
                         video_token_id=len(tok))  # the processor adds <|video|> after these
    return proc, T.Gemma4ForConditionalGeneration(cfg)
