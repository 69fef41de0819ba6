"""`c2s`: the command line. Every sub-command's --help ends with examples."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from harness.core.secrets import scrub, scrub_log_records

MAIN_EPILOG = """\
quick start:
  c2s demo                                   # the whole pipeline offline on real photos (no weights needed)
  c2s run --model hf:/models/Qwen2.5-VL-7B-Instruct --dataset koniq --root /data/iqa --anchors-root /data/iqa
  c2s run --config runs/zero_shot.yaml       # models x datasets x profiles from YAML
  c2s leaderboard results/runs/* --out results/leaderboard
  c2s rescore results/runs/<run-id> --link logit

exit codes (docs/architecture.md, "Exit codes"):
  0   everything asked for was scored
  1   internal error: a bug (in c2s or a py: comparator); C2S_DEBUG=1 or c2s --debug shows the traceback
  2   user error (command line, config, input file): one line `c2s COMMAND: error: ...`, nothing done
  3   partial: results written, but some pairs or images failed or items were dropped (counted on stderr)
  4   no result: nothing could be scored, or the metrics are undefined (e.g. constant scores)
  5   aborted by a fault outside your input (stalled backend, cache locked too long); rerun to resume
  130 interrupted (rerun to resume)
  141 the output pipe was closed (c2s leaderboard ... | head)
"""

#: the exit-code contract (MAIN_EPILOG and docs/architecture.md, "Exit codes")
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_PARTIAL, EXIT_NO_RESULT, EXIT_ABORTED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
#: the exit status after a closed pipe (`c2s leaderboard ... | head -1`): 128 + SIGPIPE, what a shell reports
#: for a program the closed pipe stopped, so `set -o pipefail` scripts can tell output was cut short
EXIT_BROKEN_PIPE = 141


def _kv(items) -> dict:
    """KEY=VALUE options; values parsed as YAML scalars (8 -> int, true -> bool, null -> None)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = yaml.safe_load(value) if value else ""
    return out


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help can end with a section computed only when help is shown (the
    model options need every adapter module imported: not worth it for every command)."""

    more_help = None

    def format_help(self) -> str:
        text = super().format_help()
        return f"{text}\n{self.more_help()}" if self.more_help else text

    def error(self, message: str):
        """One line, `c2s COMMAND: error: ...`, exit 2 (argparse would print the whole usage first)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {scrub(message)} ({self.prog} --help lists the options)\n")


def model_options_help(names=None) -> str:
    """Every backend's spec form and declared options (adapters' `Options`), for --help and `c2s models`."""
    from adapters.base import backends
    from harness.core.options import describe_options

    chosen = [b for b in backends() if names is None or b.name in names]
    if names is not None and len(chosen) < len(set(names)):
        known = ", ".join(b.name for b in backends())
        raise ValueError(f"unknown backend(s) {sorted(set(names) - {b.name for b in chosen})}; known: {known}")
    parts = ["model options (-o KEY=VALUE on the command line, `options:` in YAML), per backend:"]
    for b in chosen:
        parts.append(f"  {b.spec()}: {b.summary}")
        declared = b.load().Options
        parts.append("      (no declared options: given to the class as they are)" if declared is None
                     else describe_options(declared, indent="      ") or "      (no options)")
    parts.append("  py:package.module:Class: your own comparator class (see adapters/base.py for its contract)")
    return "\n".join(parts) + "\n"


def _add_model(p, required=True):
    p.add_argument("--model", required=required, metavar="SPEC",
                   help="model spec: classical | hf:PATH_OR_ID | vllm:PATH_OR_ID | openai:MODEL | "
                        "compare2score[:PATH] | py:module:Class")
    p.add_argument("--model-option", "-o", action="append", metavar="KEY=VALUE",
                   help="adapter option, repeatable (e.g. -o device=cuda -o dtype=bfloat16 -o batch_size=16; "
                        "openai: -o base_url=http://127.0.0.1:8000/v1 -o api_key_env=MY_KEY); every backend's "
                        "options are listed at the end of this help and by `c2s models`")
    p.more_help = model_options_help


def _add_image_limits(p) -> None:
    from harness.core.vocabulary import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE

    p.add_argument("--max-pixels", type=int, metavar="N",
                   help=f"refuse (never resize) an image of more than N pixels: a decompression bomb's one sign "
                        f"before decoding (default: {DEFAULT_MAX_PIXELS}; YAML: max_pixels:). Not the hf backend's "
                        "-o max_pixels, which resizes what the model sees")
    p.add_argument("--min-side", type=int, metavar="N",
                   help=f"refuse an image with a side under N pixels (default: {DEFAULT_MIN_SIDE}; YAML: min_side:)")


def _image_limits(a):
    """The image limits of the command line (harness.data.images.image_limits), defaults where not given."""
    from harness.data.images import Limits, image_limits

    return image_limits(Limits(**_given(max_pixels=a.max_pixels, min_side=a.min_side)))


def _given(**values) -> dict:
    """The keyword arguments the user gave (None: leave the RunConfig default)."""
    return {k: v for k, v in values.items() if v is not None}



def _temperature(text: str) -> float:
    """A softmax temperature from the command line: a finite number > 0 (0 would divide by zero)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (e.g. 1 or 100), got {text!r}")
    return value


def _add_profile(p):
    from harness.core.profiles import LOGIT_DTYPES
    from harness.core.vocabulary import CALIBRATIONS, LINKS, MATRIX_SOURCES, SCALES

    p.add_argument("--link", choices=LINKS, help="MAP link (paper: probit; official: logit)")
    p.add_argument("--temperature", type=_temperature,
                   help="temperature on the test-vs-anchor level logits (official: 100)")
    p.add_argument("--anchor-temperature", type=_temperature, help="temperature on the anchor block")
    p.add_argument("--steps", type=int, help="Adam steps of the official solver (50 or 100)")
    p.add_argument("--scale", choices=SCALES, help="output scale of the exact solver")
    p.add_argument("--anchor-matrix", choices=MATRIX_SOURCES,
                   help="anchor block: comparator (judged by the model), mos (Thurstone from MOS and std), file (the "
                        "matrix in your anchors file), official (the paper's KonIQ matrix, KonIQ anchors only), "
                        "auto (per profile; docs/method.md)")
    p.add_argument("--logit-dtype", choices=LOGIT_DTYPES,
                   help="arithmetic of the soft preference: float32 (default, exact) or float16 (the official code's "
                        "half-precision softmax; NaN for extreme logits fails the pair)")
    p.add_argument("--calibrate", choices=CALIBRATIONS,
                   help="anchors: fit a temperature on the judged anchor block against the anchors' MOS-derived "
                        "preferences and score with it; anchors+bias: also a level bias (soft mode; docs/method.md)")


def _overrides(a) -> dict:
    return {"link": a.link, "temperature": a.temperature, "anchor_temperature": a.anchor_temperature,
            "steps": a.steps, "scale": a.scale, "anchor_matrix": a.anchor_matrix, "logit_dtype": a.logit_dtype,
            "calibrate": a.calibrate}


def _add_selection(p):
    """Eqn. 4's alpha and beta and Table 6's selection scheme (docs/method.md, "Anchor selection schemes")."""
    from harness.core.anchors import DEFAULT_SCHEME, SCHEMES
    from harness.core.vocabulary import DEFAULT_ALPHA, DEFAULT_BETA

    p.add_argument("--alpha", type=int, default=DEFAULT_ALPHA, help="Eqn. 4: number of MOS intervals")
    p.add_argument("--beta", type=int, default=DEFAULT_BETA, help="Eqn. 4: anchors per interval")
    p.add_argument("--anchor-scheme", choices=SCHEMES, default=DEFAULT_SCHEME,
                   help="which images of each MOS interval: lowest std (Eqn. 4), highest std, or random (Table 6)")
    p.add_argument("--anchor-seed", type=int, default=0, help="the random scheme's seed")


def _anchor_spec(a, source):
    """--anchors, --anchors-root, --anchors-dataset NAME[=SOURCE] and the selection options as an AnchorSpec."""
    from harness.run.runner import AnchorSpec

    name, _, dataset_source = (a.anchors_dataset or "").partition("=")
    return AnchorSpec(**_given(source=source), root=a.anchors_root, dataset=name or None,
                      dataset_source=dataset_source or None, alpha=a.alpha, beta=a.beta, scheme=a.anchor_scheme,
                      seed=a.anchor_seed)


def _parser() -> argparse.ArgumentParser:
    from harness.core.profiles import DEFAULT_PROFILE, PROFILES
    from harness.core.vocabulary import DEFAULT_DESIGN, DESIGNS, MODES, ORDERS, SUMMARIES
    from harness.core.vocabulary import (DEFAULT_BATCH_SIZE, DEFAULT_LEADERBOARD_DIR, DEFAULT_ORDER, DEFAULT_RUNS_DIR,
                                         DEFAULT_STALL_TIMEOUT, LEADERBOARD_FORMATS)

    profiles = sorted(PROFILES)
    fmt = argparse.RawDescriptionHelpFormatter
    ap = _Parser(prog="c2s", formatter_class=fmt, epilog=MAIN_EPILOG,
                                 description="Compare2Score evaluation harness: LMM pairwise comparisons -> exact MAP "
                                             "quality scores -> SRCC/PLCC leaderboards.")
    from harness import __version__

    ap.add_argument("--version", action="version", version=f"c2s {__version__}", help="print the version and exit")
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback of an error before its one-line message (or set C2S_DEBUG=1)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", formatter_class=fmt,
                       help="the backends and model families a spec can name, with their options; tiny offline models",
                       description="Every backend with its spec form and the options it declares (type, default, "
                                   "what it does: the same declarations that check -o KEY=VALUE and YAML options), "
                                   "the model families the harness knows with recommended settings, and the "
                                   "constructor contract of py:module:Class. `c2s models tiny FAMILY --out DIR` "
                                   "builds a tiny RANDOM model of a family (seconds, offline) to try the whole path "
                                   "with --model hf:DIR; its scores mean nothing.",
                       epilog="examples:\n  c2s models\n  c2s models hf openai\n  c2s models coverage\n"
                              "  c2s models tiny qwen2_vl --out tiny-qwen2-vl\n"
                              "  c2s run --model hf:tiny-qwen2-vl --dataset demo --anchors select --anchors-dataset demo "
                              "--limit 10")
    p.add_argument("backends", nargs="*", metavar="BACKEND",
                   help="only these backends (default: all, and the model families); or: tiny FAMILY; or: "
                        "coverage (the Markdown table of every transformers image-text-to-text family)")
    p.add_argument("--out", metavar="DIR", help="with tiny FAMILY: the folder the tiny model is written to")

    p = sub.add_parser("run", formatter_class=fmt, help="judge, score and measure a model on datasets",
                       description="Judge every test image against the anchors (cached, resumable: re-run the "
                                   "same command after an interruption), score under each profile and mode, and "
                                   "write one run folder per (profile, mode) with scores, metrics, report and plots.",
                       epilog="examples:\n"
                              "  c2s run --model classical --dataset demo --anchors select --anchors-dataset demo\n"
                              "  c2s run --model hf:/models/llava-1.5-7b -o device=cuda -o dtype=float16 \\\n"
                              "          --dataset koniq --dataset spaq --root /data/iqa --anchors-root /data/iqa \\\n"
                              "          --profile paper --profile official --mode soft --mode count\n"
                              "  c2s run --model vllm:/models/Qwen2.5-VL-7B --dataset mine=data/mine.csv --root data/mine\n"
                              "  c2s run --config runs/zero_shot.yaml")
    p.add_argument("--config", metavar="YAML", help="run config (models x datasets x profiles); flags below are ignored, except "
                        "--dry-run, --limit, --overwrite and the --executor flags")
    _add_model(p, required=False)
    p.add_argument("--label", help="model name shown in reports and leaderboards")
    p.add_argument("--dataset", action="append", metavar="NAME[=SOURCE]",
                   help="a registered dataset (official splits, needs --root), 'demo', or NAME=manifest.json|csv|folder")
    p.add_argument("--root", help="folder holding the dataset images")
    p.add_argument("--splits", help="comma-separated split names (default: all)")
    p.add_argument("--summary", choices=SUMMARIES,
                   help="each dataset's headline: 'all' = SRCC/PLCC over all its images, 'splits' = the median "
                        "over its splits (the paper's protocol for registered datasets). Default: splits for a "
                        "registered dataset, all for the demo; a manifest with a split column: splits. Reports "
                        "always show both (YAML: `summary:` per dataset)")
    p.add_argument("--anchors", default=None, help="koniq (default) | select | anchors.json")
    p.add_argument("--anchors-root", help="folder holding the anchor images (for koniq: the folder with koniq/)")
    p.add_argument("--anchors-dataset", metavar="NAME[=SOURCE]",
                   help="with --anchors select: the dataset to select from: one of --dataset, 'demo', a registered "
                        "dataset (images under --anchors-root) or NAME=manifest.json|csv|folder (Table 5)")
    _add_selection(p)
    p.add_argument("--profile", action="append", choices=profiles, help="scoring profile(s)")
    _add_profile(p)
    p.add_argument("--mode", action="append", choices=MODES,
                   help="soft (the paper), count (hard verdicts, Table 3) or rating (single-image baseline)")
    p.add_argument("--order", choices=ORDERS, default=DEFAULT_ORDER,
                   help="show the anchor first (official), or both orders, folded by the runner (docs/method.md)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="pairs per comparator call")
    p.add_argument("--design", choices=DESIGNS, default=DEFAULT_DESIGN,
                   help="anchors: every test image against every anchor (the paper); active: pairs chosen round by "
                        "round by expected information gain, scored by the joint MAP (docs/method.md)")
    p.add_argument("--budget", type=float, metavar="K",
                   help="with --design active: comparisons per test image on average (>= 1, may be fractional)")
    p.add_argument("--round-size", type=int, metavar="N",
                   help="with --design active: pairs chosen per round (default: half the test images)")
    p.add_argument("--out", default=DEFAULT_RUNS_DIR, help="where run folders go")
    p.add_argument("--cache", help="the pair cache (SQLite; default: pairs.sqlite in the home folder, $C2S_HOME)")
    p.add_argument("--run-id", help="run folder name inside --out (default: derived from the configuration); a "
                                    "name, not a path")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder of the same --run-id written by another configuration (without it "
                        "that is refused before any model work; re-running the same configuration always replaces "
                        "its folder)")
    p.add_argument("--drop-bad", action="store_true", help="go on without broken dataset items (they are listed)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap CIs with N resamples")
    p.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="SECONDS",
                   help="stop the run when no batch has come back for this long, naming what is stuck; "
                        "rerunning resumes (default: %(default)g; 0: no limit)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what the run would do (pairs to judge, pairs already cached, anchors, a time estimate "
                        "from the cache's timings when this model and options ran before) without loading the model "
                        "or writing anything")
    p.add_argument("--limit", type=int, metavar="N",
                   help="try the configuration on the first N images of each dataset (manifest order; anchors "
                        "unchanged); the run is labelled limited everywhere and is its own leaderboard row")
    p.add_argument("--no-report", action="store_true", help="skip report.md/html and plots")
    _add_image_limits(p)
    _add_executor(p)

    p = sub.add_parser("score", formatter_class=fmt, help="score images (no MOS needed)",
                       description="Score every image of a folder (or the files given) against the anchors; one "
                                   "CSV row per image with its score and a status/error column.",
                       epilog="examples:\n"
                              "  c2s score --model classical --images photos/ --out scores.csv\n"
                              "  c2s score --model hf:/models/qwen -o device=cuda --images a.jpg b.jpg --anchors my.json")
    _add_model(p)
    p.add_argument("--images", nargs="+", required=True, help="folders and/or image files")
    p.add_argument("--strict", action="store_true",
                   help="stop before any model work when an image cannot be read (default: such images are rows "
                        "with status failed and the reason in the error column)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--anchors", default="select", help="select (Eqn. 4 on --anchors-dataset; default the embedded "
                                                        "demo benchmark) | koniq | anchors.json")
    p.add_argument("--anchors-root", help="folder holding the anchor images")
    p.add_argument("--anchors-dataset", default="demo", metavar="NAME[=SOURCE]",
                   help="with --anchors select: the dataset to select from (default: the embedded demo benchmark; "
                        "NAME=manifest.json|csv|folder, images under --anchors-root)")
    _add_selection(p)
    p.add_argument("--profile", choices=profiles, default=DEFAULT_PROFILE,
                   help="scoring profile")
    _add_profile(p)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="pairs per comparator call")
    p.add_argument("--cache", help="the pair cache (SQLite; default: pairs.sqlite in the home folder, $C2S_HOME)")
    _add_image_limits(p)

    p = sub.add_parser("compare", formatter_class=fmt, help="judge one pair and print the level distribution",
                       epilog="example:\n  c2s compare --model classical reference.png distorted.png")
    _add_model(p)
    p.add_argument("first", help="the image shown first (the reference)")
    p.add_argument("second", help="the image shown second (the verdict is about this one)")
    p.add_argument("--temperature", type=_temperature, default=1.0, help="softmax temperature on the level logits")
    _add_image_limits(p)

    p = sub.add_parser("anchors", formatter_class=fmt, help="select anchors (Eqn. 4) or compute an anchor matrix",
                       epilog="examples:\n"
                              "  c2s anchors select --dataset koniq=/data/koniq/train.json --root /data/iqa --out anchors.json\n"
                              "  c2s anchors matrix --anchors anchors.json --model hf:/models/qwen --out anchors_qwen.json\n"
                              "  c2s anchors matrix --anchors anchors.json --from-mos --out anchors_mos.json")
    asub = p.add_subparsers(dest="action", required=True)
    q = asub.add_parser("select", help="Eqn. 4: alpha equal-width MOS intervals, beta lowest-std images each "
                                       "(or highest-std or random ones: --anchor-scheme)")
    q.add_argument("--dataset", required=True, metavar="NAME[=SOURCE]",
                   help="a registered dataset, 'demo', or NAME=manifest.json|csv|folder (needs MOS)")
    q.add_argument("--root", help="folder holding the dataset images")
    _add_selection(q)
    q.add_argument("--out", required=True, help="anchors JSON file to write")
    _add_image_limits(q)
    q = asub.add_parser("matrix", help="the anchor block judged by a model (both orders) or from MOS")
    q.add_argument("--anchors", required=True, help="anchors.json")
    q.add_argument("--root", help="folder the anchor images are relative to")
    _add_model(q, required=False)
    q.add_argument("--from-mos", action="store_true", help="Thurstone from MOS and std instead of a model")
    q.add_argument("--temperature", type=_temperature, default=1.0,
                   help="softmax temperature on the model's level logits")
    q.add_argument("--out", required=True, help="anchors JSON file to write (the input plus its matrix)")
    _add_image_limits(q)

    p = sub.add_parser("export-pairs", formatter_class=fmt,
                       help="comparative training data (Eqn. 2 levels from MOS and std) for fine-tuning",
                       epilog="examples:\n"
                              "  c2s export-pairs --dataset koniq=/data/koniq/train.json --root /data/iqa --out train.json\n"
                              "  c2s export-pairs --dataset demo --pairs-per-image 4 --format jsonl --out demo_pairs.jsonl")
    p.add_argument("--dataset", required=True, metavar="NAME[=SOURCE]",
                   help="a registered dataset (its official splits; --root), 'demo', or NAME=manifest.json|csv|folder "
                        "(needs MOS and std; for training, the training portion)")
    p.add_argument("--root", help="folder holding the dataset images")
    p.add_argument("--splits", help="comma-separated split names (default: all)")
    p.add_argument("--out", required=True, help="file to write (JSON array or JSON Lines)")
    p.add_argument("--format", choices=("conversation", "jsonl"), default="conversation",
                   help="conversation: one JSON array of LLaVA / mPLUG-Owl2 training records; jsonl: one record a line")
    p.add_argument("--pairs-per-image", type=int, default=10, metavar="N",
                   help="pairs in which each image is the first one (default 10: the paper's 180,000 pairs over "
                        "about 18,900 training images)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the same seed gives the same file)")
    p.add_argument("--image-root", help="write image paths relative to this folder (default: the dataset's root)")
    p.add_argument("--image-token", default="<|image|>", help="image placeholder in the question (LLaVA: '<image>')")
    p.add_argument("--prompt", default="paper", help="question wording: a bundled template or a .j2 file")
    p.add_argument("--std-fallback", type=float, metavar="STD",
                   help="std (MOS units) for images that have none; without it such a dataset is refused")
    p.add_argument("--drop-bad", action="store_true", help="leave out unreadable or missing images instead of refusing")

    p = sub.add_parser("datasets", formatter_class=fmt, help="list, check or fetch datasets",
                       epilog="examples:\n  c2s datasets list\n  c2s datasets check koniq --root /data/iqa\n"
                              "  c2s datasets fetch            # the ten official test splits, into the cache")
    dsub = p.add_subparsers(dest="action", required=True)
    dsub.add_parser("list", help="the registered datasets")
    q = dsub.add_parser("check", help="validate a local copy: every missing or broken image in one listing")
    q.add_argument("name", metavar="NAME[=SOURCE]",
                   help="a registered dataset, 'demo', or NAME=manifest.json|csv|folder")
    q.add_argument("--root", help="folder holding the dataset images")
    q.add_argument("--splits", help="comma-separated split names (default: all)")
    q.add_argument("--decode", action="store_true",
                   help="also decode every image in full (finds truncated and corrupt files; slower: without it "
                        "only the headers are read)")
    _add_image_limits(q)
    q = dsub.add_parser("fetch", help="download the official split files (explicit; nothing downloads otherwise)")
    q.add_argument("--dest", help="target folder (default: the cache)")
    q.add_argument("--base-url", help="a mirror laid out as BASE_URL/<split>/<file> (https, http or file://; "
                                      "default: the official repository)")

    p = sub.add_parser("rescore", formatter_class=fmt, help="score a finished run again, without any model",
                       description="Recompute scores and metrics from a run's recorded comparisons with another "
                                   "profile, link, temperature, scale or anchor matrix (no model, no torch).",
                       epilog="examples:\n  c2s rescore results/runs/<run-id> --link logit\n"
                              "  c2s rescore results/runs/<run-id> --profile official\n"
                              "  c2s rescore results/runs/<run-id> --anchor-matrix mos --scale mos")
    p.add_argument("run_dir", help="a run folder written by c2s run")
    p.add_argument("--profile", choices=profiles, help="score under this profile (default: the run's own)")
    p.add_argument("--mode", choices=[m for m in MODES if m != "rating"], help="soft or count (default: the run's)")
    _add_profile(p)
    p.add_argument("--out", help="parent folder of the new run (default: beside the old one)")
    p.add_argument("--no-report", action="store_true", help="skip report.md/html and plots")

    p = sub.add_parser("leaderboard", formatter_class=fmt, help="merge runs into paper-style tables",
                       epilog="examples:\n  c2s leaderboard results/runs/* --out results/leaderboard\n"
                              "  c2s leaderboard results/runs --formats md,csv --keep-latest")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", default=DEFAULT_LEADERBOARD_DIR, help="folder for the tables (default: %(default)s)")
    p.add_argument("--formats", default=",".join(LEADERBOARD_FORMATS), help="comma-separated table formats (default: %(default)s)")
    p.add_argument("--keep-latest", action="store_true", help="when two runs fill the same cell, keep the newer")
    p.add_argument("--columns", default="", metavar="GROUP[,GROUP]",
                   help="extra columns per dataset after SRCC and PLCC: 'accuracy' (pairwise accuracy: binary "
                        "direction and five-level Eqn. 2 agreement; docs/method.md, \"Pairwise accuracy\")")
    p.add_argument("--viewer", metavar="DIR", help="a site written by `c2s view` for these runs: the HTML table's "
                   "rows link to it (docs/viewer.md)")

    p = sub.add_parser("view", formatter_class=fmt, help="browse runs image by image: a static site",
                       description="Write a self-contained results site (thumbnails, a sortable table, each image "
                                   "against its anchors, where runs disagree) that works offline from file://; "
                                   "see docs/viewer.md.",
                       epilog="examples:\n  c2s view results/runs/<run-id> --out results/view\n"
                              "  c2s view results/runs/a results/runs/b --out results/view --serve")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", default="results/view", help="folder for the site (default: %(default)s)")
    p.add_argument("--serve", action="store_true", help="then serve it on 127.0.0.1 (a free port) until Ctrl-C")

    p = sub.add_parser("paper-tables", formatter_class=fmt, help="runs as the paper's tables (Markdown and LaTeX)",
                       description="Put your runs in the paper's shape: (a) intra-dataset (Table 1: LIVE, CSIQ, "
                                   "KADID-10k, BID, CLIVE, KonIQ-10k), (b) cross-dataset (Table 2: TID2013, SPAQ, "
                                   "AGIQA-3K), other datasets, (c) count vs probability matrix (Table 3: a model's "
                                   "--mode count run beside its soft run), and anchor ablations (Tables 5, 6, Fig. 4: "
                                   "runs of one model differing only in the anchors' source, --anchor-scheme or "
                                   "--alpha/--beta). Cells: each run's headline SRCC / PLCC (median over its splits); "
                                   "-- where not evaluated. Writes paper_tables.md and paper_tables.tex (booktabs) "
                                   "and prints the Markdown. The paper's own Compare2Score figures follow each table "
                                   "in a separate block marked as quoted (docs/method.md, \"Paper-shaped tables\").",
                       epilog="examples:\n  c2s run --model classical --dataset demo --anchors select --mode soft "
                              "--mode count --out results/runs\n"
                              "  c2s paper-tables results/runs --out results/paper\n"
                              "  c2s paper-tables results/runs/llava-* results/runs/qwen-* --no-paper --keep-latest")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", default="results/paper_tables", help="folder for the tables (default: %(default)s)")
    p.add_argument("--keep-latest", action="store_true", help="when two runs fill the same cell, keep the newer")
    p.add_argument("--with-paper", dest="with_paper", action="store_true", default=True,
                   help="show the paper's Compare2Score figures below each table, marked as quoted (default)")
    p.add_argument("--no-paper", dest="with_paper", action="store_false", help="leave the paper's figures out")

    p = sub.add_parser("demo", formatter_class=fmt, help="the offline demo (embedded real photos, no weights)",
                       description="Runs the whole pipeline on the embedded real-photo benchmark: the classical "
                                   "comparator and a tiny RANDOM LMM built offline (it proves the LMM code path; "
                                   "its scores mean nothing), soft and count modes (the classical one under the paper "
                                   "and official profiles, the tiny one under paper), with anchors that are not "
                                   "test images, ending with a leaderboard and plots.",
                       epilog="example:\n  c2s demo --out results/demo")
    p.add_argument("--out", default="results/demo", help="folder for the demo's runs, leaderboard and plots")
    p.add_argument("--publish", action="store_true",
                   help="also write the table every machine prints into results/demo_leaderboard.md and README.md "
                        "(run in the repository)")
    p.add_argument("--no-lmm", action="store_true", help="skip the tiny LMM (no torch needed)")

    p = sub.add_parser("check-parity", formatter_class=fmt, help="same model, several backends: same probabilities?",
                       description="Judge the same pairs with one local model through several backends and "
                                   "compare the level log-probabilities with the first (the reference).",
                       epilog="example:\n  c2s check-parity /models/SmolVLM-256M --backends hf,vllm")
    from harness.tools.parity import add_arguments

    add_arguments(p)
    p.set_defaults(parser=p)  # ap.error() of the parity options speaks for this sub-command

    p = sub.add_parser("setup", formatter_class=fmt, help="create an isolated environment for a backend",
                       epilog="example:\n  c2s setup compare2score   # transformers 4.37 worker env for mPLUG-Owl2")
    p.add_argument("backend", choices=["compare2score"], help="the backend whose environment to create")
    p.add_argument("--env-dir", help="where the environment goes (default: the cache)")
    return ap


def _dataset_spec(text: str, root, splits, summary=None):
    from harness.run.runner import DatasetSpec

    name, sep, source = text.partition("=")
    return DatasetSpec(name=name, source=source or None, root=root, summary=summary,
                       splits=[s.strip() for s in splits.split(",")] if splits else None)


def cmd_run(a) -> int:
    from dataclasses import replace

    from harness.run.config import load_config
    from harness.run.runner import RunConfig, run

    if a.config:
        configs = [replace(c, **_given(limit=a.limit, overwrite=a.overwrite or None, max_pixels=a.max_pixels,
                                       min_side=a.min_side, executor=_executor(a))) for c in load_config(a.config)]
    else:
        if not a.model or not a.dataset:
            raise ValueError("give --config, or --model and at least one --dataset")
        configs = [RunConfig(
            model=a.model, model_options=_kv(a.model_option), label=a.label,
            datasets=[_dataset_spec(d, a.root, a.splits, a.summary) for d in a.dataset],
            anchors=_anchor_spec(a, a.anchors),
            **_given(profiles=a.profile, modes=a.mode),
            profile_overrides={k: v for k, v in _overrides(a).items() if v is not None}, order=a.order, batch_size=a.batch_size, out_dir=a.out, cache=a.cache,
            run_id=a.run_id, drop_bad=a.drop_bad, bootstrap=a.bootstrap, reports=not a.no_report,
            limit=a.limit, overwrite=a.overwrite, stall_timeout=a.stall_timeout,
            design=a.design, budget=a.budget, round_size=a.round_size,
            **_given(max_pixels=a.max_pixels, min_side=a.min_side, executor=_executor(a)))]
    if a.dry_run:
        for cfg in configs:
            _print_dry_run(cfg)
        return 0
    from harness.report.reports import write_report

    status = EXIT_OK
    for cfg in configs:  # the report and plots are written into each run folder before it appears
        for run_dir in run(cfg, complete=write_report if cfg.reports else None, inputs=[a.config] if a.config else []):
            status = max(status, _print_run(run_dir))  # several runs: the worst outcome
    return status


def _add_executor(p) -> None:
    g = p.add_argument_group("executor (docs/scale-out.md)")
    g.add_argument("--executor", choices=("local", "ray"), help="where pairs are judged: this process (local, the "
                   "default) or replicas on a Ray cluster (pip install 'c2s-harness[ray]'); the results are the same")
    g.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: the cluster to join ('auto': the one "
                   "this machine belongs to; default: a local cluster started for the run)")
    g.add_argument("--replicas", type=int, metavar="N", help="with --executor ray: comparator replicas (default 1)")
    g.add_argument("--gpus-per-replica", type=float, metavar="G",
                   help="with --executor ray: GPUs per replica (default 0; more than 1: a tensor-parallel replica)")
    g.add_argument("--cpus-per-replica", type=float, metavar="C", help="with --executor ray: CPUs per replica (default 1)")
    g.add_argument("--ship-images", action="store_true", default=None,
                   help="with --executor ray: send the images through Ray's object store (nodes without a shared "
                        "filesystem); default: the replicas read the same paths")


def _executor(a):
    """The --executor flags as an ExecutorSpec; None when none is given (the config's, or local)."""
    from harness.run.executors import ExecutorSpec

    given = _given(address=a.ray_address, replicas=a.replicas, gpus_per_replica=a.gpus_per_replica,
                   cpus_per_replica=a.cpus_per_replica, ship_images=a.ship_images)
    if a.executor is None and not given:
        return None
    return ExecutorSpec(kind=a.executor or "ray", **given)


def _print_dry_run(cfg) -> None:
    """What `run(cfg)` would do, from `harness.run.runner.dry_run` (no model loaded, nothing written)."""
    from harness.run.runner import dry_run

    plan, work = dry_run(cfg)
    a = plan.anchors
    print(f"dry run of {cfg.model_label} (no model loaded, nothing written)")
    for dr in plan.dsruns:
        print(f"  dataset {dr.dataset.name}: {len(dr.dataset)} images"
              + (f" (limited to the first {cfg.limit})" if cfg.limit else ""))
    print(f"  anchors: {a.name}, {len(a.images)} images, digest {a.digest()[:8]}" if a else
          "  anchors: none (rating mode rates each image on its own)")
    for img in a.images if a else []:
        print(f"    {img}")
    for kind, e in work.items():
        what = "pairs" if kind == "pairs" else "single-image ratings"
        if e["cached"] is None:
            print(f"  {what}: {e['items']} to judge; already cached: unknown, as this model and options have no "
                  f"timed batches in the cache ({cfg.cache or 'none'}): no time estimate")
        else:
            print(f"  {what}: {e['items']} planned, {e['cached']} already cached, {e['to_judge']} to judge; "
                  f"estimated {e['seconds']:.1f} s (from {e['timed_pairs']} timed before with this model and options)")
    if cfg.design == "active":
        from harness.run.designs import default_round_size, total_comparisons

        n = len(plan.tests)
        print(f"  design active: {total_comparisons(cfg.budget, n)} test comparisons (budget {cfg.budget:g} x {n} images"
              f"{'; each judged in both orders' if cfg.order == 'both' else ''}) in rounds of "
              f"{cfg.round_size or default_round_size(n)}, chosen as the run goes: not in the counts above")


def _print_run(run_dir: Path, command: str = "run") -> int:
    """Print a run's headline numbers; return its exit code (`_outcome`)."""
    from harness.run.record import read_run

    from harness.report.reports import calibration_rows, quality_flags, summaries, summary_line

    rec = read_run(run_dir)
    m, c = rec.manifest, rec.manifest.counts
    dropped = sum(len(d.dropped) for d in m.datasets)
    print(f"{run_dir}  [{m.model.label} | {m.profile.name} | {m.mode}]  pairs {c.pairs_total} "
          f"(cached {c.pairs_cached}, computed {c.pairs_computed}, failed {c.pairs_failed}), "
          f"images failed {c.images_failed}" + (f", items dropped as bad {dropped} (listed in the report)"
                                                if dropped else ""))
    if m.limit:
        print(f"    LIMITED RUN: only the first {m.limit} images of each dataset were scored")
    if m.calibration:
        print("    calibration: " + "; ".join(f"{k} {v}" for k, v in calibration_rows(m)))
    for name, d in rec.metrics.datasets.items():
        for k, e in enumerate(summaries(d)):
            print(f"    {name if k == 0 else '':24s} {summary_line(e, 4)}  ("
                  + (f"headline, {e['what']}; {d.n_failed} of {d.n_images} images failed)" if e["headline"] else
                     f"{e['what']}, not the headline)"))
    for level, text in quality_flags(rec):
        print(f"c2s: warning: {level}: {text}", file=sys.stderr)
    return _outcome(rec, command)


def _outcome(rec, command: str) -> int:
    """The exit code a written run earns (MAIN_EPILOG): 4 when no image was scored or a dataset's headline
    is undefined, 3 when pairs or images failed or items were dropped, else 0; said on stderr unless 0."""
    import math

    m, c = rec.manifest, rec.manifest.counts
    undefined = {name: sorted({d.splits[s].undefined or d.splits[s].logistic_message or "undefined" for s in d.over})
                 for name, d in rec.metrics.datasets.items()
                 if d.splits and not math.isfinite(d.summary["srcc"].median)}
    dropped = sum(len(d.dropped) for d in m.datasets)
    if c.images_failed >= c.images_total:
        first = next((r.error for r in rec.scores if r.error), "")
        code, text = EXIT_NO_RESULT, (f"no result: none of the {c.images_total} image(s) could be scored"
                                      + (f" (first reason: {first})" if first else ""))
    elif undefined:
        code, text = EXIT_NO_RESULT, "no result: the metrics are undefined: " + "; ".join(
            f"{name}: {', '.join(reasons)}" for name, reasons in undefined.items())
    elif c.pairs_failed or c.images_failed or dropped:
        parts = [f"{c.pairs_failed} of {c.pairs_total} pair(s) failed" if c.pairs_failed else "",
                 f"{c.images_failed} of {c.images_total} image(s) not scored" if c.images_failed else "",
                 f"{dropped} dataset item(s) dropped as bad" if dropped else ""]
        code, text = EXIT_PARTIAL, ("partial result: " + ", ".join(p for p in parts if p)
                                    + " (listed in the run folder; rerun to retry the failed ones)")
    else:
        return EXIT_OK
    print(f"c2s {command}: {text} [{rec.run_dir.name}; exit code {code}]", file=sys.stderr)
    return code


def _score_inputs(items, *, strict: bool) -> list[str]:
    """The image files to score: folders expanded by the folder loader's rule (image extensions, hidden entries
    skipped). An unreadable image becomes a failed row of the CSV, unless `strict`: then every problem is
    listed and nothing is scored."""
    from harness.data.datasets import load_folder
    from harness.data.images import unreadable

    images = []
    for item in items:
        if Path(item).is_dir():
            folder = load_folder(item, check_files=False)
            images += [str(folder.abspath(r)) for r in folder.records]
        else:
            images.append(item)
    problems = unreadable(images) if strict else []
    if problems:
        raise ValueError(f"{len(problems)} of {len(images)} image(s) cannot be scored (--strict stops here; "
                         "without it they are failed rows of the CSV):\n" + "\n".join(problems))
    return images


def cmd_score(a) -> int:
    import csv

    from harness.core import home
    from harness.run.record import read_run
    from harness.run.runner import DatasetSpec, RunConfig, run

    with _image_limits(a):
        images = _score_inputs(a.images, strict=a.strict)
    spec = DatasetSpec(name="images", images=images)
    cfg = RunConfig(model=a.model, model_options=_kv(a.model_option), datasets=[spec],
                    anchors=_anchor_spec(a, a.anchors),
                    profiles=[a.profile], profile_overrides={k: v for k, v in _overrides(a).items() if v is not None},
                    batch_size=a.batch_size, cache=a.cache, out_dir=str(home.score_runs_dir()),
                    reports=False, **_given(max_pixels=a.max_pixels, min_side=a.min_side))
    (run_dir,) = run(cfg, outputs=[a.out])
    rec = read_run(run_dir)
    rows, scale = rec.scores, rec.manifest.profile.scale
    _print_anchors(rec.manifest.anchors)
    n_failed = sum(r.status != "ok" for r in rows)
    with open(a.out, "w", newline="") as g:
        # the scale is a column, not a comment line: every CSV reader keeps it without being told to skip lines
        w = csv.writer(g)  # floats as repr: the same text as the run's own scores.csv
        w.writerow(["image", "score", "scale", "latent", "sd", "n_anchors_ok", "status", "error"])
        w.writerows([r.path, r.score, scale, r.latent, r.sd, r.n_anchors_ok, r.status, r.error] for r in rows)
    print(f"scores on the {scale} scale: {SCORE_SCALES[scale]}")
    print(f"wrote {a.out} ({n_failed} failed; full run in {run_dir})")
    return _outcome(rec, "score")


#: what a score means on each scale (docs/method.md, "Eqn. 6: Thurstone Case V, maximum a posteriori"), for c2s score
SCORE_SCALES = {"latent": "the MAP latent quality, comparable only between images scored against the same anchors; "
                          "higher is better",
                "minmax": "0-100 between the worst and the best of the anchors and the image (the official output)",
                "mos": "the anchors' MOS scale (one affine map from the latent score)"}


def _print_anchors(anchors) -> None:
    """Which anchors every score is relative to, and a warning when they are all copies of one photograph."""
    from harness.data.demo_data import source_photographs

    print(f"anchors: {anchors.name} ({len(anchors.images)} images, matrix from {anchors.matrix_source})")
    for img, mos in zip(anchors.images, anchors.mos):
        print(f"  MOS {mos:<6g} {img}")
    sources = source_photographs(anchors.images)
    if sources is not None and len(sources) == 1:
        warnings.warn(f"the {len(anchors.images)} anchors are all degraded copies of one photograph "
                      f"({sources.pop()!r} of the demo benchmark): a score says how an image compares with them, "
                      "not with photographs like yours; give --anchors anchors.json (c2s anchors select) for "
                      "anchors from your own domain")


def cmd_compare(a) -> int:
    from adapters.base import Pair, compare_batch, load_comparator
    from harness.core.levels import LEVELS
    from harness.core.scaling import preference

    with _image_limits(a), load_comparator(a.model, **_kv(a.model_option)) as comp:
        res = compare_batch(comp, [Pair(a.first, a.second)])
    if res.errors[0]:
        print(f"c2s compare: no result: the pair failed: {res.errors[0]} [exit code {EXIT_NO_RESULT}]",
              file=sys.stderr)
        return EXIT_NO_RESULT
    import numpy as np

    probs = np.exp(res.logprobs[0] / a.temperature)
    probs /= probs.sum()
    print(f"verdict on SECOND ({a.second}) relative to FIRST ({a.first}):")
    for lv, p in zip(LEVELS, probs):
        print(f"  {lv:9s} {p:7.4f}  {'#' * int(round(40 * p))}")
    print(f"P(second better) = {float(preference(res.logprobs, a.temperature)[0]):.4f}")
    return 0


def cmd_anchors(a) -> int:
    import numpy as np

    from harness.core.anchors import matrix_from_mos, read_anchor_file, scheme_label, selection_report
    from harness.run.judging import matrix_from_comparator
    from harness.run.record import check_outputs
    from harness.run.runner import AnchorSpec, resolve_dataset, selection_inputs

    if a.action == "select":
        spec = _dataset_spec(a.dataset, a.root, None)
        with _image_limits(a):
            ds, _ = resolve_dataset(spec)
        check_outputs([a.out], [*([spec.source] if spec.source else []), *(ds.abspath(r) for r in ds.records)])
        sel = AnchorSpec("select", alpha=a.alpha, beta=a.beta, scheme=a.anchor_scheme, seed=a.anchor_seed)  # checked
        q, std = selection_inputs(ds)
        rep = selection_report(q, std, sel.alpha, sel.beta, sel.scheme, sel.seed)
        doc = {"name": f"{ds.name} {scheme_label(sel.scheme, sel.alpha, sel.beta, sel.seed)}", "root": str(ds.root),
               "images": [ds.records[i].path for i in rep.indices], "mos": q[rep.indices].tolist(),
               "std": std[rep.indices].tolist(), "intervals": rep.edges.tolist(), "counts": rep.counts.tolist(),
               "selection": {k: getattr(sel, k) for k in ("scheme", "seed", "alpha", "beta")}}
        if rep.empty:
            print(f"warning: empty MOS intervals {rep.empty}: {len(rep.indices)} anchors", file=sys.stderr)
    else:
        anchors, doc = read_anchor_file(a.anchors, a.root)
        images = anchors.images
        check_outputs([a.out], [a.anchors, *images])
        if a.from_mos:
            C = matrix_from_mos(anchors.mos, anchors.std)
        else:
            if not a.model:
                raise ValueError("give --model, or --from-mos")
            from adapters.base import load_comparator

            with _image_limits(a), load_comparator(a.model, **_kv(a.model_option)) as comp:
                C = matrix_from_comparator(comp, images, a.temperature)
        doc["matrix"] = np.asarray(C, dtype=np.float64)
        doc["matrix_source"] = "mos" if a.from_mos else a.model
    from harness.core.jsontext import strict_json

    Path(a.out).write_text(json.dumps(strict_json(doc), indent=1, allow_nan=False))
    print(f"wrote {a.out}: {len(doc['images'])} anchors, MOS {['%.3g' % v for v in doc['mos']]}")
    if "matrix" not in doc:
        return EXIT_OK
    off = ~np.eye(len(doc["matrix"]), dtype=bool)  # an entry is missing when both orders of its pair failed
    missing, total = int(np.isnan(doc["matrix"][off]).sum()), int(off.sum())
    if not missing:
        return EXIT_OK
    code = EXIT_PARTIAL if missing < total else EXIT_NO_RESULT
    print(f"c2s anchors: {missing} of {total} anchor-matrix entries have no judgement (null in {a.out}; the "
          f"comparator failed both orders of those pairs) [exit code {code}]", file=sys.stderr)
    return code


def cmd_export_pairs(a) -> int:
    from harness.run.record import check_outputs
    from harness.run.runner import resolve_dataset
    from harness.tools.export_pairs import build_pairs, level_summary, write_export

    spec = _dataset_spec(a.dataset, a.root, a.splits)
    ds, _ = resolve_dataset(spec, drop_bad=a.drop_bad)
    check_outputs([a.out], [*([spec.source] if spec.source else []), *(ds.abspath(r) for r in ds.records)])
    export = build_pairs(ds, per_image=a.pairs_per_image, seed=a.seed, prompt=a.prompt, image_token=a.image_token,
                         image_root=a.image_root, std_fallback=a.std_fallback)
    write_export(export, a.out, a.format)
    filled = f", std {a.std_fallback} for {export.std_filled} image(s) without one" if export.std_filled else ""
    print(f"wrote {a.out}: {len(export.records)} pairs of {len(ds.records)} images of {ds.name} ({a.pairs_per_image} "
          f"per image, seed {a.seed}, {a.format}{filled}); levels (second image vs first):")
    print(level_summary(export))
    return EXIT_OK


def cmd_datasets(a) -> int:
    from harness.data import registry as reg

    if a.action == "list":
        print(f"{'name':10s} {'display name':15s} {'direction':17s} {'std':4s} {'scores':13s} layout")
        for info in reg.DATASETS.values():
            lo, hi = info.score_range
            direction = "higher is better" if info.higher_is_better else "LOWER is better"
            print(f"{info.name:10s} {info.display_name:15s} {direction:17s} {'yes' if info.has_std else 'no':4s} "
                  f"{f'{lo:.3g}-{hi:.3g}':13s} {info.layout}")
        print(f"\nofficial split files: {reg.default_splits_dir()} (c2s datasets fetch)")
        return 0
    if a.action == "fetch":
        dest = reg.fetch_official_splits(a.dest, **_given(base_url=a.base_url))
        print(f"official splits in {dest}")
        return 0
    from harness.run.runner import resolve_dataset

    spec = _dataset_spec(a.name, a.root, a.splits)
    with _image_limits(a):
        ds, _ = resolve_dataset(spec, drop_bad=True)
        problems = list(ds.report.problems) if ds.report else []
        if a.decode:  # the records that passed the header check, decoded in full (finds truncated files)
            problems += ds.validate(drop_bad=True, decode=True).problems
    how = "every image decoded" if a.decode else "headers read; --decode decodes every image"
    print(f"{ds.name}: {len(ds)} images usable, {len(problems)} problem(s) ({how})")
    for p in problems[:200]:
        print(f"  - {p}")
    if len(problems) > 200:
        print(f"  ... and {len(problems) - 200} more")
    if not problems and len(ds):
        return EXIT_OK
    # the check's own outcome, as for a run: some items unusable (3), or none usable (4)
    code = EXIT_PARTIAL if len(ds) else EXIT_NO_RESULT
    print(f"c2s datasets: {len(problems)} problem(s), {len(ds)} image(s) usable [exit code {code}]", file=sys.stderr)
    return code


def cmd_rescore(a) -> int:
    from harness.run.runner import rescore

    from harness.report.reports import write_report

    run_dir = rescore(a.run_dir, profile=a.profile, mode=a.mode, out_dir=a.out,
                      complete=None if a.no_report else write_report, **_overrides(a))
    return _print_run(run_dir, "rescore")


def _run_dirs(paths) -> list[Path]:
    """The run folders named, or directly inside the folders named; unfinished folders of interrupted
    writes are never runs: refused when named, reported when found."""
    from harness.run.record import check_not_leftover, is_run_dir, leftovers_in, run_dirs_in

    out, stray = [], []
    for p in map(Path, paths):
        check_not_leftover(p)
        if is_run_dir(p):
            out.append(p)
        elif p.is_dir():
            out += run_dirs_in(p)
            stray += leftovers_in(p)
        else:
            raise ValueError(f"{p} is neither a run folder nor a folder of runs")
    if stray:
        warnings.warn(f"skipped {len(stray)} unfinished folder(s) of interrupted writes (not runs; delete them once "
                      f"no c2s process writes there): {', '.join(map(str, stray[:5]))}{' ...' if len(stray) > 5 else ''}")
    if not out:
        raise ValueError(f"no run folders found in {list(paths)}")
    return out


def cmd_leaderboard(a) -> int:
    from harness.report.leaderboard import build_leaderboard, write_leaderboard

    lb = build_leaderboard(_run_dirs(a.runs), keep_latest=a.keep_latest,
                           columns=[c.strip() for c in a.columns.split(",") if c.strip()])
    written = write_leaderboard(lb, a.out, formats=tuple(f.strip() for f in a.formats.split(",")), viewer=a.viewer)
    md = next((p for p in written if p.suffix == ".md"), None)
    if md:
        print(md.read_text())
    print("wrote " + ", ".join(map(str, written)))
    return 0


def cmd_view(a) -> int:
    import threading

    from harness.report.viewer import build_site, serve

    index = build_site(_run_dirs(a.runs), a.out)
    print(f"wrote {index} (open it in a browser; it works offline)")
    if a.serve:
        server, url = serve(index.parent)
        print(f"serving {index.parent} at {url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        finally:
            server.shutdown()
    return 0


def cmd_paper_tables(a) -> int:
    from harness.report.paper_tables import build_tables, write_tables

    tables, lb = build_tables(_run_dirs(a.runs), keep_latest=a.keep_latest, with_paper=a.with_paper)
    written = write_tables(tables, lb, a.out)
    print(written[0].read_text())
    print("wrote " + ", ".join(map(str, written)))
    return 0


def cmd_demo(a) -> int:
    from harness.tools.demo import run_demo

    if a.publish and a.no_lmm:
        raise ValueError("--publish needs the whole demo: drop --no-lmm")
    text = run_demo(Path(a.out), with_lmm=not a.no_lmm)
    if a.publish:
        from harness.tools.demo import publish

        print("wrote " + ", ".join(map(str, publish(text))))
    return 0


def cmd_check_parity(a) -> int:
    from harness.tools.parity import run_parsed

    if run_parsed(a, a.parser) == 0:
        return EXIT_OK
    print(f"c2s check-parity: the backends disagree or failed pairs (PARITY FAILED above) [exit code {EXIT_PARTIAL}]",
          file=sys.stderr)
    return EXIT_PARTIAL


def cmd_models(a) -> int:
    if a.backends[:1] == ["tiny"]:
        return _tiny_model(a.backends[1:], a.out)
    if a.backends == ["coverage"]:  # every image-text-to-text family of transformers: proven or why not
        from harness.tools.coverage import coverage_markdown

        print(coverage_markdown(), end="")
        return 0
    if a.out:
        raise ValueError("--out goes with `c2s models tiny FAMILY --out DIR`")
    print(model_options_help(a.backends or None), end="")
    if not a.backends:
        import adapters.base
        from harness.tools.families import describe_families

        doc = adapters.base.__doc__ or ""
        contract = "\n".join(f"  {line}" if line else "" for line in doc[doc.index("Constructor contract:"):]
                             .strip().splitlines())
        print(f"\n{describe_families()}\npy:package.module:Class, your own class:\n{contract}")
    return 0


def _tiny_model(args: list[str], out) -> int:
    """`c2s models tiny FAMILY --out DIR`: a tiny random model of a family, to try the path offline."""
    from harness.tools.tiny_vlm import FAMILIES

    if len(args) != 1 or not out:
        raise ValueError(f"usage: c2s models tiny FAMILY --out DIR, FAMILY one of {', '.join(FAMILIES)}")
    from harness.tools.families import tiny_family
    from harness.tools.tiny_vlm import build_tiny_vlm

    family = tiny_family(args[0])
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder: choose a new folder for the tiny model")
    path = build_tiny_vlm(family, out)
    print(f"built a tiny RANDOM {family} model in {path} (its scores mean nothing; it exercises the real code path)")
    print(f"try it: c2s run --model hf:{path} --dataset demo --anchors select --anchors-dataset demo --limit 10")
    return 0


def cmd_setup(a) -> int:
    from adapters.compare2score import setup_worker_env

    env = setup_worker_env(a.env_dir)
    print(f"compare2score worker environment ready: {env}")
    return 0


COMMANDS = {"run": cmd_run, "score": cmd_score, "compare": cmd_compare, "anchors": cmd_anchors,
            "datasets": cmd_datasets, "rescore": cmd_rescore, "leaderboard": cmd_leaderboard,
            "paper-tables": cmd_paper_tables, "view": cmd_view, "export-pairs": cmd_export_pairs, "demo": cmd_demo,
            "check-parity": cmd_check_parity, "setup": cmd_setup, "models": cmd_models}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning as one `c2s: warning:` line: the user needs the message, not our source line."""
    print(f"c2s: warning: {' '.join(scrub(message).split())}", file=sys.stderr)


def _install_hint(exc: ImportError, spec: str | None) -> str:
    """The pip command that brings a missing module: the extra named like the backend (hf, vllm), else
    the extra listing the module (both read from the package's own metadata, i.e. pyproject.toml)."""
    from importlib import metadata

    missing = (exc.name or "").split(".")[0]
    try:
        requires = metadata.requires("c2s-harness") or []
    except metadata.PackageNotFoundError:
        requires = []
    extras = {}
    for req in requires:
        name, _, marker = req.partition(";")
        if "extra ==" in marker:
            extra = marker.split("extra ==")[1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(name.split(">")[0].split("=")[0].split("[")[0].strip())
    backend = (spec or "").partition(":")[0]
    extra = backend if backend in extras else next((e for e, mods in extras.items() if missing in mods), None)
    command = f"pip install 'c2s-harness[{extra}]'" if extra else f"pip install {missing}"
    return f"the Python module {missing!r} is not installed; install it with: {command}"


def _missing_module(exc: BaseException) -> ImportError | None:
    """The ModuleNotFoundError behind an error (a backend that failed to import is reported as a ValueError)."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv=None) -> int:
    scrub_log_records()  # no remembered secret in any library's log line (harness.core.secrets)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            status = _dispatch(_parse(argv))
            sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
            return status
    except BrokenPipeError:
        try:  # the interpreter flushes stdout again at exit: point it at nothing, silently
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_BROKEN_PIPE


def _parse(argv) -> argparse.Namespace:
    """The parsed command line; an unknown argument is reported by the sub-command it was given to."""
    ap = _parser()
    a, extra = ap.parse_known_args(argv)
    if extra:
        parser = ap
        for dest in ("command", "action"):
            sub = next((act for act in parser._actions if isinstance(act, argparse._SubParsersAction)), None)
            if sub is None or getattr(a, dest, None) not in sub.choices:
                break
            parser = sub.choices[getattr(a, dest)]
        parser.error(f"unrecognized argument(s): {' '.join(extra)}")
    return a


def _debug(a) -> bool:
    """`c2s --debug ...` or C2S_DEBUG=1: print the traceback before the one-line message."""
    return bool(getattr(a, "debug", False)) or os.environ.get("C2S_DEBUG", "") not in ("", "0")


def _from_argparse(exc: SystemExit) -> bool:
    """Whether a SystemExit is argparse's own (a sub-command parser's error() or --help), not a plug-in's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "argparse"


def _dispatch(a) -> int:
    """Run a command; every failure becomes one line and an exit code of the contract (MAIN_EPILOG)."""
    from harness.run.faults import RunAborted

    where = f"c2s {a.command}"
    try:
        return COMMANDS[a.command](a)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print(f"{where}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunAborted as exc:
        _traceback_if(a)
        print(f"{where}: aborted: {scrub(exc)}", file=sys.stderr)
        return EXIT_ABORTED
    except (RecursionError, NotImplementedError) as exc:  # bugs, although RuntimeErrors
        return _internal_error(a, exc)
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        _traceback_if(a)
        missing = _missing_module(exc)
        message = _install_hint(missing, getattr(a, "model", None)) if missing else exc
        print(f"{where}: error: {scrub(message)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:
        if _from_argparse(exc):
            raise
        _traceback_if(a)  # e.g. a py: comparator calling sys.exit(0) in the middle of a run
        print(f"{where}: internal error: code called sys.exit({exc.code!r}) inside c2s (a comparator must raise "
              f"an exception instead); the command stopped there; {_DEBUG_HINT}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never disguised as a user error
        return _internal_error(a, exc)


def _internal_error(a, exc: BaseException) -> int:
    _traceback_if(a)
    text = " ".join(scrub(exc).split())
    print(f"c2s {a.command}: internal error: {type(exc).__name__}{': ' + text if text else ''}; this is a bug, "
          f"please report it; {_DEBUG_HINT}", file=sys.stderr)
    return EXIT_INTERNAL


_DEBUG_HINT = "rerun with C2S_DEBUG=1 (or c2s --debug COMMAND ...) for the traceback"


def _traceback_if(a) -> None:
    if _debug(a):
        import traceback

        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
