"""The paper's nine IQA datasets and where their ten official test splits come from.

Why a registry: the split files name images by folder prefix only, and nothing in them says
whether a larger score is better. LIVE's labels are DMOS (its largest values are heavily
compressed JPEGs, a reference image sits at exactly 0.0): used as MOS they would flip the sign
of every correlation. The direction of each dataset is therefore encoded here, checked against
the files themselves by tests/test_dataset_registry.py (distortion level in the file name for
CSIQ, KADID-10k and TID2013; generator for AGIQA-3K).

The split files are the official repository's playground/data/test_jsons/{1..10}. They are
downloaded only by an explicit call (`fetch_official_splits`, or
`python -m harness.data.registry fetch`), checked against the sha256 sums shipped in
harness/data/official_splits_sha256.json, into a cache folder (`default_splits_dir`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.core import home

N_SPLITS = 10
OFFICIAL_REPOSITORY = "https://github.com/Q-Future/Compare2Score"
OFFICIAL_REVISION = "main"
#: `{revision}` is filled in; `{split}/{file}` are appended.
OFFICIAL_BASE_URL = "https://raw.githubusercontent.com/Q-Future/Compare2Score/{revision}/playground/data/test_jsons"


@dataclass(frozen=True)
class DatasetInfo:
    """What the harness must know about a dataset it cannot ship.

    `folder` is the image prefix used in the official split files, relative to the root a user
    points at (layout: `<root>/<folder>/<file>`). `score_range` is the range found in those files.
    `split_size` is the (min, max) number of records per official split file. `level_pattern`,
    for synthetic datasets, extracts the distortion level (1 = mildest) from a file name.
    `whole_set`: the same file in all ten folders (cross-dataset test on the whole dataset).
    """

    name: str
    display_name: str
    aliases: tuple[str, ...]
    folder: str
    split_file: str
    score_range: tuple[float, float]
    score_kind: str
    higher_is_better: bool
    has_std: bool
    split_size: tuple[int, int]
    whole_set: bool = False
    level_pattern: str | None = None
    #: direction of pyiqa's meta-info labels where they differ from the official files (pyiqa's
    #: own dataset_info marks LIVE and CSIQ as DMOS; the official CSIQ file is inverted)
    pyiqa_higher_is_better: bool | None = None

    def direction_for(self, fmt: str) -> bool:
        """Whether higher is better in this dataset's labels as stored in format `fmt`."""
        if fmt == "pyiqa" and self.pyiqa_higher_is_better is not None:
            return self.pyiqa_higher_is_better
        return self.higher_is_better

    @property
    def layout(self) -> str:
        return f"<root>/{self.folder}/<image file>"

    def distortion_level(self, path: str) -> int | None:
        """The distortion level written in a file name (None where the dataset has none)."""
        if self.level_pattern is None:
            return None
        m = re.search(self.level_pattern, path)
        return int(m.group(1)) if m else None


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("live", "LIVE", ("live iqa", "liveiqa", "live release 2"), "live", "live_test.json",
                    (0.0, 114.414709), "DMOS", False, True, (158, 162), pyiqa_higher_is_better=False),
        DatasetInfo("csiq", "CSIQ", (), "csiq/dst_imgs", "csiq_test.json",
                    (0.0, 1.0), "MOS (0-1)", True, True, (172, 174), level_pattern=r"\.(\d)\.png$",
                    pyiqa_higher_is_better=False),
        DatasetInfo("kadid10k", "KADID-10k", ("kadid",), "kadid10k", "kadid10k_test.json",
                    (1.0, 4.93), "MOS", True, True, (2000, 2000), level_pattern=r"_(\d\d)\.png$"),
        DatasetInfo("bid", "BID", ("blur image database",), "bid", "bid_test.json",
                    (0.163806, 4.919752), "MOS", True, True, (117, 117)),
        DatasetInfo("clive", "LIVE Challenge", ("livec", "live challenge", "livechallenge", "live itw"),
                    "livec", "clive_test.json", (3.42, 92.431953), "MOS", True, True, (233, 233)),
        DatasetInfo("koniq10k", "KonIQ-10k", ("koniq",), "koniq", "koniq10k_test.json",
                    (1.146789, 4.31), "MOS", True, True, (2015, 2015)),
        DatasetInfo("spaq", "SPAQ", (), "spaq", "spaq_testing_set.json",
                    (2.0, 96.0), "MOS", True, True, (11125, 11125), whole_set=True),
        DatasetInfo("tid2013", "TID2013", ("tid",), "TID2013/distorted_images", "tid_testing_set.json",
                    (0.24242, 7.21429), "MOS", True, True, (3000, 3000), whole_set=True,
                    level_pattern=r"(?i)_(\d)\.bmp$"),
        DatasetInfo("agiqa3k", "AGIQA-3K", ("agiqa", "agi", "agi-cgi"), "agi-cgi", "agi.json",
                    (0.0, 4.48874078), "MOS", True, False, (2982, 2982), whole_set=True),
    )
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP: dict[str, str] = {}
for _info in DATASETS.values():
    for _alias in (_info.name, _info.display_name, *_info.aliases):
        _LOOKUP[_key(_alias)] = _info.name


