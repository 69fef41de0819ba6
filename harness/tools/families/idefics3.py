"""Idefics3 / SmolVLM: two images in one prompt."""
from __future__ import annotations

from harness.tools.families import LOCAL_SPECS, Family
from harness.tools.families import _tiny as tiny

FAMILY = Family("Idefics3 / SmolVLM", "HuggingFaceTB/SmolVLM-Instruct", LOCAL_SPECS,
                (("hf", "-o dtype=bfloat16"), ("vllm", "-o dtype=bfloat16 -o max_model_len=8192")),
                "images are split into 384x384 tiles (longest side 1536) plus a global view")


def build_idefics3(size: int, smolvlm: bool):
    """Idefics3 and SmolVLM2 share tokens, template and shapes; SmolVLM2 has its own classes and a video processor."""
    import transformers as T

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    sp = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
          "<global-img>"] + grid
    tmpl = tiny.chat_template("<image>", begin="<|im_start|>", open_turn="{{ role | capitalize }}:",
                          close_turn="<end_of_utterance>\n", gen_prompt="Assistant:")
    tok = tiny.tokenizer(sp, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")
    name = "SmolVLM" if smolvlm else "Idefics3"
    ip = tiny.image_processor(name)(size={"longest_edge": size}, max_image_size={"longest_edge": size},
                                    do_image_splitting=False)
    seq = (size // 16) ** 2 // 4  # patches / scale_factor^2
    video = dict(video_processor=T.SmolVLMVideoProcessor()) if smolvlm else {}
    proc = getattr(T, f"{name}Processor")(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=tmpl,
                                          **video)
    vis = getattr(T, f"{name}VisionConfig")(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=size, patch_size=16)
    cfg = getattr(T, f"{name}Config")(vision_config=vis, text_config=T.LlamaConfig(**tiny.text_cfg(tok)),
                                      scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"))
    return proc, getattr(T, f"{name}ForConditionalGeneration")(cfg)


def build(size: int):
    return build_idefics3(size, smolvlm=False)
