"""EXAONE 4.5: Qwen2-VL's processor in EXAONE's chat format ([|user|] ... [|endofturn|]), a Qwen2.5-VL-style vision tower with grouped-query attention,
EXAONE 4 text; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny
from harness.tools.families.qwen2_vl import VISION_25, qwen2_processor, qwen_settings

FAMILY = Family("EXAONE 4.5", "LGAI-EXAONE/EXAONE-4.5-33B",
                LOCAL_SPECS, qwen_settings(), "as Qwen2-VL: 28x28 pixels per token, cap the pixels")


def _exaone_template(image: str) -> str:
    return tiny.chat_template(image, open_turn="[|{{ role }}|]", close_turn="[|endofturn|]\n",
                              gen_prompt="[|assistant|]")


def build(size: int):
    import transformers as T

    proc, tok, tokens = qwen2_processor(size, "Exaone4_5_Processor", template=_exaone_template,
                                        turns=("[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"))
    text = dict(tiny.text_cfg(tok), model_type="exaone4")
    cfg = T.Exaone4_5_Config(text_config=text, vision_config=dict(VISION_25, num_key_value_heads=1),
                             image_token_id=tokens["image_token_id"], video_token_id=tokens["video_token_id"])
    return proc, T.Exaone4_5_ForConditionalGeneration(cfg)
