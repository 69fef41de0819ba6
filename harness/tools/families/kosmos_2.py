"""Kosmos-2: ONE image per prompt (Kosmos2Processor pairs each text with one image and places its 64 image
embeddings right after `<s><image>`), so pairs are judged under the composite protocol (harness/data/composite.py);
a grounding model without a chat format, so the prompt is `Question: ... Answer:` as for BLIP-2."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.blip_2 import TEMPLATE

FAMILY = Family("Kosmos-2", "microsoft/kosmos-2-patch14-224", LOCAL_SPECS,
                (("hf", "-o pairing=composite -o dtype=float32"),),
                "one image per prompt, resized to 224x224 whatever its shape, so each half of a composite is "
                "squeezed to half the width; 64 latent tokens stand for the image", model_type="kosmos-2",
                protocol="composite")


def build(size: int):
    import transformers as T

    # the processor takes no chat template: the tokenizer keeps it (adapters.chat.chat_renderer)
    tok = tiny.tokenizer(["<pad>", "<s>", "</s>", "<unk>"], bos="<s>", eos="</s>", pad="<pad>", sentencepiece=True,
                         chat_template=TEMPLATE)
    tok.unk_token = "<unk>"  # the processor writes its image placeholders as the id after <unk>
    ip = tiny.image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.Kosmos2Processor(image_processor=ip, tokenizer=tok, num_patch_index_tokens=16)  # adds its tokens
    vis = T.Kosmos2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=size, patch_size=16)
    text = T.Kosmos2TextConfig(vocab_size=len(proc.tokenizer), embed_dim=64, layers=2, attention_heads=2,
                               ffn_dim=128, max_position_embeddings=512, pad_token_id=proc.tokenizer.pad_token_id,
                               bos_token_id=proc.tokenizer.bos_token_id, eos_token_id=proc.tokenizer.eos_token_id)
    cfg = T.Kosmos2Config(vision_config=vis.to_dict(), text_config=text.to_dict(), latent_query_num=64)
    return proc, T.Kosmos2ForConditionalGeneration(cfg)
