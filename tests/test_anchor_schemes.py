"""Table 6's anchor selection schemes, Fig. 4's alpha/beta and Table 5's anchors from another dataset (issue 15,
part 4): the selection against an independent one written here, and the options through the real CLI and YAML."""
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.profiles import get_profile
from harness.core.anchors import read_anchor_file, select_anchors, selection_report
from harness.run.config import configs_from_dict
from harness.run.runner import AnchorSpec, DatasetSpec, RunConfig, resolve_anchors, resolve_dataset, run_identity


def _reference(mos, std, alpha, beta, scheme):
    """Independent Eqn. 4 / max-variance: interval k = floor((q - lo) / (hi - lo) * alpha), the top one closed;
    in each, the beta images of lowest (highest) std, ties to the lower index; result in ascending MOS."""
    lo, hi = min(mos), max(mos)
    members = {k: [] for k in range(alpha)}
    for i, q in enumerate(mos):
        members[min(int((q - lo) / (hi - lo) * alpha), alpha - 1)].append(i)
    sign = 1 if scheme == "min-variance" else -1
    chosen = [i for k in range(alpha) for i in sorted(members[k], key=lambda i: (sign * std[i], i))[:beta]]
    return sorted(chosen, key=lambda i: (mos[i], i))


#: hand-made (mos, std) sets: ties in std, ties in MOS, values on interval edges, intervals with fewer than beta
#: images and an empty one
CASES = [
    ([0.0, 1.0, 2.0, 2.5, 4.0, 5.0, 6.0, 7.5, 8.0, 10.0], [0.3, 0.1, 0.2, 0.2, 0.9, 0.1, 0.5, 0.5, 0.4, 0.2]),
    ([1.0, 1.0, 1.2, 3.0, 3.0, 3.0, 4.9, 5.0], [0.5, 0.5, 0.5, 0.1, 0.7, 0.7, 0.0, 0.0]),
    ([10.0, 0.0, 9.5, 0.5, 5.0, 9.0, 1.0, 0.2], [1.0, 2.0, 0.5, 0.5, 3.0, 0.5, 0.1, 2.0]),  # middle interval of 1
    ([2.0, 2.5, 3.0, 3.5, 4.0, 8.0, 8.5, 9.0], [0.4, 0.3, 0.2, 0.1, 0.0, 0.6, 0.6, 0.6]),  # empty middle intervals
]


