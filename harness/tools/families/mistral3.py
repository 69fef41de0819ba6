"""Mistral 3 (Mistral Small 3.1/3.2): two images in one prompt, native resolution (Pixtral vision tower)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Mistral 3", "mistralai/Mistral-Small-3.1-24B-Instruct-2503", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1048576"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "native resolution up to 1540 px a side, one token per 28x28 pixels (a 1024x1024 image is "
                "about 1400 tokens), so cap the pixels to keep two images and the prompt in 8192 tokens")


def build_pixtral(size: int, text: dict, large4: bool = False):
    """A Pixtral vision tower on a Mistral text model: Mistral 3, or Mistral Large 4 (its own classes)."""
    import transformers as T

    sp = ["<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    # [INST]user text[/INST]assistant text</s>: the assistant turn has no header of its own
    tmpl = tiny.chat_template(
        "[IMG]", begin="{{ bos_token }}", open_turn="{{ '[INST]' if role == 'user' else '' }}",
        close_turn="{{ '[/INST]' if role == 'user' else '</s>' }}", gen_prompt="")
    tok = tiny.tokenizer(sp, bos="<s>", eos="</s>", pad="<pad>")
    ip = tiny.image_processor("Pixtral")(size={"longest_edge": size}, patch_size={"height": 16, "width": 16})
    proc = T.PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=16, spatial_merge_size=2,
                              chat_template=tmpl)
    vis = T.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=size, patch_size=16)
    name = "MistralLarge4" if large4 else "Mistral3"
    cfg = getattr(T, f"{name}Config")(vision_config=vis, text_config=tiny.text_cfg(tok, **text),
                                      image_token_index=tok.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2)
    return proc, getattr(T, f"{name}ForConditionalGeneration")(cfg)


def build(size: int):
    return build_pixtral(size, dict(model_type="mistral"))
