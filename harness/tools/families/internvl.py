"""InternVL: two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("InternVL", "OpenGVLab/InternVL3-2B-hf", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "448x448 tiles of 256 tokens; use the transformers-format checkpoints (names ending in -hf)")


def build_internvl(size: int, *, processor: str = "InternVLProcessor", vision: str = "InternVLVisionConfig",
                   config: str = "InternVLConfig", model: str = "InternVLForConditionalGeneration",
                   text_model_type: str = "qwen2", placeholder: str = "<IMG_CONTEXT>", **proc_kw):
    """An InternVL-shaped model (InternVL and Qianfan-OCR share the layout); `placeholder` is what the chat
    template writes for an image."""
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    sp += [placeholder] if placeholder not in sp else []
    tok = tiny.tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>",
                         named={"start_image_token": "<img>", "end_image_token": "</img>",
                                "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ip = tiny.image_processor("GotOcr2")(size={"height": size, "width": size}, crop_to_patches=False)
    seq = (size // 16) ** 2 // 4  # pixel shuffle with downsample_ratio 0.5
    proc = getattr(T, processor)(image_processor=ip, tokenizer=tok, image_seq_length=seq,
                                 chat_template=tiny.chatml(placeholder + "\n"), **proc_kw)
    vis = getattr(T, vision)(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=size, patch_size=16)
    cfg = getattr(T, config)(vision_config=vis, text_config=dict(model_type=text_model_type, **tiny.text_cfg(tok)),
                             image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=seq,
                             downsample_ratio=0.5)
    return proc, getattr(T, model)(cfg)


def build(size: int):
    import transformers as T

    return build_internvl(size, video_processor=T.InternVLVideoProcessor())
