"""Secrets never reach a file, a log line or the console (docs/architecture.md, "Secrets and deadlines").

Two tools, because secrets travel two ways:

* structured values (a model's options, a fingerprint) are *redacted* before they are recorded:
  `redact` masks options declared `secret` (harness.core.options.option) and values under secret
  names (`api_key`, `Authorization`, `X-Api-Key`, ...), and `redact_url` drops the user:password part
  of every URL and masks secret query parameters (`?api_key=`, `?token=`), keeping scheme, host,
  port and path so the record still says which server;
* free text (a server's error body, an exception, a warning) is *scrubbed* by value: every secret
  `remember`ed in this process is searched in each form a server may echo it (`Scrubber`).

Short fragments are the hard part: a server may show "sk-abc...wxyz" or "abcd****wxyz", so prefixes
and suffixes of 4+ characters are secrets too, but "test" is also an ordinary word. A fragment is
therefore removed only where it stands as a token of its own (no letter or digit on either side),
which is how masked echoes look; the same four letters inside another word ("latest") are left alone.
A whole secret, though, is removed wherever it appears, also inside a word (an echo may follow "%20" or
an escaped newline): a password that is a word ("other") costs readable messages ("an***"), never a leak.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from typing import Any, Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
#: shorter values are masked in records but not searched in free text (it would erase every "ab")
MIN_SECRET = 3
#: shortest prefix or suffix of a secret treated as an echo of it
MIN_FRAGMENT = 4

# names whose values are secrets: python style (api_key, hf_token) and header style (X-Api-Key, X-Auth-Token);
# not a bare "token" or "_key" (image_token, cache_key are no secrets)
_SECRET_WORDS = (r"api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|hf[_-]?token|bearer[_-]?token"
                 r"|refresh[_-]?token|id[_-]?token|secret|secret[_-]?key|client[_-]?secret|password|passwd|passphrase"
                 r"|authorization|proxy-authorization|cookie|set-cookie|credentials?|subscription[_-]?key")
_SECRET_NAME = re.compile(rf"(?i)(?:^|.*[_.-])(?:{_SECRET_WORDS})$|^token$|^x-.*-(?:key|token)$")
#: query parameters that carry credentials (bare "key", "sig" and "token" are, in a URL)
_SECRET_QUERY = re.compile(rf"(?i)^(?:{_SECRET_WORDS}|key|token|sig|signature|auth|code)$")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s\"'<>`]+")
_URL_ALONE = re.compile(r"(?i)^[a-z][a-z0-9+.\-]*://\S+$")
_AUTH_SCHEME = re.compile(r"(?i)^(bearer|basic|token)\s+(\S+)$")
#: patterns removed whatever was remembered: credentials after an auth scheme, key=value pairs under
#: secret names, and OpenAI-style keys (also masked ones, "sk-proj-abc*****wxyz", but not file names)
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{4,}"), r"\1\2" + MASK),
    (re.compile(rf"(?i)(?<![A-Za-z0-9])((?:{_SECRET_WORDS})[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic)\s+)?)"
                rf"([^\s\"'&,;}}]+)"), r"\1" + MASK),
    (re.compile(r"(?<![/\\.])\bsk-[A-Za-z0-9_\-*.]{8,}"), "sk-" + MASK),  # not a file name (/data/sk-lamp.png)
)
_ALNUM = "A-Za-z0-9"


def is_secret_name(name: Any) -> bool:
    """Whether an option, header or field of this name holds a secret."""
    return isinstance(name, str) and bool(_SECRET_NAME.match(name))


def _mask_params(text: str) -> str:
    """`a=1&api_key=XYZ` -> `a=1&api_key=***` (the rest kept as written)."""
    out = []
    for param in text.split("&"):
        name, eq, value = param.partition("=")
        out.append(f"{name}={MASK}" if eq and value and _SECRET_QUERY.match(unquote(name)) else param)
    return "&".join(out)


def redact_url(url: Any) -> Any:
    """The URL without its user:password part and with secret query parameters masked
    (`http://u:p@host:8000/v1?api_key=x` -> `http://host:8000/v1?api_key=***`); anything else unchanged."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL after all (an odd IPv6 literal): mask its credentials the blunt way
        return re.sub(r"//[^/@]*@", "//", url)
    netloc = parts.netloc.rpartition("@")[2]
    query, fragment = _mask_params(parts.query), _mask_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact(value: Any, secret: bool = False, name: Any = None) -> Any:
    """A copy of `value` safe to record: secret strings (declared `secret`, or under a secret `name`) are
    MASK, URLs lose their credentials (`redact_url`), containers are redacted item by item (a dict's keys
    name its values). None stays None, so a record still says that no secret was given."""
    secret = secret or is_secret_name(name)
    if isinstance(value, dict):
        return {k: redact(v, secret, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secret, name) for v in value)
    if value is None or isinstance(value, bool) and not secret:
        return value
    if secret:
        return MASK
    return redact_url(value) if isinstance(value, str) and _URL_ALONE.match(value) else value


