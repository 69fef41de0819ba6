"""The `composite` pairing: two images side by side in ONE image, for models that take one image per prompt.

Why this shape: a single-image model (PaliGemma, BLIP-2, ...) can still compare two images if it sees
both at once, so the pair (first, second) becomes one picture, first on the LEFT, second on the RIGHT,
each at its own size (no resampling: resizing would change the very quality being judged), vertically
centred on a mid-grey canvas, with a visible separator between them (a white bar edged in black, so it
stands out on dark and light images alike). The composite prompt (prompts/composite.j2) names "left" and
"right"; the level words are unchanged. It is a different protocol from two images in one prompt
(docs/models.md), recorded as such in the fingerprint (`preprocessing.pairing`) and the reports.
"""
from __future__ import annotations

#: the separator's width in pixels: a white bar with a black edge of EDGE pixels on each side
SEPARATOR = 12
EDGE = 2
BACKGROUND = (128, 128, 128)


def side_by_side(left, right):
    """One RGB PIL image: `left`, the separator, `right` (both PIL images, kept at their own size)."""
    from PIL import Image

    height = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + SEPARATOR + right.width, height), BACKGROUND)
    canvas.paste(left.convert("RGB"), (0, (height - left.height) // 2))
    canvas.paste(right.convert("RGB"), (left.width + SEPARATOR, (height - right.height) // 2))
    x = left.width
    canvas.paste((0, 0, 0), (x, 0, x + SEPARATOR, height))
    canvas.paste((255, 255, 255), (x + EDGE, 0, x + SEPARATOR - EDGE, height))
    return canvas


def pairing_record(pairing: str) -> dict:
    """The fingerprint's `preprocessing` entries for a pairing: its name and, for a composite, how the
    images are laid out (a change there changes the numbers, hence the cache key)."""
    if pairing != "composite":
        return {"pairing": pairing}
    return {"pairing": pairing, "composite": {"layout": "first left, second right, each at its own size, "
                                                        "vertically centred", "separator_px": SEPARATOR,
                                              "edge_px": EDGE, "background": list(BACKGROUND)}}


def protocol_of(fingerprint: dict) -> str:
    """"composite" or "two-image": the protocol a comparator fingerprint was judged under (fingerprints
    without a pairing entry, other backends and older runs, are two-image)."""
    pre = fingerprint.get("preprocessing") if isinstance(fingerprint, dict) else None
    return "composite" if isinstance(pre, dict) and pre.get("pairing") == "composite" else "two-image"
