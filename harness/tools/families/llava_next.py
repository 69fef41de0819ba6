"""LLaVA-NeXT (1.6): two images in one prompt, AnyRes tiles; the Mistral variant's `[INST]` format and a
SentencePiece-style tokenizer (`▁better`)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("LLaVA-NeXT", "llava-hf/llava-v1.6-mistral-7b-hf", LOCAL_SPECS,
                (("hf", "-o dtype=float16 -o max_pixels=1000000"), ("vllm", "-o dtype=float16 -o max_model_len=8192")),
                "AnyRes: up to 4 tiles of 336x336 plus a base image (up to ~2,900 tokens per image); downscaling "
                "large images keeps pairs within the context")

SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<video>"]
INST = tiny.chat_template("<image>\n", begin="{{ bos_token }}",
                          open_turn="{% if role == 'user' %}[INST] {% endif %}",
                          close_turn="{% if role == 'user' %} [/INST]{% else %}</s>{% endif %}", gen_prompt="")
VICUNA = tiny.chat_template("<image>\n", begin="{{ bos_token }}", open_turn="{{ role | upper }}: ", close_turn=" ",
                            gen_prompt="ASSISTANT:")


def llama_tokenizer(template: str, **named):
    """A Llama-2-style tokenizer (SentencePiece pieces, <s> first): LLaVA-NeXT, LLaVA-NeXT-Video, ViP-LLaVA,
    Video-LLaVA are Llama-2/Vicuna or Mistral based."""
    return tiny.tokenizer(SPECIAL, bos="<s>", eos="</s>", pad="<unk>", sentencepiece=True, chat_template=template,
                          named=named)


def clip(size: int, **kw):
    import transformers as T

    return T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=size, patch_size=16, projection_dim=32, **kw)


def anyres(size: int):
    """The LLaVA-NeXT image processor with one tile grid (a base image plus one size x size tile)."""
    return tiny.image_processor("LlavaNext")(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                             image_grid_pinpoints=[[size, size]])


def build(size: int):
    import transformers as T

    tok = llama_tokenizer(INST, image_token="<image>")
    proc = T.LlavaNextProcessor(image_processor=anyres(size), tokenizer=tok, patch_size=16,
                                vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                chat_template=INST)
    cfg = T.LlavaNextConfig(vision_config=clip(size), text_config=T.MistralConfig(**tiny.text_cfg(tok)),
                            image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                            vision_feature_select_strategy="default", image_grid_pinpoints=[[size, size]])
    return proc, T.LlavaNextForConditionalGeneration(cfg)
