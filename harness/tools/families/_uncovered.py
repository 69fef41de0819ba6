"""Every image-text-to-text family of the installed transformers that has no module here, with why.

The coverage table (`c2s models --coverage`) lists each family of transformers' image-text-to-text mapping
as proven (a module in this package with a tiny build and the proofs in tests/), composite (a single-image
family judged side by side), or not covered with the reason below. tests/test_families.py checks that every
family of the mapping is in exactly one of these places.
"""

#: transformers 5.24.0: model_type -> why it has no tiny build and proofs here.
NOT_COVERED: dict[str, str] = {
    "apertus1p5": "not tried yet",
    "aria": "no tiny build: AriaProcessor's own default max_image_size=980 overrides its image processor's, so "
            "every image reaches the vision tower at 980x980, beyond a tiny model's budget; not tried on a real one",
    "blip": "not tried yet",
    "chameleon": "not tried yet",
    "cohere_compass": "not tried yet",
    "cosmos3_edge": "not tried yet",
    "cosmos3_omni": "not tried yet",
    "deepseek_ocr2": "not tried yet",
    "diffusion_gemma": "not tried yet",
    "dots3_note": "not tried yet",
    "emu3": "not tried yet",
    "ernie4_5_vl_moe": "not tried yet",
    "evolla": "not tried yet",
    "florence2": "not tried yet",
    "fuyu": "not tried yet",
    "gemma3n": "not tried yet",
    "gemma4_unified": "not tried yet",
    "git": "not tried yet",
    "glm5_next": "not tried yet",
    "got_ocr2": "not tried yet",
    "granite4_vision": "not tried yet",
    "granite_docling": "not tried yet",
    "hunyuan_vl": "not tried yet",
    "hy_v4_vl": "not tried yet",
    "hyperclovax_vision_v2": "not tried yet",
    "idefics": "not tried yet",
    "inkling2": "not tried yet",
    "inkling2_loop": "not tried yet",
    "inkling_mm_model": "not tried yet",
    "instructblipvideo": "not tried yet",
    "kosmos-2": "not tried yet",
    "kosmos-2.5": "not tried yet",
    "llama4": "transformers 5.24's Llama4ForConditionalGeneration.forward raises AttributeError on every call "
              "(it reads image_outputs from its language model's MoeCausalLMOutputWithPast, modeling_llama4.py:1318); "
              "a tiny build (Llama4Processor, <|header_start|> template) ran up to that line",
    "minimax_m3_vl": "not tried yet",
    "mistral4": "transformers maps it to Mistral4ForCausalLM, a text-only model (no vision tower, no image "
                "inputs): there are no images to compare",
    "muse_glimmer": "not tried yet",
    "muse_spark": "not tried yet",
    "nemotron_h_omni": "not tried yet",
    "paddleocr_vl": "not tried yet",
    "pi0": "not tried yet",
    "pix2struct": "not tried yet",
    "pp_chart2table": "not tried yet",
    "pp_formulanet": "not tried yet",
    "qianfan_ocr": "not tried yet",
    "qwen2_5_omni_thinker": "not tried yet",
    "qwen3_omni_moe_thinker": "not tried yet",
    "shieldgemma2": "not tried yet",
    "step3p7": "not tried yet",
    "t5gemma2": "not tried yet",
    "udop": "not tried yet",
    "unlimited_ocr": "not tried yet",
    "video_llama_3": "not tried yet",
    "vision-encoder-decoder": "not tried yet",
}
