"""Level-token resolution on tokenizers trained on the spot: single tokens, splits, clashes."""
from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from adapters.level_tokens import LevelTokens, resolve_level_tokens  # noqa: E402
from harness.core.levels import LEVELS, RATING_LEVELS  # noqa: E402

PREFILL = "The quality of the second image is"


def bpe(corpus, vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def whole_words():
    """Every level word is one token with a leading space; without one only some are."""
    return bpe([PREFILL] * 20 + [f"{PREFILL} {w}." for w in LEVELS] * 40 + ["\nbetter"] * 40, 400)


@pytest.fixture(scope="module")
def split_words():
    """' inferior' -> ' inf' + 'erior', etc.: no level word is one token."""
    return bpe([PREFILL] * 20 + [" inf", " wor", " sim", " bet", " sup", "erior", "se", "ilar", "ter"] * 30, 300)


def test_single_tokens_follow_the_prefill(whole_words):
    lt = resolve_level_tokens(whole_words, prefill=PREFILL)
    assert isinstance(lt, LevelTokens) and lt.strategy == "single"
    assert lt.strings == ["Ġ" + w for w in LEVELS]
    for w, i in zip(LEVELS, lt.ids):  # the id is exactly what the tokenizer emits after the prefill
        assert whole_words.encode(f"{PREFILL} {w}")[-1] == i
    assert len(set(lt.ids)) == 5


def test_after_whitespace_the_bare_word_is_preferred(whole_words):
    lt = resolve_level_tokens(whole_words, ["better"], prefill="Answer:\n")
    assert lt.strings == ["better"]


def test_split_word_is_refused_with_its_tokens(split_words):
    with pytest.raises(ValueError) as err:
        resolve_level_tokens(split_words, prefill=PREFILL)
    msg = str(err.value)
    assert "'inferior'" in msg and "'Ġinf'" in msg and "'erior'" in msg and "first_subtoken" in msg


def test_first_subtoken_strategy_accepts_split_words(split_words):
    lt = resolve_level_tokens(split_words, prefill=PREFILL, strategy="first_subtoken")
    assert lt.strings == ["Ġinf", "Ġwor", "Ġsim", "Ġbet", "Ġsup"]
    assert lt.ids == split_words.convert_tokens_to_ids(lt.strings)
    assert lt.as_dict()["strategy"] == "first_subtoken"


def test_clashing_ids_are_refused():
    chars = bpe(["abc"], 257)  # byte alphabet only: every word starts with the same 'Ġ' byte
    with pytest.raises(ValueError, match="share token ids"):
        resolve_level_tokens(chars, prefill=PREFILL, strategy="first_subtoken")


def test_rating_words_and_bad_strategy(whole_words):
    with pytest.raises(ValueError, match="'bad'"):
        resolve_level_tokens(whole_words, RATING_LEVELS, prefill=PREFILL)
    with pytest.raises(ValueError, match="unknown level-token strategy"):
        resolve_level_tokens(whole_words, prefill=PREFILL, strategy="last")


def sentencepiece_bpe(corpus, vocab):
    """Llama-2/Mistral/Gemma style: Metaspace pieces (`▁` for a space), no space added at the start."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_sentencepiece_words_whole_and_split():
    """`▁better` after the prefill; a word that splits under SentencePiece is refused, or read by its first piece."""
    whole = sentencepiece_bpe([PREFILL] * 20 + [f"{PREFILL} {w}" for w in LEVELS] * 40, 300)
    lt = resolve_level_tokens(whole, prefill=PREFILL)
    assert lt.strings == ["▁" + w for w in LEVELS]
    assert [whole.encode(f"{PREFILL} {w}")[-1] for w in LEVELS] == lt.ids
    split = sentencepiece_bpe([PREFILL] * 20 + [" inf", " wor", " sim", " bet", " sup", "erior", "se", "ilar", "ter"]
                              * 30, 120)
    with pytest.raises(ValueError, match="'▁inf'"):
        resolve_level_tokens(split, prefill=PREFILL)
    first = resolve_level_tokens(split, prefill=PREFILL, strategy="first_subtoken")
    assert first.strings == ["▁inf", "▁wor", "▁sim", "▁bet", "▁sup"]
