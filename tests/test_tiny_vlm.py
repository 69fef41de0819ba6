"""The tiny offline models: every family builds, saves, reloads through the Auto classes and
carries the properties the adapters rely on (single-token level words, head dim 32, a chat template)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from adapters.chat import chat_renderer  # noqa: E402
from adapters.level_tokens import resolve_level_tokens  # noqa: E402
from harness.core.levels import LEVELS, RATING_LEVELS  # noqa: E402
from harness.tools.tiny_vlm import FAMILIES, build_tiny_vlm  # noqa: E402


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_and_reloads(family, tmp_path):
    out = build_tiny_vlm(family, tmp_path / family)
    assert (out / "config.json").is_file()
    proc = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out)
    text = model.config.get_text_config()
    assert text.hidden_size // text.num_attention_heads == 32 and getattr(text, "head_dim", 32) == 32
    assert sum(p.numel() for p in model.parameters()) < 400_000
    for words in (LEVELS, RATING_LEVELS):
        for prefill in ("The quality of the second image is", "\n"):
            assert len(resolve_level_tokens(proc.tokenizer, words, prefill=prefill).ids) == 5
    # the family's tokenizer convention: SentencePiece pieces (`▁better`) or byte-level BPE (`Ġbetter`)
    marker = "▁" if '"Metaspace"' in proc.tokenizer.backend_tokenizer.to_str() else "Ġ"
    lt = resolve_level_tokens(proc.tokenizer, LEVELS, prefill="The quality of the second image is")
    assert lt.strings == [marker + w for w in LEVELS] and len(set(lt.ids)) == 5
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "The quality of the image is"}]}]
    rendered = chat_renderer(proc).apply_chat_template(msgs, tokenize=False, continue_final_message=True)
    assert rendered.endswith("The quality of the image is") and "Q?" in rendered


def test_seed_makes_builds_reproducible(tmp_path):
    def weights(d):
        return AutoModelForImageTextToText.from_pretrained(d).state_dict()

    a = weights(build_tiny_vlm("idefics3", tmp_path / "a", seed=1))
    b = weights(build_tiny_vlm("idefics3", tmp_path / "b", seed=1))
    c = weights(build_tiny_vlm("idefics3", tmp_path / "c", seed=2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny VLM family 'nope'"):
        build_tiny_vlm("nope", tmp_path)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_tiny_vlm("llava", tmp_path, image_size=50)
