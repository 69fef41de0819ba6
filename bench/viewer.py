"""The results viewer (`c2s view`): site build time and size, and how fast headless Chromium makes it usable.

Builds the site for the offline demo's 260 images (one run, the classical comparator's paper/soft run) and
for a synthetic 10,000-image run made from it (distinct photo-like 192x192 JPEGs, one anchor-first pair per
anchor, random level log-probs), each twice: the first build makes the thumbnails, the second finds them.
Then, in headless Chromium (harness.tools.browser), the time from opening index.html to an interactive
table (the page marks body[data-ready]) and the time one click on "Residual" takes to sort and redraw
the table, the median of REPEATS; the 260-image site is the baseline of the ratios.

    python bench/viewer.py [--n 10000] [--out /tmp/c2s-bench-viewer]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from bench.common import photo_like_jpegs
from harness.core.levels import N_LEVELS
from harness.report.viewer import build_site
from harness.run.record import ComparisonRow, DatasetInfo, ScoreRow, read_run, run_dirs_in, write_run
from harness.tools.browser import chromium, open_page
from harness.tools.demo import run_demo

REPEATS = 3
SPLITS = ("jpeg", "gaussian_blur", "gaussian_noise", "contrast", "impulse_noise")


def synthetic_run(demo_run: Path, out: Path, n: int) -> Path:
    """A run folder of `n` distinct images, scored against the demo run's anchors (made through write_run)."""
    rec = read_run(demo_run)
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = photo_like_jpegs(folder, n, width=192, height=192, seed=7)
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, n)
    score = mos + rng.normal(0, 0.6, n)
    scores = [ScoreRow(dataset="synthetic", split=SPLITS[i % len(SPLITS)], image=Path(p).name, path=p, mos=mos[i],
                       score=score[i], latent=score[i], sd=0.3, n_anchors_ok=5, status="ok", error="")
              for i, p in enumerate(paths)]
    anchors = rec.manifest.anchors.images
    comparisons = []
    for p in paths:
        for a in anchors:
            lp = rng.normal(0, 2, N_LEVELS)
            lp -= np.log(np.exp(lp).sum())
            comparisons.append(ComparisonRow(first=a, second=p, role="test", logprobs=lp.tolist(),
                                             preference=float(rng.uniform()), status="ok", error="", cached=False))
    run_id = f"synthetic-{n}"
    m = rec.manifest
    manifest = m.model_copy(update={
        "run_id": run_id, "counts": m.counts.model_copy(update={"pairs_total": len(comparisons), "images_total": n}),
        "datasets": [DatasetInfo(name="synthetic", root=str(folder), n_images=n, higher_is_better=True,
                                 splits=list(SPLITS), summary_over="all", dropped=[])]})
    ds = next(iter(rec.metrics.datasets.values()))
    metrics = rec.metrics.model_copy(update={"run_id": run_id, "datasets": {"synthetic": ds}})
    return write_run(out / "runs" / run_id, manifest, metrics, scores, comparisons)


def site_figures(run_dir: Path, site: Path, n: int) -> dict:
    shutil.rmtree(site, ignore_errors=True)
    times = []
    for _ in range(2):  # the first build makes the thumbnails, the second reuses them
        t0 = time.perf_counter()
        build_site([run_dir], site)
        times.append(time.perf_counter() - t0)
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    data = (site / "data.js").stat().st_size
    return {"first": times[0], "again": times[1], "per_image": size / n, "data_per_image": data / n}


def browser_figures(context, site: Path) -> dict:
    ready, sort = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        page = open_page(context, (site / "index.html").as_uri())
        page.wait_for_selector("body[data-ready='1']")
        ready.append(time.perf_counter() - t0)
        sort.append(page.evaluate("""() => { const t = performance.now();
            document.querySelector("th[data-key=residual]").click(); return (performance.now() - t) / 1000; }"""))
        assert page.inner_text("th.sorted-desc") == "Residual" and not page.errors, page.errors
        page.close()
    return {"ready": statistics.median(ready), "sort": statistics.median(sort)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images of the synthetic run")
    ap.add_argument("--out", default="/tmp/c2s-bench-viewer", help="scratch folder (removed first)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(out / "demo", with_lmm=False)
    demo_run = next(p for p in run_dirs_in(out / "demo" / "runs") if "paper-soft" in p.name)
    t0 = time.perf_counter()
    big = synthetic_run(demo_run, out / "synthetic", a.n)
    print(f"synthetic run of {a.n} images written in {time.perf_counter() - t0:.1f} s")
    figures = {260: (demo_run, out / "site-demo"), a.n: (big, out / "site-big")}
    sites = {n: site_figures(run, site, n) for n, (run, site) in figures.items()}
    with chromium() as context:
        shown = {n: browser_figures(context, figures[n][1]) for n in figures}
    print(f"{'images':>7} {'build s':>8} {'rebuild s':>9} {'KB/image':>9} {'data.js KB/image':>17} "
          f"{'interactive s':>13} {'sort s':>8}")
    for n in figures:
        s, b = sites[n], shown[n]
        print(f"{n:>7} {s['first']:>8.2f} {s['again']:>9.2f} {s['per_image'] / 1024:>9.1f} "
              f"{s['data_per_image'] / 1024:>17.2f} {b['ready']:>13.3f} {b['sort']:>8.4f}")
    base, big_n = shown[260], shown[a.n]
    print(f"{a.n} vs 260 images: interactive x{big_n['ready'] / base['ready']:.2f}, sort x{big_n['sort'] / base['sort']:.1f}"
          f" (goal: interactive under 2 s at 10,000 images: {'met' if big_n['ready'] < 2 else 'NOT met'})")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
