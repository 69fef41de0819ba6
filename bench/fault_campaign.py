"""A bounded fault campaign through the real `c2s` command (issue "Hardening"; README, "What happens
when things go wrong").

Each case builds its own inputs in a scratch folder (a small photo-like dataset, anchors, `py:`
comparators that misbehave on purpose, the tests' fake OpenAI-compatible server on 127.0.0.1 that
echoes keys in every encoding, trickles bytes or never answers), runs one `c2s` command as a user would (a subprocess) and
judges the outcome by what a user would check:

  handled      the exit code is one the contract allows for that case (0 all scored, 2 user error,
               3 partial, 4 no result, 5 aborted) and a user error is one `c2s <cmd>: error:` line;
  lost data    an input file changed, a run folder that should have survived changed, or a
               successful comparison is neither in the pair cache nor in the run;
  leaked       a secret (plain, URL-encoded, base64 at any alignment, 4+ character fragments)
               appears in any file the run wrote or in its output;
  traceback    "Traceback (most recent call last)" in its output.

    python bench/fault_campaign.py            # every case, a table per defect class
    python bench/fault_campaign.py -k secret  # cases whose name contains "secret"

Exit status 0 when every case is handled with nothing lost, leaked or traced back.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_like_jpegs  # noqa: E402
from tests.fake_openai_server import LEVEL_IDS, FakeOpenAIServer  # noqa: E402

C2S = [sys.executable, "-m", "harness.cli"]
TRACEBACK = "Traceback (most recent call last)"

# --- misbehaving comparators, loaded by `py:campaign_models:NAME` --------------------------------------

MODELS = '''
import math, os, threading, time
import numpy as np
from adapters.classical import ClassicalComparator

class _Base:
    """The real classical comparator, to which each subclass adds one fault."""
    def __init__(self, model=None, **options):
        self.inner = ClassicalComparator()
    def compare(self, pairs):
        return self.inner.compare_detailed(pairs).logprobs
    def fingerprint(self):
        return {"name": type(self).__name__, "version": 1}

class RaisesOnOne(_Base):
    """A backend that raises for any batch showing one image (a file the API rejects)."""
    def compare(self, pairs):
        if any(os.path.basename(p.second) == "t3.jpg" or os.path.basename(p.first) == "t3.jpg" for p in pairs):
            raise RuntimeError("backend rejected t3.jpg")
        return super().compare(pairs)

class MalformedOne(_Base):
    """One malformed answer (NaN row) in a batch."""
    def compare(self, pairs):
        lp = np.array(super().compare(pairs), dtype=float)
        for i, p in enumerate(pairs):
            if os.path.basename(p.second) == "t2.jpg":
                lp[i] = np.nan
        return lp

class AllFail(_Base):
    def compare(self, pairs):
        raise RuntimeError("the backend is down")

class ExitsZero(_Base):
    def compare(self, pairs):
        raise SystemExit(0)

class ZeroProbability(_Base):
    """Probability 0 for the lowest level: a log-prob of -inf is legitimate."""
    def compare(self, pairs):
        lp = np.array(super().compare(pairs), dtype=float)
        lp[:, 0] = -np.inf
        lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
        return lp

class NoFingerprint(_Base):
    def fingerprint(self):
        return None

class UnhashableFingerprint(_Base):
    def fingerprint(self):
        return {"name": "x", "weights": object()}

class Stalls(_Base):
    """Never answers its second batch (a hung backend)."""
    calls = 0
    def compare(self, pairs):
        Stalls.calls += 1
        if Stalls.calls >= 2:
            threading.Event().wait()
        return super().compare(pairs)

NOT_A_CLASS = 42
'''


# --- the scratch world -----------------------------------------------------------------------------

@dataclass
class World:
    """Inputs every case starts from, rebuilt per case so no case sees another's damage."""

    dir: Path
    env: dict = field(default_factory=dict)

    @property
    def images(self) -> Path:
        return self.dir / "images"

    def build(self) -> "World":
        self.images.mkdir(parents=True)
        anchors = self.dir / "anchors"
        anchors.mkdir()
        for k, p in enumerate(photo_like_jpegs(self.images, 6, width=96, height=72, seed=1)):
            os.rename(p, self.images / f"t{k}.jpg")
        for k, p in enumerate(photo_like_jpegs(anchors, 3, width=96, height=72, seed=2)):
            os.rename(p, anchors / f"a{k}.jpg")
        self.write_manifest([f"t{k}.jpg" for k in range(6)])
        self.write_anchors({"images": ["a0.jpg", "a1.jpg", "a2.jpg"], "mos": [20.0, 50.0, 80.0],
                            "std": [5.0, 5.0, 5.0]})
        (self.dir / "campaign_models.py").write_text(MODELS)
        self.env = {**os.environ, "C2S_HOME": str(self.dir / "home"), "PYTHONPATH": str(self.dir),
                    "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
        self.env.pop("C2S_DEBUG", None)
        return self

    def write_manifest(self, names: list[str], mos=None) -> Path:
        mos = mos or [10.0 + 13.0 * k for k in range(len(names))]
        path = self.dir / "set.csv"
        path.write_text("image,mos\n" + "".join(f"{n},{m}\n" for n, m in zip(names, mos)))
        return path

    def write_anchors(self, doc) -> Path:
        path = self.dir / "anchors" / "anchors.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def run_args(self, model: str = "classical", *extra: str, run_id: str = "r", cache=None) -> list[str]:
        return ["run", "--model", model, "--dataset", f"set={self.dir / 'set.csv'}", "--root", str(self.images),
                "--anchors", str(self.dir / "anchors" / "anchors.json"), "--out", str(self.dir / "runs"),
                "--cache", str(cache or self.dir / "pairs.sqlite"), "--run-id", run_id, "--profile", "paper", *extra]

    def c2s(self, args: list[str], timeout: float = 240) -> "Outcome":
        t0 = time.monotonic()
        try:
            p = subprocess.run(C2S + args, cwd=self.dir, env=self.env, capture_output=True, text=True,
                               timeout=timeout)
            code, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = None, str(exc.stdout or ""), str(exc.stderr or "")
        return Outcome(args, code, out, err, time.monotonic() - t0)


@dataclass
class Outcome:
    args: list[str]
    code: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def snapshot(paths) -> dict[str, str]:
    """sha256 of every file under the given files/folders (what must not change)."""
    out = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def encodings(secret: str) -> set[str]:
    """The forms of a secret a leak could take: itself, URL-encoded, base64 of it and of each
    alignment of it inside a longer text (the middle of each form is fixed whatever surrounds it)."""
    forms = {secret, quote(secret, safe="")}
    raw = secret.encode()
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw).decode().rstrip("=")
        # characters wholly determined by the secret's bytes: skip the ones mixed with padding or neighbours
        start = (pad * 4 + 2) // 3 + (1 if pad else 0)
        end = len(enc) - 1
        if end - start >= 4:
            forms.add(enc[start:end])
    return {f for f in forms if len(f) >= 3}


