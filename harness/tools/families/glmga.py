"""GLMGA: GLM-4.6V's model and processor classes (transformers wires them through its auto-mappings) under its own
config and image processor; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.glm4v import FAMILY as GLM4V, build_glm

FAMILY = Family("GLMGA", "a GLMGA checkpoint folder (transformers 5.24 names no published one)", LOCAL_SPECS,
                GLM4V.settings, GLM4V.note)


def build(size: int):
    return build_glm(size, processor="Glm46VProcessor", image_processor="Glmga",
                     video_processor="GlmgaVideoProcessor", config="GlmgaConfig",
                     model="Glm46VForConditionalGeneration")
