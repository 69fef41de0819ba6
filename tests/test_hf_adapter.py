"""The transformers adapter on a tiny random model of every family, built once per session.

Each model goes through `from_pretrained` of a saved folder, its own chat template and the
adapter's real code; the reference is a hand-written forward that shares nothing with the
adapter but the model object.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from adapters.chat import chat_renderer  # noqa: E402
from adapters.base import Pair, compare_batch, load_comparator  # noqa: E402
from adapters.hf import HFComparator  # noqa: E402
from harness.core.levels import LEVELS, RATING_LEVELS  # noqa: E402
from harness.tools.families import FAMILIES as ALL_FAMILIES  # noqa: E402
from harness.tools.tiny_vlm import FAMILIES, build_tiny_vlm  # noqa: E402
from tests.conftest import noise_pngs
from tests.test_base import assert_fingerprint_shape

#: the official wording as chat content: image, " ", image, " Compared ..."
QUESTION = [{"type": "image"}, {"type": "text", "text": " "}, {"type": "image"},
            {"type": "text", "text": " Compared with the first image, what is your quality rating for second image?"}]
RATING_QUESTION = [{"type": "text", "text": "How would you rate the quality of this image?"}, {"type": "image"}]
PREFILL = "The quality of the second image is"
#: the composite protocol's wording (prompts/composite.j2): one side-by-side image, then the question
COMPOSITE_QUESTION = [{"type": "image"}, {"type": "text", "text": " This image shows two pictures side by side, "
                      "separated by a white bar. Compared with the left picture, what is your quality rating for the "
                      "right picture?"}]
COMPOSITE_PREFILL = "The quality of the right picture is"
PROTOCOL = {f.tiny: f.protocol for f in ALL_FAMILIES if f.tiny}
SIZES = [(64, 64), (80, 64), (64, 96), (48, 48), (100, 70), (64, 64), (72, 120), (90, 90)]


@pytest.fixture(scope="session")
def image_paths(tmp_path_factory):
    return noise_pngs(tmp_path_factory.mktemp("images"), SIZES, seed=0)


@pytest.fixture(scope="session")
def pairs(image_paths):
    """Eight pairs over eight images of different sizes (so some batches need left padding)."""
    return [Pair(image_paths[i], image_paths[(3 * i + 1) % 8]) for i in range(8)]


@pytest.fixture(scope="session", params=FAMILIES)
def comp(request, tmp_path_factory):
    folder = build_tiny_vlm(request.param, tmp_path_factory.mktemp(request.param))
    c = HFComparator(str(folder), batch_size=8, pairing=PROTOCOL[request.param])
    yield c
    c.close()


def side_by_side_by_hand(left, right):
    """The composite written out with numpy: grey canvas, images centred, a 12-pixel bar (2 black, 8 white,
    2 black) between them."""
    a, b = (np.asarray(im) for im in (left, right))
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h, a.shape[1] + 12 + b.shape[1], 3), 128, np.uint8)
    canvas[(h - a.shape[0]) // 2:(h - a.shape[0]) // 2 + a.shape[0], :a.shape[1]] = a
    canvas[(h - b.shape[0]) // 2:(h - b.shape[0]) // 2 + b.shape[0], a.shape[1] + 12:] = b
    canvas[:, a.shape[1]:a.shape[1] + 12] = 0
    canvas[:, a.shape[1] + 2:a.shape[1] + 10] = 255
    return Image.fromarray(canvas)


def pair_probs(comp, first, second):
    """The reference for one pair under the comparator's protocol."""
    if comp.options.pairing == "composite":
        shown = side_by_side_by_hand(*(Image.open(p).convert("RGB") for p in (first, second)))
        return direct_probs(comp, [shown], COMPOSITE_QUESTION, COMPOSITE_PREFILL, LEVELS)
    return direct_probs(comp, [first, second], QUESTION, PREFILL, LEVELS)