def leaks(secret: str, out: Outcome, folders) -> list[str]:
    found = [f"output has {f!r}" for f in encodings(secret) if f in out.text]
    for folder in folders:
        for p in Path(folder).rglob("*") if Path(folder).exists() else []:
            if p.is_file():
                data = p.read_bytes()
                found += [f"{p} has {f!r}" for f in encodings(secret) if f.encode() in data]
    return found


def cached_pairs(cache: Path) -> int:
    if not cache.is_file():
        return 0
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]


def scores(run_dir: Path) -> dict[str, str]:
    """image -> status, from a run folder's scores.csv."""
    import csv

    with open(run_dir / "scores.csv", newline="") as f:
        return {Path(r["image"]).name: r.get("status", "") for r in csv.DictReader(f)}


# --- cases -------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    klass: str
    #: (world) -> (outcome, problems: {"lost": [...], "leaked": [...], "wrong": [...]})
    body: Callable
    codes: tuple[int, ...]


CASES: list[Case] = []


def case(klass: str, *codes: int):
    def add(fn):
        CASES.append(Case(fn.__name__, klass, fn, codes))
        return fn
    return add


def guarded(w: World, args: list[str], keep=(), timeout: float = 240) -> tuple[Outcome, list[str]]:
    """Run `c2s args`; the inputs (and `keep`) must come out byte for byte as they went in."""
    inputs = [w.images, w.dir / "anchors", w.dir / "set.csv", *keep]
    before = snapshot(inputs)
    out = w.c2s(args, timeout)
    after = snapshot(inputs)
    lost = [f"{p} changed or vanished" for p, h in before.items() if after.get(p) != h]
    return out, lost


