"""Several OpenAI-compatible servers behind one comparator (adapters.endpoints): balanced, at most
`concurrency` requests in flight each, a failing one rested and tried again later, and a pair cache that
names no server, so a server restarted on another port (or one more server) hits it."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("openai")

from adapters.base import Pair  # noqa: E402
from adapters.endpoints import Endpoints  # noqa: E402
from adapters.openai_api import OpenAIComparator  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.run.record import read_run  # noqa: E402
from tests.conftest import noise_pngs  # noqa: E402
from tests.fake_openai_server import LEVEL_IDS, FakeOpenAIServer  # noqa: E402

OPTIONS = dict(server="vllm", level_token_ids=LEVEL_IDS, api_key_env=None, max_attempts=4, base_delay=0, timeout=20)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return noise_pngs(tmp_path_factory.mktemp("endpoints"), [(16, 16)] * 6, seed=11)


def _pairs(images):
    return [Pair(a, b) for a in images for b in images if a != b]


def test_requests_are_spread_over_the_servers_within_each_ones_limit(images):
    with FakeOpenAIServer(["varied"]) as one, FakeOpenAIServer(["varied"]) as two:
        comp = OpenAIComparator("served", base_url=[one.url + "/v1", two.url + "/v1"], concurrency=2, **OPTIONS)
        seen, lock = [], threading.Lock()
        original = comp._endpoints.use

        def watched():  # the most requests each server ever had in flight
            cm = original()
            ep = cm.__enter__()
            with lock:
                seen.append((ep.name, ep.in_flight))
            return _Exit(cm, ep)

        comp._endpoints.use = watched
        res = comp.compare_detailed(_pairs(images))
        comp.close()
    assert all(e is None for e in res.errors)
    assert len(one.log) + len(two.log) == len(res.errors) and min(len(one.log), len(two.log)) >= 5
    assert max(n for _, n in seen) <= 2


class _Exit:
    def __init__(self, cm, ep):
        self.cm, self.ep = cm, ep

    def __enter__(self):
        return self.ep

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_a_failing_server_rests_and_its_requests_go_to_the_other(images):
    with FakeOpenAIServer(["echo500"]) as bad, FakeOpenAIServer(["varied"]) as good:
        comp = OpenAIComparator("served", base_url=[bad.url + "/v1", good.url + "/v1"], concurrency=1,
                                cooldown=600, cooldown_after=2, **OPTIONS)
        res = comp.compare_detailed(_pairs(images))
        comp.close()
    assert all(e is None for e in res.errors)  # each retried on the healthy server
    assert len(bad.log) <= 3  # two failures in a row rest it (one more may have been in flight)


def _use(eps, fail=None) -> str:
    """The endpoint one request goes to; `fail` raises it there."""
    try:
        with eps.use() as ep:
            if fail:
                raise fail
            return ep.name
    except type(fail) if fail else ():
        return ep.name


def test_a_rested_server_is_tried_again_after_its_cooldown():
    now = [0.0]
    eps = Endpoints([("a", None), ("b", None)], limit=4, cooldown=30, cooldown_after=1,
                    counts=lambda exc: isinstance(exc, OSError), clock=lambda: now[0])
    assert _use(eps, ValueError("an answer, not the server's fault")) == "a"
    assert eps.all[0].resting_until == 0  # not counted
    assert _use(eps, OSError("down")) == "b"  # the least used; it rests now, until t = 30
    assert {_use(eps) for _ in range(3)} == {"a"}  # nothing waits for b
    now[0] += 29
    assert _use(eps, OSError("down")) == "a"  # a rests too, until t = 59
    assert _use(eps) == "b"  # all rest: the request goes to the one that wakes first
    now[0] += 31
    assert {_use(eps) for _ in range(5)} == {"a", "b"}  # both back (ties go to the less used)


def test_the_cache_key_names_no_server_a_restart_on_another_port_hits_it(images, tmp_path):
    folder = Path(images[0]).parent
    (folder / "d.csv").write_text("path,mos\n" + "".join(f"{Path(p).name},{k + 1}\n" for k, p in enumerate(images)))
    cache = tmp_path / "pairs.sqlite"

    def run(urls, out):
        options = {**OPTIONS, "base_url": urls if len(urls) > 1 else urls[0], "concurrency": 2}
        args = [a for k, v in options.items() for a in ("-o", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]
        assert main(["run", "--model", "openai:served", *args, "--dataset", f"d={folder / 'd.csv'}", "--anchors",
                     "select", "--anchors-dataset", "d", "--alpha", "2", "--out", str(tmp_path / out), "--cache",
                     str(cache), "--no-report"]) == 0
        (run_dir,) = (tmp_path / out).iterdir()
        return read_run(run_dir).manifest

    with FakeOpenAIServer(["varied"]) as first:
        before = run([first.url + "/v1"], "first")
    assert before.counts.pairs_computed > 0 and len(first.log) > 0
    with FakeOpenAIServer(["varied"]) as again, FakeOpenAIServer(["varied"]) as more:
        assert again.url != first.url
        after = run([again.url + "/v1", more.url + "/v1"], "second")
    assert after.model.fingerprint_hash == before.model.fingerprint_hash
    assert after.counts.pairs_cached == after.counts.pairs_total and not again.log and not more.log


def test_each_image_is_encoded_once_however_many_requests_show_it(images, monkeypatch):
    from adapters import openai_api

    encoded = []
    real = openai_api.image_data_url
    monkeypatch.setattr(openai_api, "image_data_url", lambda img, enc: encoded.append(img.size) or real(img, enc))
    with FakeOpenAIServer(["varied"]) as server:
        comp = OpenAIComparator("served", base_url=server.url + "/v1", concurrency=3, **OPTIONS)
        first = comp.compare_detailed(_pairs(images)[:10])
        second = comp.compare_detailed(_pairs(images))  # the same images again, in another batch
        comp.close()
    assert all(e is None for e in first.errors + second.errors)
    assert len(encoded) == len(images) and len(server.log) == 10 + len(_pairs(images))
