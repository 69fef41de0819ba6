"""adapters.plain_http against scripted servers on 127.0.0.1: every way a reply may be framed, connections
kept or dropped as they must be, malformed replies, the deadline, abort, and when it is used at all."""
from __future__ import annotations

import gzip
import re
import socket
import threading
import time
import zlib

import pytest

from adapters.http_deadline import deadline, httpx
from adapters.openai_api import _make_client
from adapters.plain_http import PlainHTTP, direct


class Scripted:
    """Answers the k-th request with `replies[k]` (raw bytes, sent at once, or one byte every `gap` seconds
    when `trickle`), closing the connection after the replies numbered in `close`. `connections` counts
    the connections accepted, `requests` holds each request's (head, body)."""

    def __init__(self, replies, close=(), trickle: float | None = None, read: bool = True, refuse: bool = False):
        """`read=False`: requests are never read; `refuse`: each is answered as soon as its head is read."""
        self.replies, self.close, self.trickle, self.read = list(replies), set(close), trickle, read
        self.refuse = refuse
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = httpx.URL(f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/chat/completions")
        self.connections, self.requests, self._socks = 0, [], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._socks.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while self.read:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                while len(buf) < length and not self.refuse:
                    buf += conn.recv(1 << 20)
                k = len(self.requests)
                self.requests.append((head, buf[:length]))
                buf = buf[length:]
                if self.trickle is None:
                    conn.sendall(self.replies[k])
                else:
                    for byte in self.replies[k]:
                        conn.sendall(bytes([byte]))
                        time.sleep(self.trickle)
                if k in self.close:
                    conn.close()
                    return
        except OSError:
            return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close()
        for conn in self._socks:
            conn.close()


def reply(content: bytes, *headers: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    return (f"{version} {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + content


def sized(content: bytes, *headers: str, **kw) -> bytes:
    return reply(content, f"Content-Length: {len(content)}", *headers, **kw)


def client(server: Scripted, keep: int = 4) -> PlainHTTP:
    return PlainHTTP(server.url, [(b"Host", server.url.netloc), (b"content-type", b"application/json")], keep)


def test_every_framing_of_a_reply_is_read_and_the_connection_kept_while_it_may_be():
    body = bytes(range(256)) * 12_000  # 3 MB: sent in several pieces
    replies = [
        sized(b'{"a": 1}'),
        reply(b"4;ext=1\r\n{\"a\"\r\n5\r\n: 2}\n\r\n0\r\nX-Trailer: t\r\n\r\n", "Transfer-Encoding: chunked"),
        sized(gzip.compress(b'{"a": 3}'), "Content-Encoding: gzip"),
        sized(zlib.compress(b'{"a": 4}'), "Content-Encoding: deflate"),
        sized(zlib.compress(b'{"a": 5}')[2:-4], "Content-Encoding: deflate"),  # raw deflate, as some servers send
        reply(b"", status="100 Continue") + sized(b'{"a": 6}'),
        reply(b"", status="204 No Content"),
        sized(b'{"a": 7}', status="429 Too Many Requests"),
        reply(b'{"a": 8}'),  # no length: the reply ends with the connection
        sized(b'{"a": 9}', version="HTTP/1.0"),  # HTTP/1.0: not kept
        sized(b'{"a": 10}', "Connection: close"),
        sized(b'{"a": 11}'),
    ]
    contents = [b'{"a": 1}', b'{"a": 2}\n', b'{"a": 3}', b'{"a": 4}', b'{"a": 5}', b'{"a": 6}', b"", b'{"a": 7}',
                b'{"a": 8}', b'{"a": 9}', b'{"a": 10}', b'{"a": 11}']
    with Scripted(replies, close={8, 9, 10}) as server:
        http = client(server)
        got, kept = [], []
        for _ in replies:
            got.append(http.post(body, 10.0))
            kept.append(len(http._idle))
        http.close()
    assert [content for _, _, content in got] == contents
    assert [status for status, _, _ in got] == [200] * 6 + [204, 429] + [200] * 4
    assert (b"content-length", b"8") in [(k.lower(), v) for k, v in got[0][1]]
    # one connection for the first nine; the replies that end it (no length, HTTP/1.0, close) each end one
    assert kept == [1] * 8 + [0, 0, 0, 1] and server.connections == 4
    head, sent = server.requests[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and sent == body
    assert re.search(rb"\r\nContent-Length: %d(\r\n|$)" % len(body), head)


def test_a_connection_the_server_closed_while_idle_is_not_reused():
    """A keep-alive connection the server ended after its reply (idle timeout) is found closed before a
    request is sent on it: the next request goes on a new connection, and no request fails."""
    with Scripted([sized(b"1"), sized(b"2"), sized(b"3")], close={0}) as server:
        http = client(server)
        first = http.post(b"{}", 10.0)
        time.sleep(0.2)  # the server's close (right after its reply) reaches the client
        assert [first[2], http.post(b"{}", 10.0)[2], http.post(b"{}", 10.0)[2]] == [b"1", b"2", b"3"]
        http.close()
    assert server.connections == 2


@pytest.mark.parametrize("raw, error, message", [
    (b"garbage\r\n\r\n", httpx.RemoteProtocolError, "not an HTTP/1 reply"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", httpx.RemoteProtocolError, "malformed reply header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", httpx.RemoteProtocolError, "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", httpx.RemoteProtocolError, "95 bytes before the end"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError, "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", httpx.RemoteProtocolError,
     "does not end where its size says"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, httpx.RemoteProtocolError, "head is over"),
    (b"HTTP/1.1 200 OK\r\nContent", httpx.RemoteProtocolError, "without a full reply"),
    (b"", httpx.RemoteProtocolError, "disconnected without sending a reply"),
    (sized(b"not gzip", "Content-Encoding: gzip"), httpx.DecodingError, "content is corrupt"),
    (sized(b"{}", "Content-Encoding: br"), httpx.DecodingError, "'br' is not supported"),
])
def test_a_malformed_reply_is_a_protocol_error_and_its_connection_is_dropped(raw, error, message):
    with Scripted([raw], close={0}) as server:
        http = client(server)
        with pytest.raises(error, match=message):
            http.post(b"{}", 10.0)
        assert not http._open and not http._idle
        http.close()


def test_a_server_that_refuses_a_request_before_reading_it_all_is_heard():
    """A server answering 413 after the head and closing (the send then fails) gets its answer read, as
    httpx does: the failure says why (HTTP 413), not just that the connection broke."""
    with Scripted([sized(b"too large", "Connection: close", status="413 Payload Too Large")], close={0},
                  refuse=True) as server:
        http = client(server)
        status, _, content = http.post(b"x" * (64 * 1024 * 1024), 10.0)
        assert (status, content) == (413, b"too large") and not http._idle
        http.close()


def test_the_deadline_bounds_a_trickled_reply_and_a_server_that_stops_reading():
    with Scripted([sized(b"x" * 1000)], trickle=0.05) as server:
        http = client(server)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.post(b"{}", 1.0)  # every read is quick, the reply as a whole is not
        took = time.monotonic() - started
        http.close()
    assert took < 1.0 + 10.0, took
    with Scripted([], read=False) as server:
        http = client(server)
        started = time.monotonic()
        # an outer deadline (the request's) is not extended by the attempt's own timeout
        with deadline(1.0), pytest.raises(httpx.WriteTimeout):
            http.post(b"x" * (64 * 1024 * 1024), 600.0)  # far more than the socket buffers on both sides hold
        took = time.monotonic() - started
        http.close()
    assert took < 1.0 + 10.0, took


def test_abort_ends_a_request_blocked_on_a_silent_server_and_refuses_new_ones():
    with Scripted([], read=False) as server:
        http = client(server)
        errors: list = []

        def post():
            try:
                http.post(b"{}", 60.0)
            except httpx.RequestError as exc:
                errors.append(exc)

        worker = threading.Thread(target=post)
        worker.start()
        waited = time.monotonic()
        while not http._open and time.monotonic() - waited < 30:  # until the request is in flight
            time.sleep(0.01)
        time.sleep(0.1)
        http.abort()
        worker.join(timeout=30)
        assert not worker.is_alive() and len(errors) == 1
        with pytest.raises(httpx.ConnectError, match="closed"):
            http.post(b"{}", 1.0)


@pytest.mark.parametrize("url, env, expected", [
    ("http://127.0.0.1:8000/v1", {}, True),
    ("https://api.example.com/v1", {}, False),  # TLS: httpx
    ("http://bob:pw@127.0.0.1:8000/v1", {}, False),  # credentials in the URL: httpx's Basic auth
    ("http://127.0.0.1:8000/v1", {"HTTP_PROXY": "http://proxy:3128"}, False),
    ("http://127.0.0.1:8000/v1", {"all_proxy": "socks5://proxy:1080"}, False),
    ("http://127.0.0.1:8000/v1", {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1"}, True),
    ("http://127.0.0.1:8000/v1", {"HTTPS_PROXY": "http://proxy:3128"}, True),  # for https only
])
def test_the_plain_path_is_taken_only_where_httpx_would_connect_directly(url, env, expected, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert direct(httpx.URL(url)) is expected
    poster = _make_client(url, None, 5.0)
    assert (poster.plain is not None) is expected
    poster.close()
