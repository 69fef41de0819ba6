"""GIT: ONE image per prompt (its CLIP features come before the text in one self-attention stack), so pairs
are judged under the composite protocol (harness/data/composite.py); a captioner without a chat format: the
TextVQA checkpoints read `[CLS]` and the question, then answer, so the prompt is `[CLS]Question: ... Answer:`."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("GIT", "microsoft/git-base-textvqa", LOCAL_SPECS,
                (("hf", "-o pairing=composite -o dtype=float32"),),
                "one image per prompt, resized to the checkpoint's square whatever its shape, so each half of a "
                "composite is squeezed to half the width", protocol="composite")

#: BLIP-2's VQA prompt after GIT's [CLS] (its VQA checkpoints put [CLS] first and no [SEP] after the question)
TEMPLATE = tiny.chat_template("", begin="{{ bos_token }}",
                              open_turn="{% if role == 'user' %}Question: {% else %} Answer: {% endif %}",
                              close_turn="", gen_prompt=" Answer:")


def build(size: int):
    import transformers as T

    # the processor takes no chat template: the tokenizer keeps it (adapters.chat.chat_renderer)
    tok = tiny.tokenizer(["[PAD]", "[CLS]", "[SEP]"], bos="[CLS]", eos="[SEP]", pad="[PAD]", chat_template=TEMPLATE)
    ip = tiny.image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.GitProcessor(image_processor=ip, tokenizer=tok)
    vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=size,
               patch_size=16)
    cfg = T.GitConfig(vision_config=vis, vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=128, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return proc, T.GitForCausalLM(cfg)