def secrets_in(value: Any, secret: bool = False, name: Any = None) -> set[str]:
    """Every secret string `value` holds (what `redact` would mask), as a server could echo it: the value,
    the credential after "Bearer"/"Basic" (and the password a Basic credential decodes to), a URL's
    password or its password-less user (often the token itself), secret query values."""
    secret = secret or is_secret_name(name)
    if isinstance(value, dict):
        return set().union(*(secrets_in(v, secret, k) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(secrets_in(v, secret, name) for v in value))
    if not isinstance(value, str):
        return {str(value)} if secret and value is not None and not isinstance(value, bool) else set()
    found: set[str] = set()
    if secret:
        found.add(value)
        scheme = _AUTH_SCHEME.match(value.strip())
        if scheme:
            found.add(scheme.group(2))
            if scheme.group(1).lower() == "basic":
                found |= _basic_decoded(scheme.group(2))
    for url in _URL.findall(value):
        found |= _url_secrets(url)
    return found


def _basic_decoded(credential: str) -> set[str]:
    try:
        text = base64.b64decode(credential, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return set()
    user, colon, password = text.partition(":")
    return {password if colon else user} - {""}


def _url_secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found = set()
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, colon, password = userinfo.partition(":")
        # the password alone: its base64 forms at any alignment cover "user:password" in a Basic header,
        # and a user name is no secret (unless it is all there is: then it is often the token)
        found |= {password, unquote(password)} if colon else {user, unquote(user)}
    for text in (parts.query, parts.fragment):
        for param in text.split("&"):
            key, eq, val = param.partition("=")
            if eq and val and _SECRET_QUERY.match(unquote(key)):
                found |= {val, unquote(val)}
    return found - {""}


# --------------------------------------------------------------------------- scrubbing free text
def _b64_cores(secret: bytes) -> set[str]:
    """The base64 text of `secret` inside any longer encoded text: the encoding of a substring depends
    on its offset mod 3, so for each offset keep only the characters made of the secret's bits alone,
    in the standard and the URL-safe alphabet; plus the whole encoding with and without padding."""
    out = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(secret).decode()
        out |= {whole, whole.rstrip("=")}
        for offset in range(3):
            text = encode(b"\0" * offset + secret).decode()
            # character c holds bits 6c..6c+5, i.e. bytes 6c//8 .. (6c+5)//8
            keep = [c for c in range(len(text)) if 6 * c // 8 >= offset and (6 * c + 5) // 8 < offset + len(secret)]
            if keep:
                out.add(text[keep[0]:keep[-1] + 1])
    return out


def _forms(secret: str) -> set[str]:
    """The texts a server may echo a secret as: plain, URL-encoded (either hex case, + or %20 for a
    space), JSON-escaped (with and without an escaped slash), base64 at any alignment."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, safe="/:")}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in forms}
    escaped = json.dumps(secret)[1:-1]
    forms |= {escaped, escaped.replace("/", "\\/")}
    forms |= _b64_cores(secret.encode())
    return {f for f in forms if len(f) >= MIN_SECRET}


class Scrubber:
    """Removes every remembered secret from text, in all the forms of `_forms`, and each prefix and
    suffix of MIN_FRAGMENT+ characters where it stands as a token (see the module docstring); then the
    `_PATTERNS` and the credentials of every URL in the text. Thread-safe."""

    def __init__(self, values: Iterable[str] = ()):
        self._values: set[str] = set()
        self._pattern: re.Pattern | None = None
        self._lock = threading.Lock()
        self.add(*values)

    def add(self, *values: Any) -> None:
        new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET} - self._values
        if new:
            with self._lock:
                self._values |= new
                self._pattern = None

    def _compiled(self) -> re.Pattern | None:
        with self._lock:
            if self._pattern is None and self._values:
                exact = {(f, re.escape(f)) for v in self._values for f in _forms(v)}
                token = {(f, f"(?<![{_ALNUM}]){re.escape(f)}(?![{_ALNUM}])") for v in self._values
                         for k in range(MIN_FRAGMENT, len(v)) for f in (v[:k], v[-k:])}
                # longest first: at one position the whole key wins over its fragments
                alternatives = [regex for _, regex in sorted(exact | token, key=lambda x: (-len(x[0]), x[1]))]
                self._pattern = re.compile("|".join(alternatives))
            return self._pattern

    def scrub(self, text: Any) -> str:
        text = str(text)
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for regex, replacement in _PATTERNS:
            text = regex.sub(replacement, text)
        return _URL.sub(lambda m: redact_url(m.group()), text)


#: the process's secrets: what the adapters and the runner have met (keys read from the environment,
#: credentials in options); the CLI's messages, warnings and log records go through it
_PROCESS = Scrubber()


def remember(*values: Any) -> None:
    """Add secrets to the process-wide scrubber (strings shorter than MIN_SECRET are not searched)."""
    _PROCESS.add(*values)


def scrub(text: Any) -> str:
    """`text` without any remembered secret, in any form (`Scrubber.scrub`)."""
    return _PROCESS.scrub(text)


def scrub_all(value: Any) -> Any:
    """`scrub` applied to every string inside nested lists, tuples and dicts (keys too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_all(k): scrub_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_all(v) for v in value)
    return value


def scrub_log_records() -> None:
    """Make every log record, of any library and for any handler, go through `scrub` (the record
    factory is the one place all records pass). Installing it twice changes nothing."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "scrubs", False):
        return

    def scrubbed(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            record.msg, record.args = scrub(record.getMessage()), None
        except (TypeError, ValueError):  # a malformed call: left for the handler to report, as logging does
            pass
        return record

    scrubbed.scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(scrubbed)
