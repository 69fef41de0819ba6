"""Mllama (Llama 3.2 Vision): two images in one prompt, read by cross-attention layers."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Mllama (Llama 3.2 Vision)", "meta-llama/Llama-3.2-11B-Vision-Instruct", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "each image is up to 4 tiles of 560x560 seen through cross-attention, so images cost no context "
                "tokens; trained on one image per prompt, so two-image judgements are outside its training")


#: Llama 3's special tokens (the image placeholder included)
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|image|>", "<|python_tag|>"]


def llama3_template(image: str) -> str:
    """Llama 3 turns: <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>."""
    return tiny.chat_template(
        image, begin="{{ bos_token }}", open_turn="<|start_header_id|>{{ role }}<|end_header_id|>\n\n",
        close_turn="<|eot_id|>", gen_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n")


def build(size: int):
    import transformers as T

    tmpl = llama3_template("<|image|>")
    tok = tiny.tokenizer(LLAMA3_SPECIAL, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>")
    ip = tiny.image_processor("Mllama")(size={"height": size, "width": size}, max_image_tiles=1)
    proc = T.MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=tmpl)
    # the vision output concatenates the last and the intermediate layers' states: 32 * (1 + 1)
    vis = T.MllamaVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                               attention_heads=2, image_size=size, patch_size=16, vision_output_dim=64,
                               intermediate_layers_indices=[0], max_num_tiles=1, supported_aspect_ratios=[[1, 1]])
    text = T.MllamaTextConfig(**tiny.text_cfg(tok, cross_attention_layers=[1]))
    cfg = T.MllamaConfig(vision_config=vis, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    return proc, T.MllamaForConditionalGeneration(cfg)
