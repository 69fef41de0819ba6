"""The run's stall guard: a batch that does not come back within stall_timeout stops the run with a
message naming what is stuck, nothing of the stalled batch is written, and rerunning resumes."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Pair
from harness.run.faults import RunAborted
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, run
from harness.run.watchdog import StallGuard
from tests.conftest import noise_pngs
from tests.fake_openai_server import LEVEL_IDS, FakeOpenAIServer

SPEC = "py:tests.test_watchdog:BlockingComparator"
#: the number (from 1) of the batch that blocks until RELEASE is set; 0: none blocks
STALL = {"batch": 0}
RELEASE = threading.Event()
CALLS: list[int] = []


class BlockingComparator:
    """Level log-probs from the images' numbers (imgK.png); one chosen batch blocks on RELEASE."""

    def __init__(self, model=None):
        pass

    def compare(self, pairs):
        CALLS.append(len(pairs))
        if len(CALLS) == STALL["batch"]:
            RELEASE.wait(120)
        shift = np.array([int(Path(p.second).stem[3:]) - int(Path(p.first).stem[3:]) for p in pairs], dtype=float)
        return -np.abs(np.arange(5)[None, :] - 2 - shift[:, None] / 2)

    def fingerprint(self):
        return {"backend": "test-blocking", "model": {"id": None}, "version": 1}


def stall_workers_finish() -> None:
    """Wait (bounded) for the guard's abandoned worker threads to end, after the test released them."""
    for t in threading.enumerate():
        if t.name == "c2s-stall-guard":
            t.join(timeout=60)
            assert not t.is_alive()


# --------------------------------------------------------------------------- the guard alone
def test_a_stalled_call_aborts_names_what_is_stuck_and_its_late_result_is_dropped():
    release, returned = threading.Event(), threading.Event()

    def stuck(batch):
        release.wait(120)
        returned.set()
        return "late result"

    pairs = [Pair(f"/data/anchor{k}.png", f"/data/test{k}.png") for k in range(5)]
    guard = StallGuard(0.3, "openai:served")
    assert guard.wrap(lambda b: len(b), "pair")(pairs) == 5  # a call that returns passes its result
    with pytest.raises(RunAborted) as aborted:
        guard.wrap(stuck, "pair")(pairs)
    message = str(aborted.value)
    assert message.startswith("no progress for 0 s: model openai:served has not returned a batch of 5 pairs ")
    assert "(anchor0.png vs test0.png; anchor1.png vs test1.png; anchor2.png vs test2.png; ...)" in message
    assert "stall_timeout is 0.3 s" in message and "run the same command again to resume" in message
    with pytest.raises(RunAborted):  # every later call is refused at once
        guard.wrap(lambda b: len(b), "pair")(pairs[:1])
    release.set()
    assert returned.wait(60)
    guard.close()
    stall_workers_finish()


def test_errors_pass_through_and_zero_turns_the_guard_off():
    guard = StallGuard(30, "m")
    with pytest.raises(ZeroDivisionError):
        guard.wrap(lambda b: 1 / 0, "pair")([Pair("a", "b")])
    assert guard.wrap(lambda b: threading.current_thread().name, "image")([Pair("a", "a")]) == "c2s-stall-guard"
    off = StallGuard(0, "m")
    assert off.wrap(lambda b: threading.current_thread() is threading.main_thread(), "pair")([]) is True
    guard.close()
    stall_workers_finish()
    with StallGuard(1, "m") as one:  # one image: singular, named once
        release = threading.Event()
        with pytest.raises(RunAborted, match=r"a batch of 1 image \(x\.png\)"):
            one.wrap(lambda b: release.wait(120), "image")([Pair("/d/x.png", "/d/x.png")])
        release.set()
    stall_workers_finish()


# --------------------------------------------------------------------------- through the runner
@pytest.fixture
def dataset(tmp_path) -> Path:
    paths = noise_pngs(tmp_path, [(24, 24)] * 5, seed=3)
    (tmp_path / "d.csv").write_text("path,mos\n" + "".join(f"{Path(p).name},{k + 1}\n" for k, p in enumerate(paths)))
    return tmp_path / "d.csv"


