"""Qianfan-OCR: InternVL's layout with a Qwen3 text model, trained for documents; its chat template writes
`<image>`, which the processor expands to `<img><IMG_CONTEXT>...</img>`; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.internvl import FAMILY as INTERNVL, build_internvl

FAMILY = Family("Qianfan-OCR", "baidu/Qianfan-OCR",
                LOCAL_SPECS, INTERNVL.settings, "448x448 tiles of 256 tokens, as InternVL")


def build(size: int):
    return build_internvl(size, processor="QianfanOCRProcessor", vision="QianfanOCRVisionConfig",
                          config="QianfanOCRConfig", model="QianfanOCRForConditionalGeneration",
                          text_model_type="qwen3", placeholder="<image>")
