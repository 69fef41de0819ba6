"""The layers hold: import-linter's contracts (pyproject.toml) are kept, they catch an upward import
(lazy ones too), and docs/architecture.md draws the same layers in the same order."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def _lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts over the packages importable from cwd (or env's PYTHONPATH)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return subprocess.run([exe, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True)


def _layers() -> list[str]:
    (contract,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def test_import_contracts_are_kept():
    out = _lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_contract_catches_a_lazy_upward_import(tmp_path):
    """The same contracts over a skeleton of the layout where core imports the CLI inside a function."""
    for layer in _layers():
        for module in (m.strip() for m in layer.split("|")):
            package = tmp_path.joinpath(*module.split("."))
            package.mkdir(parents=True)
            for folder in [package, *package.parents[:len(package.relative_to(tmp_path).parts) - 1]]:
                (folder / "__init__.py").touch()
    (tmp_path / "harness" / "core" / "levels.py").write_text("def f():\n    import harness.cli\n")
    out = _lint_imports(tmp_path, env={"PATH": "", "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout
    assert "harness.core.levels -> harness.cli" in out.stdout


def test_architecture_doc_draws_the_contract_layers():
    """The picture in docs/architecture.md lists, top to bottom, exactly the contract's layers."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layers -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md: no ```-block after <!-- layers -->"
    drawn = []
    for row in block.group(1).splitlines():
        first_column = re.split(r"\s{3,}", row.strip())[0]  # module names, then a description
        names = re.findall(r"(?<![\w.])(harness\.\w+|adapters|prompts)(?![\w.])", first_column)
        if names:
            drawn.append(" | ".join(names))
    assert drawn == [" | ".join(m.strip() for m in layer.split("|")) for layer in _layers()]


def test_docstring_references_name_real_sections():
    """`docs/method.md, "Presentation order"` in a docstring or comment points at a heading that exists,
    and nothing points at notes that are not in the repository."""
    headings = {}
    for doc in ("architecture", "method"):
        text = (REPO / "docs" / f"{doc}.md").read_text(encoding="utf-8")
        headings[doc] = {h.strip() for h in re.findall(r"^#+ (.+)$", text, re.M)}
    broken = []
    for folder in ("harness", "adapters", "prompts", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            broken += [f"{path.relative_to(REPO)}: points at {name}" for name in ("DESIGN.md", "PAPER.md")
                       if name in text]
            for doc, section in re.findall(r'docs/(architecture|method)\.md,\s*"([^"]+)"', text):
                if section not in headings[doc]:
                    broken.append(f"{path.relative_to(REPO)}: docs/{doc}.md has no section {section!r}")
    assert not broken, "\n".join(broken)
