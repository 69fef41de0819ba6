"""OpenAI-compatible chat API adapter (model spec `openai:MODEL`, plus `base_url`).

Two server modes, because only vLLM can return the exact five level log-probs:
  * `server="vllm"`: `logprob_token_ids` asks a vLLM server for exactly the level tokens after the
    prefilled assistant answer (`continue_final_message`), tokens returned as ids so byte tokens
    that decode to the same string cannot collide;
  * `server="generic"` (OpenAI and other servers): the model answers in one word; its top-k
    (at most 20) first-token log-probs are mapped to levels by normalised string. Levels outside
    the top-k get probability 0 after renormalising over the levels seen; the probability mass
    left outside the seen levels is recorded per pair; a pair with no level seen, or with no
    log-probs at all (reasoning models), fails with its reason.

The single-image rating baseline (`rate`, levels `harness.core.levels.RATING_LEVELS`, the `rating_prompt`
wording) goes through the same request, retry and mapping code as pairs, one request per image:
exact rating-word log-probs in vLLM mode, the one-word answer's top-k in generic mode.

Requests run on a bounded thread pool; transient failures (429, 408, 5xx, timeouts, connection
errors) are retried (tenacity) with exponential backoff and jitter, honouring Retry-After. `timeout`
bounds each attempt as a whole (connect, send and every read together, `adapters.http_deadline`: a
server trickling bytes cannot hold it longer) and `deadline` the whole request, attempts and waits.
The API key is read from an environment variable whose NAME is an option; its value is kept only
inside the client object and remembered by `harness.core.secrets`, so it is scrubbed, in any encoding,
from every failure reason (servers echo rejected keys); so are credentials in `base_url` and `headers`.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import random
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any, Callable, Literal, Optional, Sequence, Union
from urllib.parse import urlsplit

import numpy as np
import tenacity

from adapters.base import Comparator, Comparisons, OptionError, Pair
from adapters.chat import checked_prompt
from adapters.endpoints import Endpoints
from adapters.fingerprint import build_fingerprint, model_identity
from adapters.http_deadline import deadline as socket_deadline
from adapters.level_tokens import Strategy
from harness.core.levels import LEVELS, N_LEVELS, RATING_LEVELS
from harness.core.options import option, options_secrets
from harness.core.secrets import redact_url, remember, scrub

#: the chat API caps top_logprobs at 20
MAX_TOP_LOGPROBS = 20
#: Stand-in log-prob for a level missing from the top-k in generic mode: finite, because the level's
#: probability is unknown (below the top-k), not known to be 0 (-inf), yet 0 even at temperature T = 100.
UNSEEN_LEVEL_LOGPROB = -1e30
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class PairFailure(Exception):
    """A pair the API could not judge; the message is recorded as its reason."""


# --------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again. Attempt k (0-based) is followed by a wait drawn uniformly in
    [cap/2, cap], cap = min(max_delay, base_delay * 2**k), or by the server's Retry-After when that is
    longer (a Retry-After beyond `max_delay` is not honoured: the item fails). `deadline` bounds the
    whole request, every attempt and wait together: a wait that would pass it is not taken."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 300.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not (0 <= self.base_delay <= self.max_delay):
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay}, {self.max_delay}")
        if not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline}")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        cap = min(self.max_delay, self.base_delay * 2.0 ** attempt)
        backoff = cap / 2 + rng.uniform(0, cap / 2)
        return backoff if retry_after is None else max(retry_after, backoff)


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (delta-seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def classify_error(exc: BaseException) -> tuple[bool, float | None, str]:
    """(retryable, Retry-After seconds or None, short reason) for an exception from the client."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return True, None, "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return True, None, f"connection error: {exc}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = f"HTTP {status}: {_short(exc.message)}"
        if status in RETRYABLE_STATUS:
            return True, parse_retry_after(getattr(exc.response, "headers", None)), reason
        return False, None, reason
    return False, None, f"{type(exc).__name__}: {_short(str(exc))}"