@pytest.mark.parametrize("scheme", ["min-variance", "max-variance"])
@pytest.mark.parametrize("alpha, beta", [(1, 1), (3, 1), (3, 2), (5, 1), (5, 3), (4, 2)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_variance_schemes_match_an_independent_selection(scheme, alpha, beta, case):
    mos, std = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short and empty intervals warn; their content is checked here
        got = select_anchors(mos, std, alpha, beta, scheme)
    assert got.tolist() == _reference(mos, std, alpha, beta, scheme)


def test_min_and_max_variance_differ_and_the_default_is_eqn4():
    mos, std = CASES[0]
    assert select_anchors(mos, std, 5, 1).tolist() == select_anchors(mos, std, 5, 1, "min-variance").tolist()
    # intervals of width 2: [0, 2) holds images 0, 1; [2, 4) 2, 3 (std tie: the lower index either way);
    # [4, 6) 4, 5; [6, 8) 6, 7 (tie); [8, 10] 8, 9
    assert select_anchors(mos, std, 5, 1, "min-variance").tolist() == [1, 2, 5, 6, 9]
    assert select_anchors(mos, std, 5, 1, "max-variance").tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("alpha, beta", [(3, 1), (3, 2), (5, 2)])
def test_random_takes_min_of_count_and_beta_per_interval_deterministically(case, alpha, beta):
    mos, std = CASES[case]
    rep = selection_report(mos, std, alpha, beta, "random", seed=7)
    edges = rep.edges
    interval = [min(int((q - min(mos)) / (max(mos) - min(mos)) * alpha), alpha - 1) for q in mos]
    per = Counter(interval[i] for i in rep.indices)
    assert all(per[k] == min(rep.counts[k], beta) for k in range(alpha)) and len(edges) == alpha + 1
    assert list(rep.indices) == sorted(rep.indices, key=lambda i: (mos[i], i))  # ascending MOS
    again = selection_report(mos, std, alpha, beta, "random", seed=7)
    assert again.indices.tolist() == rep.indices.tolist()


def test_random_differs_across_seeds_and_is_uniform_within_an_interval():
    mos = np.repeat([1.0, 2.0, 3.0], 4) + np.tile([0.0, 0.1, 0.2, 0.3], 3)  # 3 intervals of 4 images
    std = np.zeros(12)
    picks = [tuple(select_anchors(mos, std, 3, 1, "random", seed)) for seed in range(400)]
    assert len(set(picks)) > 20
    freq = Counter(i for p in picks for i in p)
    assert set(freq) == set(range(12))
    assert all(70 <= freq[i] <= 130 for i in range(12))  # 100 expected each (fixed seeds: not a flaky test)
    assert select_anchors(mos, std, 3, 1, "random", 1).tolist() != select_anchors(mos, std, 3, 1, "random", 2).tolist() \
        or select_anchors(mos, std, 3, 1, "random", 3).tolist() != select_anchors(mos, std, 3, 1, "random", 2).tolist()


@pytest.mark.parametrize("scheme, seed, match", [("largest", 0, "anchor scheme 'largest'"),
                                                 ("random", -1, "seed"), ("random", 1.5, "seed")])
def test_bad_scheme_or_seed_is_refused(scheme, seed, match):
    with pytest.raises(ValueError, match=match):
        selection_report([1.0, 2.0], [0.1, 0.1], 2, 1, scheme, seed)


# --- the run configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"source": "select", "scheme": "max"}, "scheme 'max'"),
    ({"source": "select", "scheme": "min-variance", "seed": 3}, "applies only to scheme 'random'"),
    ({"source": "select", "scheme": "random", "seed": -2}, "seed must be >= 0"),
    ({"source": "koniq", "scheme": "random"}, "apply only to source 'select'"),
    ({"source": "a.json", "dataset_source": "b.json"}, "apply only to source 'select'"),
    ({"source": "select", "scheme": "random", "seed": "three"}, "seed"),
])
def test_anchor_spec_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnchorSpec(**kwargs)


def test_yaml_reaches_the_anchor_spec():
    doc = {"model": "classical", "datasets": [{"name": "demo"}],
           "anchors": {"source": "select", "dataset": "demo", "scheme": "random", "seed": 3, "alpha": 4, "beta": 2}}
    (cfg,) = configs_from_dict(doc)
    assert (cfg.anchors.scheme, cfg.anchors.seed, cfg.anchors.alpha, cfg.anchors.beta) == ("random", 3, 4, 2)
    with pytest.raises(ValueError, match="scheme 'minimum'"):
        configs_from_dict({**doc, "anchors": {"source": "select", "scheme": "minimum"}})
    with pytest.raises(ValueError, match="seed"):
        configs_from_dict({**doc, "anchors": {"source": "select", "scheme": "random", "seed": [1]}})


def _identity(spec):
    cfg = RunConfig(model="classical", datasets=[DatasetSpec("demo")], anchors=spec)
    anchors = resolve_anchors(spec, {})
    return anchors, run_identity(cfg, anchors, get_profile("paper"), "soft", "fp")


def test_each_scheme_and_seed_is_its_own_run_identity_and_name():
    seen = {}
    for scheme, seed in [("min-variance", 0), ("max-variance", 0), ("random", 0), ("random", 1)]:
        anchors, ident = _identity(AnchorSpec("select", dataset="demo", scheme=scheme, seed=seed))
        seen[(scheme, seed)] = (anchors.name, json.dumps(ident, sort_keys=True))
    assert len({n for n, _ in seen.values()}) == 4 and len({i for _, i in seen.values()}) == 4
    # Eqn. 4 keeps the identity it had before schemes existed (no scheme key): old run ids stay valid
    assert "anchor_scheme" not in seen[("min-variance", 0)][1]
    assert seen[("min-variance", 0)][0] == "demo Eqn. 4 (alpha=5, beta=1)"


