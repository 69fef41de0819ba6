"""BLIP-2: ONE image per prompt (a Q-Former's query tokens come before the text), so pairs are judged under
the composite protocol (harness/data/composite.py); OPT's byte-level tokenizer, `Question: ... Answer:`."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family, composite_settings
from harness.tools.families import _tiny as tiny

FAMILY = Family("BLIP-2", "Salesforce/blip2-opt-2.7b", LOCAL_SPECS,
                composite_settings("float16"),
                "one image per prompt, resized to 224x224 whatever its shape, so each half of a composite is "
                "squeezed to half the width; 32 query tokens stand for the image", model_type="blip-2",
                protocol="composite")

SPECIAL = ["<pad>", "</s>"]
#: the BLIP-2 paper's VQA prompt; the processor puts the image's query tokens before the text itself
TEMPLATE = tiny.chat_template("", open_turn="{% if role == 'user' %}Question: {% else %} Answer: {% endif %}",
                              close_turn="", gen_prompt=" Answer:")


def qformer(config: str = "Blip2QFormerConfig", vocab_size: int = 64):
    """A tiny Q-Former (BLIP-2's reads no text: a small vocabulary keeps its unused embedding small)."""
    import transformers as T

    return getattr(T, config)(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, cross_attention_frequency=1, encoder_hidden_size=32)


def vision(size: int, config: str):
    import transformers as T

    # the config's default initializer_range (1e-10) would make every image look the same to a random model
    return getattr(T, config)(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=size, patch_size=16, initializer_range=0.02)


def opt(tok):
    import transformers as T

    return T.OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=2,
                       word_embed_proj_dim=64, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)


def build(size: int):
    import transformers as T

    # the processor takes no chat template: the tokenizer keeps it (adapters.chat.chat_renderer)
    tok = tiny.tokenizer(SPECIAL, bos="</s>", eos="</s>", pad="<pad>", chat_template=TEMPLATE)
    ip = tiny.image_processor("Blip")(size={"height": size, "width": size})
    proc = T.Blip2Processor(image_processor=ip, tokenizer=tok, num_query_tokens=4)  # adds its <image> token
    cfg = T.Blip2Config(vision_config=vision(size, "Blip2VisionConfig"), qformer_config=qformer(),
                        text_config=opt(proc.tokenizer), num_query_tokens=4, image_text_hidden_size=32,
                        image_token_index=tok.convert_tokens_to_ids("<image>"))
    return proc, T.Blip2ForConditionalGeneration(cfg)