def get_dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up by name or alias, ignoring case and punctuation ("KonIQ-10k", "koniq")."""
    hit = _LOOKUP.get(_key(str(name)))
    if hit is None:
        known = ", ".join(d.display_name for d in DATASETS.values())
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}")
    return DATASETS[hit]


def identify(paths) -> DatasetInfo | None:
    """The registered dataset whose folder prefix every path carries (None if not exactly one)."""
    paths = [p.replace("\\", "/") for p in paths]
    if not paths:
        return None
    hits = [d for d in DATASETS.values() if all(p.startswith(d.folder + "/") for p in paths)]
    return hits[0] if len(hits) == 1 else None


def default_splits_dir() -> Path:
    return home.splits_dir()


def _check_split(split) -> int:
    try:
        k = int(split)
    except (TypeError, ValueError):
        raise ValueError(f"split must be an integer 1..{N_SPLITS}, got {split!r}") from None
    if not 1 <= k <= N_SPLITS or str(split).strip() not in (str(k),):
        raise ValueError(f"split must be an integer 1..{N_SPLITS}, got {split!r}")
    return k


def split_file(name: str, split, splits_dir=None, *, must_exist: bool = True) -> Path:
    """Path of one official test split file, e.g. split_file("koniq", 3)."""
    info = get_dataset_info(name)
    k = _check_split(split)
    root = Path(splits_dir) if splits_dir is not None else default_splits_dir()
    path = root / str(k) / info.split_file
    if must_exist and not path.is_file():
        raise FileNotFoundError(
            f"official split file not found: {path}. Download the splits once with "
            f"`c2s datasets fetch`"
        )
    return path


def official_checksums() -> dict[str, str]:
    """sha256 of every official split file, keyed "<split>/<file>"."""
    text = resources.files("harness").joinpath("data/official_splits_sha256.json").read_text()
    return json.loads(text)["files"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_official_splits(dest=None, *, base_url: str = OFFICIAL_BASE_URL, revision: str = OFFICIAL_REVISION,
                          timeout: float = 60.0, verify: bool = True) -> Path:
    """Download the ten official test splits (90 files) into `dest` (default: the cache).

    Explicit only, never at import. `base_url` may be any URL urllib opens (https, http,
    file://), laid out as `<base_url>/<split>/<file>`; `{revision}` in it is filled in. Files
    already present with the right checksum are kept. With `verify`, a file whose sha256 differs
    from the published one is refused (nothing is written for it) and all such files are
    reported together.
    """
    dest = Path(dest) if dest is not None else default_splits_dir()
    base = base_url.replace("{revision}", revision).rstrip("/")  # only that placeholder: "{x}" is no format field
    sums = official_checksums()
    failed: dict[str, list[str]] = {}  # reason -> files: a reason shared by 90 files is said once
    unreachable = None
    for rel, want in sums.items():
        target = dest / rel
        if target.is_file() and (not verify or _sha256(target.read_bytes()) == want):
            continue
        if unreachable:  # offline: waiting 90 times for the same timeout helps nobody
            failed.setdefault(unreachable, []).append(rel)
            continue
        try:
            data = _download(f"{base}/{rel}", timeout)
        except _Missing as exc:
            failed.setdefault(str(exc), []).append(rel)
            continue
        except (OSError, ValueError) as exc:
            unreachable = f"cannot reach {base} ({getattr(exc, 'reason', exc)}); the other files were not tried"
            failed.setdefault(unreachable, []).append(rel)
            continue
        if verify and _sha256(data) != want:
            failed.setdefault("sha256 differs from the published checksum (nothing written)", []).append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    if failed:
        lines = [f"{sum(map(len, failed.values()))} of {len(sums)} official split files could not be fetched "
                 f"from {base}:"]
        for reason, files in failed.items():
            lines += [f"  {reason}: {len(files)} file(s)"] + [f"    {rel}" for rel in files]
        raise RuntimeError("\n".join(lines))
    return dest


class _Missing(Exception):
    """One file the server does not have (the server itself answered)."""


def _download(url: str, timeout: float) -> bytes:
    """The bytes at `url`; `_Missing` when the server answers without them, OSError when it cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - explicit user request
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise _Missing(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):  # file:// base: a missing file, not a dead host
            raise _Missing("no such file") from None
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data.registry",
                                     description="The paper's nine IQA datasets and their official test splits.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the ten official test splits into the cache")
    f.add_argument("--dest", default=None, help=f"target folder (default: {default_splits_dir()})")
    f.add_argument("--base-url", default=OFFICIAL_BASE_URL)
    f.add_argument("--revision", default=OFFICIAL_REVISION)
    sub.add_parser("list", help="print the registry")
    args = parser.parse_args(argv)
    if args.cmd == "fetch":
        print(fetch_official_splits(args.dest, base_url=args.base_url, revision=args.revision))
    else:
        for d in DATASETS.values():
            direction = "higher is better" if d.higher_is_better else "LOWER is better"
            print(f"{d.display_name:15s} {d.score_kind:15s} {d.score_range} {direction:17s} {d.layout}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
