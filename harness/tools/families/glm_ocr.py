"""GLM-OCR: GLM-4.1V's layout under its own config and model classes (transformers maps no processor to it; GLM-4.6V's
serves), trained for documents; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.glm4v import FAMILY as GLM4V, build_glm

FAMILY = Family("GLM-OCR", "zai-org/GLM-OCR", LOCAL_SPECS, GLM4V.settings, GLM4V.note)


def build(size: int):
    return build_glm(size, processor="Glm46VProcessor", image_processor="Glm46V",
                     video_processor="Glm46VVideoProcessor", config="GlmOcrConfig",
                     model="GlmOcrForConditionalGeneration")
