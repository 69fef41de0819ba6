"""Tiny randomly initialised vision-language models, built fully offline.

Why: the tests and the offline demo must exercise real architectures (their processors, chat
templates, `from_pretrained` loading and forward passes) without a model hub. Each family gets a
byte-level BPE tokenizer trained on the fly (the five comparison levels and the five rating words
are single tokens, with and without a leading space), the family's own processor, a hand-written
chat template, and a 2-layer model with head dim 32 (vLLM's CPU attention needs >= 32).

    build_tiny_vlm("idefics3", "/tmp/tiny-idefics3")  # -> Path, loadable with AutoProcessor /
                                                      #    AutoModelForImageTextToText
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.core.levels import LEVELS, RATING_LEVELS

FAMILIES: tuple[str, ...] = (
    "idefics3", "qwen2_vl", "qwen2_5_vl", "llava", "llava_onevision", "internvl", "gemma3",
)

_CORPUS = (
    "Compared with the first image, what is your quality rating for second image?",
    "The quality of the second image is better than the first image.",
    "How would you rate the quality of this image? The quality of the image is good.",
    "You are a helpful assistant. Look at both pictures carefully and answer with one word.",
)
_WORDS = LEVELS + RATING_LEVELS


def _tokenizer(special: list[str], *, bos=None, eos=None, pad=None, named=None, chat_template=None):
    """Byte-level BPE trained in milliseconds; every level/rating word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(_CORPUS)
    for w in _WORDS:
        corpus += [w, " " + w, f"The quality of the second image is {w}."] * 40
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=list(special), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 4, trainer)
    named = dict(named or {})  # e.g. image_token="<image>" -> tokenizer.image_token(_id), persisted
    roles = {k: v for k, v in dict(bos_token=bos, eos_token=eos, pad_token=pad).items() if v}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template, **roles, **named)
    rest = [s for s in special if s not in roles.values() and s not in named.values()]
    if rest:
        fast.add_special_tokens({"additional_special_tokens": rest})
    for w in _WORDS:
        for variant in (w, " " + w):
            if len(fast.encode(variant, add_special_tokens=False)) != 1:
                raise RuntimeError(f"tiny tokenizer: {variant!r} is not a single token")
    return fast


def _chat_template(image: str, *, begin: str = "", open_turn: str, close_turn: str, gen_prompt: str) -> str:
    """A Jinja chat template: `open_turn` may use `role`; content is a string or a list of parts."""
    return (
        begin + "{% for message in messages %}{% set role = message['role'] %}" + open_turn +
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] in ('image', 'image_url', 'image_pil') %}" + image +
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}" + close_turn +
        "{% endfor %}{% if add_generation_prompt %}" + gen_prompt + "{% endif %}"
    )


def _chatml(image: str) -> str:
    return _chat_template(image, open_turn="<|im_start|>{{ role }}\n", close_turn="<|im_end|>\n",
                          gen_prompt="<|im_start|>assistant\n")


def _text_cfg(tok, **kw) -> dict:
    cfg = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.pad_token_id)
    cfg.update(kw)
    return cfg


def _image_processor(prefix: str):
    """The Pillow-backed image processor class (no torchvision needed) where this transformers has
    one, else the default class (older 5.x releases)."""
    import transformers as T

    return getattr(T, f"{prefix}ImageProcessorPil", None) or getattr(T, f"{prefix}ImageProcessor")


def _ids(tok, names):
    return {s: tok.convert_tokens_to_ids(s) for s in names}


def _idefics3(size: int):
    import transformers as T

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    sp = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
          "<global-img>"] + grid
    tmpl = _chat_template("<image>", begin="<|im_start|>", open_turn="{{ role | capitalize }}:",
                          close_turn="<end_of_utterance>\n", gen_prompt="Assistant:")
    tok = _tokenizer(sp, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|endoftext|>")
    ip = _image_processor("Idefics3")(size={"longest_edge": size}, max_image_size={"longest_edge": size},
                                    do_image_splitting=False)
    seq = (size // 16) ** 2 // 4  # patches / scale_factor^2
    proc = T.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=tmpl)
    vis = T.Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, image_size=size, patch_size=16)
    cfg = T.Idefics3Config(vision_config=vis, text_config=T.LlamaConfig(**_text_cfg(tok)), scale_factor=2,
                           image_token_id=tok.convert_tokens_to_ids("<image>"))
    return proc, T.Idefics3ForConditionalGeneration(cfg)


def _qwen_vl(size: int, v25: bool):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
          "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>")
    ids = _ids(tok, sp)
    pixels = dict(min_pixels=(size // 2) ** 2, max_pixels=size * size)  # -> (size/28)^2 merged tokens
    tmpl = _chatml("<|vision_start|><|image_pad|><|vision_end|>")
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]}  # sums to head_dim/2
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if v25:
        proc = T.Qwen2_5_VLProcessor(image_processor=_image_processor("Qwen2VL")(**pixels),
                                     video_processor=T.Qwen2VLVideoProcessor(), tokenizer=tok, chat_template=tmpl)
        vis = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   fullatt_block_indexes=[1], window_size=56)
        cfg = T.Qwen2_5_VLConfig(text_config=_text_cfg(tok, rope_parameters=rope), vision_config=vis, **tokens)
        return proc, T.Qwen2_5_VLForConditionalGeneration(cfg)
    proc = T.Qwen2VLProcessor(image_processor=_image_processor("Qwen2VL")(**pixels),
                              video_processor=T.Qwen2VLVideoProcessor(), tokenizer=tok, chat_template=tmpl)
    vis = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    cfg = T.Qwen2VLConfig(text_config=_text_cfg(tok, rope_parameters=rope), vision_config=vis, **tokens)
    return proc, T.Qwen2VLForConditionalGeneration(cfg)


