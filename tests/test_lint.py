"""Habits the suite enforces: pyflakes over the whole project, mypy (basic mode) over the layers the rest
trusts, and no copy-paste (six or more equal lines) inside harness/ and adapters/."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return exe


def test_pyflakes_clean():
    out = subprocess.run([_tool("ruff"), "check", "--select", "F", "--output-format", "concise", "harness",
                          "adapters", "prompts", "bench", "tests"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_mypy_clean():
    """[tool.mypy] in pyproject.toml names the files; the cache lives in the temp folder, not the repo
    (about 20 s cold, under a second warm)."""
    cache = Path(tempfile.gettempdir()) / "c2s-harness-mypy-cache"
    out = subprocess.run([_tool("mypy"), "--cache-dir", str(cache)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_duplicate_code():
    """pylint's similarity checker; imports are not ignored, because its --ignore-imports parses each file
    with astroid, which takes minutes on adapters/hf.py."""
    files = sorted(str(p.relative_to(REPO)) for d in ("harness", "adapters") for p in (REPO / d).rglob("*.py"))
    out = subprocess.run([_tool("symilar"), "--duplicates", "6", "--ignore-comments", "--ignore-docstrings", *files],
                         cwd=REPO, capture_output=True, text=True)
    total = re.search(r"TOTAL lines=\d+ duplicates=(\d+)", out.stdout)
    assert out.returncode == 0 and total, out.stdout + out.stderr
    assert total.group(1) == "0", out.stdout