# 1. image loading ----------------------------------------------------------------------------------

def png_with_chunk(path: Path, kind: bytes, head: bytes, fill: bytes) -> None:
    """A valid small PNG with one compressed chunk (`kind`: zTXt, iCCP) whose 80 MB payload inflates past
    Pillow's limits, inserted before the image data."""
    Image.new("RGB", (64, 48), (90, 120, 150)).save(path, "PNG")
    data = path.read_bytes()
    payload = head + zlib.compress(fill * (80 << 20), 9)
    chunk = len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")
    i = data.index(b"IDAT") - 4
    path.write_bytes(data[:i] + chunk + data[i:])


def png_with_huge_text(path: Path) -> None:
    png_with_chunk(path, b"zTXt", b"Comment\0\0", b"A")


def png_with_huge_icc(path: Path) -> None:
    png_with_chunk(path, b"iCCP", b"icc\0\0", b"\0")


def _bad_test_image(w: World, make, args_extra=(), name="t5.jpg"):
    target = w.images / name
    target.unlink()
    make(target)  # keeps the manifest's name: a bad file where a good one was expected
    out, lost = guarded(w, w.run_args("classical", *args_extra))
    wrong = []
    run = w.dir / "runs" / "r"
    if out.code in (0, 3) and run.is_dir():
        st = scores(run)
        if any(s != "ok" for n, s in st.items() if n != name):
            wrong.append(f"innocent images failed: {st}")
    return out, {"lost": lost, "wrong": wrong}


@case("1 images", 3)
def png_text_bomb_in_dataset(w):
    return _bad_test_image(w, png_with_huge_text, ("--drop-bad",))


@case("1 images", 2, 3)
def png_icc_bomb_in_dataset(w):
    return _bad_test_image(w, png_with_huge_icc)


@case("1 images", 2, 3)
def one_pixel_image(w):
    return _bad_test_image(w, lambda p: Image.new("RGB", (1, 1), (1, 2, 3)).save(p, "JPEG"))


@case("1 images", 2, 3)
def truncated_test_image(w):
    def make(p):
        photo_like_jpegs(w.dir, 1, width=96, height=72, seed=9)
        data = (w.dir / "img9_0.jpg").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    return _bad_test_image(w, make)


@case("1 images", 2)
def truncated_anchor(w):
    a = w.dir / "anchors" / "a1.jpg"
    a.write_bytes(a.read_bytes()[:-400])  # the header survives: only a full decode sees it
    out, lost = guarded(w, w.run_args())
    return out, {"lost": lost}


@case("1 images", 2, 3)
def pixel_limit_option(w):
    Image.new("L", (3000, 3000), 128).save(w.images / "t4.jpg")
    return _bad_test_image(w, lambda p: Image.new("L", (3000, 3000), 100).save(p), ("--max-pixels", "1000000"))


