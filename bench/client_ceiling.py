"""The OpenAI-compatible client path's ceiling: pairs/s against an instant fake server on 127.0.0.1.

    .venv/bin/python bench/client_ceiling.py [--pairs 2000] [--images 40] [--size 512] [--batch-size 64]
        [--concurrency 32] [--code DIR]

The server (tests/fake_openai_server.py, in its own process so it does not share this one's GIL)
answers every request at once with a vLLM-mode reply, so what is measured is the client alone: image
encoding, request building, HTTP, parsing. Pairs are drawn from --images photo-like JPEGs, judged in
batches of --batch-size as a run does. `--code DIR` imports the adapters from another checkout (e.g.
`git archive BASE | tar -x -C DIR`) to measure the code before a change in the same run; the ratio
printed is this checkout's pairs/s over DIR's.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MEASURE = r"""
import sys, time, random
sys.path.insert(0, sys.argv[1])
from adapters.base import Pair
from adapters.openai_api import OpenAIComparator
url, n_pairs, batch, conc = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
images = sys.argv[6:]
rng = random.Random(0)
pairs = [Pair(*rng.sample(images, 2)) for _ in range(n_pairs)]
comp = OpenAIComparator("served", base_url=url, server="vllm", level_token_ids=[101, 102, 103, 104, 105],
                        api_key_env=None, concurrency=conc)
comp.compare_detailed(pairs[:conc])  # connections opened, imports done
t = time.perf_counter()
failed = 0
for k in range(0, n_pairs, batch):
    res = comp.compare_detailed(pairs[k:k + batch])
    failed += sum(e is not None for e in res.errors)
print(n_pairs / (time.perf_counter() - t), failed)
comp.close()
"""


def serve(port_queue) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(["ok"], lifetime_s=3600, keep_alive=True)
    server.log = _NoLog()  # an instant server keeps no log (it would grow by one entry per request)
    with server:
        port_queue.put(server.url)
        server.stopping.wait()


class _NoLog(list):
    def append(self, item) -> None:
        pass

    def __len__(self) -> int:
        return 0


def measure(code: Path, url: str, a, images: list[str]) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(code), url, str(a.pairs), str(a.batch_size),
                          str(a.concurrency), *images], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(code)})
    rate, failed = out.stdout.split()
    return float(rate), int(failed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--code", type=Path, help="another checkout to measure against (the code before a change)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.common import photo_like_jpegs

    urls: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(urls,), daemon=True)
    proc.start()
    url = urls.get(timeout=60) + "/v1"
    with tempfile.TemporaryDirectory(prefix="c2s-client-bench-") as tmp:
        images = photo_like_jpegs(Path(tmp), a.images, width=a.size, height=a.size * 3 // 4, seed=2)
        rows = [("this checkout", ROOT)] + ([("--code " + str(a.code), a.code)] if a.code else [])
        rates = {}
        for label, code in rows:
            rates[label], failed = measure(code, url, a, images)
            print(f"{label:40s} {rates[label]:8.1f} pairs/s  ({failed} failed)")
    proc.terminate()
    if a.code:
        print(f"this checkout / {a.code}: {rates['this checkout'] / rates['--code ' + str(a.code)]:.2f}x")


if __name__ == "__main__":
    main()
