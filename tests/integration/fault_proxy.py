"""A fault-injecting HTTP proxy for the integration tests: 127.0.0.1 only, and it stops by itself.

It sits in front of the real vLLM server (or of nothing, for a plan that never passes: the unit
tests use it so) and, request by request, follows a plan of actions:
"pass" (forward unchanged), "429" (Too Many Requests with Retry-After), "500", "stall" (never
answer: the request is held until the proxy stops, so only the client's own timeout can end it,
however slow the machine) or "drop" (hang up at once). Every request is logged with its arrival
time and action, so tests can check what the client did (how many retries, how long it waited
after a 429).
"""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence
from urllib.parse import urlsplit

ACTIONS = ("pass", "429", "500", "stall", "drop")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}


class FaultProxy:
    """`with FaultProxy("http://127.0.0.1:8000", ["429", "pass"], repeat=True) as proxy:`
    point a client at `proxy.url`. A plan without `repeat` passes everything after its end."""

    def __init__(self, upstream: str, plan: Sequence[str], *, repeat: bool = False, retry_after: int = 1,
                 lifetime_s: float = 600.0, upstream_timeout: float = 120.0):
        parts = urlsplit(upstream)
        if parts.hostname not in LOOPBACK or not parts.port:
            raise ValueError(f"FaultProxy forwards to loopback addresses only (host:port), got {upstream!r}")
        bad = [a for a in plan if a not in ACTIONS]
        if bad or not plan:
            raise ValueError(f"plan actions must be among {ACTIONS}, got {list(plan)}")
        self.upstream = (parts.hostname, parts.port)
        self.plan, self.repeat = list(plan), repeat
        self.retry_after = int(retry_after)
        self.lifetime_s, self.upstream_timeout = float(lifetime_s), float(upstream_timeout)
        self.log: list[tuple[float, str, str]] = []  # (monotonic arrival time, action, path)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle
    def start(self) -> "FaultProxy":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="fault-proxy", daemon=True)
        timer = threading.Timer(self.lifetime_s, self.stop)  # never outlives a crashed test
        timer.daemon = True
        self._threads = [serve, timer]
        serve.start()
        timer.start()
        return self

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            if isinstance(t, threading.Timer):
                t.cancel()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def counts(self) -> Counter:
        with self._lock:
            return Counter(action for _, action, _ in self.log)

    # -- per request
    def _next_action(self, path: str) -> str:
        with self._lock:
            i = len(self.log)
            if self.repeat:
                action = self.plan[i % len(self.plan)]
            else:
                action = self.plan[i] if i < len(self.plan) else "pass"
            self.log.append((time.monotonic(), action, path))
            return action

    def _forward(self, method: str, path: str, headers, body: bytes):
        conn = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
        try:
            fwd = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(method, path, body=body or None, headers=fwd)
            resp = conn.getresponse()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP], resp.read()
        finally:
            conn.close()

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _reply(self, status: int, headers, body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = proxy._next_action(self.path)
                json_type = [("Content-Type", "application/json")]
                if action == "pass":
                    try:
                        self._reply(*proxy._forward(self.command, self.path, self.headers, body))
                    except OSError as exc:
                        self._reply(502, json_type, f'{{"error": "upstream: {type(exc).__name__}"}}'.encode())
                elif action == "429":
                    self._reply(429, json_type + [("Retry-After", str(proxy.retry_after))],
                                b'{"error": {"message": "rate limited (fault proxy)", "type": "rate_limit"}}')
                elif action == "500":
                    self._reply(500, json_type, b'{"error": {"message": "injected failure (fault proxy)"}}')
                else:  # "stall" holds the request until the proxy stops, "drop" hangs up at once
                    if action == "stall":
                        proxy._stopping.wait()
                    self.close_connection = True

            do_GET = do_POST = _handle

        return Handler