@case("1 images", 3)
def score_command_with_a_bomb(w):
    png_with_huge_text(w.images / "bomb.png")
    out, lost = guarded(w, ["score", "--model", "classical", "--images", str(w.images), "--out",
                            str(w.dir / "scores.csv"), "--anchors", str(w.dir / "anchors" / "anchors.json"),
                            "--cache", str(w.dir / "pairs.sqlite")])
    wrong = []
    if (w.dir / "scores.csv").is_file():
        import csv

        rows = list(csv.DictReader(open(w.dir / "scores.csv")))
        bad = [r for r in rows if r.get("status") != "ok" and "bomb" not in r["image"]]
        if bad:
            wrong.append(f"innocent images failed: {bad}")
    return out, {"lost": lost, "wrong": wrong}


@case("1 images", 3)
def datasets_check_with_a_bomb(w):
    png_with_huge_text(w.images / "t0.jpg")
    out, lost = guarded(w, ["datasets", "check", f"set={w.dir / 'set.csv'}", "--root", str(w.images)])
    return out, {"lost": lost}


# 2. one bad item, one bad batch --------------------------------------------------------------------

def _partial_run(w, model, bad: str, args=()):
    out, lost = guarded(w, w.run_args(f"py:campaign_models:{model}", "--batch-size", "8", *args))
    wrong = []
    run = w.dir / "runs" / "r"
    if run.is_dir():
        st = scores(run)
        wrong += [f"{n} is {s!r}" for n, s in st.items() if (s == "ok") == (n == bad)]
        # the good pairs (every pair not showing the bad image) must be cached
        good = (len(st) - 1) * 3
        if cached_pairs(w.dir / "pairs.sqlite") < good:
            lost.append(f"only {cached_pairs(w.dir / 'pairs.sqlite')} of {good} good pairs cached")
    else:
        wrong.append("no run folder")
    return out, {"lost": lost, "wrong": wrong}


@case("2 batches", 3)
def backend_raises_for_one_image(w):
    return _partial_run(w, "RaisesOnOne", "t3.jpg")


@case("2 batches", 3)
def one_malformed_answer(w):
    return _partial_run(w, "MalformedOne", "t2.jpg")


# 3. the cache -----------------------------------------------------------------------------------------

def _first_run(w) -> Outcome:
    out = w.c2s(w.run_args())
    assert out.code == 0, out.text
    return out


@case("3 cache", 0, 3)
def poisoned_cache_rows(w):
    _first_run(w)
    cache = w.dir / "pairs.sqlite"
    with sqlite3.connect(cache) as db:
        for k, value in enumerate([np.nan, 1e308, 0.0]):
            db.execute("UPDATE pairs SET logprobs = ? WHERE first || second IN "
                       "(SELECT first || second FROM pairs LIMIT 1 OFFSET ?)",
                       (np.full(5, value, "<f8").tobytes(), k))
    out, lost = guarded(w, w.run_args(run_id="again"))
    wrong = []
    if "invalid" not in out.text.lower():
        wrong.append("invalid cached rows were not reported")
    with sqlite3.connect(cache) as db:
        vals = np.frombuffer(b"".join(r[0] for r in db.execute("SELECT logprobs FROM pairs")), "<f8")
    if not (np.all(np.isfinite(vals)) and np.all(vals <= 1e-9)):
        wrong.append("invalid rows are still in the cache")
    return out, {"lost": lost, "wrong": wrong}


@case("3 cache", 2)
def corrupted_cache_file(w):
    _first_run(w)
    cache = w.dir / "pairs.sqlite"
    data = bytearray(cache.read_bytes())
    data[100:4096] = os.urandom(4096 - 100)
    cache.write_bytes(bytes(data))
    out, lost = guarded(w, w.run_args(run_id="again"), keep=[cache])
    return out, {"lost": lost}


@case("3 cache", 2)
def cache_is_a_directory(w):
    (w.dir / "pairs.sqlite").mkdir()
    out, lost = guarded(w, w.run_args())
    return out, {"lost": lost}


@case("3 cache", 2)
def foreign_sqlite_schema(w):
    with sqlite3.connect(w.dir / "pairs.sqlite") as db:
        db.execute("CREATE TABLE pairs (a INTEGER, b TEXT)")
        db.execute("INSERT INTO pairs VALUES (1, 'mine')")
    out, lost = guarded(w, w.run_args(), keep=[w.dir / "pairs.sqlite"])
    return out, {"lost": lost}


