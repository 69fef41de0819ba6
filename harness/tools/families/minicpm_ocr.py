"""MiniCPM-OCR: MiniCPM-V 4.6's processor, slices and layout under its own classes, trained for documents; two
images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families.minicpmv4_6 import FAMILY as V4_6, build_minicpm

FAMILY = Family("MiniCPM-OCR", "openbmb/MiniCPM-OCR-1.0",
                LOCAL_SPECS, V4_6.settings, V4_6.note)


def build(size: int):
    return build_minicpm(size, processor="MiniCPMOcrProcessor", image_processor="MiniCPMOcr",
                         video_processor="MiniCPMOcrVideoProcessor", config="MiniCPMOcrConfig",
                         vision_config="MiniCPMOcrVisionConfig", model="MiniCPMOcrForConditionalGeneration")
