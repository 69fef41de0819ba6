"""The released Compare2Score model (spec `compare2score[:PATH_OR_ID]`) behind the Comparator interface.

Why a worker process: the model is mPLUG-Owl2 remote code that needs transformers 4.36-4.37,
which cannot live beside the harness's transformers 5. `setup_worker_env` builds a pinned,
reusable virtual environment once (an explicit step: it downloads packages); the comparator
starts `adapters/c2s_worker.py` under that environment's python and speaks the line-delimited
JSON protocol documented in that file over the worker's stdin/stdout.

Images are decoded here by the harness's one loader (`harness.data.images`) and sent as raw RGB, so
the worker sees exactly what every other adapter sees; each distinct image of a request is
preprocessed once there. A worker that dies or stops answering raises a clear error naming the
exit code and the end of its stderr; it never hangs the run.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np

from adapters.base import Comparator, Comparisons, Pair
from adapters.fingerprint import build_fingerprint, model_identity
from harness.core.levels import LEVELS
from harness.core.options import option
from prompts import load_prompt

DEFAULT_MODEL = "q-future/Compare2Score"
WORKER = Path(__file__).with_name("c2s_worker.py")
#: The worker environment's pins. transformers 4.37.2 is the newest release the mPLUG-Owl2 remote
#: code supports; its modeling file imports `icecream` and `datasets` at load time. torch is
#: chosen separately (`torch=`) because the right build depends on the machine's CUDA.
WORKER_REQUIREMENTS = (
    "transformers==4.37.2", "tokenizers==0.15.2", "sentencepiece==0.2.0", "protobuf==4.25.3",
    "accelerate==0.26.1", "pillow==10.4.0", "numpy==1.26.4", "icecream==2.1.3", "datasets==2.16.1",
)
DEFAULT_TORCH = "torch==2.1.2"
_STAMP = "c2s-worker-env.json"


def default_env_dir() -> Path:
    from harness.core import home

    return home.worker_env_dir()


def worker_python(env_dir) -> Path:
    env = Path(env_dir)
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_worker_env(env_dir=None, *, python: str = sys.executable, torch: str = DEFAULT_TORCH,
                     requirements: Sequence[str] = WORKER_REQUIREMENTS, pip_args: Sequence[str] = (),
                     log=print) -> Path:
    """Create (or reuse) the worker's virtual environment and return its python.

    Reused as is when its stamp lists the same requirements; otherwise created with
    `python -m venv` and filled with `pip install` of `torch` plus `requirements`.
    """
    env = Path(env_dir) if env_dir is not None else default_env_dir()
    wanted = sorted([torch, *requirements]) if torch else sorted(requirements)
    stamp = env / _STAMP
    py = worker_python(env)
    if py.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("requirements") == wanted:
        log(f"c2s worker environment up to date: {env}")
        return py
    log(f"creating the c2s worker environment in {env} ({len(wanted)} pinned packages)")
    subprocess.run([python, "-m", "venv", str(env)], check=True)
    if wanted:
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *pip_args, *wanted], check=True)
    probe = subprocess.run([str(py), "-c", "import sys; print(sys.version.split()[0])"],
                           check=True, capture_output=True, text=True)
    stamp.write_text(json.dumps({"requirements": wanted, "python": probe.stdout.strip()}, indent=1))
    return py


class WorkerError(RuntimeError):
    """The worker died, timed out or reported a failure."""


class _WorkerProcess:
    """The child process and its pipes: one request at a time, replies read by a thread."""

    def __init__(self, python: str):
        if not Path(python).is_file() and shutil.which(python) is None:
            raise ValueError(f"the Compare2Score worker's python {python!r} does not exist")
        self._lock = threading.Lock()
        self.proc = subprocess.Popen([python, "-u", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.replies: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque = collections.deque(maxlen=40)
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.replies.put, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_tail.append, False), daemon=True).start()
        self._finalizer = weakref.finalize(self, _WorkerProcess._stop, self.proc)

    @staticmethod
    def _pump(stream, sink, mark_end: bool) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        if mark_end:
            sink(None)  # end of stdout: the worker exited

    @staticmethod
    def _stop(proc) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def _failure(self, what: str) -> WorkerError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = "\n".join(list(self.stderr_tail)[-15:]) or "(no stderr output)"
        return WorkerError(f"Compare2Score worker {what} (exit code {code}); last stderr lines:\n{tail}")

    def request(self, msg: dict, timeout: float) -> dict:
        with self._lock:  # one request in flight: replies come back in order
            return self._request(msg, timeout)

    def _request(self, msg: dict, timeout: float) -> dict:
        if self.proc.poll() is not None:
            raise self._failure("is not running")
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("died before reading the request") from None
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            self._stop(self.proc)
            raise self._failure(f"gave no answer to {msg.get('op')!r} within {timeout:g} s and was stopped") from None
        if line is None:
            raise self._failure(f"exited while handling {msg.get('op')!r}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(f"Compare2Score worker failed on {msg.get('op')!r}: {reply.get('error')}")
        return reply

    def close(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            try:
                self.request({"op": "shutdown"}, timeout)
                self.proc.wait(timeout=timeout)
            except (WorkerError, subprocess.TimeoutExpired):
                pass
        self._finalizer()


def mplug_prompt(name: str = "official") -> str:
    """A prompt template in mPLUG-Owl2's raw conversation format (what the released code sends)."""
    r = load_prompt(name).render()
    question = "".join("<|image|>" if isinstance(s, int) else s for s in r.segments)
    return f"USER: {question} \nASSISTANT: {r.prefill}"


