"""The vLLM processes the harness starts (`run_in_env`'s engine job, `VLLMServer`) leave nothing behind: vLLM
puts a few IPC sockets per engine in the system's temp folder and never removes them when it is killed."""
from __future__ import annotations

import os
import stat
import sys
import tempfile
import textwrap
from pathlib import Path

from adapters.vllm import VLLMServer, run_in_env

#: stands in for the vLLM environment's interpreter: binds a socket where vLLM would put its IPC sockets,
#: says where, then answers an engine job or serves /health as a server would
FAKE_PYTHON = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, pathlib, socket, sys
    folder = os.environ.get("VLLM_RPC_BASE_PATH", "(unset)")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(folder, "0a1b2c3d-ipc"))
    pathlib.Path(os.environ["C2S_TEST_RECORD"]).write_text(folder)
    if sys.argv[1:3] == ["-m", "adapters.vllm"]:
        pathlib.Path(sys.argv[4]).write_text(json.dumps({{"batches": [], "rating_batches": [],
                                                          "fingerprint": {{}}, "load_seconds": 0}}))
    else:
        from http.server import BaseHTTPRequestHandler, HTTPServer
        class Health(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
        HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Health).serve_forever()
    """)


def fake_python(tmp_path: Path, monkeypatch) -> tuple[str, Path]:
    python, record = tmp_path / "python", tmp_path / "ipc-folder.txt"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("C2S_TEST_RECORD", str(record))
    monkeypatch.delenv("VLLM_RPC_BASE_PATH", raising=False)
    return str(python), record


def test_an_engine_jobs_ipc_sockets_go_to_a_folder_removed_after_it(tmp_path, monkeypatch):
    python, record = fake_python(tmp_path, monkeypatch)
    assert run_in_env(python, "/m", [], timeout=60)["batches"] == []
    folder = record.read_text()
    assert Path(folder).parent == Path(tempfile.gettempdir()) and not os.path.exists(folder)


def test_a_servers_ipc_sockets_go_to_a_folder_removed_when_it_stops(tmp_path, monkeypatch):
    python, record = fake_python(tmp_path, monkeypatch)
    with VLLMServer(python, "/m", startup_timeout=60):
        folder = record.read_text()
        assert os.path.exists(Path(folder) / "0a1b2c3d-ipc")
    assert Path(folder).parent == Path(tempfile.gettempdir()) and not os.path.exists(folder)