@case("3 cache", 2)
def cache_not_sqlite(w):
    (w.dir / "pairs.sqlite").write_text("my notes, not a cache\n" * 50)
    out, lost = guarded(w, w.run_args(), keep=[w.dir / "pairs.sqlite"])
    return out, {"lost": lost}


@case("3 cache", 2)
def cache_on_unwritable_path(w):
    out, lost = guarded(w, w.run_args(cache="/proc/c2s/pairs.sqlite"))
    return out, {"lost": lost}


# 4. run folders ---------------------------------------------------------------------------------------

@case("4 run folders", 2)
def run_id_escapes_with_dotdot(w):
    out, lost = guarded(w, w.run_args(run_id="../escaped"))
    wrong = ["wrote outside --out"] if (w.dir / "escaped").exists() else []
    return out, {"lost": lost, "wrong": wrong}


@case("4 run folders", 2)
def run_id_is_absolute(w):
    target = w.dir / "elsewhere"
    out, lost = guarded(w, w.run_args(run_id=str(target)))
    wrong = ["wrote outside --out"] if target.exists() else []
    return out, {"lost": lost, "wrong": wrong}


@case("4 run folders", 2)
def run_id_reused_for_another_dataset(w):
    _first_run(w)
    w.write_manifest(["t0.jpg", "t1.jpg", "t2.jpg"])
    out, lost = guarded(w, w.run_args(), keep=[w.dir / "runs" / "r"])
    return out, {"lost": lost}


@case("4 run folders", 0)
def run_id_reused_with_overwrite(w):
    _first_run(w)
    w.write_manifest(["t0.jpg", "t1.jpg", "t2.jpg"])
    out, lost = guarded(w, w.run_args("classical", "--overwrite"))
    wrong = []
    if out.code == 0 and len(scores(w.dir / "runs" / "r")) != 3:
        wrong.append("the overwritten run does not hold the new dataset")
    stray = [p.name for p in (w.dir / "runs").iterdir() if p.name.startswith(".")]
    if stray:
        wrong.append(f"temporary folders left behind: {stray}")
    return out, {"lost": lost, "wrong": wrong}


@case("4 run folders", 0)
def same_run_again_resumes(w):
    _first_run(w)
    n = cached_pairs(w.dir / "pairs.sqlite")
    out, lost = guarded(w, w.run_args())
    wrong = [] if cached_pairs(w.dir / "pairs.sqlite") == n else ["a resumed run judged cached pairs again"]
    return out, {"lost": lost, "wrong": wrong}


# 5. secrets --------------------------------------------------------------------------------------------

def _openai_run(w, plan: list[str], secret: str, *options: str, url_userinfo: str = "", timeout=240, gap=1.0):
    """A run against the fake OpenAI-compatible server (vLLM mode: exact level log-probs) with `plan`."""
    w.env["CAMPAIGN_KEY"] = secret
    with FakeOpenAIServer(plan, gap=gap, trickle_s=600) as server:
        url = server.url.replace("http://", f"http://{url_userinfo}@" if url_userinfo else "http://") + "/v1"
        args = w.run_args("openai:fake", "-o", f"base_url={url}", "-o", "api_key_env=CAMPAIGN_KEY",
                          "-o", "server=vllm", "-o", f"level_token_ids={LEVEL_IDS}", "-o", "max_attempts=1", *options)
        return guarded(w, args, timeout=timeout)


def _written(w) -> list[Path]:
    return [w.dir / "runs", w.dir / "home", w.dir / "pairs.sqlite"]


def _key_echo(w, secret):
    out, lost = _openai_run(w, ["echo"], secret)
    return out, {"lost": lost, "leaked": leaks(secret, out, _written(w))}


@case("5 secrets", 4)
def short_key_echoed(w):
    return _key_echo(w, "k3Y")


