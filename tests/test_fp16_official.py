"""The fp16 official path (`logit_dtype: float16`): the official code's half-precision soft preference.

The reference below is written from the description of the official arithmetic (docs/method.md, "The
official code and why it differs"): logits cast to float16, divided by T, exponentiated without
subtracting the maximum, normalised and weighted with float16 weights; each element-wise step rounded to
float16, each sum accumulated in float32 and rounded once (torch's half-precision rules). It works one
number at a time, independently of the vectorised production code.
"""
from __future__ import annotations

import numpy as np
import pytest

from harness.core.pairs import Pair
from harness.core.anchors import koniq_default
from harness.core.official import preference_fp16
from harness.core.profiles import get_profile, profile_label
from harness.core.scaling import preference
from harness.run.config import configs_from_dict
from harness.run.scoring import FP16_FAILURE, score_tests

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def reference_fp16(row, temperature) -> float:
    """One comparison's P(second better), step by step in float16 scalars."""
    h, f = np.float16, np.float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        z = [h(f(h(v)) / f(h(temperature))) for v in row]
        e = [h(np.exp(f(zi))) for zi in z]
        acc = f(0)
        for ei in e:
            acc = f(acc + f(ei))
        total = h(acc)
        p = [h(f(ei) / f(total)) for ei in e]
        acc = f(0)
        for pi, wi in zip(p, WEIGHTS):
            acc = f(acc + f(h(f(pi) * f(h(wi)))))
        return float(h(acc))


RNG = np.random.default_rng(7)
LOGIT_SETS = {
    "raw logits (LLaMA-like)": RNG.normal(20, 4, size=(200, 5)),
    "level log-probs": np.log(RNG.dirichlet(np.ones(5), size=200)),
    "large gaps": RNG.normal(0, 300, size=(200, 5)),
    "edges": np.array([[1100, 0, 0, 0, 0], [1120, 0, 0, 0, 0], [0, 0, 0, 0, 1108.0], [-1800, -1750, -1900, -2000, -1700],
                       [-1600, -1650, -1700, -1600, -1650], [5, 5, 5, 5, 5], [0, 0, 0, 0, 0], [-60000, 0, 0, 0, 1e5]]),
}
EXTREME = np.array([[2000.0, 0, 0, 0, 0], [0, 0, 0, 0, 1200], [-2000.0] * 5, [-1800, -1850, -1900, -2000, -1800], [1e5] * 5])


@pytest.mark.parametrize("name", sorted(LOGIT_SETS))
@pytest.mark.parametrize("temperature", [100.0, 1.0, 7.0])
def test_fp16_matches_the_step_by_step_reference(name, temperature):
    x = LOGIT_SETS[name]
    expected = np.array([reference_fp16(r, temperature) for r in x])
    np.testing.assert_array_equal(preference_fp16(x, temperature), expected)


def test_extreme_logits_give_nan_as_the_official_code_does():
    got = preference_fp16(EXTREME, 100.0)
    assert np.isnan(got).all()
    assert all(np.isnan(reference_fp16(r, 100.0)) for r in EXTREME)
    # the float32 path subtracts the maximum and stays exact on the same rows
    assert np.isfinite(preference(EXTREME, 100.0)).all()


def test_fp16_is_close_to_float32_but_not_equal_and_on_the_float16_grid():
    x = LOGIT_SETS["raw logits (LLaMA-like)"]
    h, f = preference_fp16(x, 100.0), preference(x, 100.0)
    assert np.abs(h - f).max() < 1e-3 and np.any(h != f)
    assert np.array_equal(h, h.astype(np.float16).astype(np.float64))


def test_fp16_matches_torch_half_precision():
    torch = pytest.importorskip("torch")
    for x in list(LOGIT_SETS.values()) + [EXTREME]:
        t = torch.tensor(x, dtype=torch.float16) / 100
        e = torch.exp(t)
        p = e / e.sum(dim=1, keepdim=True)
        b = (p * torch.tensor(WEIGHTS, dtype=torch.float16)).sum(dim=1)
        np.testing.assert_array_equal(preference_fp16(x, 100.0), b.double().numpy())


