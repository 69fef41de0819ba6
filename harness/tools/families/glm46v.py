"""GLM-4.6V: GLM-4.1V's layout and chat format under its own processor and model classes; two images in one
prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.glm4v import FAMILY as GLM4V, build_glm

FAMILY = Family("GLM-4.6V", "zai-org/GLM-4.6V-Flash", LOCAL_SPECS, GLM4V.settings, GLM4V.note)


def build(size: int):
    return build_glm(size, processor="Glm46VProcessor", image_processor="Glm46V",
                     video_processor="Glm46VVideoProcessor", config="Glm46VConfig",
                     model="Glm46VForConditionalGeneration")
