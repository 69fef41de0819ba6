"""Where the time of a demo-size run goes, and whether memory stays flat as the image count grows.

    python bench/pipeline.py [--batch-size 16] [--sizes 5 10] [--family idefics3] [--model-size small|tiny]

Each size runs in a fresh process (so peak RSS is that run's own): the embedded benchmark with
N source photos (26 images each), a random LMM through the transformers adapter (`small`, the
default: a ~30 M-parameter text model, so the forward weighs something; `tiny`: the 0.2 M test
model, whose forward is negligible next to any preprocessing), a fresh
pair cache (every pair is judged), the paper profile, reports and plots. The adapter is timed
from outside by wrapping its methods (the adapter itself carries no timing code): decode (each
image's one decode in the harness.data.images store) and preprocessing (the processor) run on the
adapter's helper thread, overlapping the forward of the previous batch; "outside the forward"
is the run's wall time minus the forward's; the runner's own stages come from the manifest.
Goal (issue 6): everything outside the model's forward at most 10% of the wall time at batch >= 8.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_model(family: str, size: str, work: Path) -> Path:
    """The tiny random model, or a `small` one (same family, processor and tokenizer; a wider and
    deeper text model, ~30 M parameters) so the forward weighs more like a real model's."""
    from harness.tools.tiny_vlm import build_tiny_vlm

    tiny = work / f"tiny-{family}"
    if not (tiny / "config.json").is_file():
        build_tiny_vlm(family, tiny, seed=0)
    if size == "tiny":
        return tiny
    out = work / f"small-{family}"
    if not (out / "config.json").is_file():
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        cfg = AutoConfig.from_pretrained(tiny)
        cfg.text_config.update({"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 8,
                                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64})
        torch.manual_seed(0)
        AutoModelForImageTextToText.from_config(cfg).save_pretrained(out)
        AutoProcessor.from_pretrained(tiny).save_pretrained(out)
    return out


def one_run(n_sources: int, batch_size: int, family: str, size: str, work: Path) -> dict:
    import harness.data.images
    from adapters.hf import HFComparator
    from harness.data.demo_data import DEFAULT_SOURCES, build_demo_benchmark
    from harness.report.reports import write_report
    from harness.run.record import read_run
    from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run

    ds = build_demo_benchmark(work / "bench", sources=list(DEFAULT_SOURCES[:n_sources]))
    model_dir = build_model(family, size, work)
    comp = HFComparator(str(model_dir), batch_size=batch_size)
    n_params = sum(p.numel() for p in comp.model.parameters())
    timers: dict = defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - t0
        return wrapper

    harness.data.images.load_image = timed("decode", harness.data.images.load_image)  # the store's decodes only
    comp.processor = timed("preprocess", comp.processor)
    comp._forward = timed("forward", comp._forward)

    t0 = time.perf_counter()
    cfg = RunConfig(model=f"hf:{model_dir}", datasets=[DatasetSpec("demo", source=str(ds.root / "manifest.json"))],
                    anchors=AnchorSpec("select", dataset="demo"), out_dir=str(work / "runs"),
                    cache=str(work / f"cache-{n_sources}-{time.time_ns()}.sqlite"), batch_size=max(64, batch_size))
    (run_dir,) = run(cfg, comparator=comp, progress=False)
    t_report = time.perf_counter()
    write_report(run_dir)  # the caller writes reports, as `c2s run` does
    t_report = time.perf_counter() - t_report
    wall = time.perf_counter() - t0
    m = read_run(run_dir).manifest
    t = m.timings
    # decode and preprocessing run on the adapter's helper thread, overlapping the forward
    stages = {
        "load dataset + anchors": t["load_datasets"],
        "hash + cache lookup": t["hash_and_cache_lookup"],
        "image decode (overlapped)": timers["decode"],
        "preprocessing (overlapped)": timers["preprocess"],
        "model forward": timers["forward"],
        "comparing, not hidden by forward": t["compare"] - timers["forward"],
        "MAP scoring": t["scoring"],
        "metrics": t["metrics"],
        "reports + plots": t_report,
    }
    return {"n_images": m.counts.images_total, "pairs": m.counts.pairs_total, "wall": wall,
            "stages": stages, "decodes": comp.store.decodes, "params": n_params,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10], help="source photos per run (26 images each)")
    ap.add_argument("--family", default="idefics3")
    ap.add_argument("--model-size", choices=["tiny", "small"], default="small")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_run(a.child, a.batch_size, a.family, a.model_size, Path(a.work))))
        return
    with tempfile.TemporaryDirectory() as work:
        results = []
        for n in a.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--work", work, "--batch-size",
                                  str(a.batch_size), "--family", a.family, "--model-size", a.model_size],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    big = results[-1]
    print(f"random {a.model_size} {a.family} ({big['params'] / 1e6:.1f} M parameters) through the transformers adapter, "
          f"batch {a.batch_size}, {big['n_images']} images, {big['pairs']} pairs, {big['decodes']} decodes")
    print(f"{'stage':36s} {'seconds':>8s} {'of wall':>8s}")
    for name, sec in big["stages"].items():
        print(f"{name:36s} {sec:8.3f} {100 * sec / big['wall']:7.1f}%")
    outside = big["wall"] - big["stages"]["model forward"]
    print(f"{'run wall':36s} {big['wall']:8.3f}")
    print(f"outside the model forward: {outside:.3f} s = {100 * outside / big['wall']:.1f}% of the wall (goal <= 10%)")
    print("peak RSS by size (fresh process each):")
    for r in results:
        print(f"  {r['n_images']:5d} images, {r['pairs']:6d} pairs: {r['maxrss_mb']:7.1f} MB  (wall {r['wall']:.2f} s)")
    if len(results) > 1:
        print(f"  ratio largest/smallest peak RSS: {results[-1]['maxrss_mb'] / results[0]['maxrss_mb']:.3f} "
              f"for {results[-1]['n_images'] / results[0]['n_images']:.1f}x the images")


if __name__ == "__main__":
    main()
