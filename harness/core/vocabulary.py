"""The harness's words, defined once: every module, the YAML config and the CLI's choices use these.

Why one place: a new profile, link or mode added here is selectable everywhere (the CLI derives its
`choices=` from these tuples and from `harness.core.profiles.PROFILES`), and no two modules can
disagree on a spelling. See docs/method.md for what each one means.
"""
from __future__ import annotations

#: Thurstone Case V link between latent quality difference and preference probability
LINKS = ("probit", "logit")
#: how the MAP problem is solved: exactly (Newton), or the official code's 100 seeded Adam steps
SOLVERS = ("exact", "official-adam")
#: the scale scores are reported on: latent MAP, min-max 0-100 over anchors + test, or anchors' MOS
SCALES = ("latent", "minmax", "mos")
#: where the anchor-vs-anchor block comes from: the model, Thurstone from MOS, the matrix in the user's anchors
#: file, or the paper's KonIQ matrix (only for the paper's KonIQ anchors); auto picks per profile
MATRIX_SOURCES = ("auto", "comparator", "mos", "file", "official")
#: soft (the paper), count (hard verdicts), rating (single-image baseline)
MODES = ("soft", "count", "rating")
#: presentation order: the anchor first (the official code), or both orders folded by the runner
ORDERS = ("anchor_first", "both")
DEFAULT_ORDER = ORDERS[0]
#: comparison designs (harness.run.designs): every test image against every anchor (the paper), or active rounds
DESIGNS = ("anchors", "active")
DEFAULT_DESIGN = "anchors"
#: --calibrate: none, or a temperature (+ a level bias) fitted on the anchor block (docs/method.md, "Calibration")
CALIBRATIONS = ("none", "anchors", "anchors+bias")
#: the tag of the group holding every image of a dataset (beside its named splits)
ALL = "all"
#: what a dataset's headline aggregates: the median over its splits (the paper), or all images at once
BY_SPLITS = "splits"
SUMMARIES = (BY_SPLITS, ALL)


# --- defaults the run configuration and the command line share (stated once, here) ---

#: pairs per comparator call
DEFAULT_BATCH_SIZE = 16
#: seconds a run may go without a batch coming back before it stops (resumable); 0: no limit
DEFAULT_STALL_TIMEOUT = 900.0
#: where run folders go
DEFAULT_RUNS_DIR = "results/runs"
#: where `c2s leaderboard` writes its tables, and in which formats
DEFAULT_LEADERBOARD_DIR = "results/leaderboard"
LEADERBOARD_FORMATS = ("md", "html", "csv", "json")
#: the anchor set when none is named: the paper's five KonIQ-10k anchors
DEFAULT_ANCHORS = "koniq"
#: Eqn. 4: alpha equal-width MOS intervals, beta lowest-std images in each
DEFAULT_ALPHA = 5
DEFAULT_BETA = 1
#: refuse images above this many pixels (decompression bombs): Pillow's own warning threshold
DEFAULT_MAX_PIXELS = 89_478_485
#: refuse images with a side below this many pixels. 16 is the smallest side on which every comparator
#: sees image content rather than its own resampling: the LMMs' ViT encoders cut images into 14-16 px
#: patches (a smaller image is upscaled into one blurred patch) and the classical comparator's blockiness
#: needs two 8x8 JPEG blocks to see a block boundary. IQA datasets' images have sides of hundreds of
#: pixels, so only broken or placeholder files fall below.
DEFAULT_MIN_SIDE = 16
