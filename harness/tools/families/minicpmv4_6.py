"""MiniCPM-V 4.6: two images in one prompt (adaptive slices, a window merger inside the ViT, Qwen3.5 text)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("MiniCPM-V 4.6", "openbmb/MiniCPM-V-4.6", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "each image is a 448x448 overview plus up to 9 slices, 64 tokens each (16x downsampling)")

#: Qwen3.5's hybrid text model, tiny: one gated-DeltaNet layer, then one full-attention layer
_HYBRID = dict(layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4, linear_key_head_dim=32,
               linear_value_head_dim=32, linear_num_key_heads=1, linear_num_value_heads=2)


def build_minicpm(size: int, *, processor: str = "MiniCPMV4_6Processor", image_processor: str = "MiniCPMV4_6",
                  video_processor: str = "MiniCPMV4_6VideoProcessor", config: str = "MiniCPMV4_6Config",
                  vision_config: str = "MiniCPMV4_6VisionConfig", model: str = "MiniCPMV4_6ForConditionalGeneration"):
    """A MiniCPM-V-4.6-shaped model (4.6, 4.7 and MiniCPM-OCR share the processor and layout)."""
    import transformers as T

    marks = {"image_start_token": "<image>", "image_end_token": "</image>", "slice_start_token": "<slice>",
             "slice_end_token": "</slice>", "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>",
             "image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + list(marks.values())
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>", named=marks)
    ip = tiny.image_processor(image_processor)(scale_resolution=size, patch_size=16, max_slice_nums=2)
    vp = getattr(T, video_processor)(scale_resolution=size, patch_size=16)
    proc = getattr(T, processor)(image_processor=ip, video_processor=vp, tokenizer=tok,
                                  chat_template=tiny.chatml("<|image_pad|>\n"))
    vis = getattr(T, vision_config)(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    image_size=size, patch_size=16)
    cfg = getattr(T, config)(vision_config=vis, text_config=dict(model_type="qwen3_5_text",
                                                                  **tiny.text_cfg(tok, **_HYBRID)),
                              insert_layer_id=0, image_size=size,
                              image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
                              video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"))
    return proc, getattr(T, model)(cfg)


def build(size: int):
    return build_minicpm(size)