def call_with_retries(send: Callable[[float], Any], policy: RetryPolicy, *, rng: random.Random,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> tuple[Any, int]:
    """Run `send(time_left)` until it succeeds or `policy` says stop; returns (result, attempts).
    `time_left` is what remains of the deadline: the caller caps the attempt's own timeout with it,
    so the deadline bounds the attempts as well as the waits between them.

    tenacity drives the loop; this function only says which errors are transient (`classify_error`),
    how long to wait and when to stop. Raises PairFailure with the last reason and why it stopped
    (not retryable, attempts used up, a Retry-After beyond max_delay, or the deadline). `sleep` and
    `clock` are injectable so that tests wait for nothing."""
    start = clock()
    attempts = 0
    stopped: list[str] = []  # why `stop` ended the retries

    def attempt():
        nonlocal attempts
        attempts += 1
        return send(max(0.0, policy.deadline - (clock() - start)))

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.delay(state.attempt_number - 1, classify_error(state.outcome.exception())[1], rng)

    def stop(state: tenacity.RetryCallState) -> bool:
        asked, elapsed = classify_error(state.outcome.exception())[1], clock() - start
        if attempts >= policy.max_attempts:
            stopped.append(f"gave up after {attempts} attempts")
        elif asked is not None and asked > policy.max_delay:
            stopped.append(f"server asked to retry after {asked:.0f} s, more than max_delay={policy.max_delay:g} s")
        elif elapsed + state.upcoming_sleep > policy.deadline:
            stopped.append(f"deadline of {policy.deadline:g} s reached: {attempts} attempt(s) in {elapsed:.1f} s, "
                           f"the next wait of {state.upcoming_sleep:.1f} s would pass it")
        return bool(stopped)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(lambda exc: classify_error(exc)[0]),
                                 wait=wait, stop=stop, sleep=sleep)
    try:
        return retrying(attempt), attempts
    except tenacity.RetryError as err:
        exc = err.last_attempt.exception()
        raise PairFailure(f"{classify_error(exc)[2]} ({stopped[-1]})") from exc
    except Exception as exc:  # noqa: BLE001 - not retryable: reported with its reason
        raise PairFailure(f"{classify_error(exc)[2]} (attempt {attempts}, not retryable)") from exc


