"""The Compare2Score worker, its protocol and its preprocessing, on the remote-code test double.

The worker runs under this test environment's python (transformers 5). When C2S_WORKER_PYTHON
names a worker environment (transformers 4.37, made by setup_worker_env), the parity test also
runs there.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor  # noqa: E402

from adapters import c2s_worker  # noqa: E402
from adapters.base import Pair, compare_batch, load_comparator  # noqa: E402
from adapters.compare2score import (  # noqa: E402
    Compare2ScoreComparator, WorkerError, _WorkerProcess, mplug_prompt, setup_worker_env)
from harness.core.levels import LEVELS  # noqa: E402
from tests.conftest import noise_pngs
from tests.test_base import assert_fingerprint_shape

BUILD = Path(__file__).parent / "c2s_double" / "build.py"
#: docs/method.md: the official scorer's prompt, verbatim
OFFICIAL = ("USER: <|image|> <|image|> Compared with the first image, what is your quality rating for second image? "
            "\nASSISTANT: The quality of the second image is")
CLIP_MEAN_255 = (122, 116, 104)  # int(255 * (0.48145466, 0.4578275, 0.40821073))
SIZES = [(40, 24), (32, 32), (20, 50), (64, 16), (33, 47)]


def build_double(python: str, out: Path) -> Path:
    subprocess.run([python, str(BUILD), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    return build_double(sys.executable, tmp_path_factory.mktemp("c2s") / "double")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return noise_pngs(tmp_path_factory.mktemp("c2s_images"), SIZES, seed=1, prefix="im")


@pytest.fixture(scope="module")
def fault_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fault") / "fault.txt"


@pytest.fixture(scope="module")
def comp(double, fault_file):
    os.environ["C2S_DOUBLE_FAULT_FILE"] = str(fault_file)  # inherited by the worker only
    try:
        c = load_comparator(f"compare2score:{double}", python=sys.executable, batch_size=4)
    finally:
        del os.environ["C2S_DOUBLE_FAULT_FILE"]
    yield c
    c.close()


def reference_probs(folder, first, second):
    """The official computation written out by hand for one pair."""
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    proc = CLIPImageProcessor.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    ids = (tok("USER: ").input_ids + [-200] + tok(" ").input_ids[1:] + [-200] +
           tok(" Compared with the first image, what is your quality rating for second image? \n"
               "ASSISTANT: The quality of the second image is").input_ids[1:])
    squares = []
    for path in (first, second):
        img = Image.open(path).convert("RGB")
        side = max(img.size)
        sq = Image.new("RGB", (side, side), CLIP_MEAN_255)
        sq.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
        squares.append(sq)
    pixels = proc(images=squares, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(torch.tensor([ids]), images=pixels)["logits"][0, -1]
    level_ids = [tok(w).input_ids[1] for w in LEVELS]
    return torch.softmax(logits[level_ids], dim=0).numpy()


def test_prompt_is_the_official_string():
    assert mplug_prompt("official") == OFFICIAL


def test_worker_matches_the_hand_written_official_forward(comp, double, paths):
    pairs = [Pair(paths[0], paths[1]), Pair(paths[1], paths[0]), Pair(paths[2], paths[3]), Pair(paths[4], paths[0])]
    lp = comp.compare(pairs)
    assert lp.shape == (4, 5) and np.all(np.isfinite(lp))
    for row, p in zip(np.exp(lp), pairs):
        np.testing.assert_allclose(row, reference_probs(double, p.first, p.second), atol=1e-5)
    assert np.abs(np.exp(lp[0]) - np.exp(lp[1])).max() > 1e-3  # the double does see the order


def test_batch_size_does_not_change_the_numbers(comp, paths):
    pairs = [Pair(paths[i], paths[(i + 2) % 5]) for i in range(5)]
    by4 = comp.compare(pairs)
    comp.batch_size = 1
    try:
        by1 = comp.compare(pairs)
    finally:
        comp.batch_size = 4
    np.testing.assert_allclose(np.exp(by1), np.exp(by4), atol=1e-5)


def test_pad_to_square_with_the_clip_mean():
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    sq = np.asarray(c2s_worker.pad_to_square(img, CLIP_MEAN_255))
    assert sq.shape == (4, 4, 3)
    assert (sq[[0, 3]] == CLIP_MEAN_255).all() and (sq[1:3] == (255, 0, 0)).all()
    tall = np.asarray(c2s_worker.pad_to_square(Image.new("RGB", (1, 3), (0, 0, 255)), (1, 2, 3)))
    assert (tall[:, 1] == (0, 0, 255)).all() and (tall[:, [0, 2]] == (1, 2, 3)).all()
    proc = CLIPImageProcessor(image_mean=[0.48145466, 0.4578275, 0.40821073])
    assert tuple(c2s_worker.mean_colour(proc)) == CLIP_MEAN_255


def test_official_level_rule_and_prompt_ids(double):
    tok = AutoTokenizer.from_pretrained(double, trust_remote_code=True)
    ids, split = c2s_worker.level_token_ids(tok, LEVELS)
    assert ids == [tok(w).input_ids[1] for w in LEVELS] and split == [False] * 5
    pid = c2s_worker.prompt_ids(tok, OFFICIAL)
    assert pid[0] == tok.bos_token_id and pid.count(tok.bos_token_id) == 1 and pid.count(-200) == 2
    with pytest.raises(ValueError, match="share token ids"):
        c2s_worker.level_token_ids(tok, ["inferior", "inferior"])


def test_unreadable_image_fails_only_its_pair(comp, paths, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    res = compare_batch(comp, [Pair(paths[0], paths[1]), Pair(str(bad), paths[1])])
    assert res.ok.tolist() == [True, False] and "bad.jpg" in res.errors[1]
    assert 0 < res.meta[0]["level_mass"] <= 1


def test_model_error_is_reported_and_the_worker_survives(comp, paths, fault_file):
    fault_file.write_text("raise")
    try:
        with pytest.raises(WorkerError, match="injected fault in the test double"):
            comp.compare([Pair(paths[0], paths[1])])
    finally:
        fault_file.write_text("")
    assert np.all(np.isfinite(comp.compare([Pair(paths[0], paths[1])])))


# a dead worker is noticed without any timeout; a stuck one (the double never answers) only by its
# timeout, so the 3 s is what is tested and no slow machine can make the worker answer first
@pytest.mark.parametrize("fault,timeout_s,match", [
    ("exit", 600, r"exited while handling 'compare' \(exit code 7\)"),
    ("hang", 3, r"no answer to 'compare' within 3 s and was stopped")])
def test_dead_or_stuck_worker_gives_a_clear_error(double, paths, tmp_path, monkeypatch, fault, timeout_s, match):
    fault_path = tmp_path / "fault.txt"
    fault_path.write_text(fault)
    monkeypatch.setenv("C2S_DOUBLE_FAULT_FILE", str(fault_path))
    c = Compare2ScoreComparator(str(double), python=sys.executable, timeout_s=timeout_s)
    pair = Pair(paths[0], paths[1])
    with pytest.raises(WorkerError, match=match):
        c.compare([pair])
    assert c._worker.proc.poll() is not None  # nothing left running
    res = compare_batch(c, [pair])  # the runner's path: the failure is recorded per pair
    assert not res.ok[0] and "is not running" in res.errors[0]
    c.close()


def test_protocol_errors_leave_the_worker_serving(tmp_path):
    w = _WorkerProcess(sys.executable)
    try:
        assert w.request({"op": "ping"}, 30) == {"ok": True}
        with pytest.raises(WorkerError, match="unknown op 'fly'"):
            w.request({"op": "fly"}, 30)
        with pytest.raises(WorkerError, match="send a 'load' request first"):
            w.request({"op": "compare", "images": [], "pairs": []}, 30)
        with pytest.raises(WorkerError, match="failed on 'load'.*no_such_model"):
            w.request({"op": "load", "model": str(tmp_path / "no_such_model"), "prompt": OFFICIAL,
                       "levels": list(LEVELS)}, 60)
        assert w.request({"op": "ping"}, 30) == {"ok": True}
    finally:
        w.close()
    assert w.proc.poll() == 0  # shut down cleanly


def test_fingerprint_and_registry(comp):
    assert isinstance(comp, Compare2ScoreComparator)
    fp = comp.fingerprint()
    assert fp["backend"] == "compare2score" and fp["model"]["class"] == "C2SDoubleForCausalLM"
    assert fp["prompt"]["rendered"] == OFFICIAL and fp["level_tokens"]["strategy"] == "first_subtoken"
    assert fp["preprocessing"]["pad_to_square"] == list(CLIP_MEAN_255)
    assert fp["dtype"] == "float32" and fp["extra"]["device_type"] == "cpu" and fp["model"]["weights"]["weight_files"]
    assert_fingerprint_shape(fp)
    with pytest.raises(ValueError, match="unknown option 'order'"):
        load_comparator("compare2score", order="both")  # checked before any worker starts


def test_missing_worker_environment_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("C2S_HOME", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="`c2s setup compare2score`"):
        Compare2ScoreComparator()
    with pytest.raises(ValueError, match="does not exist"):
        Compare2ScoreComparator(python=str(tmp_path / "bin" / "python"))


def test_setup_worker_env_creates_then_reuses(tmp_path):
    logs = []
    py = setup_worker_env(tmp_path / "env", torch=None, requirements=(), log=logs.append)
    assert py.is_file() and (tmp_path / "env" / "c2s-worker-env.json").is_file()
    assert setup_worker_env(tmp_path / "env", torch=None, requirements=(), log=logs.append) == py
    assert logs[0].startswith("creating") and logs[1].startswith("c2s worker environment up to date")


@pytest.mark.integration
def test_worker_environment_with_old_transformers(tmp_path, paths):
    """The worker in the environment `c2s setup compare2score` builds (transformers 4.37, torch 2.1);
    `make test-integration` builds it and names its python in C2S_WORKER_PYTHON."""
    py = os.environ.get("C2S_WORKER_PYTHON")
    if not py:
        pytest.fail("set C2S_WORKER_PYTHON to the worker environment's python (make test-integration does)")
    folder = build_double(py, tmp_path / "double_old")
    c = Compare2ScoreComparator(str(folder), python=py)
    try:
        lp = c.compare([Pair(paths[0], paths[2]), Pair(paths[3], paths[4])])
        version = c.info["transformers"]
    finally:
        c.close()
    assert version.startswith("4.3")
    # the reference runs on transformers 5, whose CLIP resize differs from 4.37's in the last bits
    for row, (a, b) in zip(np.exp(lp), [(paths[0], paths[2]), (paths[3], paths[4])]):
        np.testing.assert_allclose(row, reference_probs(folder, a, b), atol=1e-4)
