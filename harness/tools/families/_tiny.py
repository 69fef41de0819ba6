"""What the tiny random builds of every family share: a BPE tokenizer trained in milliseconds, byte-level
(GPT-2/Qwen/Llama-3 style: `Ġbetter`) or SentencePiece-style (Llama-2/Mistral/Gemma: Metaspace, `▁better`),
as the family's real tokenizer is (the five comparison levels and the five rating words are single tokens,
with and without a leading space), Jinja chat templates in a family's documented shape, and a 2-layer text
config with head dim 32 (vLLM's CPU attention needs >= 32). Each family module's `build(size)` uses them.
"""
from __future__ import annotations

import string

from harness.core.levels import LEVELS, RATING_LEVELS

_CORPUS = (
    "Compared with the first image, what is your quality rating for second image?",
    "The quality of the second image is better than the first image.",
    "How would you rate the quality of this image? The quality of the image is good.",
    "You are a helpful assistant. Look at both pictures carefully and answer with one word.",
)
_WORDS = LEVELS + RATING_LEVELS


def tokenizer(special: list[str], *, bos=None, eos=None, pad=None, named=None, chat_template=None,
              sentencepiece: bool = False):
    """BPE trained in milliseconds, byte-level or (`sentencepiece`) Metaspace-style with `▁` for a
    space and no space added at the start; every level/rating word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(_CORPUS)
    for w in _WORDS:
        corpus += [w, " " + w, f"The quality of the second image is {w}."] * 40
    tok = Tokenizer(models.BPE())
    if sentencepiece:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
        alphabet = sorted(set(string.printable.replace(" ", "▁")))  # prompts and chat templates are ASCII
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=list(special), show_progress=False,
                                  initial_alphabet=alphabet)
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


def chat_template(image: str, *, begin: str = "", open_turn: str, close_turn: str, gen_prompt: str) -> str:
    """A Jinja chat template: `open_turn` may use `role`; content is a string or a list of parts."""
    return (
        begin + "{% for message in messages %}{% set role = message['role'] %}" + open_turn +
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] in ('image', 'image_url', 'image_pil') %}" + image +
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}" + close_turn +
        "{% endfor %}{% if add_generation_prompt %}" + gen_prompt + "{% endif %}"
    )


def chatml(image: str) -> str:
    return chat_template(image, open_turn="<|im_start|>{{ role }}\n", close_turn="<|im_end|>\n",
                          gen_prompt="<|im_start|>assistant\n")


def text_cfg(tok, **kw) -> dict:
    cfg = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.pad_token_id)
    cfg.update(kw)
    return cfg


def image_processor(prefix: str):
    """The Pillow-backed image processor class (no torchvision needed) where this transformers has
    one, else the default class (older 5.x releases)."""
    import transformers as T

    return getattr(T, f"{prefix}ImageProcessorPil", None) or getattr(T, f"{prefix}ImageProcessor")


def ids(tok, names):
    return {s: tok.convert_tokens_to_ids(s) for s in names}
