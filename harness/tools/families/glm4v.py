"""GLM-4.1V: two images in one prompt, native resolution (one token per 28x28 pixels), GLM's chat format
(`[gMASK]<sop><|user|>` ... `<|assistant|>`)."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("GLM-4.1V", "zai-org/GLM-4.1V-9B-Thinking", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16 -o max_pixels=1003520"),
                 ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "native resolution: one token per 28x28 pixels, so cap the pixels (1280 tokens per image here); "
                "the Thinking checkpoints open <think> after <|assistant|>: the prefilled answer skips it")

SPECIAL = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>",
           "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]
TEMPLATE = tiny.chat_template("<|begin_of_image|><|image|><|end_of_image|>", begin="[gMASK]<sop>",
                              open_turn="<|{{ role }}|>\n", close_turn="", gen_prompt="<|assistant|>\n")
#: GLM rotates half of each head (partial_rotary_factor 0.5); the mrope section sums to that half / 2
ROPE = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3], "partial_rotary_factor": 0.5}


def build_glm(size: int, *, processor: str, image_processor: str, video_processor: str, config: str, model: str,
              text: dict | None = None):
    """A GLM-4.xV-shaped model (GLM-4.1V, GLM-4.5V MoE and GLM-4.6V share the layout)."""
    import transformers as T

    tok = tiny.tokenizer(SPECIAL, eos="<|endoftext|>", pad="<|endoftext|>",
                         named={"image_token": "<|image|>", "video_token": "<|video|>"})
    ids = tiny.ids(tok, SPECIAL)
    ip = tiny.image_processor(image_processor)(size={"shortest_edge": (size // 2) ** 2, "longest_edge": size * size},
                                               patch_size=14, merge_size=2, temporal_patch_size=2)
    proc = getattr(T, processor)(image_processor=ip, video_processor=getattr(T, video_processor)(), tokenizer=tok,
                                 chat_template=TEMPLATE)
    vis = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, image_size=56, patch_size=14,
               spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64)
    text_cfg = tiny.text_cfg(tok, **{"rope_parameters": ROPE, **(text or {})})
    cfg = getattr(T, config)(text_config=text_cfg, vision_config=vis,
                             image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                             image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
                             video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"])
    return proc, getattr(T, model)(cfg)


def build(size: int):
    return build_glm(size, processor="Glm4vProcessor", image_processor="Glm4v", video_processor="Glm4vVideoProcessor",
                     config="Glm4vConfig", model="Glm4vForConditionalGeneration")
