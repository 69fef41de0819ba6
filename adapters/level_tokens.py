"""Which vocabulary ids carry the five level words, for one tokenizer and one assistant prefill.

Why: the harness reads the next-token logits of the level words right after the prefill ("The
quality of the second image is"). The id that matters is the one the model would emit there, so a
word is tokenised as it would follow the prefill: with a leading space after a word character,
without one after whitespace or an empty prefill. A word that is not one token there cannot be
scored exactly; we refuse it unless the user picks the official Compare2Score rule
("first_subtoken": read the first sub-token, as `tokenizer(word)["input_ids"][1]` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, get_args

from harness.core.levels import LEVELS

#: how a level word that is not one token is read (adapters declare their option with this type)
Strategy = Literal["single", "first_subtoken"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True)
class LevelTokens:
    """The resolved ids (in level order), the token strings they decode from, and the rule used."""

    ids: list[int]
    strings: list[str]
    strategy: str

    def as_dict(self) -> dict:
        return {"ids": list(self.ids), "strings": list(self.strings), "strategy": self.strategy}


def _continuation(tokenizer, prefill: str, text: str) -> list[int] | None:
    """Ids that `text` adds after `prefill`, or None when the prefill's own tokens change."""
    head = tokenizer.encode(prefill, add_special_tokens=False) if prefill else []
    full = tokenizer.encode(prefill + text, add_special_tokens=False)
    if full[: len(head)] != head or len(full) == len(head):
        return None
    return full[len(head):]


def _variants(word: str, prefill: str) -> list[str]:
    """Spellings of `word` after the prefill, most natural first."""
    if prefill and not prefill[-1].isspace():
        return [" " + word, word]
    return [word, " " + word]


def resolve_level_tokens(tokenizer, words: Sequence[str] = LEVELS, *, prefill: str = "",
                         strategy: str = "single") -> LevelTokens:
    """Resolve one token id per word (see the module docstring); raise ValueError when impossible.

    `prefill` is the assistant text the model continues (as the chat template renders it, i.e.
    without trailing whitespace). Ids must be distinct, else two levels would share a logit.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown level-token strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    ids: list[int] = []
    for word in words:
        found: list[int] | None = None
        splits = []
        for text in _variants(word, prefill):
            cont = _continuation(tokenizer, prefill, text)
            if cont is None:
                continue
            if len(cont) == 1:
                found = cont
                break
            splits.append((text, cont))
        if found is None and strategy == "first_subtoken" and splits:
            found = splits[0][1][:1]
        if found is None:
            shown = "; ".join(f"{t!r} -> {tokenizer.convert_ids_to_tokens(c)}" for t, c in splits) or "no tokens"
            raise ValueError(
                f"level word {word!r} is not a single token after the prefill {prefill!r} ({shown}); "
                "use level_strategy='first_subtoken' (the official Compare2Score rule) to read its first sub-token")
        ids.append(found[0])
    if len(set(ids)) != len(ids):
        clash = {w: i for w, i in zip(words, ids) if ids.count(i) > 1}
        raise ValueError(f"level words share token ids {clash}: their logits cannot be told apart")
    return LevelTokens(ids=ids, strings=list(tokenizer.convert_ids_to_tokens(ids)), strategy=strategy)
