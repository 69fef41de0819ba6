"""The offline demo: the whole pipeline on the embedded real-photo benchmark, no weights needed.

Two comparators: the weight-free classical one (its scores are meaningful) and a tiny RANDOMLY
initialised Idefics3-class LMM built offline (it proves the LMM code path runs end to end: its
scores mean nothing). Each runs under the `paper` and `official` profiles and the count variant;
the demo ends with a leaderboard and plots in the output folder.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

TINY_FAMILY = "idefics3"
TINY_LABEL = "tiny-random-idefics3 (random weights: LMM path check, scores meaningless)"
CLASSICAL_LABEL = "classical (weight-free NR index)"


def tiny_model(folder: Path) -> Path:
    """The demo's tiny random LMM, built once (deterministic, seed 0)."""
    from harness.tools.tiny_vlm import build_tiny_vlm

    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        build_tiny_vlm(TINY_FAMILY, folder, seed=0)
    return folder


def demo_configs(out: Path, with_lmm: bool = True) -> list[RunConfig]:
    common = dict(datasets=[DatasetSpec("demo")], anchors=AnchorSpec("select", dataset="demo"),
                  profiles=["paper", "official"], modes=["soft", "count"], out_dir=str(out / "runs"),
                  cache=str(out / "cache" / "pairs.sqlite"), batch_size=16)
    configs = [RunConfig(model="classical", label=CLASSICAL_LABEL, **common)]
    if with_lmm:
        model = tiny_model(out / "models" / f"tiny-{TINY_FAMILY}")
        configs.append(RunConfig(model=f"hf:{model}", label=TINY_LABEL, model_options={"batch_size": 16}, **common))
    return configs


def run_demo(out: Path, with_lmm: bool = True) -> list[Path]:
    from harness.report.leaderboard import build_leaderboard, write_leaderboard
    from harness.report.reports import write_report

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    for cfg in demo_configs(out, with_lmm):
        print(f"== {cfg.model_label}", flush=True)
        for run_dir in run(cfg):
            write_report(run_dir)
            run_dirs.append(run_dir)
    lb = build_leaderboard(run_dirs, keep_latest=True)
    written = write_leaderboard(lb, out)
    md = next(p for p in written if p.suffix == ".md")
    print(md.read_text())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s: leaderboard {md}, runs (reports, plots) in "
          f"{out / 'runs'}")
    return run_dirs
