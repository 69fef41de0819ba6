"""Jinja2 prompt templates (the `.j2` files beside this module).

Why one file per wording: the exact text changes the numbers, so a template's text and its sha256
go into every comparator's fingerprint. One template defines both halves of the conversation:

    {% block question %}{{ image(1) }} {{ image(2) }} Compared with the first image, ...{% endblock %}
    {% block prefill %}The quality of the second image is{% endblock %}

`image(k)` marks where the k-th image goes (templates may interleave text and images); the
`prefill` block is the start of the assistant's answer, continued by the level word. Variables
available to templates: `levels` and `rating_levels` (harness.core.levels); rendering is strict, so a
misspelt variable is an error, not an empty string.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness.core.levels import LEVELS, RATING_LEVELS

_DIR = Path(__file__).resolve().parent
_SLOT = "\x00image:{}\x00"
_SLOT_RE = re.compile("\x00image:(\\d+)\x00")
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class RenderedPrompt:
    """`segments`: the user question as text strings (verbatim, spaces between images kept) and
    0-based image indices, in order; `prefill`: the assistant's answer so far (stripped: chat
    templates cut trailing space when they continue a final message)."""

    segments: tuple
    prefill: str

    @property
    def n_images(self) -> int:
        return sum(1 for s in self.segments if isinstance(s, int))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str
    sha256: str

    def render(self, **kw) -> RenderedPrompt:
        """Render both blocks; extra keyword arguments become template variables."""
        try:
            return self._render(kw)
        except jinja2.UndefinedError as exc:
            raise ValueError(f"prompt {self.name!r}: {exc} (pass it to render())") from exc

    def _render(self, kw: dict) -> RenderedPrompt:
        tmpl = _ENV.from_string(self.text)
        ctx = tmpl.new_context({"levels": LEVELS, "rating_levels": RATING_LEVELS,
                                "image": lambda k: _SLOT.format(int(k)), **kw})
        question = "".join(tmpl.blocks["question"](ctx)).strip()
        prefill = "".join(tmpl.blocks["prefill"](ctx)).strip()
        segments: list = []
        for i, piece in enumerate(_SLOT_RE.split(question)):
            if i % 2:
                segments.append(int(piece) - 1)
            elif piece:
                segments.append(piece)
        images = sorted(s for s in segments if isinstance(s, int))
        if images != list(range(len(images))) or not images:
            raise ValueError(f"prompt {self.name!r} must place image(1)..image(n) once each, got "
                             f"{[k + 1 for k in images]}")
        return RenderedPrompt(tuple(segments), prefill)

    @property
    def n_images(self) -> int:
        """2 for a comparison wording, 1 for a single-image rating wording (rendered without extra
        variables)."""
        return self.render().n_images

    def fingerprint(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "text": self.text}


def list_prompts() -> list[str]:
    """Names of the bundled templates."""
    return sorted(p.stem for p in _DIR.glob("*.j2"))


def load_prompt(name: str) -> PromptTemplate:
    """A bundled template by name (`official`, `paper`, `generic`, `rating`) or a `.j2` file path."""
    path = Path(name)
    if path.suffix != ".j2":
        path = _DIR / f"{name}.j2"
    if not path.is_file():
        raise ValueError(f"unknown prompt {name!r}: not a file and not one of {', '.join(list_prompts())}")
    text = path.read_text(encoding="utf-8")
    try:
        blocks = _ENV.from_string(text).blocks
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"prompt {name!r} is not valid Jinja2: {exc}") from exc
    missing = [b for b in ("question", "prefill") if b not in blocks]
    if missing:
        raise ValueError(f"prompt {name!r} lacks the block(s) {missing}: a template defines the user "
                         "question and the assistant prefill")
    tmpl = PromptTemplate(name=path.stem, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
    try:  # validate image slots now, not at the first comparison
        tmpl._render({})
    except jinja2.UndefinedError:
        pass  # the template needs variables that only render(**kw) can supply
    return tmpl
