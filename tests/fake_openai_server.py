"""A hostile OpenAI-compatible server on 127.0.0.1 for the unit tests, stopping by itself.

Each request gets the next action of a plan (taken in turn, round and round):
  "ok"      a vLLM-mode answer (`token_id:N` log-probs for LEVEL_IDS);
  "varied"  the same with log-probs that depend on the request (its images), so scores differ by image;
  "echo"    HTTP 401 whose error message echoes every string in `echo` and every credential it
            received (the Authorization header's token and Basic password, header values, query
            values; not the "EMPTY" key of a server without authentication), each plain, URL-encoded,
            base64 (standard and URL-safe, at offsets 0, 1 and 2, and as "user:secret"), JSON-quoted
            and as masked fragments ("abcd****wxyz", "abcde..."); each request starts with another form;
  "echo500" the same with HTTP 500 (retried, then reported);
  "trickle" a valid answer sent one byte every `gap` seconds, for at most `trickle_s` seconds;
  "silent"  reads the request and never answers (until the server stops).
`log` holds (action, path, headers) per request.
"""
from __future__ import annotations

import base64
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence
from urllib.parse import parse_qsl, quote, urlsplit

LEVEL_IDS = [101, 102, 103, 104, 105]


def answer(level_ids: Sequence[int] = LEVEL_IDS, request: bytes = b"") -> bytes:
    """Level log-probs -1, -2, ...; with `request`, the first level's moved by up to 4 by its checksum."""
    shift = zlib.crc32(request) % 1000 / 250.0 if request else 0.0
    entries = [{"token": f"token_id:{i}", "logprob": -1.0 - k - (shift if k == 0 else 0.0), "bytes": None}
               for k, i in enumerate(level_ids)]
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
        {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "x"},
         "logprobs": {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}}]}).encode()


def echoes(secret: str) -> list[str]:
    """The forms in which this server echoes a secret."""
    raw = secret.encode()
    out = [secret, quote(secret, safe=""), json.dumps({"key": secret}), f"{secret[:4]}****{secret[-4:]}",
           f"{secret[:5]}...", f"ending in {secret[-5:]}"]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        out += [encode(prefix + raw + b"!").decode() for prefix in (b"", b"a", b"ab", b"user:", b"Bearer ")]
    return out


def credentials(headers, path: str) -> list[str]:
    """What a request carried that a server could echo: header values, the token after the auth scheme
    (and a Basic credential's password), query values."""
    found = []
    for name, value in headers.items():
        if name.lower() in ("host", "content-length", "content-type", "accept", "accept-encoding", "connection",
                            "user-agent") or name.lower().startswith("x-stainless"):
            continue
        found.append(value)
        scheme, _, token = value.partition(" ")
        if token:
            found.append(token)
            if scheme.lower() == "basic":
                found.append(base64.b64decode(token).decode().partition(":")[2])
    found += [v for _, v in parse_qsl(urlsplit(path).query)]
    return [f for f in found if f]


class FakeOpenAIServer:
    """`with FakeOpenAIServer(["echo", "ok"], echo=["sk-..."]) as server:` base_url = server.url + "/v1"."""

    def __init__(self, plan: Sequence[str], *, echo: Sequence[str] = (), gap: float = 0.2, trickle_s: float = 60.0,
                 lifetime_s: float = 300.0):
        self.plan, self.echo, self.gap, self.trickle_s = list(plan), list(echo), gap, trickle_s
        self.log: list[tuple[str, str, dict]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._timer = threading.Timer(lifetime_s, self.stop)  # never outlives a crashed test
        self._timer.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeOpenAIServer":
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            self._timer.cancel()
            self._server.shutdown()
            self._server.server_close()

    def _next(self, path: str, headers: dict) -> str:
        with self._lock:
            action = self.plan[len(self.log) % len(self.plan)]
            self.log.append((action, path, headers))
            return action

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = server._next(self.path, dict(self.headers))
                if action in ("ok", "varied"):
                    self._send(200, answer(request=request if action == "varied" else b""))
                elif action in ("echo", "echo500"):
                    said = [form for s in server.echo + credentials(self.headers, self.path) if "EMPTY" not in s
                            for form in echoes(s)]
                    turn = len(server.log) % len(said)  # each request starts with another form
                    message = "Incorrect API key provided: " + " | ".join(said[turn:] + said[:turn])
                    self._send(401 if action == "echo" else 500,
                               json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode())
                elif action == "trickle":
                    body = answer()
                    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                            "\r\n").encode() + body
                    try:
                        for k in range(min(len(head), int(server.trickle_s / server.gap))):
                            self.wfile.write(head[k:k + 1])
                            self.wfile.flush()
                            if server.stopping.wait(server.gap):
                                break
                    except OSError:  # the client gave up: what the test wants
                        pass
                    self.close_connection = True
                else:  # "silent"
                    server.stopping.wait()
                    self.close_connection = True

        return Handler
