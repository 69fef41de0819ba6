"""GLM-4.5V: GLM-4.1V's processor, vision tower and chat format, a mixture-of-experts text model; two images
in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.glm4v import FAMILY as GLM4V, build_glm

FAMILY = Family("GLM-4.5V", "zai-org/GLM-4.5V", LOCAL_SPECS, GLM4V.settings,
                GLM4V.note + "; the experts need the memory of the whole model (106B), not of the active 12B")


def build(size: int):
    moe = dict(moe_intermediate_size=32, num_experts_per_tok=2, n_routed_experts=4, n_shared_experts=1,
               first_k_dense_replace=1)
    return build_glm(size, processor="Glm4vProcessor", image_processor="Glm4v", video_processor="Glm4vVideoProcessor",
                     config="Glm4vMoeConfig", model="Glm4vMoeForConditionalGeneration", text=moe)
