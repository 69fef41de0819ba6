"""MiniCPM-V 4.7: MiniCPM-V 4.6's processor, slices and layout under its own classes; two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.minicpmv4_6 import FAMILY as V4_6, build_minicpm

FAMILY = Family("MiniCPM-V 4.7", "openbmb/MiniCPM-V-4.7-1B",
                LOCAL_SPECS, V4_6.settings, V4_6.note)


def build(size: int):
    return build_minicpm(size, processor="MiniCPMV4_7Processor", config="MiniCPMV4_7Config",
                         vision_config="MiniCPMV4_7VisionConfig", model="MiniCPMV4_7ForConditionalGeneration")
