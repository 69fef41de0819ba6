"""Janus (Janus-Pro): two images in one prompt for understanding (SigLIP 384x384, 576 tokens per image)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Janus", "deepseek-community/Janus-Pro-1B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=4096")),
                "every image is padded to a square and resized to 384x384 (576 tokens); the context is "
                "4096 tokens")

_BOS, _EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
#: DeepSeek turns: "<|User|>: ...\n\n<|Assistant|>: ...<｜end▁of▁sentence｜>"
_OPEN = "{{ '<|' + role | capitalize + '|>: ' }}"
_CLOSE = "{{ '" + _EOS + "' if role == 'assistant' else '\\n\\n' }}"


def build(size: int):
    import transformers as T

    sp = ["<｜▁pad▁｜>", _BOS, _EOS, "<|User|>", "<|Assistant|>", "<image_placeholder>", "<begin_of_image>",
          "<end_of_image>"]
    tmpl = tiny.chat_template("<image_placeholder>\n", begin="{{ bos_token }}", open_turn=_OPEN, close_turn=_CLOSE,
                              gen_prompt="<|Assistant|>: ")
    tok = tiny.tokenizer(sp, bos=_BOS, eos=_EOS, pad="<｜▁pad▁｜>",
                         named={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                                "eoi_token": "<end_of_image>"})
    seq = (size // 16) ** 2
    ip = tiny.image_processor("Janus")(size={"height": size, "width": size})
    proc = T.JanusProcessor(image_processor=ip, tokenizer=tok, chat_template=tmpl, num_image_tokens=seq)
    vis = T.JanusVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=size,
                              patch_size=16, mlp_ratio=2, projection_dim=64, num_image_tokens=seq)
    # the VQ image generator is unused when reading text, so it is as small as its config allows
    vq = T.JanusVQVAEConfig(embed_dim=8, num_embeddings=32, latent_channels=32, base_channels=32,
                            channel_multiplier=[1], num_res_blocks=1, projection_dim=64, image_token_embed_dim=64,
                            num_patches=size // 16)
    cfg = T.JanusConfig(text_config=T.LlamaConfig(**tiny.text_cfg(tok)), vision_config=vis, vq_config=vq,
                        image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"))
    return proc, T.JanusForConditionalGeneration(cfg)