# --- through the real CLI -----------------------------------------------------------------------------

def _manifest(run_dir) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def _run(tmp_path, *extra) -> dict:
    out = tmp_path / "runs"
    before = set(out.iterdir()) if out.is_dir() else set()
    assert main(["run", "--model", "classical", "--dataset", "demo", "--limit", "6", "--no-report",
                 "--out", str(out), "--cache", str(tmp_path / "pairs.sqlite"), *extra]) == 0
    (new,) = set(out.iterdir()) - before
    return _manifest(new)


def test_cli_run_records_each_scheme_in_its_own_folder(tmp_path):
    runs = {}
    for extra in ([], ["--anchor-scheme", "max-variance", "--beta", "2"], ["--anchor-scheme", "random"],
                  ["--anchor-scheme", "random", "--anchor-seed", "5", "--alpha", "3"]):
        m = _run(tmp_path, "--anchors", "select", "--anchors-dataset", "demo", *extra)
        runs[tuple(extra)] = m
    configs = [m["anchors_config"] for m in runs.values()]
    assert [(c["scheme"], c["seed"], c["alpha"], c["beta"], c["dataset"]) for c in configs] == [
        ("min-variance", 0, 5, 1, "demo"), ("max-variance", 0, 5, 2, "demo"), ("random", 0, 5, 1, "demo"),
        ("random", 5, 3, 1, "demo")]
    assert len({m["run_id"] for m in runs.values()}) == 4
    assert [len(m["anchors"]["images"]) for m in runs.values()] == [5, 10, 5, 3]
    assert runs[("--anchor-scheme", "random")]["anchors"]["name"] == "demo random seed 0 (alpha=5, beta=1)"


