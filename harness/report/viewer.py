"""`c2s view`: a static, offline results browser over one or more run folders (docs/viewer.md).

The site is plain files: `index.html`, the script and style shipped beside this module (`site/`), the
run data as `data.js` (a script assigning a global, so that the page works from file:// where a page
may not fetch), thumbnails named by the content hash of their image (made once: a rebuild keeps the
ones already there), and a copy of each run's files (scores, comparisons, manifest, metrics, report),
so the folder can be moved, served or archived as a whole. Everything is read through the run record.
"""
from __future__ import annotations

import html
import http.server
import json
import math
import shutil
import socketserver
import threading
from functools import partial
from pathlib import Path

import numpy as np

from harness.data.images import ImageError, content_hash
from harness.report.gallery import Thumbnails, residuals
from harness.report.reports import SITE, VIEWER_MARKERS
from harness.run.judging import prompt_key
from harness.run.record import COMPARISONS, MANIFEST, METRICS, SCORES, RunRecord, check_outputs, read_run

#: the site's own files, copied from SITE
ASSETS = ("index.html", "viewer.js", "viewer.css")
#: the file that marks a folder as a site of `c2s view` (only such a folder is rebuilt in place)
MARKER = ".c2s-view"
#: the run files copied into the site (and linked from it), when the run has them
RUN_FILES = (SCORES, COMPARISONS, MANIFEST, METRICS, "report.html", "report.md")


def _num(x, digits: int | None = None) -> float | None:
    """A number for JSON (rounded to `digits` decimals if given): None where undefined."""
    if x is None or not math.isfinite(x):
        return None
    return float(x) if digits is None else round(float(x), digits)


def _image_table(runs: list[RunRecord], thumbs: Thumbnails) -> tuple[dict, dict[str, int]]:
    """One entry per (dataset, image) of any run, in order of first appearance; and path -> index."""
    index: dict[tuple[str, str], int] = {}
    by_path: dict[str, int] = {}
    cols = {k: [] for k in ("dataset", "image", "group", "splits", "mos", "thumb", "hash")}
    for run in runs:
        for row in run.scores:
            key = (row.dataset, row.image)
            if key not in index:
                index[key] = len(index)
                for k, v in (("dataset", row.dataset), ("image", row.image), ("group", row.group),
                             ("splits", []), ("mos", _num(row.mos)), ("thumb", thumbs(row.path)),
                             ("hash", _hash(row.path))):
                    cols[k].append(v)
            by_path[row.path] = index[key]  # the same image under another root (a moved dataset) in another run
            splits = cols["splits"][index[key]]
            if row.split not in splits:
                splits.append(row.split)
    return cols, by_path


def _run_scores(run: RunRecord, by_path: dict[str, int], n: int) -> dict:
    """The run's numbers aligned with the image table (None where the run lacks the image)."""
    out = {k: [None] * n for k in ("score", "sd", "status", "error", "n_ok", "residual", "rank_error")}
    higher = {d.name: d.higher_is_better for d in run.manifest.datasets}
    per_ds: dict[str, list[int]] = {}
    for row in run.scores:
        i = by_path[row.path]
        if out["status"][i] is None:
            per_ds.setdefault(row.dataset, []).append(i)
        out["score"][i], out["sd"][i], out["n_ok"][i] = _num(row.score), _num(row.sd), row.n_anchors_ok
        out["status"][i], out["error"][i] = row.status, row.error
    mos_of = {by_path[r.path]: r.mos for r in run.scores}
    for ds, idx in per_ds.items():
        res, rank_err = residuals([np.nan if out["score"][i] is None else out["score"][i] for i in idx],
                                  [np.nan if mos_of[i] is None else mos_of[i] for i in idx],
                                  [out["status"][i] == "ok" for i in idx], higher.get(ds, True))
        for i, r, e in zip(idx, res, rank_err):
            out["residual"][i], out["rank_error"][i] = _num(r), _num(e)
    return out


def _run_pairs(run: RunRecord, by_path: dict[str, int], anchor_of: dict[str, int]) -> dict[int, list]:
    """Image index -> its judged test pairs: [anchor, test first (0/1), 5 log-probs, preference, error,
    cached]. Log-probs and preferences are rounded for display (the exact ones are in comparisons.csv)."""
    out: dict[int, list] = {}
    for row in run.comparisons:
        if row.role != "test":
            continue
        # the planned order is anchor first; the other order (order both) puts the test image first
        test_first = not (row.first in anchor_of and row.second in by_path)
        test, anchor = (row.first, row.second) if test_first else (row.second, row.first)
        if test not in by_path or anchor not in anchor_of:
            continue
        out.setdefault(by_path[test], []).append(
            [anchor_of[anchor], int(test_first), [_num(v, 4) for v in row.logprobs], _num(row.preference, 6),
             row.error, int(row.cached)])
    return out