def _short(text: Any, limit: int = 200) -> str:
    """One line of at most `limit` characters, scrubbed BEFORE it is cut: a cut echo of a key (half its
    base64, say) is no longer recognisable."""
    text = " ".join(scrub(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- log-probs -> levels
def _top_logprobs(response: Any) -> list:
    """The first generated token's top-k list of (token, logprob); PairFailure when absent."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise PairFailure("the API returned no choices")
    logprobs = getattr(choices[0], "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        raise PairFailure("the API returned no log-probs (reasoning models and some servers do not)")
    top = getattr(content[0], "top_logprobs", None) or []
    if not top:
        raise PairFailure("the API returned no top_logprobs for the first token")
    return [(t.token, float(t.logprob)) for t in top]


_TOKEN_ID = re.compile(r"^token_id:(-?\d+)$")


def levels_from_token_ids(response: Any, level_ids: Sequence[int], words: Sequence[str] = LEVELS) -> np.ndarray:
    """vLLM mode: the level log-probs (ids in the order of `words`), read by token id
    (`return_tokens_as_token_ids`)."""
    by_id: dict[int, float] = {}
    for token, logprob in _top_logprobs(response):
        m = _TOKEN_ID.match(token)
        if m is None:
            raise PairFailure(f"token {token!r} is not in 'token_id:N' form: is the server vLLM with "
                              "return_tokens_as_token_ids? use server='generic' otherwise")
        by_id[int(m.group(1))] = logprob
    missing = [words[k] for k, i in enumerate(level_ids) if i not in by_id]
    if missing:
        raise PairFailure(f"the server returned no log-prob for level(s) {', '.join(missing)}: "
                          "does it support logprob_token_ids?")
    return np.array([by_id[i] for i in level_ids], dtype=np.float64)


def normalise_token(token: str) -> str:
    """Case-, space-, accent- and punctuation-insensitive form of a token string."""
    text = unicodedata.normalize("NFKC", token).strip().lower()
    return "".join(ch for ch in text if ch.isalnum())


def level_of(token: str, words: Sequence[str] = LEVELS, min_prefix: int = 3) -> int | None:
    """Index of the level whose word this first token spells or starts (a prefix of at least
    `min_prefix` characters shared by no other level, e.g. 'sup' but not 's'); else None."""
    norm = normalise_token(token)
    if not norm:
        return None
    hits = [k for k, w in enumerate(words) if w == norm or (len(norm) >= min_prefix and w.startswith(norm))]
    return hits[0] if len(hits) == 1 else None


def levels_from_strings(response: Any, words: Sequence[str] = LEVELS,
                        min_prefix: int = 3) -> tuple[np.ndarray, dict]:
    """Generic mode: top-k tokens -> level log-probs renormalised over the levels seen.

    Tokens spelling the same level (' Better', 'better') are different first tokens, so their
    probabilities add. Returns (log-probs, meta) with meta = {level_mass, missing_mass,
    levels_missing, top_k}: level_mass is the probability of all level tokens seen,
    missing_mass = 1 - level_mass, the mass the renormalisation discards."""
    top = _top_logprobs(response)
    mass = np.zeros(len(words))
    for token, logprob in top:
        k = level_of(token, words, min_prefix)
        if k is not None:
            mass[k] += math.exp(logprob)
    seen = mass > 0
    if not seen.any():
        shown = ", ".join(repr(t) for t, _ in top[:5])
        raise PairFailure(f"no level word among the top {len(top)} tokens (first: {shown})")
    total = float(mass.sum())
    lp = np.full(len(words), UNSEEN_LEVEL_LOGPROB)
    lp[seen] = np.log(mass[seen] / total)
    meta = {"level_mass": total, "missing_mass": max(0.0, 1.0 - total),
            "levels_missing": [words[k] for k in np.flatnonzero(~seen)],
            "top_k": len(top)}
    return lp, meta


# --------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageEncoding:
    """How images travel: lossless PNG unless it exceeds `max_bytes`, then JPEG at falling
    quality; images longer than `max_side` pixels are shrunk first (aspect kept)."""

    max_side: int = 2048
    max_bytes: int = 8 * 1024 * 1024
    jpeg_qualities: tuple[int, ...] = (92, 85, 75, 60)

    def __post_init__(self):
        if self.max_side < 1 or self.max_bytes < 1024:
            raise ValueError(f"image cap too small: max_side={self.max_side}, max_bytes={self.max_bytes}")


def image_data_url(image, enc: ImageEncoding = ImageEncoding()) -> str:
    """A `data:` URL for a PIL image, re-encoded within the caps; ValueError if it cannot fit."""
    from PIL import Image

    img = image.convert("RGB") if image.mode not in ("RGB", "L") else image
    if max(img.size) > enc.max_side:
        scale = enc.max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    # deflate level 1 first: ~7x less CPU than the default 6 for ~15 % more bytes (encoding was most of a run's
    # client time, each image being in ~10 pairs); level 6 when 1 is over the cap, so PNG stays PNG as before
    for level in (1, 6):
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False, compress_level=level)
        if buf.tell() <= enc.max_bytes:
            break
    mime = "image/png"
    for quality in enc.jpeg_qualities:
        if buf.tell() <= enc.max_bytes:
            break
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        mime = "image/jpeg"
    if buf.tell() > enc.max_bytes:
        raise ValueError(f"image of {img.size[0]}x{img.size[1]} px does not fit in max_bytes={enc.max_bytes} "
                         f"even as JPEG quality {enc.jpeg_qualities[-1]}; lower max_side")
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


class EncodedImages:
    """Data URLs as JSON strings (`b'"data:image/png;base64,..."'`, what a request body holds) by image
    content (sha256 of the file, memoised by path, mtime and size), the least recently used dropped beyond
    `max_bytes`: each image is encoded, and written as JSON, once per run, not once per request
    (re-encoding a PNG per pair, then JSON-encoding its data URL per request, were most of the client's
    time: bench/client_ceiling.py)."""

    def __init__(self, max_bytes: int = 512 * 1024 ** 2):
        self.max_bytes, self.nbytes = max_bytes, 0
        self._urls: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, encode: Callable[[], str]) -> bytes:
        """The JSON string of `path`'s data URL, made by `encode()` (the data URL) if not held."""
        from harness.data.images import content_hash

        key = content_hash(path)
        with self._lock:
            url = self._urls.get(key)
            if url is not None:
                self._urls.move_to_end(key)
                return url
        url = json.dumps(encode()).encode()
        with self._lock:
            if key not in self._urls and len(url) <= self.max_bytes:
                self._urls[key] = url
                self.nbytes += len(url)
                while self.nbytes > self.max_bytes:
                    self.nbytes -= len(self._urls.popitem(last=False)[1])
        return url


class RequestBody:
    """One kind of request's JSON body, serialised once with a slot where each image's data URL goes:
    `fill(images)` joins the pieces with the images' JSON strings (`EncodedImages`). Building the body
    per request with json.dumps cost ~2 ms per 300 KB image, most of the client's time per request."""

    _SLOT = "\x00c2s-image-%d\x00"
    _SLOTS = re.compile(rb'"\\u0000c2s-image-(\d+)\\u0000"')  # a slot as json.dumps writes it

    def __init__(self, build: Callable[[list], dict], n_images: int):
        """`build(urls)` makes the request's fields from the images' URLs, in image order."""
        # as the SDK writes JSON (openai._utils._json.openapi_dumps)
        text = json.dumps(build([self._SLOT % k for k in range(n_images)]), ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False).encode()
        cut = self._SLOTS.split(text)
        self._pieces, self._order = cut[::2], [int(k) for k in cut[1::2]]
        if sorted(self._order) != list(range(n_images)):  # a prompt spelling a slot: never silently wrong
            raise ValueError(f"the request does not place each of its {n_images} image(s) once")

    def fill(self, images: Sequence[bytes]) -> bytes:
        """The body with `images[k]` (JSON strings) in image k's slot."""
        out = [self._pieces[0]]
        for k, piece in zip(self._order, self._pieces[1:]):
            out += (images[k], piece)
        return b"".join(out)


# --------------------------------------------------------------------------- the adapter
@dataclass(frozen=True)
class _Task:
    """One kind of request (pairs, or single-image ratings): the wording as sent, the level words
    in level order, the request (`body`, with the fields beyond the chat API's, `extra_body`) and how the
    level log-probs are read (`levels`: the token ids in vLLM mode, the string-matching rule in generic mode)."""

    template: Any  # prompts.PromptTemplate
    rendered: Any  # prompts.RenderedPrompt as sent (generic mode: without the prefill)
    words: tuple[str, ...]
    extra_body: dict
    levels: dict
    body: RequestBody


def _given_ids(ids: Sequence[int] | None, words: Sequence[str], name: str) -> list[int] | None:
    if ids is None:
        return None
    out = [int(i) for i in ids]
    if len(out) != len(words) or len(set(out)) != len(out):
        raise ValueError(f"{name} must be {len(words)} distinct ids in the order {', '.join(words)}, got {out}")
    return out


def _server(options) -> str:
    """The server mode: as given, else vLLM's exact levels behind a base_url and generic for OpenAI."""
    return options.server or ("vllm" if options.base_url else "generic")


def _wordings(options) -> tuple[str, str]:
    """The pair and rating wordings: as given, else the mode's defaults (generic mode's rating wording
    names the rating words, since the answer cannot be prefilled there)."""
    exact = _server(options) == "vllm"
    return (options.prompt or ("official" if exact else "generic"),
            options.rating_prompt or ("rating" if exact else "generic_rating"))


class OpenAIComparator(Comparator):
    """Level log-probs through an OpenAI-compatible chat API (see the module docstring).

    `OpenAIComparator("my-model", base_url="http://127.0.0.1:8000/v1", server="vllm",
    api_key_env="VLLM_API_KEY")`. In vLLM mode the level token ids come from `level_token_ids`
    (`rating_token_ids` for the rating words) or are resolved with the model's tokenizer
    (`tokenizer=PATH`, default: `model` when it is a local folder, as when vLLM serves a local
    checkpoint); the rating words are resolved at the first `rate` call. Python-only arguments
    (not options): `client=` a ready `openai.OpenAI` (e.g. Azure) instead of building one, and
    `image_store=` (default: the process-wide store).
    """

    backend = "openai"
    model_help = "the served model's name, e.g. openai:gpt-4o or openai:/models/served-path"
    can_rate = True

    @dataclass(frozen=True)
    class Options:
        base_url: Optional[Union[str, list[str]]] = option(
            None, "the API's base URL, e.g. http://127.0.0.1:8000/v1 (None: OpenAI), or a list of servers of the "
                  "same model, balanced (adapters.endpoints)")
        server: Optional[Literal["vllm", "generic"]] = option(
            None, "vllm: a vLLM server's exact level log-probs; generic: any server's first-token top-k "
                  "(None: vllm with a base_url, else generic)")
        api_key_env: Optional[str] = option("OPENAI_API_KEY", "NAME of the environment variable holding the key "
                                                              "(None: a server without authentication)")
        headers: Optional[dict[str, str]] = option(None, "extra HTTP headers sent with every request (e.g. a "
                                                         "gateway's X-Api-Key); their values are secrets", secret=True)
        prompt: Optional[str] = option(None, "pair wording (None: official in vLLM mode, else generic)")
        rating_prompt: Optional[str] = option(None, "single-image wording (None: rating in vLLM mode, "
                                                    "else generic_rating)")
        tokenizer: Optional[str] = option(None, "vLLM mode: the served model's tokenizer (None: the model "
                                                "when it is a local folder)")
        level_token_ids: Optional[list[int]] = option(None, "vLLM mode: the 5 level words' token ids, "
                                                            "instead of a tokenizer")
        rating_token_ids: Optional[list[int]] = option(None, "vLLM mode: the 5 rating words' token ids")
        level_strategy: Strategy = option("single", "a level word that is not one token: refuse ('single') or "
                                                    "read its first sub-token ('first_subtoken')")
        top_logprobs: int = option(MAX_TOP_LOGPROBS, "generic mode: first-token top-k asked for",
                                   minimum=1, maximum=MAX_TOP_LOGPROBS)
        min_prefix: int = option(3, "generic mode: shortest unique prefix read as a level word", minimum=1)
        concurrency: int = option(8, "requests in flight (per server when base_url lists several)", minimum=1)
        cooldown: float = option(30.0, "seconds a server that failed cooldown_after times in a row is left to rest",
                                 minimum=0)
        cooldown_after: int = option(3, "transient failures in a row (connection, timeout, 5xx) that rest a server",
                                     minimum=1)
        timeout: float = option(60.0, "seconds one attempt may take, connect, send and every read together (> 0)")
        max_attempts: int = option(RetryPolicy.max_attempts, "tries per request", minimum=1)
        base_delay: float = option(RetryPolicy.base_delay, "first backoff in seconds", minimum=0)
        max_delay: float = option(RetryPolicy.max_delay, "longest backoff, and longest Retry-After honoured, "
                                                         "in seconds", minimum=0)
        deadline: float = option(RetryPolicy.deadline, "total seconds a request may take, retries and waits "
                                                       "included (> 0)")
        max_side: int = option(ImageEncoding.max_side, "longest image side sent, in pixels", minimum=1)
        max_bytes: int = option(ImageEncoding.max_bytes, "largest encoded image sent, in bytes", minimum=1024)
        seed: Optional[int] = option(None, "seed of the retry jitter")

    @classmethod
    def validate_options(cls, options, where: str) -> None:
        o = options
        if isinstance(o.base_url, list) and not o.base_url:
            raise OptionError(f"{where}: base_url lists no server; give at least one URL, or none for OpenAI")
        for url in _urls(o.base_url):
            if urlsplit(url).scheme not in ("http", "https"):
                raise OptionError(f"{where}: base_url must be an http(s) URL, got {redact_url(url)!r}")
        if not o.timeout > 0:
            raise OptionError(f"{where}: option 'timeout' must be > 0, got {o.timeout!r}")
        if o.headers is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in o.headers.items()):
            raise OptionError(f"{where}: option 'headers' must map header names to text values, e.g. "
                              "-o 'headers={\"X-Api-Key\": \"...\"}'")
        prompt, rating_prompt = _wordings(o)
        exact = _server(o) == "vllm"
        checked_prompt(prompt, 2, where, prefill=exact)
        checked_prompt(rating_prompt, 1, where, prefill=exact)
        try:
            _given_ids(o.level_token_ids, LEVELS, "level_token_ids")
            _given_ids(o.rating_token_ids, RATING_LEVELS, "rating_token_ids")
            RetryPolicy(o.max_attempts, o.base_delay, o.max_delay, deadline=o.deadline)
        except ValueError as exc:
            raise OptionError(f"{where}: {exc}") from None

    def __init__(self, model: str | None, *, client: Any = None, image_store: Any = None, **options: Any):
        super().__init__(model, **options)
        from harness.data.images import default_store

        o = self.options
        where = f"model {self.spec_of(model)}"
        self.server = _server(o)
        if self.server == "vllm" and not o.base_url and client is None:
            raise ValueError(f"{where}: server='vllm' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.top_logprobs = N_LEVELS if self.server == "vllm" else o.top_logprobs
        self._tokenizer = None
        self._rating_ids = _given_ids(o.rating_token_ids, RATING_LEVELS, "rating_token_ids")
        prompt, rating_prompt = _wordings(o)
        # checked now, its tokens at the first rate
        self._rating_prompt = checked_prompt(rating_prompt, 1, where, prefill=self.server == "vllm")
        self._rating: _Task | None = None
        self._pairs = self._task(*checked_prompt(prompt, 2, where, prefill=self.server == "vllm"), LEVELS,
                                 _given_ids(o.level_token_ids, LEVELS, "level_token_ids"), "level_token_ids")
        self.retry = RetryPolicy(o.max_attempts, o.base_delay, o.max_delay, deadline=o.deadline)
        self.encoding = ImageEncoding(o.max_side, o.max_bytes)
        self._rng = random.Random(o.seed)
        self._store = image_store or default_store()
        self._encoded = EncodedImages()
        remember(*options_secrets(self.Options, asdict(o)))
        self._closed = threading.Event()
        self._posters = []  # the clients built here, to end their requests on close
        clients = [("client", client)] if client else []
        for url in ([] if client else _urls(o.base_url) or [None]):
            self._posters.append(_make_client(url, o.api_key_env, o.timeout, o.headers, connections=o.concurrency))
            clients.append((redact_url(url), self._posters[-1]))
        self._endpoints = Endpoints(clients, limit=o.concurrency, cooldown=o.cooldown,
                                    cooldown_after=o.cooldown_after, counts=lambda exc: classify_error(exc)[0])
        # one pool for the comparator's life: threads (and their connections) outlive a batch
        self._pool = ThreadPoolExecutor(max_workers=o.concurrency * len(self._endpoints.all),
                                        thread_name_prefix="c2s-openai")

    def _task(self, template, rendered, words: Sequence[str], given_ids: list[int] | None, option: str) -> _Task:
        from adapters.chat import chat_template_kwargs, conversation, image_url_part

        if self.server == "vllm":
            levels = self._level_ids(words, rendered.prefill, given_ids, option)
            extra_body = {**chat_template_kwargs(rendered), "return_tokens_as_token_ids": True,
                          "logprob_token_ids": list(levels["ids"])}
            top_logprobs = len(words)
        else:  # the chat API cannot continue an assistant turn: the model answers in one word
            rendered = dataclasses.replace(rendered, prefill="")
            levels, extra_body, top_logprobs = self._string_rule(words), {}, self.top_logprobs
        body = RequestBody(lambda urls: {
            "model": self.model_id, "messages": conversation(rendered, [image_url_part(u) for u in urls]),
            "max_completion_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": top_logprobs,
            **extra_body}, rendered.n_images)
        return _Task(template, rendered, tuple(words), extra_body, levels, body)

    def _string_rule(self, words: Sequence[str]) -> dict:
        return {"words": list(words), "match": "normalised string or unique prefix",
                "min_prefix": self.options.min_prefix}

    def _level_ids(self, words: Sequence[str], prefill: str, given: list[int] | None, option: str) -> dict:
        if given is not None:
            return {"ids": list(given), "strings": None, "strategy": "given"}
        source = self.options.tokenizer or (self.model_id if os.path.isdir(self.model_id or "") else None)
        if source is None:
            raise ValueError(f"openai adapter, server='vllm': pass -o tokenizer=PATH (the served model's tokenizer) "
                             f"or -o {option}=[{len(words)} ids] (the same keys under options: in YAML) so the exact "
                             "level tokens can be requested")
        from adapters.level_tokens import resolve_level_tokens

        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(source)
        return resolve_level_tokens(self._tokenizer, words, prefill=prefill,
                                    strategy=self.options.level_strategy).as_dict()

    def _rating_task(self) -> _Task:
        if self._rating is None:
            self._rating = self._task(*self._rating_prompt, RATING_LEVELS, self._rating_ids, "rating_token_ids")
        return self._rating

    # -- the Comparator interface
    def fingerprint(self) -> dict:
        import openai

        pairs = self._pairs
        rating_template, rating_rendered = self._rating_prompt
        if self.server == "vllm":  # known without resolving (the tokenizer is the model's, in "model")
            rating_levels = {"words": list(RATING_LEVELS), "ids": self._rating_ids,
                             "strategy": "given" if self._rating_ids else self.options.level_strategy}
        else:
            rating_levels = self._string_rule(RATING_LEVELS)
        return build_fingerprint(
            backend=self.backend, model=model_identity(self.model_id), dtype=None,
            prompt={**pairs.template.fingerprint(), "prefill": pairs.rendered.prefill or None},
            level_tokens=pairs.levels,
            rating_prompt={**rating_template.fingerprint(), "levels": rating_levels,
                           "prefill": (rating_rendered.prefill if self.server == "vllm" else None) or None},
            preprocessing={"loader": "harness.data.images", "image_encoding": asdict(self.encoding)},
            versions={"openai": openai.__version__},
            # which servers answer is no part of a verdict: a server restarted on another port, or one more
            # server, must hit the same cache (only OpenAI's own API and a self-hosted one differ)
            extra={"endpoint": "self-hosted" if self.options.base_url else "default", "server": self.server,
                   "top_logprobs": self.top_logprobs, "temperature": 0.0})

    def compare_detailed(self, pairs: Sequence[Pair]) -> Comparisons:
        """One request per pair, at most `concurrency` in flight; never raises for a pair."""
        return self._judge(self._pairs, [(pair.first, pair.second) for pair in pairs])

    def rate_detailed(self, images: Sequence) -> Comparisons:
        """Single-image baseline over `RATING_LEVELS`: one request per image, as for pairs. Raises only
        for a configuration error found at the first call (vLLM mode without a tokenizer or
        `rating_token_ids` for the rating words)."""
        return self._judge(self._rating_task(), [(os.fspath(p),) for p in images])

    # -- internals
    def _judge(self, task: _Task, items: list[tuple[str, ...]]) -> Comparisons:
        """One request per item (its image paths in the order shown), at most `concurrency` in flight."""
        paths = sorted({p for item in items for p in item})
        urls = dict(zip(paths, self._pool.map(self._encode, paths)))
        results = list(self._pool.map(lambda item: self._one(task, item, urls), items))
        lp = np.full((len(items), len(task.words)), np.nan)
        errors, meta = [], []
        for i, (row, err, info) in enumerate(results):
            if row is not None:
                lp[i] = row
            errors.append(err)
            meta.append(info)
        return Comparisons(lp, errors, meta)

    def _encode(self, path: str):
        """The image's data URL as a JSON string, or the exception that makes every item using it fail."""
        try:
            return self._encoded.get(path, lambda: image_data_url(self._store.get(path), self.encoding))
        except Exception as exc:  # noqa: BLE001 - becomes the reason of each item using it
            return exc

    def _one(self, task: _Task, paths: tuple[str, ...], urls: dict) -> tuple[np.ndarray | None, str | None, dict]:
        for path in paths:
            if isinstance(urls[path], Exception):
                reason = str(urls[path])
                return None, (reason if path in reason else f"image {path}: {reason}"), {}
        body = task.body.fill([urls[p] for p in paths])
        info: dict = {}

        def send(time_left: float):  # each attempt to the least busy server that is not resting
            limit = min(self.options.timeout, time_left)
            with self._endpoints.use() as endpoint, socket_deadline(limit):
                return _chat(endpoint.client, body, task.extra_body, limit)

        try:
            # a wait between attempts ends early when the adapter is closed (a run aborted, say)
            response, info["attempts"] = call_with_retries(send, self.retry, rng=self._rng, sleep=self._closed.wait)
            if self.server == "vllm":
                row = levels_from_token_ids(response, task.levels["ids"], task.words)
                info["level_mass"] = float(np.exp(row).sum())  # as the transformers adapter reports it
                return row, None, info
            row, extra = levels_from_strings(response, task.words, self.options.min_prefix)
            info.update(extra)
            return row, None, info
        except PairFailure as exc:  # servers echo (parts of) a rejected key back
            return None, scrub(exc), info

    def close(self) -> None:
        """Ends requests still in flight at once (their sockets are shut down, their waits cut short)."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for poster in self._posters:
            poster.close()


class ChatPoster:
    """Chat completions from one server on a client the comparator built: each request `body` (JSON,
    `RequestBody`) is posted to the URL and with the headers the SDK builds itself (learned once, here), and
    answered with the SDK's errors (timeout, connection, status: `classify_error`); the reply is read as
    plain attributes, the shape the SDK's models have. A plain `http://` server reached without a proxy is
    posted to by `adapters.plain_http` (the transport was most of the client's time), any other on the
    SDK's own HTTP client, whose sockets honour the deadline (`backend`, `adapters.http_deadline`).

    Why not `client.chat.completions.create`: the SDK's per-request machinery (its recursive transform of
    the parameters, JSON-encoding the images again, options, headers and URL rebuilt, reply models) cost
    several times the HTTP exchange itself, most of the client's time (bench/client_ceiling.py). A client
    handed to the comparator (`client=`, e.g. Azure, whose URLs and tokens change per request) gets `create`."""

    def __init__(self, sdk: Any, backend: Any, connections: int = 20):
        from openai._models import FinalRequestOptions

        from adapters.http_deadline import httpx
        from adapters.plain_http import PlainHTTP, direct

        self.sdk, self._backend = sdk, backend
        built = sdk._build_request(sdk._prepare_options(FinalRequestOptions.construct(
            method="post", url="/chat/completions", content=b"{}")))
        self._url = built.url
        self._headers = httpx.Headers([(k, v) for k, v in built.headers.raw if k.lower() != b"content-length"])
        self.plain = PlainHTTP(self._url, self._headers.raw, connections) if direct(self._url) else None

    def post(self, body: bytes, timeout: float) -> Any:
        import openai

        from adapters.http_deadline import httpx

        try:
            if self.plain is None:
                response = self.sdk._client.send(self._request(body, timeout))
            else:  # (an httpx response only for an error, to build the SDK's error from it)
                status, headers, content = self.plain.post(body, timeout)
                if 200 <= status < 300:
                    return _reply(content)
                response = httpx.Response(status, headers=headers, content=content,
                                          request=self._request(body, timeout))
        except httpx.TimeoutException as exc:  # as the SDK maps them
            raise openai.APITimeoutError(request=self._request(body, timeout)) from exc
        except httpx.RequestError as exc:
            raise openai.APIConnectionError(request=self._request(body, timeout)) from exc
        if not response.is_success:
            raise self.sdk._make_status_error_from_response(response)
        return _reply(response.content)

    def _request(self, body: bytes, timeout: float) -> Any:
        from adapters.http_deadline import httpx

        return httpx.Request("POST", self._url, headers=self._headers, content=body,
                             extensions={"timeout": httpx.Timeout(timeout).as_dict()})

    def close(self) -> None:
        """Ends the requests in flight at once (their sockets are shut down) and closes the connections."""
        self._backend.abort()
        if self.plain is not None:
            self.plain.close()
        self.sdk.close()


def _reply(content: bytes) -> Any:
    """A chat completion's JSON as nested plain objects (attributes, as the SDK's models have them)."""
    return json.loads(content, object_hook=lambda fields: SimpleNamespace(**fields))


def _chat(client: Any, body: bytes, extra_body: dict, timeout: float) -> Any:
    """The chat completion for a request `body`: posted as it is by a `ChatPoster`; anything else (a
    client handed in, a test double) gets `create` with the body's fields, those beyond the chat API
    (`extra_body`'s keys) as `extra_body`."""
    if isinstance(client, ChatPoster):
        return client.post(body, timeout)
    kwargs = json.loads(body)
    extra = {key: kwargs.pop(key) for key in extra_body}
    return client.chat.completions.create(**kwargs, **({"extra_body": extra} if extra else {}), timeout=timeout)


def _urls(base_url) -> list[str]:
    """The servers a base_url option names (none: OpenAI's own API)."""
    return [] if base_url is None else [base_url] if isinstance(base_url, str) else list(base_url)


def _make_client(base_url: str | None, api_key_env: str | None, timeout: float, headers: dict | None = None,
                 connections: int = 20) -> ChatPoster:
    """A `ChatPoster` on an `openai.OpenAI` with the SDK's own retries off (`call_with_retries` does them,
    within the request's total deadline: the SDK's would add waits no deadline bounds), on an HTTP client
    whose sockets honour each attempt's deadline."""
    import openai

    from adapters.http_deadline import deadline_client

    if api_key_env is None:
        key = "EMPTY"  # servers without auth still need a syntactically present key
    else:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise ValueError(f"openai adapter: the environment variable {api_key_env} (api_key_env) is not set; "
                             "export it, or pass -o api_key_env=null (api_key_env: null in YAML options) for a "
                             "server without authentication")
        remember(key)
    http_client, backend = deadline_client(connections)
    return ChatPoster(openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout,
                                    default_headers=headers, http_client=http_client), backend, connections)
