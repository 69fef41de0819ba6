"""Images in reports and the viewer: thumbnails made once per image content, and each image's residual
against its MOS, from which the worst and best images are picked (docs/viewer.md)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from harness.data.images import ImageError, content_hash, load_image
from harness.run.record import RunRecord

#: longest thumbnail side in pixels, and its JPEG quality: about 5 KB an image
THUMB_SIDE, THUMB_QUALITY = 160, 72


class Thumbnails:
    """JPEG thumbnails in `folder`, named by the image's content hash: an image is decoded once per
    site however many runs show it, and never again while its thumbnail is there."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._made: dict[str, str | None] = {}

    def __call__(self, path: str) -> str | None:
        """The thumbnail's name relative to the site, or None for an image that cannot be read."""
        if path not in self._made:
            self._made[path] = self._make(path)
        return self._made[path]

    def _make(self, path: str) -> str | None:
        try:
            name = f"{content_hash(path)[:24]}.jpg"
            target = self.folder / name
            if not target.is_file():
                img = load_image(path)
                img.thumbnail((THUMB_SIDE, THUMB_SIDE))
                tmp = target.with_suffix(".part")
                img.save(tmp, "JPEG", quality=THUMB_QUALITY, optimize=True)
                tmp.replace(target)
        except (ImageError, OSError):
            return None
        return f"{self.folder.name}/{name}"


def residuals(score, mos, ok, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the residual of the score against the MOS (the score mapped to the MOS scale by a
    least-squares line over the scored images, minus the MOS) and the rank error (the image's rank by
    score minus its rank by MOS, ranks 1 = best). NaN where an image has no score or no MOS."""
    score, mos = np.asarray(score, dtype=float), np.asarray(mos, dtype=float)
    use = np.asarray(ok, bool) & np.isfinite(score) & np.isfinite(mos)
    res = np.full(score.size, np.nan)
    rank_err = np.full(score.size, np.nan)
    if use.sum() >= 2:
        if np.ptp(score[use]) > 0:
            slope, icept = np.polyfit(score[use], mos[use], 1)
            res[use] = slope * score[use] + icept - mos[use]
        good = mos[use] if higher_is_better else -mos[use]
        rank_err[use] = rankdata(-score[use]) - rankdata(-good)
    return res, rank_err




def extremes(run: RunRecord, k: int) -> dict[str, dict[str, list[dict]]]:
    """Per dataset with MOS, its `k` worst and `k` best scored images by |residual| (worst first, best first)."""
    higher = {d.name: d.higher_is_better for d in run.manifest.datasets}
    out = {}
    for name in run.metrics.datasets:
        rows = list({r.image: r for r in run.scores if r.dataset == name}.values())
        nan = float("nan")
        res, _ = residuals([r.score for r in rows], [nan if r.mos is None else r.mos for r in rows],
                           [r.status == "ok" for r in rows], higher.get(name, True))
        scored = [(abs(v), i) for i, v in enumerate(res) if math.isfinite(v)]
        if not scored:
            continue
        items = [{"image": rows[i].image, "path": rows[i].path, "mos": rows[i].mos, "score": rows[i].score,
                  "residual": float(res[i])} for _, i in sorted(scored)]
        out[name] = {"worst": items[::-1][:k], "best": items[:k]}
    return out
