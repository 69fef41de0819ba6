"""Headless Chromium for the viewer's browser tests, its benchmark and `make screenshots` (docs/viewer.md).

Playwright for Python drives the system's Chromium (Debian's `chromium` package): Playwright's own
browser downloads are never used, so nothing is fetched at test time. The flags keep Chromium off the
network and let it run as root in a container.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

#: where Debian's package puts it; C2S_CHROMIUM names another
CHROMIUM = os.environ.get("C2S_CHROMIUM", "/usr/bin/chromium")
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")
INSTALL_HINT = ("install Chromium (Debian: apt-get install -y chromium; `make test` does) and Playwright for Python "
                "(pip install 'c2s-harness[browser]'), or set C2S_CHROMIUM to a Chromium binary")


def missing() -> str | None:
    """Why the browser cannot start here, or None."""
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}: {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the Python module 'playwright' is not installed: {INSTALL_HINT}"
    return None


@contextmanager
def chromium():
    """A headless Chromium (a Playwright `Browser`) with a fresh profile folder, closed on exit."""
    why = missing()
    if why:
        raise RuntimeError(why)
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="c2s-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=list(FLAGS), viewport={"width": 1280, "height": 860})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def open_page(context, url: str):
    """A new page at `url` whose console errors and uncaught exceptions are collected in `page.errors`."""
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    page.goto(url)
    return page