def test_cli_anchors_select_writes_the_scheme_and_matches_the_library(tmp_path):
    ds = resolve_dataset(DatasetSpec("demo"))[0]
    mos = np.array([r.mos for r in ds.records])
    std = np.zeros(len(mos))
    for scheme, seed in [("random", 4), ("random", 9), ("max-variance", 0)]:
        out = tmp_path / f"{scheme}{seed}.json"
        assert main(["anchors", "select", "--dataset", "demo", "--anchor-scheme", scheme, "--anchor-seed", str(seed),
                     "--alpha", "4", "--beta", "2", "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        want = select_anchors(mos, std, 4, 2, scheme, seed)
        assert doc["images"] == [ds.records[i].path for i in want]
        assert doc["selection"] == {"scheme": scheme, "seed": seed, "alpha": 4, "beta": 2}
        read_anchor_file(out)  # usable as --anchors FILE


@pytest.fixture
def other(tmp_path) -> Path:
    """A small manifest of our own (demo images, other MOS and std), given only for anchors."""
    ds = resolve_dataset(DatasetSpec("demo"))[0]
    rows = [{"image": r.path, "mos": 10 - 2 * (r.mos or 0), "std": 0.1 * (k % 7)}
            for k, r in enumerate(ds.records[:40])]
    path = tmp_path / "other.csv"
    path.write_text("image,mos,std\n" + "".join(f"{r['image']},{r['mos']},{r['std']}\n" for r in rows))
    (tmp_path / "root").symlink_to(ds.root)
    return path


def test_cli_anchors_from_another_dataset(tmp_path, other):
    m = _run(tmp_path, "--anchors", "select", "--anchors-dataset", f"mine={other}", "--anchors-root",
             str(tmp_path / "root"), "--anchor-scheme", "max-variance")
    c = m["anchors_config"]
    assert (c["dataset"], c["dataset_source"], c["root"], c["scheme"]) == ("mine", str(other), str(tmp_path / "root"),
                                                                          "max-variance")
    assert m["anchors"]["name"].startswith("mine max-variance") and str(other) in m["anchors"]["source"]
    lines = other.read_text().splitlines()[1:]
    mos = [float(x.split(",")[1]) for x in lines]
    std = [float(x.split(",")[2]) for x in lines]
    want = [lines[i].split(",")[0] for i in _reference(mos, std, 5, 1, "max-variance")]
    assert [Path(p).relative_to(tmp_path / "root").as_posix() for p in m["anchors"]["images"]] == want


def test_yaml_anchors_from_another_dataset(tmp_path, other):
    doc = {"model": "classical", "datasets": [{"name": "demo"}], "anchors": {
        "source": "select", "dataset": "mine", "dataset_source": str(other), "root": str(tmp_path / "root"),
        "scheme": "random", "seed": 2, "alpha": 3, "beta": 2}}
    (cfg,) = configs_from_dict(doc)
    anchors = resolve_anchors(cfg.anchors, {"demo": resolve_dataset(DatasetSpec("demo"))[0]})
    assert len(anchors.images) == 6 and anchors.name.startswith("mine random seed 2 (alpha=3, beta=2)")
    with pytest.raises(ValueError, match="also a test dataset"):
        resolve_anchors(AnchorSpec("select", dataset="demo", dataset_source=str(other)), {"demo": None})


@pytest.mark.parametrize("extra, match", [
    (["--anchor-scheme", "largest"], "invalid choice: 'largest'"),
    (["--anchor-seed", "x"], "invalid int value: 'x'"),
    (["--anchor-seed", "3"], "applies only to scheme 'random'"),
    (["--anchors-dataset", "nowhere"], "--anchors select needs --anchors-dataset"),
    (["--anchors-dataset", "x=/nonexistent/m.csv"], "/nonexistent/m.csv"),
])
def test_cli_bad_values_are_one_line_errors(tmp_path, capsys, extra, match):
    args = ["run", "--model", "classical", "--dataset", "demo", "--anchors", "select", "--out", str(tmp_path),
            "--anchors-dataset", "demo", *extra]
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("c2s run: error:") and match in err[0], err


def test_cli_score_takes_the_selection_options(tmp_path, capsys):
    images = [str(p) for p in sorted(resolve_dataset(DatasetSpec("demo"))[0].root.glob("camera/*.png"))[:3]]
    assert main(["score", "--model", "classical", "--images", *images, "--out", str(tmp_path / "s.csv"),
                 "--anchor-scheme", "random", "--anchor-seed", "2", "--alpha", "3", "--beta", "2",
                 "--cache", str(tmp_path / "pairs.sqlite")]) == 0
    assert "anchors: demo random seed 2 (alpha=3, beta=2) (6 images" in capsys.readouterr().out


def test_a_registered_dataset_given_only_for_anchors_is_loaded_from_the_anchors_root(monkeypatch):
    import harness.run.runner as runner

    demo = resolve_dataset(DatasetSpec("demo"))[0]
    asked = []
    monkeypatch.setattr(runner, "resolve_dataset", lambda spec, **kw: (asked.append(spec), (demo, "all"))[1])
    anchors = resolve_anchors(AnchorSpec("select", dataset="kadid", root="/data/iqa", scheme="max-variance"),
                              {"live": None})
    assert [(s.name, s.source, s.root) for s in asked] == [("kadid", None, "/data/iqa")]
    assert anchors.name.startswith("kadid max-variance")
    with pytest.raises(ValueError, match="or a registered dataset with --anchors-root"):
        resolve_anchors(AnchorSpec("select", dataset="kadid"), {"live": None})


@pytest.mark.parametrize("extra, match", [
    (["--anchor-seed", "2"], "applies only to scheme 'random'"),
    (["--anchor-scheme", "random", "--anchor-seed", "-1"], "seed must be >= 0"),
    (["--beta", "0"], "alpha and beta must be >= 1"),
])
def test_cli_anchors_select_bad_values_are_one_line_errors(tmp_path, capsys, extra, match):
    code = main(["anchors", "select", "--dataset", "demo", "--out", str(tmp_path / "a.json"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("c2s anchors: error:") and match in err[0], err
    assert not (tmp_path / "a.json").exists()
