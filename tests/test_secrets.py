"""No secret reaches a file, a log line or the console: redaction of recorded options and URLs, scrubbing
of free text in every form a server echoes, and a whole `c2s run` against a server that echoes keys."""
from __future__ import annotations

import base64
import io
import json
import logging
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from harness.core.options import option, options_secrets, recorded_options
from harness.core.secrets import Scrubber, redact, redact_url, scrub, scrub_log_records, secrets_in
from tests.conftest import noise_pngs
from tests.fake_openai_server import LEVEL_IDS, FakeOpenAIServer, echoes

#: keys of 3, 6 and 40 characters, with and without "sk-", with characters base64 and URLs treat specially
KEYS = ["Q7~", "s3+/=Z", "sk-" + "Tq8vW2xLm9Rk4Hc7Nb1Py6Df3Gj5Zs0Ue8Ao2Ii",
        "Zk9+/a=Rf2" + "Mw7Xp4Lq1+/=Hn6Bt3Vc8Ky5" + "Ds0Ge9Jh"]


def leaks(text: str, secret: str) -> list[str]:
    """The ways `secret` can still be read from `text`, checked independently of the scrubber: plainly,
    URL-decoded, in any base64 run at any of the four offsets, or as a 5-character (4 for short keys)
    prefix or suffix."""
    found = []
    raw = secret.encode()
    if secret in text or secret in unquote(text):
        found.append("plain")
    for run in re.findall(r"[A-Za-z0-9+/_\-]{4,}", text):
        for shift in range(4):
            chunk = run[shift:].translate(str.maketrans("-_", "+/"))
            if raw in base64.b64decode(chunk[: len(chunk) // 4 * 4]):
                found.append(f"base64 {run!r}")
    k = 5 if len(secret) >= 10 else 4
    if len(secret) > k and (re.search(rf"(?<![A-Za-z0-9]){re.escape(secret[:k])}", text)
                            or re.search(rf"{re.escape(secret[-k:])}(?![A-Za-z0-9])", text)):
        found.append("fragment")
    return found


# --------------------------------------------------------------------------- URLs and recorded options
@pytest.mark.parametrize("url, expected", [
    ("http://user:pw@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("https://TOKEN@gateway.example/v1", "https://gateway.example/v1"),
    ("https://u:p%40ss@host/v1?api_key=K1&model=x", "https://host/v1?api_key=***&model=x"),
    ("http://host:9/v1?token=abc&sig=s1&key=k&code=c&foo=bar",
     "http://host:9/v1?token=***&sig=***&key=***&code=***&foo=bar"),
    ("http://[::1]:8000/v1#access_token=T", "http://[::1]:8000/v1#access_token=***"),
    ("http://127.0.0.1:8000/v1?x=1", "http://127.0.0.1:8000/v1?x=1"),  # nothing to hide: unchanged
    ("not a url", "not a url"),
])
def test_redact_url_keeps_the_server_and_drops_credentials(url, expected):
    assert redact_url(url) == expected
    assert redact_url(None) is None


def test_recorded_options_mask_declared_secrets_secret_names_and_url_credentials():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Opts:
        base_url: str | None = option(None, "server")
        headers: dict | None = option(None, "headers", secret=True)
        api_key_env: str = option("OPENAI_API_KEY", "name of the key's variable")
        token: str | None = option(None, "a token", secret=True)
        image_token: str = option("<image>", "not a secret")

    values = {"base_url": "http://bob:hunter22@127.0.0.1:8000/v1?api_key=QK9", "headers": {"X-Trace": "t1"},
              "api_key_env": "MY_KEY", "token": None, "image_token": "<img>"}
    assert recorded_options(Opts, values) == {"base_url": "http://127.0.0.1:8000/v1?api_key=***",
                                              "headers": {"X-Trace": "***"}, "api_key_env": "MY_KEY",
                                              "token": None, "image_token": "<img>"}
    assert options_secrets(Opts, values) == {"hunter22", "QK9", "t1"}
    # undeclared options (a py: class without Options) are masked by name, URLs by value
    undeclared = {"api_key": "k-123", "hf_token": "hf_x", "x": {"Authorization": "Bearer abcd1234"},
                  "endpoint": "https://u:v@h/", "level_tokens": [1, 2], "cache_key": "c"}
    assert recorded_options(None, undeclared) == {"api_key": "***", "hf_token": "***", "x": {"Authorization": "***"},
                                                  "endpoint": "https://h/", "level_tokens": [1, 2], "cache_key": "c"}
    assert options_secrets(None, undeclared) == {"k-123", "hf_x", "Bearer abcd1234", "abcd1234", "v"}


def test_secrets_in_reads_basic_credentials_tokens_in_user_names_and_query_values():
    basic = "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert secrets_in({"Proxy-Authorization": basic}) >= {"pa55word"}
    assert secrets_in("https://ghp_tok3n@host/x") == {"ghp_tok3n"}
    assert secrets_in(["http://h/?sig=S%2B1"]) == {"S%2B1", "S+1"}
    assert secrets_in({"note": "plain text"}) == set() and secrets_in(1234, secret=True) == {"1234"}
    assert redact({"X-Api-Key": "v", "x-goog-api-key": "w", "X-Vault-Token": "z", "Accept": "json"}) == {
        "X-Api-Key": "***", "x-goog-api-key": "***", "X-Vault-Token": "***", "Accept": "json"}


# --------------------------------------------------------------------------- scrubbing text
@pytest.mark.parametrize("key", KEYS)
def test_every_echoed_form_of_a_key_is_scrubbed(key):
    scrubber = Scrubber([key])
    for form in echoes(key) + [f"Authorization: Bearer {key}", f"key={quote(key)}&x=1", json.dumps(key)]:
        text = f"HTTP 401: Incorrect API key provided: {form} (request id 42)"
        out = scrubber.scrub(text)
        assert not leaks(out, key), (form, out, leaks(out, key))
        assert out.startswith("HTTP 401: Incorrect API key provided:") and out.endswith("(request id 42)")


def test_fragments_are_removed_only_where_they_stand_alone():
    """The false-positive rule: a 4+ character prefix or suffix of a key is an echo when it is a token of its
    own (masked forms look so), never when it is part of another word."""
    scrubber = Scrubber(["test1234abcd"])
    assert scrubber.scrub("the latest testing run; 1234abcdef") == "the latest testing run; 1234abcdef"
    assert scrubber.scrub("key test1234... ends ...abcd; test****abcd") == "key ***... ends ...***; **********"
    assert Scrubber(["ab"]).scrub("ab abc") == "ab abc"  # too short to search in text (masked in records)
    # a whole secret is removed wherever it is, even inside a word: an echo may follow "%20" or "\\n"
    assert Scrubber(["other"]).scrub("another %20other\\nother b3RoZXI=") == "an*** %20***\\n*** ***"
    assert Scrubber().scrub("plain text, 3 levels") == "plain text, 3 levels"


def test_patterns_catch_secrets_nobody_remembered():
    text = ("GET http://bob:pw9@10.0.0.1:8000/v1?api_key=XYZ1 failed; Authorization: Bearer abc.def-ghi; "
            "{'X-Api-Key': 'zz-top-1'}; password=letmein; key sk-proj-abc*****wxyz")
    out = Scrubber().scrub(text)
    for secret in ("pw9", "XYZ1", "abc.def-ghi", "zz-top-1", "letmein", "abc*****wxyz"):
        assert secret not in out, (secret, out)
    assert "http://10.0.0.1:8000/v1?api_key=***" in out and "Bearer ***" in out
    assert Scrubber().scrub("image /data/sk-lamp.png: truncated") == "image /data/sk-lamp.png: truncated"


def test_log_records_of_any_library_are_scrubbed():
    key = "LgK3y-" + "9" * 12 + "-x"
    from harness.core.secrets import remember

    remember(key)
    factory = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("c2s-test-secrets")
    log.addHandler(handler)
    try:
        scrub_log_records()
        scrub_log_records()  # twice changes nothing
        log.warning("retrying with %s and %r", key, {"auth": base64.b64encode(key.encode()).decode()})
    finally:
        logging.setLogRecordFactory(factory)
        log.removeHandler(handler)
    assert stream.getvalue().startswith("retrying with ***") and not leaks(stream.getvalue(), key)
    assert scrub(f"x {key} y") == "x *** y"


# --------------------------------------------------------------------------- a whole run against an echoing server
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("secret-data")
    paths = noise_pngs(folder, [(24, 24)] * 5, seed=7)
    (folder / "d.csv").write_text("path,mos\n" + "".join(f"{Path(p).name},{k + 1}\n" for k, p in enumerate(paths)))
    return folder / "d.csv"


@pytest.mark.parametrize("key, role", [(KEYS[0], "env"), (KEYS[1], "password"), (KEYS[2], "env"),
                                       (KEYS[3], "header"), (KEYS[1] + "q", "query")])
def test_no_secret_reaches_a_file_or_the_console(key, role, small_dataset, tmp_path, monkeypatch, capfd, transport):
    from harness.cli import main

    with FakeOpenAIServer(["ok", "echo", "echo500"], echo=[key]) as server:
        base = server.url.replace("http://", f"http://bob:{quote(key, safe='')}@") if role == "password" \
            else server.url
        base_url = f"{base}/v1" + (f"?api_key={quote(key, safe='')}" if role == "query" else "")
        options = [f"base_url={base_url}", "server=vllm", f"level_token_ids={LEVEL_IDS}", "max_attempts=2",
                   "base_delay=0", "timeout=20", "concurrency=2"]
        if role == "env":
            monkeypatch.setenv("C2S_SECRET_TEST_KEY", key)
            options.append("api_key_env=C2S_SECRET_TEST_KEY")
        else:
            options.append("api_key_env=null")
        if role == "header":
            options.append("headers=" + json.dumps({"X-Api-Key": key}))
        out, cache = tmp_path / "runs", tmp_path / "cache" / "pairs.sqlite"
        main(["run", "--model", "openai:served", *[arg for o in options for arg in ("-o", o)],
              "--dataset", f"d={small_dataset}", "--anchors", "select", "--anchors-dataset", "d", "--alpha", "2",
              "--out", str(out), "--cache", str(cache), "--no-report"])
    echoed = [entry for entry in server.log if entry[0] != "ok"]
    assert echoed, "the server never echoed anything: the test proves nothing"
    console = capfd.readouterr()
    for name, text in [("stdout", console.out), ("stderr", console.err)]:
        assert not leaks(text, key), (name, leaks(text, key), text[-2000:])
    files = [p for p in [*out.rglob("*"), *cache.parent.rglob("*")] if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(p.name.startswith("pairs.sqlite") for p in files)
    for path in files:
        text = path.read_bytes().decode("latin-1")
        assert not leaks(text, key), (path.name, leaks(text, key))
    manifest = json.loads(next(p for p in files if p.name == "manifest.json").read_text())
    recorded = manifest["model"]["options"]
    assert recorded["base_url"].startswith("http://127.0.0.1:")  # which server, still
    assert manifest["model"]["fingerprint"]["extra"]["endpoint"] == "self-hosted"  # (no port: docs/scale-out.md)
    if role == "header":
        assert recorded["headers"] == {"X-Api-Key": "***"}
    if role == "query":
        assert recorded["base_url"].endswith("/v1?api_key=***")
    comparisons = next(p for p in files if p.name == "comparisons.csv").read_text()
    assert "Incorrect API key provided" in comparisons  # the reasons are kept, without the key
