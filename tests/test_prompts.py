"""Prompt templates: both halves from one file, image slots, strictness, hashes."""
from __future__ import annotations

import hashlib

import pytest

from adapters.chat import IMAGE_PART, chat_template_kwargs, conversation, image_url_part
from prompts import list_prompts, load_prompt


def test_bundled_prompts():
    assert set(list_prompts()) >= {"paper", "official", "generic", "rating", "generic_rating"}
    for name in list_prompts():
        p = load_prompt(name)
        assert p.sha256 == hashlib.sha256(p.text.encode()).hexdigest()
        assert p.n_images == (1 if "rating" in name or name == "composite" else 2)


def test_generic_rating_names_the_rating_words():
    text = load_prompt("generic_rating").render().segments[-1]
    assert "bad, poor, fair, good or excellent?" in text and "one word" in text


def test_official_wording_exactly():
    r = load_prompt("official").render()
    assert r.segments == (0, " ", 1, " Compared with the first image, what is your quality rating for second image?")
    assert r.prefill == "The quality of the second image is"


def test_paper_wording_interleaves_images():
    r = load_prompt("paper").render()
    assert r.segments == ("Compared with the first image ", 0, ", how is the quality of the second image ", 1, "?")


def test_generic_names_the_levels_and_rating_is_single_image():
    assert "inferior, worse, similar, better or superior?" in load_prompt("generic").render().segments[-1]
    r = load_prompt("rating").render()
    assert r.segments == ("How would you rate the quality of this image?", 0)
    assert r.prefill == "The quality of the image is"


def test_bad_templates_are_refused(tmp_path):
    (tmp_path / "noprefill.j2").write_text("{% block question %}{{ image(1) }}hi{% endblock %}")
    with pytest.raises(ValueError, match="prefill"):
        load_prompt(str(tmp_path / "noprefill.j2"))
    (tmp_path / "twice.j2").write_text("{% block question %}{{ image(1) }}{{ image(1) }}{% endblock %}"
                                       "{% block prefill %}x{% endblock %}")
    with pytest.raises(ValueError, match="once each"):
        load_prompt(str(tmp_path / "twice.j2"))
    (tmp_path / "typo.j2").write_text("{% block question %}{{ image(1) }}{{ levelz }}{% endblock %}"
                                      "{% block prefill %}x{% endblock %}")
    with pytest.raises(ValueError, match="levelz"):
        load_prompt(str(tmp_path / "typo.j2")).render()
    with pytest.raises(ValueError, match="unknown prompt"):
        load_prompt("nope")


def test_custom_template_file_and_variables(tmp_path):
    f = tmp_path / "mine.j2"
    f.write_text("{% block question %}{{ image(2) }} vs {{ image(1) }} ({{ who }}){% endblock %}"
                 "{% block prefill %}Verdict:{% endblock %}")
    r = load_prompt(str(f)).render(who="me")
    with pytest.raises(ValueError, match="'who' is undefined"):
        load_prompt(str(f)).render()
    assert r.segments == (1, " vs ", 0, " (me)") and r.prefill == "Verdict:"


def test_conversation_places_image_parts_and_prefill():
    r = load_prompt("paper").render()
    a, b = image_url_part("data:a"), image_url_part("data:b")
    msgs = conversation(r, [a, b])
    assert msgs[0]["role"] == "user" and msgs[0]["content"][1] is a and msgs[0]["content"][3] is b
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": r.prefill}]}
    assert chat_template_kwargs(r) == {"continue_final_message": True, "add_generation_prompt": False}
    with pytest.raises(ValueError, match="2 image"):
        conversation(r, [IMAGE_PART])