def config(dataset, tmp_path, **kw) -> RunConfig:
    base = dict(model=SPEC, datasets=[DatasetSpec("d", source=str(dataset))],
                anchors=AnchorSpec(source="select", dataset="d", alpha=2), batch_size=4, out_dir=str(tmp_path / "runs"),
                cache=str(tmp_path / "pairs.sqlite"), reports=False, stall_timeout=1.0)
    return RunConfig(**{**base, **kw})


def test_a_stalled_batch_stops_the_run_and_rerunning_resumes(dataset, tmp_path):
    CALLS.clear()
    RELEASE.clear()
    STALL["batch"] = 2
    try:
        with pytest.warns(UserWarning, match="also test images"):
            with pytest.raises(RunAborted, match=rf"model {SPEC} has not returned a batch of 4 pairs \(img"):
                run(config(dataset, tmp_path), progress=False)
    finally:
        STALL["batch"] = 0
        RELEASE.set()
    stall_workers_finish()  # the stalled batch has now returned: nothing may come of it
    assert CALLS == [4, 4] and not (tmp_path / "runs").exists()
    CALLS.clear()
    with pytest.warns(UserWarning, match="also test images"):
        (folder,) = run(config(dataset, tmp_path), progress=False)
    counts = json.loads((folder / "manifest.json").read_text())["counts"]
    with open(folder / "comparisons.csv") as f:
        distinct = len({tuple(line.split(",")[:2]) for line in f.readlines()[1:]})
    # the 4 pairs of the first batch came from the cache, those of the stalled batch were judged again
    assert sum(CALLS) == distinct - 4, "the stalled batch's late results were stored, or the first batch's lost"
    assert counts["pairs_cached"] >= 4 and counts["pairs_cached"] + counts["pairs_computed"] == counts["pairs_total"]


def test_a_server_that_never_answers_stops_the_run_through_the_cli(dataset, tmp_path, capfd):
    """The request timeout is a minute, the stall limit one second: the run stops at the limit, says what is
    stuck, and closing the adapter ends the requests in flight (no thread is left behind)."""
    from harness.cli import main

    with FakeOpenAIServer(["silent"]) as server:
        started = time.monotonic()
        status = main(["run", "--model", "openai:served", "-o", f"base_url={server.url}/v1", "-o", "server=vllm",
                       "-o", f"level_token_ids={LEVEL_IDS}", "-o", "api_key_env=null", "-o", "timeout=60",
                       "-o", "deadline=120", "--dataset", f"d={dataset}", "--anchors", "select",
                       "--anchors-dataset", "d", "--alpha", "2", "--out", str(tmp_path / "runs"),
                       "--cache", str(tmp_path / "pairs.sqlite"), "--no-report", "--stall-timeout", "1"])
        took = time.monotonic() - started
        stall_workers_finish()
    err = capfd.readouterr().err
    assert status not in (0, 2) and took < 45, (status, took)
    line = "c2s run: aborted: " + err.split("c2s run: aborted: ", 1)[1].splitlines()[0]  # after the progress bar
    assert line.startswith("c2s run: aborted: no progress for 1 s: model openai:served has not returned a batch of ")
    assert "run the same command again to resume" in line and server.log


def test_stall_timeout_in_yaml_and_its_checks(dataset, tmp_path):
    from harness.run.config import configs_from_dict

    doc = {"model": "classical", "datasets": [{"name": "d", "source": str(dataset)}], "stall_timeout": "30"}
    assert configs_from_dict(doc)[0].stall_timeout == 30.0
    assert configs_from_dict({**doc, "stall_timeout": 0})[0].stall_timeout == 0.0
    from harness.core.vocabulary import DEFAULT_STALL_TIMEOUT

    assert configs_from_dict({k: v for k, v in doc.items() if k != "stall_timeout"})[0].stall_timeout \
        == DEFAULT_STALL_TIMEOUT > 0
    for bad in (-1, True, "soon", float("nan")):
        with pytest.raises(ValueError, match="stall_timeout"):
            configs_from_dict({**doc, "stall_timeout": bad})
