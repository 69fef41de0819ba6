"""A total deadline per HTTP request for the OpenAI client (docs/architecture.md, "Secrets and deadlines").

Why: httpx's timeouts are per phase and per socket operation, so a server that sends one byte a second
never trips a 2-s read timeout and holds a request for as long as it likes. Here every socket operation
(connect, TLS handshake, each send and each read) gets at most what is left of the calling thread's
deadline (`deadline(seconds)`), so connect + send + all reads together end within it, with a timeout
error the client already retries or reports. The request runs on the caller's thread (one thread per
request in the adapter's pool), which is why the deadline is per thread. `abort()` shuts every open
socket down, waking requests blocked in a read: closing the adapter ends its requests at once.

Name resolution (DNS) happens before the first socket exists and is not bounded here.
"""
from __future__ import annotations

import socket
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

try:  # the transport the installed openai client is built on
    import httpcore2 as httpcore
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpcore  # type: ignore[no-redef]
    import httpx  # type: ignore[no-redef]

_local = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Socket operations on this thread end within `seconds` from now, all of them together (or
    sooner, within a deadline already set on the thread: an inner one never extends an outer one)."""
    outer = getattr(_local, "at", None)
    at = time.monotonic() + max(0.0, seconds)
    _local.at = at if outer is None else min(at, outer)
    try:
        yield
    finally:
        _local.at = outer


def time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """The operation's own timeout capped by what is left of the thread's deadline; `error` once it passed."""
    at = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


def send_all(sock: socket.socket, data: bytes, timeout: float | None, timed_out: type[Exception],
             failed: type[Exception]) -> None:
    """Send all of `data`: each send takes what the socket's buffer can, bounded by `timeout` and what is
    left of the thread's deadline (`timed_out` past it, `failed` on a socket error), so a server that stops
    reading cannot hold a request, and a large body (images) costs a few sends, not one per piece."""
    view = memoryview(data)
    while view:
        left = time_left(timeout, timed_out)
        try:
            sock.settimeout(left)
            view = view[sock.send(view):]
        except socket.timeout as exc:
            raise timed_out(str(exc) or "send timed out") from exc
        except OSError as exc:
            raise failed(str(exc)) from exc


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: Any, backend: "DeadlineBackend"):
        self._inner, self._backend = inner, backend
        backend._streams.add(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        send_all(self._inner.get_extra_info("socket"), buffer, timeout,  # plain or TLS
                 httpcore.WriteTimeout, httpcore.WriteError)

    def close(self) -> None:
        self._backend._streams.discard(self)
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        self._backend._streams.discard(self)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, time_left(timeout, httpcore.ConnectTimeout)),
                       self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shutdown(self) -> None:
        sock = self._inner.get_extra_info("socket")
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed by the peer or by the pool
            pass


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every operation bounded by the thread's `deadline`."""

    def __init__(self, inner: Any = None):
        self._inner = inner or httpcore.SyncBackend()
        self._streams: weakref.WeakSet[_Stream] = weakref.WeakSet()
        self._closed = False

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        if self._closed:
            raise httpcore.ConnectError("the client was closed")
        return _Stream(self._inner.connect_tcp(host, port, time_left(timeout, httpcore.ConnectTimeout), local_address,
                                               socket_options), self)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        if self._closed:
            raise httpcore.ConnectError("the client was closed")
        return _Stream(self._inner.connect_unix_socket(path, time_left(timeout, httpcore.ConnectTimeout),
                                                       socket_options), self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def abort(self) -> None:
        """Refuse new connections and wake every request blocked on an open one."""
        self._closed = True
        for stream in list(self._streams):
            stream.shutdown()


def deadline_client(connections: int = 20, **kwargs: Any) -> tuple[Any, DeadlineBackend]:
    """An httpx client for the OpenAI SDK (`openai.DefaultHttpxClient`, the SDK's own defaults) whose
    connections go through a `DeadlineBackend`, and that backend (for `abort`). It keeps up to
    `connections` connections open between requests (one per request in flight: none is re-opened)."""
    import openai

    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=None, max_keepalive_connections=connections))
    pool = transport._pool  # httpx keeps its httpcore pool here; the backend is read at each new connection
    backend = DeadlineBackend(pool._network_backend)
    pool._network_backend = backend
    return openai.DefaultHttpxClient(transport=transport, **kwargs), backend