@case("5 secrets", 4)
def six_char_key_echoed_in_base64(w):
    return _key_echo(w, "x9+/Qz")


@case("5 secrets", 4)
def long_non_sk_key_echoed_in_fragments(w):
    return _key_echo(w, "gsk_Zq81LmPr0aWx73NbTy55KeHu2cVd9J4o")


@case("5 secrets", 0)
def password_in_base_url(w):
    password = "hunter2-Pw!"
    out, lost = _openai_run(w, ["varied"], "sk-test-000", url_userinfo=f"alice:{quote(password, safe='')}")
    return out, {"lost": lost, "leaked": leaks(password, out, _written(w)) + leaks("sk-test-000", out, _written(w))}


# 6. deadlines ------------------------------------------------------------------------------------------

def _deadline(w, behaviour: str):
    """Every request to a server that `behaviour`s (trickle, silent) fails within its 4 s deadline."""
    out, lost = _openai_run(w, [behaviour], "sk-abc", "-o", "timeout=2", "-o", "deadline=4", "-o", "concurrency=8",
                            timeout=120)
    wrong = [f"took {out.seconds:.0f} s with a 4 s deadline per request"] if out.seconds > 60 else []
    return out, {"lost": lost, "wrong": wrong}


@case("6 deadlines", 4)
def trickling_server_meets_its_deadline(w):
    return _deadline(w, "trickle")


@case("6 deadlines", 4)
def silent_server_meets_its_deadline(w):
    return _deadline(w, "silent")


@case("6 deadlines", 5)
def stalled_backend_is_reported(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:Stalls", "--batch-size", "4", "--stall-timeout", "5"),
                        timeout=120)
    wrong = [] if "stuck" in out.text.lower() or "no progress" in out.text.lower() else ["no word of what is stuck"]
    if cached_pairs(w.dir / "pairs.sqlite") < 4:
        lost.append("the batch judged before the stall is not cached")
    return out, {"lost": lost, "wrong": wrong}


# 7. exit codes and meaningless results ---------------------------------------------------------------

