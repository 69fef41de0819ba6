"""Anchor sets: the reference images every test image is compared with, and their probability matrix.

Orientation (docs/method.md, "The anchor matrix"): anchors in ascending MOS; matrix[i, j] = P(anchor i
beats anchor j).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from harness.core.jsontext import parse_json
from harness.core.pairs import Pair
from harness.core.levels import LEVEL_WEIGHTS
from harness.core.scaling import preference
from harness.core.vocabulary import DEFAULT_ALPHA, DEFAULT_BETA


@dataclass
class AnchorSet:
    """Anchor images (dataset-relative references), their MOS and std, and an optional fixed matrix.

    The matrix, when given, is what the official code does (one matrix frozen for every model);
    without it the runner computes the matrix with the model under test.
    """

    images: list[str]
    mos: np.ndarray
    std: np.ndarray
    matrix: np.ndarray | None = None
    name: str = ""
    source: str = ""

    def __post_init__(self):
        self.images = [str(i) for i in self.images]
        self.mos = np.asarray(self.mos, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        m = len(self.images)
        if m < 2 or self.mos.shape != (m,) or self.std.shape != (m,):
            raise ValueError(f"anchor set needs >= 2 images and one MOS and std each; got {m} images, "
                             f"mos {self.mos.shape}, std {self.std.shape}")
        if len(set(self.images)) != m:
            raise ValueError("anchor images must be distinct")
        if not (np.all(np.isfinite(self.mos)) and np.all(np.isfinite(self.std)) and np.all(self.std >= 0)):
            raise ValueError("anchor MOS must be finite and std finite and >= 0")
        if np.any(np.diff(self.mos) < 0):
            raise ValueError(f"anchors must be in ascending MOS order, got MOS {self.mos.tolist()}")
        if self.matrix is not None:
            self.matrix = np.asarray(self.matrix, dtype=np.float64)
            if self.matrix.shape != (m, m):
                raise ValueError(f"anchor matrix must be ({m}, {m}), got {self.matrix.shape}")
            finite = self.matrix[np.isfinite(self.matrix)]
            if np.any(np.isinf(self.matrix)) or np.any((finite < 0) | (finite > 1)):
                raise ValueError("anchor matrix entries must be probabilities in [0, 1] (NaN: not observed)")

    def digest(self) -> str:
        """Stable hash of what changes the numbers (images, MOS, std, matrix); name and source excluded.
        Images count by their paths relative to their common folder, so the same anchor files give the
        same digest wherever that folder lives (a leaderboard row must not depend on the home folder)."""
        try:
            base = os.path.commonpath([os.path.dirname(str(p)) for p in self.images])
        except ValueError:  # no images, or absolute and relative paths mixed: keep them as given
            base = ""
        blob = {"images": [os.path.relpath(str(p), base) if base else str(p) for p in self.images],
                "mos": self.mos.tolist(), "std": self.std.tolist(),
                "matrix": None if self.matrix is None else
                [[None if np.isnan(v) else v for v in row] for row in self.matrix.tolist()]}
        text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def koniq_default() -> AnchorSet:
    """The paper's five KonIQ-10k anchors (Fig. 5) with the official hard-coded matrix (harness/data)."""
    text = resources.files("harness").joinpath("data/paper_default_anchors.json").read_text()
    data = json.loads(text)
    anchors = data["anchors"]
    return AnchorSet(images=[a["image"] for a in anchors], mos=np.array([a["mos"] for a in anchors]),
                     std=np.array([a["std"] for a in anchors]), matrix=np.array(data["matrix"]),
                     name=data["name"], source=data["source"])


def _numbers(value, key: str) -> np.ndarray:
    """A list of JSON numbers (a matrix: a list of equally long such lists, null where not observed) as
    float64, else ValueError."""
    rows = value if key == "matrix" and isinstance(value, list) else [value]
    for row in rows:
        if not isinstance(row, list) or len(row) != len(rows[0]) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) or (key == "matrix" and v is None)
                for v in row):
            what = "a list of equally long lists of probabilities (null: not observed)" if key == "matrix" else \
                "a list of numbers, one per anchor"
            raise ValueError(f"{key} must be {what}, got {json.dumps(value)[:80]}")
    table = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
    return table if key == "matrix" else table[0]


