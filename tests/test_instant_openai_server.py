"""The instant OpenAI-compatible server of bench/client_ceiling.py: a real request through the adapter gets the
reply's log-probs; one keep-alive connection serves many requests; requests cut anywhere by the reads, and
pipelined ones, are answered in order; what it does not serve is refused with a status, never a hang."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

pytest.importorskip("openai")

from adapters.base import Pair  # noqa: E402
from adapters.openai_api import OpenAIComparator  # noqa: E402
from tests.conftest import noise_pngs  # noqa: E402
from tests.fake_openai_server import LEVEL_IDS, answer  # noqa: E402
from tests.instant_openai_server import NOT_FOUND, OK, InstantOpenAIServer, _Connection  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with InstantOpenAIServer() as running:
        yield running


def _request(body: bytes = b'{"model": "m"}', path: str = "/v1/chat/completions", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _responses(sock: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """n responses (status, body) read off the connection."""
    data, out = b"", []
    while len(out) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode()
            length = int(next(line.split(":")[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length")))
            if len(data) >= head_end + 4 + length:
                out.append((int(head.split()[1]), data[head_end + 4:head_end + 4 + length]))
                data = data[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {len(out)} of {n} responses"
        data += chunk
    return out


def _connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_the_adapter_reads_the_replys_level_logprobs(server, tmp_path):
    images = noise_pngs(tmp_path, [(24, 16), (16, 24), (20, 20)], seed=3)
    comp = OpenAIComparator("served", base_url=server.url + "/v1", server="vllm", level_token_ids=LEVEL_IDS,
                            api_key_env=None, concurrency=2)
    res = comp.compare_detailed([Pair(images[0], images[1]), Pair(images[2], images[0])])
    comp.close()
    assert res.errors == [None, None]
    np.testing.assert_array_equal(res.logprobs, [[-1.0, -2.0, -3.0, -4.0, -5.0]] * 2)


def test_one_keep_alive_connection_serves_many_requests(server):
    with _connect(server) as sock:
        for k in range(50):
            sock.sendall(_request(b"x" * (k * 1000)))
            [(status, body)] = _responses(sock, 1)
            assert status == 200 and body == answer()


class _Transport:
    def __init__(self):
        self.written, self.closed = [], False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _feed(pieces) -> _Transport:
    """What the server's protocol writes for a connection whose reads bring `pieces`."""
    protocol, transport = _Connection(), _Transport()
    protocol.connection_made(transport)
    for piece in pieces:
        for start in range(0, len(piece), 100_000):  # as reads into its buffer would bring it
            part = piece[start:start + 100_000]
            buffer = protocol.get_buffer(len(part))
            buffer[:len(part)] = part
            protocol.buffer_updated(len(part))
    return transport


def test_requests_cut_anywhere_and_pipelined_are_answered_in_order():
    stream = _request(b"{}") + _request(b"[1]", path="/v1/models") + _request(b"")
    expected = [OK, NOT_FOUND, OK]
    for cut in range(len(stream) + 1):  # every place a read can end: in a head, its blank line, a body
        assert _feed([stream[:cut], stream[cut:]]).written == expected, cut
    assert _feed([stream[k:k + 1] for k in range(len(stream))]).written == expected  # a byte per read
    big = _request(json.dumps({"image": "A" * 700_000}).encode())  # a body over several reads
    assert _feed([stream + big + stream]).written == expected + [OK] + expected


def test_pipelined_requests_over_a_socket_are_answered_in_order(server):
    big = json.dumps({"image": "A" * 300_000}).encode()
    with _connect(server) as sock:
        sock.sendall(_request(b"{}") + _request(big) + _request(b"{}", path="/v1/models") + _request(b"[]"))
        got = _responses(sock, 4)
    assert [status for status, _ in got] == [200, 200, 404, 200]
    assert got[0][1] == got[1][1] == got[3][1] == answer()


def test_what_it_does_not_serve_is_refused_with_a_status(server):
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        [(status, _)] = _responses(sock, 1)
        assert status == 411 and sock.recv(1) == b""  # and the connection is closed
    with _connect(server) as sock:
        sock.sendall(b"nonsense\r\n\r\n")
        [(status, _)] = _responses(sock, 1)
        assert status == 400 and sock.recv(1) == b""
    with _connect(server) as sock:
        sock.sendall(_request(extra="Connection: close\r\n"))
        [(status, _)] = _responses(sock, 1)
        assert status == 200 and sock.recv(1) == b""