@case("7 exit codes", 4)
def every_pair_fails(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:AllFail"))
    return out, {"lost": lost}


@case("7 exit codes", 4)
def comparator_raises_system_exit_0(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:ExitsZero"))
    return out, {"lost": lost}


@case("7 exit codes", 4)
def anchors_with_equal_mos(w):
    w.write_anchors({"images": ["a0.jpg", "a1.jpg", "a2.jpg"], "mos": [50.0, 50.0, 50.0], "std": [5.0, 5.0, 5.0]})
    out, lost = guarded(w, w.run_args())
    metrics = w.dir / "runs" / "r" / "metrics.json"
    wrong = []
    if metrics.is_file() and any(isinstance(v, float) for v in _values(json.loads(metrics.read_text()), "srcc")):
        wrong.append("metrics report an SRCC for constant scores")
    return out, {"lost": lost, "wrong": wrong}


def _values(doc, key):
    """Every value stored under `key` anywhere in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from ([v] if k == key else _values(v, key))
    elif isinstance(doc, list):
        for v in doc:
            yield from _values(v, key)


# 8. tracebacks instead of messages ------------------------------------------------------------------

def _user_error(w, args, keep=()):
    out, lost = guarded(w, args, keep=keep)
    return out, {"lost": lost}


@case("8 messages", 2)
def unknown_model_option(w):
    return _user_error(w, w.run_args("classical", "-o", "temprature=2"))


@case("8 messages", 2)
def py_spec_module_missing(w):
    return _user_error(w, w.run_args("py:no_such_module_xyz:Thing"))


@case("8 messages", 2)
def py_spec_names_no_class(w):
    return _user_error(w, w.run_args("py:campaign_models:NOT_A_CLASS"))


@case("8 messages", 2)
def anchors_file_is_a_list(w):
    w.write_anchors(["a0.jpg", "a1.jpg"])
    return _user_error(w, w.run_args())


@case("8 messages", 2)
def anchors_file_without_std(w):
    w.write_anchors({"images": ["a0.jpg", "a1.jpg", "a2.jpg"], "mos": [1, 2, 3]})
    return _user_error(w, w.run_args())


@case("8 messages", 2)
def anchor_mos_of_1e400(w):
    w.write_anchors('{"images": ["a0.jpg", "a1.jpg", "a2.jpg"], "mos": [1, 1e400, 3], "std": [1, 1, 1]}')
    return _user_error(w, w.run_args())


@case("8 messages", 2)
def manifest_mos_of_1e400(w):
    w.write_manifest(["t0.jpg", "t1.jpg", "t2.jpg"], mos=["1", "1e400", "3"])
    return _user_error(w, w.run_args())


@case("8 messages", 2)
def missing_fingerprint(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:NoFingerprint"))
    wrong = ["left a run folder"] if (w.dir / "runs" / "r").exists() else []
    return out, {"lost": lost, "wrong": wrong}


@case("8 messages", 2)
def unserialisable_fingerprint(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:UnhashableFingerprint"))
    wrong = ["left a run folder"] if (w.dir / "runs" / "r").exists() else []
    return out, {"lost": lost, "wrong": wrong}


@case("8 messages", 2)
def rescore_of_a_damaged_folder(w):
    _first_run(w)
    run = w.dir / "runs" / "r"
    (run / "manifest.json").write_text('{"run_id": "r", "format_version": ')
    return _user_error(w, ["rescore", str(run), "--link", "logit"], keep=[run])


@case("8 messages", 2)
def garbage_yaml_config(w):
    (w.dir / "run.yaml").write_text("models: [classical\ndatasets: {{{\n")
    return _user_error(w, ["run", "--config", str(w.dir / "run.yaml")])


# 9. legitimate inputs ------------------------------------------------------------------------------------

@case("9 legitimate", 0)
def zero_probability_level(w):
    out, lost = guarded(w, w.run_args("py:campaign_models:ZeroProbability"))
    return out, {"lost": lost}


def _yaml_run(w, extra: str):
    cfg = w.dir / "run.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        models: [classical]
        datasets: [{{name: set, source: {w.dir / 'set.csv'}, root: {w.images}}}]
        anchors: {{source: {w.dir / 'anchors' / 'anchors.json'}}}
        out: {w.dir / 'runs'}
        cache: {w.dir / 'pairs.sqlite'}
        """) + extra)
    return _user_error(w, ["run", "--config", str(cfg)], keep=[cfg])


@case("9 legitimate", 2)
def yaml_boolean_as_string(w):
    return _yaml_run(w, 'drop_bad: "no"\n')


@case("9 legitimate", 2)
def yaml_batch_size_true(w):
    return _yaml_run(w, "batch_size: true\n")


@case("9 legitimate", 2)
def score_out_names_an_input_image(w):
    return _user_error(w, ["score", "--model", "classical", "--images", str(w.images), "--out",
                           str(w.images / "t0.jpg"), "--anchors", str(w.dir / "anchors" / "anchors.json")])


@case("9 legitimate", 0)
def symlinked_image_keeps_its_name(w):
    os.symlink(w.images / "t0.jpg", w.images / "link_name.jpg")
    w.write_manifest(["link_name.jpg", "t1.jpg", "t2.jpg", "t3.jpg"])
    out, lost = guarded(w, w.run_args())
    wrong = []
    if out.code == 0 and "link_name.jpg" not in scores(w.dir / "runs" / "r"):
        wrong.append("the symlink is reported under its target's name")
    return out, {"lost": lost, "wrong": wrong}


@case("9 legitimate", 2)
def compare_with_temperature_zero(w):
    return _user_error(w, ["compare", "--model", "classical", str(w.images / "t0.jpg"), str(w.images / "t1.jpg"),
                           "--temperature", "0"])


