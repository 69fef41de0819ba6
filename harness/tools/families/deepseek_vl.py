"""DeepSeek-VL: two images in one prompt (SigLIP 384x384, 576 tokens per image, "User:/Assistant:" turns)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.janus import _BOS, _EOS

FAMILY = Family("DeepSeek-VL", "deepseek-community/deepseek-vl-1.3b-chat", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=4096")),
                "every image is padded to a square and resized to 384x384 (576 tokens); the context is "
                "4096 tokens")

#: "User: ...\n\nAssistant: ...<｜end▁of▁sentence｜>"
_OPEN = "{{ role | capitalize + ': ' }}"
_CLOSE = "{{ '" + _EOS + "' if role == 'assistant' else '\\n\\n' }}"


def build_deepseek_vl(size: int, hybrid: bool):
    """DeepSeek-VL, or its hybrid that adds a SAM encoder over a 2x larger copy of each image."""
    import transformers as T

    sp = ["<｜▁pad▁｜>", _BOS, _EOS, "<image_placeholder>"]
    tmpl = tiny.chat_template("<image_placeholder>", begin="{{ bos_token }}", open_turn=_OPEN, close_turn=_CLOSE,
                              gen_prompt="Assistant:")
    tok = tiny.tokenizer(sp, bos=_BOS, eos=_EOS, pad="<｜▁pad▁｜>", named={"image_token": "<image_placeholder>"})
    seq = (size // 16) ** 2
    name = "DeepseekVLHybrid" if hybrid else "DeepseekVL"
    high = dict(high_res_size={"height": 2 * size, "width": 2 * size}) if hybrid else {}
    ip = tiny.image_processor(name)(size={"height": size, "width": size}, **high)
    proc = getattr(T, f"{name}Processor")(image_processor=ip, tokenizer=tok, chat_template=tmpl, num_image_tokens=seq)
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    sam = dict(high_res_vision_config=T.SamVisionConfig(
        hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=2 * size,
        patch_size=16, window_size=4, global_attn_indexes=[1], mlp_dim=64)) if hybrid else {}
    cfg = getattr(T, f"{name}Config")(text_config=T.LlamaConfig(**tiny.text_cfg(tok)), vision_config=vis,
                                      image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"), **sam)
    return proc, getattr(T, f"{name}ForConditionalGeneration")(cfg)


def build(size: int):
    return build_deepseek_vl(size, hybrid=False)