def _rgb_payload(img) -> dict:
    return {"width": img.width, "height": img.height, "rgb": base64.b64encode(img.tobytes()).decode("ascii")}


class Compare2ScoreComparator(Comparator):
    """Pairs -> (n, 5) level log-probs from the released Compare2Score model in its worker, each pair
    shown as given. Python-only argument: `image_store=` (default: the process-wide store)."""

    backend = "compare2score"
    model_arg = "optional"
    model_help = f"a model folder or hub id (default {DEFAULT_MODEL})"

    @dataclass(frozen=True)
    class Options:
        python: Optional[str] = option(None, "the worker environment's interpreter (default: the one "
                                             "setup_worker_env made in the home folder)")
        device: str = option("auto", "auto (CUDA when the worker sees a GPU, else CPU), cpu, cuda, cuda:1")
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = option(
            "auto", "auto: float16 on CUDA (the official setting), else float32")
        batch_size: int = option(8, "pairs per forward in the worker", minimum=1)
        timeout_s: float = option(600.0, "seconds the worker may take for one batch", minimum=1)
        load_timeout_s: float = option(1800.0, "seconds the worker may take to load the model", minimum=1)

    def __init__(self, model: str | None = None, *, image_store=None, **options):
        super().__init__(model, **options)
        o = self.options
        python = o.python
        if python is None:
            python = str(worker_python(default_env_dir()))
            if not Path(python).is_file():
                raise ValueError(f"no Compare2Score worker environment at {default_env_dir()}: create it once with "
                                 "`c2s setup compare2score`, or point -o python=PATH (python: in YAML options) at "
                                 "an existing one")
        self.model_id = self.model_id or DEFAULT_MODEL
        self.batch_size, self.timeout_s = o.batch_size, o.timeout_s
        self.prompt = load_prompt("official")
        self.prompt_text = mplug_prompt("official")
        if image_store is None:
            from harness.data.images import default_store

            image_store = default_store()
        self.store = image_store
        self._worker = _WorkerProcess(python)
        try:
            reply = self._worker.request({"op": "load", "model": self.model_id, "prompt": self.prompt_text,
                                          "levels": list(LEVELS), "device": o.device, "dtype": o.dtype},
                                         o.load_timeout_s)
        except Exception:
            self._worker.close()
            raise
        self.info = reply["info"]

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """Per-pair log-probs; a pair whose image cannot be loaded is a NaN row with the reason.
        Each distinct image of the batch is sent (and preprocessed by the worker) once. Metadata:
        `level_mass` and `logsumexp` (raw level logits = log-probs + it), as the worker reports them."""
        pairs = list(pairs)
        lp = np.full((len(pairs), len(LEVELS)), np.nan)
        errors: list = [None] * len(pairs)
        meta: list = [{"level_mass": None} for _ in pairs]
        images: dict[str, int] = {}
        payload, index_pairs, items = [], [], []
        for k, pair in enumerate(pairs):
            try:
                for path in (pair.first, pair.second):
                    if path not in images:
                        payload.append(_rgb_payload(self.store.get(path)))
                        images[path] = len(payload) - 1
            except (ValueError, OSError) as exc:
                errors[k] = f"{type(exc).__name__}: {exc}"
                continue
            index_pairs.append([images[pair.first], images[pair.second]])
            items.append(k)
        if items:
            reply = self._worker.request({"op": "compare", "images": payload, "pairs": index_pairs,
                                          "batch_size": self.batch_size}, self.timeout_s)
            lp[items] = np.asarray(reply["logprobs"], dtype=np.float64)
            for k, m, shift in zip(items, reply["level_mass"], reply["logsumexp"]):
                meta[k] = {"level_mass": m, "logsumexp": shift}
        return Comparisons(lp, errors, meta)

    def fingerprint(self) -> dict:
        info = self.info
        return build_fingerprint(
            backend=self.backend,
            model=model_identity(self.model_id, cls=info["model_class"]),
            dtype=info["dtype"],
            prompt={**self.prompt.fingerprint(), "rendered": self.prompt_text},
            level_tokens={"ids": info["level_ids"], "strings": info["level_strings"], "strategy": "first_subtoken"},
            preprocessing={"loader": "harness.data.images", "pad_to_square": info["background"],
                           "image_size": info["image_size"], "image_mean": info["image_mean"],
                           "image_std": info["image_std"]},
            versions={"torch": info["torch"], "transformers": info["transformers"], "worker_python": info["python"]},
            extra={"device_type": info["device"].split(":")[0]})

    def close(self) -> None:
        """Stop the worker (it also stops when this object is garbage-collected or at exit)."""
        self._worker.close()