@case("9 legitimate", 3)
def drop_bad_counts_every_dropped_item(w):
    names = [f"t{k}.jpg" for k in range(6)] + [f"gone{k}.jpg" for k in range(5)]
    w.write_manifest(names)
    out, lost = guarded(w, w.run_args("classical", "--drop-bad"))
    wrong = []
    report = next((w.dir / "runs" / "r").glob("report*.html"), None) if (w.dir / "runs" / "r").exists() else None
    text = report.read_text() if report else ""
    if not (re.search(r"\b5\b[^\n]*(dropped|left out)", text) and all(f"gone{k}.jpg" in text for k in range(5))):
        wrong.append("the report does not count and list the 5 dropped items")
    return out, {"lost": lost, "wrong": wrong}


# --- driver ---------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    case: Case
    out: Outcome | None
    handled: bool
    lost: list[str]
    leaked: list[str]
    traceback: bool
    wrong: list[str]
    note: str = ""


def judge(c: Case, work: Path) -> Verdict:
    w = World(work / c.name).build()
    try:
        out, problems = c.body(w)
    except Exception as exc:  # the campaign's own set-up failed: count it as not handled, say why
        return Verdict(c, None, False, [], [], False, [], f"set-up failed: {type(exc).__name__}: {exc}")
    tb = TRACEBACK in out.text
    handled = out.code in c.codes and not problems.get("wrong")
    if out.code == 2:  # one message (it may list the items at fault on the lines below it)
        handled = handled and any(line.startswith(f"c2s {out.args[0]}: error:") for line in out.stderr.splitlines())
    note = "" if handled else f"exit {out.code} (want {'/'.join(map(str, c.codes))}); " + (
        "; ".join(problems.get("wrong", [])) or (out.stderr.strip().splitlines() or [""])[-1][:160])
    return Verdict(c, out, handled and not tb, problems.get("lost", []), problems.get("leaked", []), tb,
                   problems.get("wrong", []), note)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="pattern", default="", help="only cases whose name or class contains this")
    ap.add_argument("--keep", metavar="DIR", help="keep every case's scratch folder under DIR")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case's outcome as it ends")
    a = ap.parse_args(argv)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="c2s-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    todo = [c for c in CASES if a.pattern in c.name or a.pattern in c.klass]
    verdicts = []
    t0 = time.monotonic()
    try:
        for c in todo:
            v = judge(c, work)
            verdicts.append(v)
            if a.verbose or not v.handled or v.lost or v.leaked or v.traceback:
                flag = "ok " if v.handled and not (v.lost or v.leaked or v.traceback) else "BAD"
                secs = f"{v.out.seconds:5.1f}s" if v.out else "   -  "
                print(f"{flag} {secs} {c.klass:14s} {c.name:40s} {v.note}"[:240], flush=True)
                for item in v.lost + v.leaked:
                    print(f"      {item}"[:240])
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(verdicts)} cases in {time.monotonic() - t0:.0f} s\n")
    print(f"| {'class':16s} | tried | handled | lost data | leaked secrets | tracebacks |")
    print(f"|{'-' * 18}|------:|--------:|----------:|---------------:|-----------:|")
    total = np.zeros(5, dtype=int)
    for klass in dict.fromkeys(v.case.klass for v in verdicts):
        vs = [v for v in verdicts if v.case.klass == klass]
        row = np.array([len(vs), sum(v.handled for v in vs), sum(bool(v.lost) for v in vs),
                        sum(bool(v.leaked) for v in vs), sum(v.traceback for v in vs)])
        total += row
        print(f"| {klass:16s} | {row[0]:5d} | {row[1]:7d} | {row[2]:9d} | {row[3]:14d} | {row[4]:10d} |")
    print(f"| {'all':16s} | {total[0]:5d} | {total[1]:7d} | {total[2]:9d} | {total[3]:14d} | {total[4]:10d} |")
    return 0 if total[1] == total[0] and not total[2:].any() else 1


if __name__ == "__main__":
    sys.exit(main())
