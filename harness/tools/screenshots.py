"""`make screenshots`: the README's pictures of the viewer, the leaderboard and a report, taken by headless
Chromium on a fresh run of the offline demo, so that they never drift from the code (docs/viewer.md).

    python -m harness.tools.screenshots [--out docs/img]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

from PIL import Image

from harness.report.leaderboard import build_leaderboard, write_leaderboard
from harness.report.viewer import build_site
from harness.run.record import run_dirs_in
from harness.tools.browser import chromium, open_page
from harness.tools.demo import run_demo

#: width of the saved pictures (the page is drawn at 1280 pixels and scaled down); colours kept
WIDTH, COLOURS = 960, 128


def _save(page, path: Path, height: int = 860, y: int | None = None) -> Path:
    """`height` pixels of the page from `y` (default: where it is scrolled to), scaled to WIDTH and reduced to
    a palette (small PNGs)."""
    y = page.evaluate("window.scrollY") if y is None else y
    page.wait_for_timeout(300)  # lazy thumbnails
    tmp = path.with_suffix(".full.png")
    page.screenshot(path=str(tmp), full_page=True, clip={"x": 0, "y": y, "width": 1280, "height": height})
    img = Image.open(tmp).convert("RGB")
    img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.Resampling.LANCZOS)
    img.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    tmp.unlink()
    return path


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="c2s-screenshots-") as tmp:
        work = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(work / "demo")
        runs = run_dirs_in(work / "demo" / "runs")
        site = work / "view"
        build_site(runs, site)
        write_leaderboard(build_leaderboard(runs), work / "lb", formats=("html",), viewer=site)
        paper_soft = next(p for p in runs if p.name.startswith("classical") and "paper-soft" in p.name)
        shots = []
        with chromium() as context:
            page = open_page(context, (site / "index.html").as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.select_option("#run", str(runs.index(paper_soft)))
            page.click("th[data-key=residual]")
            shots.append(_save(page, out / "viewer-table.png", 900, 0))
            page.click("#images tbody tr:first-child td.name a")
            page.wait_for_selector(".anchor-pair")
            page.evaluate("document.querySelector('.anchor-pair').scrollIntoView()")
            page.evaluate("window.scrollBy(0, -120)")
            shots.append(_save(page, out / "viewer-image.png"))
            page.goto((site / "index.html").as_uri() + "#/disagree")
            page.wait_for_selector("#disagree")
            shots.append(_save(page, out / "viewer-disagree.png", 560, 0))
            page.goto((work / "lb" / "leaderboard.html").as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.click("th:text-is('SRCC')")
            shots.append(_save(page, out / "leaderboard.png", 420, 0))
            page.goto((paper_soft / "report.html").as_uri())
            page.evaluate("[...document.querySelectorAll('p')].find(p => p.textContent.startsWith('Worst')).scrollIntoView()")
            shots.append(_save(page, out / "report-gallery.png"))
            errors = page.errors
            page.close()
        if errors:
            raise RuntimeError(f"the pages reported errors: {errors}")
    return shots


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img", help="folder for the PNGs (default: %(default)s)")
    for path in take(Path(ap.parse_args(argv).out)):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