def direct_probs(comp, images, content, prefill, words):
    """The reference: messages written out by hand, the model's chat template, one forward."""
    messages = [{"role": "user", "content": content},
                {"role": "assistant", "content": [{"type": "text", "text": prefill}]}]
    proc = comp.processor
    text = chat_renderer(proc).apply_chat_template(messages, tokenize=False, continue_final_message=True)
    pil = [p if isinstance(p, Image.Image) else Image.open(p).convert("RGB") for p in images]
    inputs = proc(text=[text], images=[pil], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = comp.model(**inputs).logits[0, -1]
    ids = [proc.tokenizer.encode(f"{prefill} {w}", add_special_tokens=False)[-1] for w in words]
    return torch.softmax(logits[ids], dim=0).numpy()


def test_matches_direct_forward(comp, pairs):
    lp = comp.compare(pairs)
    assert lp.shape == (8, 5) and np.all(np.isfinite(lp))
    for row, pair in zip(np.exp(lp), pairs):
        np.testing.assert_allclose(row, pair_probs(comp, pair.first, pair.second), atol=1e-5)


def test_batch_size_one_equals_eight(comp, pairs):
    full = comp.compare(pairs)
    comp.batch_size = 1
    try:
        single = comp.compare(pairs)
    finally:
        comp.batch_size = 8
    np.testing.assert_allclose(np.exp(single), np.exp(full), atol=1e-4)


def test_pairs_are_shown_as_given(comp, pairs):
    """No reordering in the adapter (the runner's `order: both` plans the swapped pair itself)."""
    a, b = pairs[1].first, pairs[1].second
    seen = []
    real = comp.processed_inputs

    def spy(items, prompt=None):
        seen.append(items)
        out = real(items, prompt)
        seen.append(out)
        return out

    comp.processed_inputs = spy
    try:
        swapped = comp.compare([Pair(b, a)])
    finally:
        del comp.processed_inputs
    assert seen[0] == [(b, a)]
    pil = {p: Image.open(p).convert("RGB") for p in (a, b)}
    text = comp.pair_prompt.text
    shown_ba, shown_ab = ([side_by_side_by_hand(pil[x], pil[y])] if comp.options.pairing == "composite"
                          else [pil[x], pil[y]] for x, y in ((b, a), (a, b)))
    shown_ba = comp.processor(text=[text], images=[shown_ba], return_tensors="pt", add_special_tokens=False)
    shown_ab = comp.processor(text=[text], images=[shown_ab], return_tensors="pt", add_special_tokens=False)
    key = next(k for k in shown_ba if k.startswith("pixel_values"))  # Video-LLaVA: pixel_values_images
    assert torch.equal(seen[1][key], shown_ba[key])
    assert not torch.equal(seen[1][key], shown_ab[key]) or not torch.equal(seen[1]["input_ids"], shown_ab["input_ids"])
    np.testing.assert_allclose(np.exp(swapped[0]), pair_probs(comp, b, a), atol=1e-5)


def test_rate_single_image(comp, image_paths):
    lp = comp.rate(image_paths[:3])
    assert lp.shape == (3, 5) and np.all(np.isfinite(lp))
    for row, path in zip(np.exp(lp), image_paths[:3]):
        ref = direct_probs(comp, [path], RATING_QUESTION, "The quality of the image is", RATING_LEVELS)
        np.testing.assert_allclose(row, ref, atol=1e-5)


def test_unreadable_image_fails_only_its_pair(comp, pairs, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    batch = [pairs[0], Pair(pairs[0].first, str(bad)), pairs[2]]
    res = compare_batch(comp, batch)
    assert res.ok.tolist() == [True, False, True]
    assert "broken.png" in res.errors[1] and np.all(np.isnan(res.logprobs[1]))
    np.testing.assert_allclose(res.logprobs[[0, 2]], comp.compare([pairs[0], pairs[2]]), atol=1e-6)
    assert 0 < res.meta[0]["level_mass"] <= 1


def test_fingerprint_names_what_changes_the_numbers(comp):
    fp = comp.fingerprint()
    composite = comp.options.pairing == "composite"
    prefill = COMPOSITE_PREFILL if composite else PREFILL
    assert fp["backend"] == "hf" and fp["dtype"] == "float32" and "order" not in str(list(fp["extra"]))
    assert fp["prompt"]["name"] == ("composite" if composite else "official") and len(fp["prompt"]["sha256"]) == 64
    assert fp["prompt"]["rendered"].endswith(prefill)
    assert fp["preprocessing"]["pairing"] == comp.options.pairing and ("composite" in fp["preprocessing"]) == composite
    assert fp["level_tokens"]["ids"] == [
        comp.processor.tokenizer.encode(f"{prefill} {w}", add_special_tokens=False)[-1] for w in LEVELS]
    assert fp["model"]["id"] == comp.model_id and fp["model"]["class"] == type(comp.model).__name__
    assert fp["model"]["weights"]["weight_files"] and fp["versions"]["transformers"]
    assert_fingerprint_shape(fp)


def test_options_are_checked_and_registry_builds_it(tmp_path_factory):
    folder = build_tiny_vlm("idefics3", tmp_path_factory.mktemp("reg"))
    for bad, match in [({"order": "both"}, "unknown option 'order'.*valid options: batch_size, device"),
                       ({"dtype": "float8"}, r"'dtype' = 'float8' \(str\) is not one of 'float32'"),
                       ({"level_strategy": "last"}, "'level_strategy' = 'last'"),
                       ({"prompt": "rating"}, "shows 1 image"), ({"batch_size": 0}, "'batch_size' must be >= 1"),
                       ({"max_pixels": "many"}, "'max_pixels' = 'many' .* is not int or None")]:
        with pytest.raises(ValueError, match=match):
            HFComparator(str(folder), **bad)
    c = load_comparator(f"hf:{folder}", prompt="paper", max_pixels=32 * 32)
    assert isinstance(c, HFComparator) and c.fingerprint()["prompt"]["name"] == "paper"
    assert c.fingerprint()["preprocessing"]["max_pixels"] == 1024
    # a model already in memory goes through the same code
    same = HFComparator(c.model, processor=c.processor, prompt="paper", max_pixels=32 * 32)
    img = str(folder / "probe.png")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(img)
    np.testing.assert_allclose(same.compare([Pair(img, img)]), c.compare([Pair(img, img)]), atol=1e-6)
    assert same.fingerprint()["prompt"] == c.fingerprint()["prompt"]
    with pytest.raises(ValueError, match="needs its processor="):
        HFComparator(c.model)
    with pytest.raises(ValueError, match="but dtype='bfloat16'"):
        HFComparator(c.model, processor=c.processor, dtype="bfloat16")
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.compare([Pair(img, img)])


def test_rating_prompt_is_part_of_the_fingerprint(comp):
    """The runner keys cached ratings on fingerprint()["rating_prompt"]["sha256"]."""
    from harness.run.judging import prompt_key

    fp = comp.fingerprint()
    assert fp["rating_prompt"]["name"] == "rating"
    assert prompt_key(fp, rating=True) == "rating:" + fp["rating_prompt"]["sha256"]
