"""An instant OpenAI-compatible server on 127.0.0.1: every `POST .../chat/completions` is answered at once
with one precomputed vLLM-mode reply (`tests.fake_openai_server.answer`), over HTTP/1.1 keep-alive
connections, pipelined requests answered in order.

Why: bench/client_ceiling.py measures what one client process can send, so the server must cost far less
per request than the client. `tests.fake_openai_server` (http.server, a thread per connection, the body
read into a string) was the slower side. This one is one asyncio loop whose protocol reads into one
reused buffer and never keeps a request body: it counts the body's bytes (Content-Length) and answers.
Requests without a Content-Length (chunked) get 411 and the connection is closed.

    with InstantOpenAIServer() as server:      # its own process (its own GIL); base_url = server.url + "/v1"
        ...
    python -m tests.instant_openai_server      # prints the URL, serves until killed
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import sys

from tests.fake_openai_server import answer

#: the largest request head (request line and headers) accepted
MAX_HEAD = 64 * 1024


def _response(status: str, body: bytes, close: bool = False) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def _error(status: str, message: str) -> bytes:
    return _response(status, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(),
                     close=True)


OK = _response("200 OK", answer())
NOT_FOUND = _response("404 Not Found", json.dumps({"error": {"message": "only /chat/completions is served"}}).encode())
LENGTH_REQUIRED = _error("411 Length Required", "a Content-Length is required")
BAD_REQUEST = _error("400 Bad Request", "malformed request head")


class _Connection(asyncio.BufferedProtocol):
    """One connection: a head is parsed, then the body's bytes are counted as they arrive (never kept)."""

    def __init__(self) -> None:
        self._buffer = bytearray(256 * 1024)
        self._head = bytearray()  # the head read so far (a head may come in pieces)
        self._body_left = -1  # body bytes still to come; -1 while reading a head
        self._reply = OK
        self._close = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, nbytes: int) -> None:
        buf, pos = self._buffer, 0
        while pos < nbytes and not self.transport.is_closing():
            if self._body_left >= 0:
                taken = min(self._body_left, nbytes - pos)
                self._body_left -= taken
                pos += taken
                if self._body_left == 0:
                    self._answer()
                continue
            end = -1 if self._head else buf.find(b"\r\n\r\n", pos, nbytes)
            if end >= 0:  # a whole head in this read (the usual case: no copy of the read)
                head, pos = bytes(buf[pos:end]), end + 4
            else:  # a head in pieces: gathered until its end comes
                before = len(self._head)
                self._head += buf[pos:nbytes]
                end = self._head.find(b"\r\n\r\n", max(0, before - 3))
                if end < 0:
                    if len(self._head) > MAX_HEAD:
                        self._fail(BAD_REQUEST)
                    return
                head, pos = bytes(self._head[:end]), pos + end + 4 - before
                self._head.clear()
            self._start(head)

    def _start(self, head: bytes) -> None:
        """A request head read: what to answer, and how many body bytes to count first."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            return self._fail(BAD_REQUEST)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self._close = headers.get(b"connection", b"").lower() == b"close"
        self._reply = OK if parts[0] == b"POST" and parts[1].endswith(b"/chat/completions") else NOT_FOUND
        if b"transfer-encoding" in headers:
            return self._fail(LENGTH_REQUIRED)
        try:
            self._body_left = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return self._fail(BAD_REQUEST)
        if self._body_left == 0:
            self._answer()

    def _answer(self) -> None:
        self._body_left = -1
        self.transport.write(self._reply)
        if self._close:
            self.transport.close()

    def _fail(self, reply: bytes) -> None:
        self.transport.write(reply)
        self.transport.close()


async def _serve(sock: socket.socket, started=None) -> None:
    server = await asyncio.get_running_loop().create_server(_Connection, sock=sock, backlog=1024)
    if started is not None:
        started.set()
    async with server:
        await server.serve_forever()


def _listening_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def _run(sock: socket.socket, started) -> None:
    asyncio.run(_serve(sock, started))


class InstantOpenAIServer:
    """The server in a process of its own (so it does not share the client's GIL), stopped on exit."""

    def __init__(self) -> None:
        self._sock = _listening_socket()
        self._started = multiprocessing.Event()
        self._process = multiprocessing.Process(target=_run, args=(self._sock, self._started), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def __enter__(self) -> "InstantOpenAIServer":
        self._process.start()
        if not self._started.wait(60):
            self.stop()
            raise RuntimeError("the instant OpenAI server did not start within 60 s")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        self._sock.close()


def main() -> None:
    sock = _listening_socket(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("http://%s:%d" % sock.getsockname()[:2], flush=True)
    _run(sock, None)


if __name__ == "__main__":
    main()
