"""Shared test fixtures. Tests never download anything (HF_HUB_OFFLINE=1)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the harness's home folder (pair cache, demo benchmark, downloads): one per test session, never the user's
os.environ["C2S_HOME"] = tempfile.mkdtemp(prefix="c2s-test-home-")
atexit.register(shutil.rmtree, os.environ["C2S_HOME"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
#: ../shared beside the project's root (read-only reference data; never copied into the repo)
SHARED = Path(os.environ.get("C2S_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's reference data folder; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA}")
    return SHARED_DATA


def noise_pngs(folder: Path, sizes, seed: int, prefix: str = "img") -> list[str]:
    """Random RGB PNGs of the given (width, height) sizes, deterministic per seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for k, (w, h) in enumerate(sizes):
        p = Path(folder) / f"{prefix}{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> list[Path]:
    """The offline demo without its tiny LMM, run once per session: four classical runs of 260 images (~10 s)."""
    import contextlib
    import io

    from harness.run.record import run_dirs_in
    from harness.tools.demo import run_demo

    out = tmp_path_factory.mktemp("demo-runs")
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(out, with_lmm=False)
    return run_dirs_in(out / "runs")


@pytest.fixture(scope="session")
def chromium_context():
    """One headless Chromium for the whole session (harness.tools.browser); the browser tests fail, naming the
    install command, where it is missing."""
    from harness.tools.browser import chromium

    with chromium() as context:
        yield context


@pytest.fixture(params=["plain", "httpx"])
def transport(request, monkeypatch) -> str:
    """Both ways the OpenAI client's requests travel: `adapters.plain_http` (a plain http server, no proxy)
    and the SDK's httpx client (TLS, proxies, credentials in the URL), forced here for a plain server."""
    if request.param == "httpx":
        monkeypatch.setattr("adapters.plain_http.direct", lambda url: False)
    return request.param