def read_anchor_file(path, root=None) -> tuple[AnchorSet, dict]:
    """An anchors file, JSON `{images, mos, std[, matrix][, name][, root]}`, as an AnchorSet whose images
    sit under `root` (else the file's own `root`, else its folder), and the document as read (commands
    that add to it write it back). Every problem is one ValueError naming the file."""
    path = Path(path)
    try:
        doc = parse_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"anchors file {path}: cannot be read as JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"anchors file {path}: expected a JSON object with images, mos and std, "
                         f"got a {type(doc).__name__}")
    missing = [k for k in ("images", "mos", "std") if k not in doc]
    if missing:
        raise ValueError(f"anchors file {path}: missing {', '.join(missing)} (each a list, one entry per anchor; "
                         "std may be 0 where unknown)")
    try:
        if not isinstance(doc["images"], list) or not all(isinstance(i, str) and i for i in doc["images"]):
            raise ValueError("images must be a list of file names")
        if not isinstance(doc.get("root", ""), str):
            raise ValueError(f"root must be a folder name, got {json.dumps(doc['root'])[:80]}")
        base = root or doc.get("root") or path.parent
        matrix = _numbers(doc["matrix"], "matrix") if doc.get("matrix") is not None else None
        anchors = AnchorSet(images=[str(Path(base) / i) for i in doc["images"]], mos=_numbers(doc["mos"], "mos"),
                            std=_numbers(doc["std"], "std"), matrix=matrix, name=str(doc.get("name", path.stem)),
                            source=str(path))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"anchors file {path}: {exc}") from None
    return anchors, doc


def no_scale_reason(anchors: AnchorSet | None) -> str:
    """Why scores against these anchors carry no quality information, or "": anchors of one MOS are one
    point on the quality scale (their matrix from MOS is 0.5 everywhere), so a score can only say
    "above or below them" (min-max scores become 0 or 100); correlations of such scores are noise."""
    if anchors is None or np.ptp(anchors.mos) > 0:
        return ""
    return (f"the anchors' MOS are all equal ({anchors.mos[0]:g}): they give the scores no scale; use anchors "
            "across the MOS range (c2s anchors select)")


# --- Eqn. 4 selection and Table 6's schemes ------------------------------------------------------

#: the most MOS intervals Eqn. 4 may use (each is an array entry; the paper uses 5)
MAX_INTERVALS = 10_000


#: Table 6's schemes: within each MOS interval, the beta images of lowest std (Eqn. 4, the default), of
#: highest std, or drawn uniformly at random (docs/method.md, "Anchor selection schemes")
SCHEMES = ("min-variance", "max-variance", "random")
DEFAULT_SCHEME = SCHEMES[0]


def scheme_label(scheme: str = DEFAULT_SCHEME, alpha: int = DEFAULT_ALPHA, beta: int = DEFAULT_BETA,
                 seed: int = 0) -> str:
    """How an anchor set was chosen, for its name: runs of different schemes or seeds are different rows."""
    how = {"min-variance": "Eqn. 4", "max-variance": "max-variance", "random": f"random seed {seed}"}[scheme]
    return f"{how} (alpha={alpha}, beta={beta})"


@dataclass
class SelectionReport:
    """Which images a scheme picked, the interval edges, how many images each interval held, and the
    intervals that were empty or had fewer than beta images (they contribute what they have)."""

    indices: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    empty: list[int] = field(default_factory=list)
    short: list[int] = field(default_factory=list)


def _rank_key(sd: np.ndarray, scheme: str, seed: int) -> np.ndarray:
    """Within an interval the images of smallest key are taken: std, -std, or one uniform draw per image
    (the beta smallest of i.i.d. uniform keys are a uniformly random beta-subset of the interval)."""
    if scheme == "min-variance":
        return sd
    if scheme == "max-variance":
        return -sd
    if scheme == "random":
        if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
            raise ValueError(f"the random anchor scheme needs a seed that is an integer >= 0, got {seed!r}")
        return np.random.default_rng(int(seed)).random(sd.size)
    raise ValueError(f"anchor scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")