def _llava(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<s>", "</s>", "<image>"]
    tmpl = _chat_template("<image>\n", begin="<s>", open_turn="{{ role | upper }}: ", close_turn=" ",
                          gen_prompt="ASSISTANT:")
    tok = _tokenizer(sp, bos="<s>", eos="</s>", pad="<|endoftext|>", named={"image_token": "<image>"})
    ip = _image_processor("CLIP")(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=16, num_additional_image_tokens=1,
                            vision_feature_select_strategy="default", chat_template=tmpl)
    vis = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=size, patch_size=16, projection_dim=32)
    cfg = T.LlavaConfig(vision_config=vis, text_config=T.LlamaConfig(**_text_cfg(tok)), vision_feature_layer=-1,
                        image_token_id=tok.convert_tokens_to_ids("<image>"),
                        vision_feature_select_strategy="default")
    return proc, T.LlavaForConditionalGeneration(cfg)


def _llava_onevision(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = _tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>",
                     named={"image_token": "<image>", "video_token": "<video>"})
    pinpoints = [[size, size]]
    ip = _image_processor("LlavaOnevision")(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints)
    proc = T.LlavaOnevisionProcessor(image_processor=ip, video_processor=T.LlavaOnevisionVideoProcessor(),
                                     tokenizer=tok, num_image_tokens=(size // 16) ** 2,
                                     vision_feature_select_strategy="full", chat_template=_chatml("<image>"))
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    ids = _ids(tok, ["<image>", "<video>"])
    cfg = T.LlavaOnevisionConfig(vision_config=vis, text_config=dict(model_type="qwen2", **_text_cfg(tok)),
                                 image_token_index=ids["<image>"], video_token_index=ids["<video>"],
                                 image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full",
                                 vision_feature_layer=-1)
    return proc, T.LlavaOnevisionForConditionalGeneration(cfg)


def _internvl(size: int):
    import transformers as T

    sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    tok = _tokenizer(sp, eos="<|im_end|>", pad="<|endoftext|>",
                     named={"start_image_token": "<img>", "end_image_token": "</img>",
                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ip = _image_processor("GotOcr2")(size={"height": size, "width": size}, crop_to_patches=False)
    seq = (size // 16) ** 2 // 4  # pixel shuffle with downsample_ratio 0.5
    proc = T.InternVLProcessor(image_processor=ip, video_processor=T.InternVLVideoProcessor(), tokenizer=tok,
                               image_seq_length=seq, chat_template=_chatml("<IMG_CONTEXT>\n"))
    vis = T.InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=size, patch_size=16)
    cfg = T.InternVLConfig(vision_config=vis, text_config=dict(model_type="qwen2", **_text_cfg(tok)),
                           image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=seq,
                           downsample_ratio=0.5)
    return proc, T.InternVLForConditionalGeneration(cfg)


def _gemma3(size: int):
    import transformers as T

    sp = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
          "<image_soft_token>"]
    tmpl = _chat_template(
        "<start_of_image>", begin="{{ bos_token }}",
        open_turn="<start_of_turn>{{ 'model' if role == 'assistant' else role }}\n",
        close_turn="<end_of_turn>\n", gen_prompt="<start_of_turn>model\n")
    tok = _tokenizer(sp, bos="<bos>", eos="<end_of_turn>", pad="<pad>",
                     named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                            "image_token": "<image_soft_token>"})
    proc = T.Gemma3Processor(image_processor=_image_processor("Gemma3")(size={"height": size, "width": size}),
                             tokenizer=tok, chat_template=tmpl, image_seq_length=4)
    ids = _ids(tok, sp)
    vis = T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=size, patch_size=16)
    text = T.Gemma3TextConfig(**_text_cfg(tok, sliding_window=64, query_pre_attn_scalar=32))
    cfg = T.Gemma3Config(text_config=text, vision_config=vis, mm_tokens_per_image=4,  # a square on the grid
                         boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                         image_token_index=ids["<image_soft_token>"])
    return proc, T.Gemma3ForConditionalGeneration(cfg)


_BUILDERS: dict[str, Callable] = {
    "idefics3": _idefics3,
    "qwen2_vl": lambda size: _qwen_vl(size, v25=False),
    "qwen2_5_vl": lambda size: _qwen_vl(size, v25=True),
    "llava": _llava,
    "llava_onevision": _llava_onevision,
    "internvl": _internvl,
    "gemma3": _gemma3,
}


def build_tiny_vlm(family: str, out_dir, *, seed: int = 0, image_size: int = 64) -> Path:
    """Build a tiny random `family` model + processor and `save_pretrained` both into `out_dir`.

    Deterministic for a given seed. `image_size` (a multiple of 32) is the side the processor
    resizes images to; the model's vision tower is sized to match.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    if image_size <= 0 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        proc, model = _BUILDERS[family](image_size)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