def _hash(path: str) -> str | None:
    """The content hash (the pair cache's image key), None for a file that cannot be read."""
    try:
        return content_hash(path)
    except (ImageError, OSError):
        return None


def _prompt(fp: dict) -> str:
    """The exact words the model was given: the rendered prompt where the backend reports it, else its template."""
    entry = fp.get("prompt")
    if not isinstance(entry, dict):
        return "(this backend uses no prompt)"
    return entry.get("rendered") or entry.get("text") or "(not recorded)"


def _copy_run_files(run: RunRecord, dest: Path) -> dict[str, str]:
    """Copy the run's files (and the report's plots and thumbnails) into the site; name -> path relative to
    the site. The copied report links back to the site instead of saying how to build one."""
    dest.mkdir(parents=True)
    links = {}
    for name in RUN_FILES:
        if (run.run_dir / name).is_file():
            shutil.copyfile(run.run_dir / name, dest / name)
            links[name] = f"{dest.parent.name}/{dest.name}/{name}"
    for folder in ("plots", "thumbs"):
        if (run.run_dir / folder).is_dir():
            shutil.copytree(run.run_dir / folder, dest / folder)
    report = dest / "report.html"
    start, end = VIEWER_MARKERS
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        link = f'<a href="../../index.html#/run/{html.escape(run.manifest.run_id)}">browse this run image by image</a>'
        report.write_text(head + link + rest.split(end, 1)[1], encoding="utf-8")
    return links


def site_data(runs: list[RunRecord], out: Path) -> dict:
    """Everything the page shows, as plain JSON values; thumbnails and run files written under `out`."""
    thumbs = Thumbnails(out / "thumbs")
    images, by_path = _image_table(runs, thumbs)
    anchors: list[dict] = []
    anchor_of: dict[str, int] = {}
    out_runs, pairs = [], []
    for k, run in enumerate(runs):
        m = run.manifest
        for path, mos, std in zip(m.anchors.images, m.anchors.mos, m.anchors.std):
            if path not in anchor_of:
                anchor_of[path] = len(anchors)
                anchors.append({"image": Path(path).name, "path": path, "mos": _num(mos), "std": _num(std),
                                "thumb": thumbs(path), "hash": _hash(path)})
        fp = m.model.fingerprint
        out_runs.append({
            "run_id": m.run_id, "label": m.model.label, "spec": m.model.spec, "profile": run.metrics.profile,
            "mode": m.mode, "order": m.order, "created": m.created, "limit": m.limit,
            "anchors": m.anchors.name, "anchor_ids": [anchor_of[p] for p in m.anchors.images],
            "prompt": _prompt(fp), "fingerprint_hash": m.model.fingerprint_hash, "prompt_key": prompt_key(fp),
            "headline": {name: {"srcc": _num(ds.summary["srcc"].median) if ds.summary else None,
                                "plcc": _num(ds.summary["plcc_logistic"].median) if ds.summary else None}
                         for name, ds in run.metrics.datasets.items()},
            "files": _copy_run_files(run, out / "files" / f"{k}"),
            **_run_scores(run, by_path, len(images["image"]))})
        pairs.append({str(i): p for i, p in _run_pairs(run, by_path, anchor_of).items()})
    return {"images": images, "anchors": anchors, "runs": out_runs, "pairs": pairs}


def _check_out(out: Path, run_dirs: list[Path]) -> None:
    check_outputs([out], run_dirs, fix="choose another --out for the site")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ValueError(f"--out {out} exists and is not a site of c2s view: it is never written over; choose a new "
                         "or empty folder")


def build_site(run_dirs, out) -> Path:
    """Write the site for these run folders into `out` (new, empty, or a site built before); returns
    its index.html. Thumbnails already there are kept; everything else is written anew."""
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("c2s view: no run folders given")
    out = Path(out)
    _check_out(out, run_dirs)
    runs = [read_run(p) for p in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("a results site written by c2s view; rebuilt in place by it\n")
    shutil.rmtree(out / "files", ignore_errors=True)
    data = site_data(runs, out)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    (out / "data.js").write_text(f"window.C2S_DATA={text};\n", encoding="utf-8")
    for name in ASSETS:
        shutil.copyfile(SITE / name, out / name)
    return out / "index.html"


def serve(folder, port: int = 0) -> tuple[socketserver.TCPServer, str]:
    """An HTTP server for `folder` on 127.0.0.1 (port 0: a free one), started in a thread; and its URL."""
    handler = partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass
