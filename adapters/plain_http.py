"""POSTs to a plain `http://` server over keep-alive sockets, for the OpenAI client's steady state.

Why: the SDK's transport (httpx over httpcore and h11: a request object, a pool, an event-driven HTTP
state machine, response streams) cost ~0.7 ms of client CPU per request, where the HTTP exchange itself
costs ~0.1 ms (bench/client_ceiling.py): the ceiling of one client process against a fast server was the
transport. A chat request is always the same: one POST of a JSON body (the SDK's URL and headers, learned
once by `adapters.openai_api.ChatPoster`), one JSON reply. This is that exchange and nothing more.

What it keeps of the transport's contract: each socket operation (connect, every send, every read) gets at
most what is left of the thread's deadline (`adapters.http_deadline.deadline`), `abort()` shuts every open
socket down at once, and failures are httpx's exceptions (timeouts, connect, read, write, protocol
errors), which the client already maps to the SDK's errors and retries. Replies may have a Content-Length,
be chunked or end with the connection, and may be gzip or deflate encoded (the SDK's Accept-Encoding).

Used only where httpx would connect directly: `http://` URLs without credentials that no proxy setting of
the environment covers (`direct`). TLS, proxies and credentials in the URL stay on httpx.
"""
from __future__ import annotations

import socket
import threading
import urllib.request
import zlib
from typing import Sequence

from adapters.http_deadline import deadline, httpx, send_all, time_left

#: the largest reply head (status line and headers) read
MAX_HEAD = 64 * 1024
_NO_BODY = frozenset({204, 304})


def direct(url: httpx.URL) -> bool:
    """Whether a request to `url` is the plain exchange done here: `http://`, no credentials in the URL (httpx
    makes them Basic auth), and no proxy: no http or all proxy in the environment unless no_proxy exempts the
    host (the settings httpx reads, `urllib.request.getproxies`)."""
    if url.scheme != "http" or url.userinfo:
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass_environment(url.host, proxies))


class PlainHTTP:
    """`post(body, timeout)` -> (status, headers, content) to one server; up to `keep` idle connections are
    kept for the next requests (one per request in flight is enough: none is re-opened)."""

    def __init__(self, url: httpx.URL, headers: Sequence[tuple[bytes, bytes]], keep: int = 20):
        self._address = (url.host, url.port or 80)
        self._head = b"POST %s HTTP/1.1\r\n%s" % (url.raw_path, b"".join(b"%s: %s\r\n" % kv for kv in headers))
        self._keep = keep
        self._idle: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def post(self, body: bytes, timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The reply to POSTing `body`, within `timeout` seconds (and the thread's deadline, if shorter)."""
        with deadline(timeout):
            sock = self._checkout()
            try:
                try:
                    for part in (self._head + b"Content-Length: %d\r\n\r\n" % len(body), body):
                        send_all(sock, part, None, httpx.WriteTimeout, httpx.WriteError)
                    sent = True
                except httpx.WriteError:  # a server may refuse a request before reading all of it, and say why
                    sent = False
                status, headers, content, reusable = _read_reply(sock)
            except BaseException:
                self._drop(sock)
                raise
        if sent and reusable and not self._closed:
            with self._lock:
                if len(self._idle) < self._keep:
                    self._idle.append(sock)
                    return status, headers, content
        self._drop(sock)
        return status, headers, content

    def abort(self) -> None:
        """Refuse new requests and wake every request blocked on a socket."""
        self._closed = True
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed meanwhile
                pass

    def close(self) -> None:
        self.abort()
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            self._drop(sock)

    def _checkout(self) -> socket.socket:
        """An idle connection the server has not closed (nothing to read on it yet), else a new one."""
        if self._closed:
            raise httpx.ConnectError("the client was closed")
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                break
            if _quiet(sock):
                return sock
            self._drop(sock)
        try:
            sock = socket.create_connection(self._address, timeout=time_left(None, httpx.ConnectTimeout))
        except socket.timeout as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        # small segments (the head, the body's end) go at once, not after the previous one's ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.add(sock)
        if self._closed:  # aborted while connecting
            self._drop(sock)
            raise httpx.ConnectError("the client was closed")
        return sock

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        sock.close()


def _quiet(sock: socket.socket) -> bool:
    """True when an idle keep-alive connection has nothing to read: not closed by the server (EOF) and no
    stray bytes, so a request sent on it will be answered on it."""
    try:
        sock.settimeout(0)
        sock.recv(1, socket.MSG_PEEK)  # b"" (EOF) or a stray byte: either way the connection is done
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


def _recv(sock: socket.socket, size: int = 65536) -> bytes:
    try:
        sock.settimeout(time_left(None, httpx.ReadTimeout))
        return sock.recv(size)
    except socket.timeout as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from exc


def _read_reply(sock: socket.socket) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, headers, decoded content, whether the connection can carry another request)."""
    buf = bytearray()
    while True:  # 1xx interim replies are skipped
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise httpx.RemoteProtocolError(f"the server's reply head is over {MAX_HEAD} bytes")
            data = _recv(sock)
            if not data:
                raise httpx.RemoteProtocolError("the server closed the connection without a full reply"
                                                if buf else "the server disconnected without sending a reply")
            buf += data
        status_line, *lines = bytes(buf[:end]).split(b"\r\n")
        del buf[:end + 4]
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not (version.startswith(b"HTTP/1.") and len(code) == 3 and code.isdigit()):
            raise httpx.RemoteProtocolError(f"not an HTTP/1 reply: {status_line[:80]!r}")
        status = int(code)
        if status >= 200:
            break
    headers, fields = [], {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise httpx.RemoteProtocolError(f"malformed reply header {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
        fields[name.strip().lower()] = value.strip().lower()
    reusable = version == b"HTTP/1.1" and fields.get(b"connection") != b"close"
    if status in _NO_BODY:
        content = b""
    elif b"chunked" in fields.get(b"transfer-encoding", b""):
        content, buf = _read_chunked(sock, buf)
    elif b"content-length" in fields:
        try:
            length = int(fields[b"content-length"])
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad Content-Length {fields[b'content-length'][:40]!r}") from None
        while len(buf) < length:
            data = _recv(sock, max(65536, length - len(buf)))
            if not data:
                raise httpx.RemoteProtocolError(f"the server closed the connection {length - len(buf)} bytes "
                                                "before the end of its reply")
            buf += data
        content, buf = bytes(buf[:length]), buf[length:]
    else:  # the reply ends with the connection
        while data := _recv(sock):
            buf += data
        content, buf, reusable = bytes(buf), bytearray(), False
    return status, headers, _decoded(content, fields.get(b"content-encoding", b"")), reusable and not buf


def _read_chunked(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytearray]:
    """The content of a chunked body whose first bytes are `buf`, and what follows it."""
    out = bytearray()

    def line() -> bytes:
        while (end := buf.find(b"\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise httpx.RemoteProtocolError("a chunk's size line is too long")
            more(1)
        text = bytes(buf[:end])
        del buf[:end + 2]
        return text

    def more(n: int) -> None:
        data = _recv(sock, max(65536, n))
        if not data:
            raise httpx.RemoteProtocolError("the server closed the connection inside a chunked reply")
        buf.extend(data)

    while True:
        size_text = line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:40]!r}") from None
        if size == 0:
            while line():  # trailers, up to the empty line
                pass
            return bytes(out), buf
        while len(buf) < size + 2:
            more(size + 2 - len(buf))
        if buf[size:size + 2] != b"\r\n":
            raise httpx.RemoteProtocolError("a chunk does not end where its size says")
        out += buf[:size]
        del buf[:size + 2]


def _decoded(content: bytes, encoding: bytes) -> bytes:
    if encoding in (b"", b"identity"):
        return content
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":  # zlib-wrapped as the standard says, raw as some servers send it
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise httpx.DecodingError(f"the reply's {encoding.decode(errors='replace')} content is corrupt: {exc}") from exc
    raise httpx.DecodingError(f"the reply's Content-Encoding {encoding[:40].decode(errors='replace')!r} is not "
                              "supported (gzip, deflate)")