def test_the_setting_is_declared_checked_and_labelled():
    assert get_profile("official").logit_dtype == "float32" == get_profile("paper").logit_dtype
    # the default is no part of a run's identity: runs made before the setting existed keep their ids
    assert "logit_dtype" not in get_profile("official").as_dict()
    prof = get_profile("official", logit_dtype="float16")
    assert prof.as_dict()["logit_dtype"] == "float16" and "logit_dtype=float16" in profile_label(prof)
    for bad in ("bfloat16", "fp16", 16):
        with pytest.raises(ValueError, match="logit_dtype"):
            get_profile("official", logit_dtype=bad)
    cfg = configs_from_dict({"model": "classical", "datasets": ["demo"], "profiles": ["official"],
                             "profile_overrides": {"logit_dtype": "float16"}})[0]
    assert cfg.profile_overrides == {"logit_dtype": "float16"}


def _lookup(tests, anchors, rows):
    return {Pair(a, x): row for x, r in zip(tests, rows) for a, row in zip(anchors.images, r)}


def test_an_image_whose_float16_softmax_overflows_fails_with_the_reason():
    anchors = koniq_default()
    tests = ["t1.png", "t2.png", "t3.png"]
    rng = np.random.default_rng(1)
    rows = rng.normal(20, 4, size=(3, 5, 5))
    rows[1, 2] = [2000.0, 0, 0, 0, 0]  # one extreme comparison of t2
    lookup = _lookup(tests, anchors, rows)
    prof = get_profile("official", logit_dtype="float16")
    got = score_tests(tests, anchors, lookup, {}, prof, "soft", "anchor_first")
    assert np.isnan(got.score[1]) and np.isfinite(got.score[[0, 2]]).all()
    assert got.errors == [None, FP16_FAILURE, None]
    exact = score_tests(tests, anchors, lookup, {}, get_profile("official"), "soft", "anchor_first")
    assert np.isfinite(exact.score).all() and np.abs(exact.score - got.score)[[0, 2]].max() < 0.1


def _tiny_manifest(tmp_path, n=12):
    from PIL import Image

    rng = np.random.default_rng(3)
    rows = ["image,mos,std"]
    for k in range(n):  # blurrier (smaller noise amplitude) images get lower MOS
        img = (128 + rng.normal(0, 4 + 6 * k, size=(48, 48, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"im{k}.png")
        rows.append(f"im{k}.png,{1 + k * 0.3:.2f},0.4")
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "mine.csv"


def test_the_cli_records_the_setting_in_the_manifest_and_rescore_switches_it(tmp_path, capsys):
    import csv
    import json

    from harness.cli import main

    manifest = _tiny_manifest(tmp_path)
    common = ["--model", "classical", "--dataset", f"mine={manifest}", "--anchors", "select", "--anchors-dataset",
              "mine", "--profile", "official", "--no-report"]
    assert main(["run", *common, "--logit-dtype", "float16", "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["profile"]["logit_dtype"] == "float16"
    assert main(["rescore", str(run_dir), "--logit-dtype", "float32", "--out", str(tmp_path / "re"), "--no-report"]) == 0
    (re_dir,) = (tmp_path / "re").iterdir()
    assert json.loads((re_dir / "manifest.json").read_text())["profile"]["logit_dtype"] == "float32"
    s16, s32 = (np.array([float(r["score"]) for r in csv.DictReader((d / "scores.csv").open())])
                for d in (run_dir, re_dir))
    assert np.isfinite(s16).all() and 0 < np.abs(s16 - s32).max() < 0.2


def test_the_cli_refuses_a_bad_value_in_one_line(tmp_path, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["rescore", str(tmp_path), "--logit-dtype", "float64"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--logit-dtype" in err[0] and "float16" in err[0]
