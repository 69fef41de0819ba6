"""LFM2-VL: two images in one prompt, native resolution (SigLIP2 NaFlex) on a hybrid conv/attention model."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("LFM2-VL", "LiquidAI/LFM2-VL-1.6B", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "native resolution, 64 to 256 tokens per image, larger images split into 512x512 tiles plus "
                "a thumbnail; the context is 32k tokens")


def build(size: int):
    import transformers as T

    sp = ["<|pad|>", "<|startoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<|image_start|>",
          "<|image_end|>", "<|img_thumbnail|>"]
    tmpl = tiny.chat_template("<image>", begin="{{ bos_token }}", open_turn="<|im_start|>{{ role }}\n",
                              close_turn="<|im_end|>\n", gen_prompt="<|im_start|>assistant\n")
    tok = tiny.tokenizer(sp, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>")
    # (size/16)^2 patches at most, 4 per image token after the 2x2 downsampling
    most = (size // 16) ** 2 // 4
    ip = T.Lfm2VlImageProcessor(do_image_splitting=False, min_image_tokens=1, max_image_tokens=most,
                                encoder_patch_size=16, downsample_factor=2, tile_size=size)
    proc = T.Lfm2VlProcessor(image_processor=ip, tokenizer=tok, chat_template=tmpl)
    vis = T.Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                patch_size=16, num_patches=4 * most, vision_use_head=False)
    text = dict(model_type="lfm2", **tiny.text_cfg(tok, layer_types=["conv", "full_attention"],
                                                   block_auto_adjust_ff_dim=False))
    cfg = T.Lfm2VlConfig(vision_config=vis, text_config=text, projector_hidden_size=64, downsample_factor=2,
                         image_token_id=tok.convert_tokens_to_ids("<image>"))
    return proc, T.Lfm2VlForConditionalGeneration(cfg)