def selection_report(mos, std, alpha: int = DEFAULT_ALPHA, beta: int = DEFAULT_BETA,
                     scheme: str = DEFAULT_SCHEME, seed: int = 0) -> SelectionReport:
    """alpha equal-width MOS intervals over [min, max] (left-closed, the last one closed), and in each
    the beta images the scheme ranks first (Eqn. 4: lowest std); ties go to the lower index. Returned
    indices are in ascending MOS order (ties by index), ready for an AnchorSet."""
    q = np.asarray(mos, dtype=np.float64)
    sd = np.asarray(std, dtype=np.float64)
    if q.ndim != 1 or sd.shape != q.shape or q.size == 0:
        raise ValueError(f"mos and std must be 1-D arrays of equal length, got {q.shape} and {sd.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(sd))):
        raise ValueError("mos and std must be finite")
    if not (int(alpha) == alpha >= 1 and int(beta) == beta >= 1):
        raise ValueError(f"alpha and beta must be positive integers, got {alpha!r}, {beta!r}")
    if alpha > MAX_INTERVALS:
        raise ValueError(f"alpha = {alpha} MOS intervals: at most {MAX_INTERVALS} (Eqn. 4; --alpha, alpha: in YAML)")
    key = _rank_key(sd, scheme, seed)
    edges = np.linspace(q.min(), q.max(), int(alpha) + 1)
    interval = np.searchsorted(edges[1:-1], q, side="right")
    counts = np.bincount(interval, minlength=int(alpha))
    order = np.lexsort((np.arange(q.size), key, interval))  # by interval, then key, then index
    picked = [order[interval[order] == k][: int(beta)] for k in range(int(alpha))]
    chosen = np.concatenate(picked).astype(np.int64)
    chosen = chosen[np.lexsort((chosen, q[chosen]))]
    return SelectionReport(indices=chosen, edges=edges, counts=counts,
                           empty=[k for k in range(int(alpha)) if counts[k] == 0],
                           short=[k for k in range(int(alpha)) if 0 < counts[k] < beta])


def select_anchors(mos, std, alpha: int = DEFAULT_ALPHA, beta: int = DEFAULT_BETA,
                   scheme: str = DEFAULT_SCHEME, seed: int = 0) -> np.ndarray:
    """Indices of the scheme's anchors (see `selection_report`); warns naming empty or short intervals."""
    rep = selection_report(mos, std, alpha, beta, scheme, seed)
    if rep.empty or rep.short:
        warnings.warn(f"anchor selection: empty MOS intervals {rep.empty}, intervals with fewer than "
                      f"{beta} images {rep.short}; {rep.indices.size} anchors instead of {alpha * beta}",
                      stacklevel=2)
    return rep.indices


# --- anchor matrices ---------------------------------------------------------------------------------

def matrix_from_mos(mos, std) -> np.ndarray:
    """Thurstone Case V from the subjective data: P(i beats j) = Phi((q_i - q_j) / sqrt(s_i^2 + s_j^2)).

    Where both std are 0 the difference is certain: 1 or 0, and 0.5 for equal MOS (the diagonal too).
    """
    q = np.asarray(mos, dtype=np.float64)
    sd = np.asarray(std, dtype=np.float64)
    if q.ndim != 1 or sd.shape != q.shape:
        raise ValueError(f"mos and std must be 1-D arrays of equal length, got {q.shape} and {sd.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(sd)) and np.all(sd >= 0)):
        raise ValueError("mos must be finite and std finite and >= 0")
    diff = q[:, None] - q[None, :]
    scale = np.hypot(sd[:, None], sd[None, :])
    if np.any(diff != 0) and np.all(scale[diff != 0] == 0):
        warnings.warn("the anchor matrix from MOS is all 0/1: the anchors carry no std, so every anchor pair is a "
                      "certain win; give std in the anchors file or use --anchor-matrix comparator", stacklevel=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)
    return np.where(scale > 0, ndtr(z), 0.5 * (1.0 + np.sign(diff)))


def anchor_pairs(images) -> list[Pair]:
    """Every ordered pair (first = images[i], second = images[j]), i != j, row-major."""
    images = [str(i) for i in images]
    return [Pair(a, b) for i, a in enumerate(images) for j, b in enumerate(images) if i != j]


def matrix_from_logprobs(pairs, logprobs, images, temperature: float = 1.0,
                         weights=LEVEL_WEIGHTS) -> np.ndarray:
    """Anchor matrix from judged pairs' level log-probs (soft preferences; see matrix_from_preferences)."""
    pairs = list(pairs)
    p = preference(logprobs, temperature, weights)
    if p.shape[0] != len(pairs):
        raise ValueError(f"{len(pairs)} pairs but {p.shape[0]} rows of log-probabilities")
    return matrix_from_preferences(pairs, p, images)


def matrix_from_preferences(pairs, prefs, images) -> np.ndarray:
    """Anchor matrix from judged pairs, both presentation orders combined.

    A pair (first = a_i, second = a_j) with preference p says P(j beats i) = p, i.e. C[j, i] = p and
    C[i, j] = 1 - p. Each entry is the mean of every observation of it (both orders, repeats), so
    C[i, j] + C[j, i] = 1 and position bias of the model averages out. Failed pairs (NaN) are
    skipped; an anchor pair with no successful observation is NaN (unobserved for the solver).
    Works for soft preferences and for the count variant's hard ones alike.
    """
    names = [str(i) for i in images]
    index = {name: k for k, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError("anchor images must be distinct")
    pairs = list(pairs)
    p = np.asarray(prefs, dtype=np.float64)
    if p.shape != (len(pairs),):
        raise ValueError(f"{len(pairs)} pairs but preferences of shape {p.shape}")
    try:
        first = np.array([index[pr.first] for pr in pairs], dtype=np.int64)
        second = np.array([index[pr.second] for pr in pairs], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"pair refers to an image that is not an anchor: {exc.args[0]!r}") from None
    if np.any(first == second):
        raise ValueError("a pair compares an anchor with itself")
    ok = np.isfinite(p)
    m = len(names)
    wins = np.zeros((m, m))
    seen = np.zeros((m, m))
    np.add.at(wins, (second[ok], first[ok]), p[ok])
    np.add.at(wins, (first[ok], second[ok]), 1.0 - p[ok])
    np.add.at(seen, (second[ok], first[ok]), 1.0)
    np.add.at(seen, (first[ok], second[ok]), 1.0)
    with np.errstate(invalid="ignore"):
        C = wins / seen
    np.fill_diagonal(C, 0.5)
    return C
