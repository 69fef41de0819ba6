"""The executor's configuration (harness.run.executors): YAML, flags, checks; no Ray needed."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.run.config import configs_from_dict
from harness.run.executors import ExecutorSpec

DOC = {"model": "classical", "datasets": [{"name": "d", "source": "d.csv"}]}


@pytest.mark.parametrize("value, kind, replicas", [("ray", "ray", 1), ({"kind": "ray", "replicas": 3}, "ray", 3),
                                                   ("local", "local", 1)])
def test_yaml_names_the_executor(value, kind, replicas):
    (cfg,) = configs_from_dict({**DOC, "executor": value})
    assert (cfg.executor.kind, cfg.executor.replicas) == (kind, replicas)


@pytest.mark.parametrize("value, message", [
    ({"kind": "ray", "replica": 2}, "unknown key(s) ['replica']"),
    ({"kind": "local", "replicas": 2}, "replicas apply only to kind 'ray'"),
    ({"kind": "spark"}, "kind must be one of local, ray"),
    ({"kind": "ray", "replicas": 0}, "replicas must be >= 1"),
    ({"kind": "ray", "gpus_per_replica": 1.5}, "must be a whole number"),
    (["ray"], "write a kind"),
])
def test_a_bad_executor_is_refused_before_any_work(value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        configs_from_dict({**DOC, "executor": value})


def test_the_record_keeps_the_layout_without_credentials():
    assert ExecutorSpec().recorded() == {"kind": "local"}
    rec = ExecutorSpec(kind="ray", address="ray://ann:pw@head:10001", replicas=2).recorded()
    assert rec["replicas"] == 2 and "pw" not in rec["address"]


def test_a_flag_for_ray_with_executor_local_is_one_line(tmp_path, capsys):
    code = main(["run", "--model", "classical", "--dataset", "demo", "--executor", "local", "--replicas", "2",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["c2s run: error: executor: replicas apply only to kind 'ray' (--executor ray)"]
