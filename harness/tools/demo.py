"""The offline demo: the whole pipeline on the embedded real-photo benchmark, no weights needed.

Two comparators: the weight-free classical one (its scores are meaningful) and a tiny RANDOMLY
initialised Idefics3-class LMM built offline (it proves the LMM code path runs end to end: its
scores mean nothing). The classical comparator runs under the `paper` and `official` profiles and
the count variant; the tiny LMM under the `paper` profile only, because its official-profile
numbers are float rounding noise: its preferences differ by ~1e-3, the official temperature
(T = 100) shrinks that to ~1e-5 and the float32 Adam solver then ranks by rounding, so a relative
change of 1e-7 in the log-probs (a different CPU's kernels) moved its PLCC from 0.113 to 0.081-0.098,
while the paper profile kept every printed digit under changes of 1e-5. Thread count changed nothing.

The anchors are five images of the spare photographs (not among the test images), one per quality
level that Eqn. 4 would pick, spread over photographs and distortion families. The leaderboard's
table is the same on every machine; `publish` writes it into the committed copy and the README.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

TINY_FAMILY = "idefics3"
TINY_LABEL = "tiny-random-idefics3 (random weights: LMM path check, scores meaningless)"
CLASSICAL_LABEL = "classical (weight-free NR index)"
#: (photograph, distortion family, level): quality 5 - level; none of these photographs is a test image
ANCHORS = (("ihc", "gaussian_noise", 5), ("brick", "jpeg", 4), ("grass", "gaussian_blur", 3),
           ("cell", "contrast", 2), ("page", "pristine", 0))
ANCHOR_NAME = "demo anchors (spare photographs)"
#: the committed copy of the demo's table, and the README section that shows it
COMMITTED = Path("results/demo_leaderboard.md")
UNSTABLE = " (machine-dependent) "
README_MARKERS = ("<!-- demo-leaderboard -->", "<!-- /demo-leaderboard -->")


def tiny_model(folder: Path) -> Path:
    """The demo's tiny random LMM, built once (deterministic, seed 0)."""
    from harness.tools.tiny_vlm import build_tiny_vlm

    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        build_tiny_vlm(TINY_FAMILY, folder, seed=0)
    return folder


def demo_anchors(out: Path) -> Path:
    """Write the anchors file (images of a benchmark built from the spare photographs)."""
    from harness.data.demo_data import N_DEMO_LEVELS, PRISTINE, build_demo_benchmark

    ds = build_demo_benchmark(sources=sorted({src for src, _, _ in ANCHORS}))
    images = [f"{src}/{PRISTINE if fam == PRISTINE else f'{fam}_{level}'}.png" for src, fam, level in ANCHORS]
    doc = {"name": ANCHOR_NAME, "root": str(ds.root), "images": images,
           "mos": [float(N_DEMO_LEVELS - level) for _, _, level in ANCHORS], "std": [0.0] * len(ANCHORS)}
    path = out / "anchors.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def demo_configs(out: Path, with_lmm: bool = True) -> list[RunConfig]:
    common = dict(datasets=[DatasetSpec("demo")], anchors=AnchorSpec(str(demo_anchors(out))),
                  modes=["soft", "count"], out_dir=str(out / "runs"), cache=str(out / "cache" / "pairs.sqlite"),
                  batch_size=16)
    configs = [RunConfig(model="classical", label=CLASSICAL_LABEL, profiles=["paper", "official"], **common)]
    if with_lmm:
        model = tiny_model(out / "models" / f"tiny-{TINY_FAMILY}")
        configs.append(RunConfig(model=f"hf:{model}", label=TINY_LABEL, model_options={"batch_size": 16},
                                 profiles=["paper"], **common))
    return configs


def stable_part(leaderboard_md: str) -> str:
    """What every machine prints: the leaderboard without its list of run folders (their ids depend on
    the output paths), and without the tiny LMM's PLCC, whose logistic fit on near-constant random
    predictions lands elsewhere after a change of 1e-16 in its inputs (0.06 to 0.12 measured)."""
    lines = re.split(r"^Runs: ", leaderboard_md, flags=re.M)[0].rstrip().splitlines()
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    plcc = [i for i, c in enumerate(cols) if c.endswith(" PLCC")]
    for k, line in enumerate(lines):
        if line.startswith(f"| {TINY_LABEL} |"):
            cells = line.strip().strip("|").split("|")
            cells = [UNSTABLE if i in plcc and re.match(r"\s*\**-?\d", c) else c for i, c in enumerate(cells)]
            lines[k] = "|" + "|".join(cells) + "|"
    return "\n".join(lines) + "\n"


def publish(leaderboard_md: str, root: Path = Path(".")) -> list[Path]:
    """Write the table into `results/demo_leaderboard.md` and between README.md's demo markers."""
    table = stable_part(leaderboard_md)
    (root / COMMITTED).write_text(table)
    readme = root / "README.md"
    start, end = README_MARKERS
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} section to fill")
    head, rest = text.split(start, 1)
    readme.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")
    return [root / COMMITTED, readme]


def run_demo(out: Path, with_lmm: bool = True) -> str:
    """Run the demo into `out`; returns the leaderboard's markdown (also printed and written)."""
    from harness.report.leaderboard import build_leaderboard, write_leaderboard
    from harness.report.reports import write_report

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    for cfg in demo_configs(out, with_lmm):
        print(f"== {cfg.model_label}", flush=True)
        run_dirs += run(cfg, complete=write_report)  # each folder appears with its report and plots
    lb = build_leaderboard(run_dirs, keep_latest=True)
    written = write_leaderboard(lb, out)
    md = next(p for p in written if p.suffix == ".md")
    text = md.read_text()
    print(text)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s: leaderboard {md}, runs (reports, plots) in "
          f"{out / 'runs'}")
    return text
