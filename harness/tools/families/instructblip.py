"""InstructBLIP: ONE image per prompt (a Q-Former, which also reads the question, turns it into query tokens
placed before the text), so pairs are judged under the composite protocol (harness/data/composite.py)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family, composite_settings
from harness.tools.families import _tiny as tiny
from harness.tools.families.blip_2 import SPECIAL, TEMPLATE, qformer, vision

FAMILY = Family("InstructBLIP", "Salesforce/instructblip-vicuna-7b", LOCAL_SPECS,
                composite_settings("float16"),
                "one image per prompt, resized to 224x224 whatever its shape, so each half of a composite is "
                "squeezed to half the width; the Vicuna checkpoints' tokenizer is SentencePiece",
                protocol="composite")


def build(size: int):
    import transformers as T

    # Vicuna: a SentencePiece tokenizer; the Q-Former reads the question with its own (BERT) tokenizer
    tok = tiny.tokenizer(SPECIAL, bos="</s>", eos="</s>", pad="<pad>", chat_template=TEMPLATE, sentencepiece=True)
    qtok = tiny.tokenizer(["[PAD]"], pad="[PAD]")
    ip = tiny.image_processor("Blip")(size={"height": size, "width": size})
    proc = T.InstructBlipProcessor(image_processor=ip, tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4)
    text = T.LlamaConfig(**tiny.text_cfg(proc.tokenizer))
    cfg = T.InstructBlipConfig(vision_config=vision(size, "InstructBlipVisionConfig"),
                               qformer_config=qformer("InstructBlipQFormerConfig", len(qtok)),
                               text_config=text, num_query_tokens=4,
                               image_token_index=proc.tokenizer.convert_tokens_to_ids("<image>"))
    return proc, T.InstructBlipForConditionalGeneration(cfg)
