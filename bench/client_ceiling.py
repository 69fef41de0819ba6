"""The OpenAI-compatible client path's ceiling: pairs/s against an instant fake server on 127.0.0.1.

    .venv/bin/python bench/client_ceiling.py [--pairs 2000] [--images 40] [--size 512] [--batch-size 64]
        [--concurrency 8] [--repeat 3] [--code DIR] [--code-pairs 200]

The server (tests/instant_openai_server.py: one asyncio loop in its own process, HTTP/1.1 keep-alive, one
precomputed vLLM-mode reply) costs a small fraction of the client's time per request (its CPU per pair is
printed), so what is measured is the client alone: request building, HTTP, parsing. Pairs are drawn from
--images photo-like JPEGs, judged in batches of --batch-size as a run does, --concurrency requests in
flight (the adapter's option; 8 is its default).

A plain http:// server is posted to by adapters/plain_http.py; the row "httpx transport" forces the SDK's
transport (what TLS and proxied servers use) on the same server, to show what the lean path saves.

Each image is encoded (PNG, base64, JSON) once per run; a first pass over pairs showing every image does
that, and its time is printed apart ("first pass"), so that the pairs/s are the steady state of a run whose
images are already encoded. Printed per checkout: pairs/s (wall, best and median of --repeat runs), and the
client's CPU milliseconds per pair with what they allow, 1000 / CPU ms, in pairs/s per fully used core: on a
shared machine (this one has 2 cores for several users) the wall rate follows the load, the CPU per pair much
less. The client's threads hold one GIL, so one client process uses about one core, its kernel time aside.

`--code DIR` imports the adapters from another checkout (e.g. `git archive BASE | tar -x -C DIR`) to measure
the code before a change in the same run (on --code-pairs pairs: it may be far slower), runs alternating; the
ratios printed are this checkout's over DIR's.
"""
from __future__ import annotations

import argparse
import os
import statistics
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
url, n_pairs, batch, conc, server_pid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
if sys.argv[7] == "httpx":  # the transport of TLS and proxied servers, forced for this plain one
    import adapters.plain_http
    adapters.plain_http.direct = lambda url: False
images = sys.argv[8:]
rng = random.Random(0)
pairs = [Pair(*rng.sample(images, 2)) for _ in range(n_pairs)]

def server_cpu():  # seconds the server process has run (Linux), else nan
    try:
        with open(f"/proc/{server_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        import os
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")

comp = OpenAIComparator("served", base_url=url, server="vllm", level_token_ids=[101, 102, 103, 104, 105],
                        api_key_env=None, concurrency=conc)
t = time.perf_counter()
comp.compare_detailed([Pair(a, b) for a, b in zip(images, images[1:] + images[:1])])  # every image, twice
first = time.perf_counter() - t
failed = 0
t, cpu, srv = time.perf_counter(), time.process_time(), server_cpu()
for k in range(0, n_pairs, batch):
    res = comp.compare_detailed(pairs[k:k + batch])
    failed += sum(e is not None for e in res.errors)
wall, cpu, srv = time.perf_counter() - t, time.process_time() - cpu, server_cpu() - srv
print(n_pairs / wall, cpu / n_pairs * 1e3, srv / n_pairs * 1e3, first, failed)
comp.close()
"""


def measure(code: Path, n_pairs: int, transport: str, url: str, server_pid: int, a, images: list[str]) -> tuple:
    """(pairs/s, client CPU ms per pair, server CPU ms per pair, first pass s, failed pairs) of one run."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(code), url, str(n_pairs), str(a.batch_size),
                          str(a.concurrency), str(server_pid), transport, *images], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(code)}, cwd=code)  # (never the current folder's code)
    rate, cpu, server, first, failed = out.stdout.split()
    return float(rate), float(cpu), float(server), float(first), int(failed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="runs per checkout (best and median printed)")
    ap.add_argument("--code", type=Path, help="another checkout to measure against (the code before a change)")
    ap.add_argument("--code-pairs", type=int, default=200, help="pairs per run for --code (slower code, fewer pairs)")
    a = ap.parse_args()
    if a.code and not (a.code / "adapters" / "openai_api.py").is_file():
        ap.error(f"--code {a.code}: not a checkout of this project (no adapters/openai_api.py)")
    sys.path.insert(0, str(ROOT))
    from bench.common import photo_like_jpegs
    from tests.instant_openai_server import InstantOpenAIServer

    rows = [("this checkout", ROOT, a.pairs, "default"), ("this checkout, httpx transport", ROOT, a.pairs, "httpx")]
    rows += [(f"--code {a.code}", a.code, a.code_pairs, "default")] if a.code else []
    runs: dict[str, list] = {label: [] for label, *_ in rows}
    with tempfile.TemporaryDirectory(prefix="c2s-client-bench-") as tmp, InstantOpenAIServer() as server:
        images = photo_like_jpegs(Path(tmp), a.images, width=a.size, height=a.size * 3 // 4, seed=2)
        print(f"{a.pairs} pairs ({a.code_pairs} for --code) of {a.images} JPEGs of {a.size}x{a.size * 3 // 4} px, batches of {a.batch_size}, "
              f"concurrency {a.concurrency}, server {server.url}")
        for _ in range(a.repeat):
            for label, code, n_pairs, transport in rows:
                runs[label].append(measure(code, n_pairs, transport, server.url + "/v1", server.pid, a, images))
    print(f"{'':34s} {'pairs/s best':>12s} {'median':>8s} {'client CPU ms/pair':>19s} {'= pairs/s/core':>15s} "
          f"{'server CPU ms/pair':>19s} {'first pass s':>13s} {'failed':>7s}")
    summary = {}
    for label, *_ in rows:
        rates = [r[0] for r in runs[label]]
        cpu = min(r[1] for r in runs[label])
        summary[label] = (max(rates), statistics.median(rates), cpu)
        print(f"{label:34s} {max(rates):12.1f} {statistics.median(rates):8.1f} {cpu:19.2f} {1000 / cpu:15.0f} "
              f"{min(r[2] for r in runs[label]):19.3f} {min(r[3] for r in runs[label]):13.2f} "
              f"{sum(r[4] for r in runs[label]):7d}")
    new = summary["this checkout"]
    for label, name in [("this checkout, httpx transport", "the httpx transport"), (f"--code {a.code}", a.code)]:
        if label in summary:
            old = summary[label]
            print(f"this checkout / {name}: {new[0] / old[0]:.2f}x best pairs/s, {new[1] / old[1]:.2f}x median, "
                  f"{old[2] / new[2]:.2f}x less client CPU per pair")


if __name__ == "__main__":
    main()
