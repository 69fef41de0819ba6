"""Anchor sets, Eqn. 4 selection, and anchor matrices from MOS, from log-probs and from a comparator."""
import json
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from adapters.base import Pair
from harness.core.anchors import (AnchorSet, anchor_pairs, koniq_default, read_anchor_file,
                             matrix_from_logprobs, matrix_from_mos, select_anchors, selection_report)
from harness.core.levels import LEVEL_WEIGHTS
from harness.run.judging import matrix_from_comparator


def test_koniq_default_is_the_papers_anchor_set(shared_data):
    a = koniq_default()
    shared = json.loads((shared_data / "koniq_anchors.json").read_text())
    assert a.images == [x["image"] for x in shared["anchors"]]
    assert np.array_equal(a.mos, [x["mos"] for x in shared["anchors"]])
    assert np.array_equal(a.std, [x["std"] for x in shared["anchors"]])
    assert np.array_equal(a.matrix, shared["matrix_row_beats_column"])
    assert "Fig. 5" in a.source and "Compare2Score" in a.source and "scorer.py" in a.source


def test_koniq_default_orientation():
    a = koniq_default()
    assert a.images[0] == "koniq/80184044.jpg" and np.all(np.diff(a.mos) > 0)
    # row beats column, ascending MOS: the best anchor beats the worst
    assert a.matrix[4, 0] == 1.0 and a.matrix[0, 4] < 1e-8
    assert np.allclose(a.matrix + a.matrix.T, 1.0, atol=1e-6)


def test_anchor_set_validation_and_digest():
    base = dict(images=["x/a.png", "x/b.png", "x/c.png"], mos=[1.0, 2.0, 3.0], std=[0.1, 0.2, 0.3])
    a = AnchorSet(**base)
    assert a.digest() == AnchorSet(**base, name="other name", source="elsewhere").digest()
    assert len(a.digest()) == 16
    assert a.digest() != AnchorSet(**{**base, "mos": [1.0, 2.0, 3.5]}).digest()
    m = matrix_from_mos(base["mos"], base["std"])
    assert AnchorSet(**base, matrix=m).digest() != a.digest()
    with pytest.raises(ValueError, match="ascending MOS"):
        AnchorSet(**{**base, "mos": [2.0, 1.0, 3.0]})
    with pytest.raises(ValueError, match="distinct"):
        AnchorSet(**{**base, "images": ["a", "a", "b"]})
    with pytest.raises(ValueError, match="one MOS and std"):
        AnchorSet(**{**base, "std": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        AnchorSet(**base, matrix=np.eye(2))
    with pytest.raises(ValueError, match="probabilities"):
        AnchorSet(**base, matrix=np.full((3, 3), 2.0))


def test_select_anchors_intervals_lowest_std_and_ties():
    mos = np.array([1.0, 1.5, 1.9, 2.2, 2.9, 3.1, 3.5, 4.0, 4.2, 5.0])
    std = np.array([0.5, 0.2, 0.2, 0.4, 0.1, 0.3, 0.3, 0.6, 0.1, 0.9])
    # 4 intervals of width 1: [1,2) [2,3) [3,4) [4,5]
    idx = select_anchors(mos, std, alpha=4, beta=1)
    assert idx.tolist() == [1, 4, 5, 8]  # tie 1.5/1.9 at std 0.2 -> lower index; 3.1/3.5 tie -> 5
    assert np.all(np.diff(mos[idx]) >= 0)
    assert select_anchors(mos, std, alpha=4, beta=2).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert select_anchors(mos, std, alpha=1, beta=1).tolist() == [4]


def test_select_anchors_reports_empty_intervals():
    mos = np.array([1.0, 1.1, 4.9, 5.0])
    std = np.array([0.3, 0.2, 0.2, 0.3])
    rep = selection_report(mos, std, alpha=4, beta=1)
    assert rep.empty == [1, 2] and rep.counts.tolist() == [2, 0, 0, 2] and rep.indices.tolist() == [1, 2]
    with pytest.warns(UserWarning, match=r"empty MOS intervals \[1, 2\]"):
        assert select_anchors(mos, std, alpha=4, beta=1).tolist() == [1, 2]
    with pytest.warns(UserWarning, match=r"fewer than 3 images \[0, 3\]"):
        select_anchors(mos, std, alpha=4, beta=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select_anchors(mos, std, alpha=1, beta=1)
    with pytest.raises(ValueError, match="finite"):
        select_anchors([1.0, np.nan], [0.1, 0.1])
    with pytest.raises(ValueError, match="positive integers"):
        select_anchors(mos, std, alpha=0)


def test_selection_on_the_koniq_pool_reproduces_two_paper_anchors(shared_data):
    """docs/method.md: on the union of the test JSONs the rule gives anchors (c) and (e) exactly."""
    seen = {}
    for split in sorted((shared_data / "compare2score_splits").iterdir()):
        for rec in json.loads((split / "koniq10k_test.json").read_text()):
            seen[rec["image"]] = (float(rec["gt_score"]), float(rec["std"]))
    names = sorted(seen)
    mos = np.array([seen[k][0] for k in names])
    std = np.array([seen[k][1] for k in names])
    picked = [names[i] for i in select_anchors(mos, std, alpha=5, beta=1)]
    assert len(picked) == 5
    assert "koniq/5050399849.jpg" in picked and "koniq/5993929800.jpg" in picked


def test_matrix_from_mos_is_thurstone():
    mos, std = np.array([1.0, 2.0, 2.0, 4.0]), np.array([0.5, 0.3, 0.0, 0.0])
    P = matrix_from_mos(mos, std)
    assert P[1, 0] == pytest.approx(norm.cdf(1.0 / np.hypot(0.5, 0.3)))
    assert np.allclose(P + P.T, 1.0) and np.allclose(np.diag(P), 0.5)
    assert P[3, 2] == 1.0 and P[2, 3] == 0.0  # both std 0: a certain outcome
    P0 = matrix_from_mos([3.0, 3.0], [0.0, 0.0])
    assert np.array_equal(P0, np.full((2, 2), 0.5))  # equal MOS, no spread: a tie
    with pytest.raises(ValueError, match="std"):
        matrix_from_mos([1.0, 2.0], [0.1, -0.1])


def test_anchor_pairs_every_ordered_pair():
    pairs = anchor_pairs(["a", "b", "c"])
    assert len(pairs) == 6 and len(set(pairs)) == 6
    assert Pair("a", "b") in pairs and Pair("b", "a") in pairs and all(p.first != p.second for p in pairs)


def _logprobs_for(p_second):
    """Level log-probs whose soft preference (T = 1) is exactly p_second: mass on worse/better only
    would cap at 0.75, so mix inferior and superior."""
    probs = np.stack([1 - p_second, np.zeros_like(p_second), np.zeros_like(p_second),
                      np.zeros_like(p_second), p_second], axis=1)
    with np.errstate(divide="ignore"):
        return np.log(probs)


def test_matrix_from_logprobs_orientation_and_order_averaging():
    images = ["a", "b", "c"]
    truth = np.array([[0.5, 0.2, 0.1], [0.8, 0.5, 0.3], [0.9, 0.7, 0.5]])  # P(row beats column)
    pairs = anchor_pairs(images)
    bias = 0.05  # the model favours whatever is shown second
    p = np.array([truth[images.index(pr.second), images.index(pr.first)] + bias for pr in pairs])
    P = matrix_from_logprobs(pairs, _logprobs_for(p), images)
    assert np.allclose(P, truth, atol=1e-12)  # bias cancels when both orders are averaged
    # one order failed: the other is used alone (bias then stays)
    lp = _logprobs_for(p)
    k = pairs.index(Pair("a", "c"))
    lp[k] = np.nan
    P1 = matrix_from_logprobs(pairs, lp, images)
    assert P1[2, 0] == pytest.approx(truth[2, 0] - bias) and P1[0, 2] == pytest.approx(truth[0, 2] + bias)
    lp[pairs.index(Pair("c", "a"))] = np.nan
    P2 = matrix_from_logprobs(pairs, lp, images)
    assert np.isnan(P2[0, 2]) and np.isnan(P2[2, 0]) and np.isfinite(P2[0, 1])
    with pytest.raises(ValueError, match="not an anchor"):
        matrix_from_logprobs([Pair("a", "z")], np.zeros((1, 5)), images)
    with pytest.raises(ValueError, match="rows"):
        matrix_from_logprobs(pairs, np.zeros((2, 5)), images)


class MosComparator:
    """A fake model that answers with the Eqn. 2 level from known MOS, confidently."""

    def __init__(self, mos, fail=()):
        self.mos, self.fail = mos, set(fail)

    def compare(self, pairs):
        from harness.core.levels import level_from_mos
        out = np.full((len(pairs), 5), -8.0)
        for i, pr in enumerate(pairs):
            if (pr.first, pr.second) in self.fail:
                out[i] = np.nan
            else:
                out[i, level_from_mos(self.mos[pr.first], 0.3, self.mos[pr.second], 0.3)] = 0.0
        return out

    def fingerprint(self):
        return {"backend": "fake"}


def test_matrix_from_comparator_agrees_with_mos_order():
    mos = {"a": 1.0, "b": 1.3, "c": 2.5, "d": 4.0}
    images = list(mos)
    P = matrix_from_comparator(MosComparator(mos, fail={("b", "d")}), images)
    assert np.allclose(P + P.T, 1.0)
    assert P[0, 1] == pytest.approx(0.5)  # a and b are "similar" in both orders
    # every other lower-MOS anchor loses clearly to every higher one (row beats column)
    upper = P[np.triu_indices(4, 1)][1:]
    soft = np.exp(-8.0) / (1 + 4 * np.exp(-8.0))  # the small mass on each non-chosen level
    # (first = lower, second = higher) is "superior": p = soft * (0 + .25 + .5 + .75) + (1 - 4 soft)
    assert np.allclose(upper, 1 - (soft * LEVEL_WEIGHTS[:4].sum() + (1 - 4 * soft)), atol=1e-12)
    assert P[3, 1] > 0.99  # still known from the order that succeeded


def test_matrix_from_preferences_takes_hard_verdicts_too():
    from harness.core.anchors import matrix_from_preferences
    from harness.core.scaling import hard_preference
    images = ["a", "b"]
    pairs = [Pair("a", "b"), Pair("b", "a"), Pair("a", "b")]
    # b judged better when shown second twice, "similar" when shown first
    hard = hard_preference(np.log(np.array([[.1, .1, .1, .1, .6], [.1, .1, .6, .1, .1], [.1, .1, .1, .6, .1]])))
    P = matrix_from_preferences(pairs, hard, images)
    assert P[1, 0] == pytest.approx((1.0 + 0.5 + 1.0) / 3) and P[0, 1] == pytest.approx(1 - P[1, 0])
    with pytest.raises(ValueError, match="preferences of shape"):
        matrix_from_preferences(pairs, hard[:2], images)


@pytest.mark.parametrize("content, message", [
    ('{"images": ["a.png", "b.png"], "mos": [1, 2]}', r"missing std \(each a list"),
    ('["a.png", "b.png"]', r"expected a JSON object with images, mos and std, got a list"),
    ('{"images": "a.png", "mos": [1], "std": [0]}', r"images must be a list of file names"),
    ('{"images": ["a.png", "b.png"], "mos": [2, 1], "std": [0, 0]}', r"ascending MOS order"),
    ('{"images": ["a.png", "b.png"], "mos": ["x", 1], "std": [0, 0]}', r"anchors file .*: mos must be a list of n"),
    ("not json", r"cannot be read as JSON"),
])
def test_a_bad_anchors_file_is_one_message_naming_it(tmp_path, content, message, capsys):
    from harness.cli import main

    path = tmp_path / "anchors.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_anchor_file(path)
    assert main(["anchors", "matrix", "--anchors", str(path), "--from-mos", "--out", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err.startswith(f"c2s anchors: error: anchors file {path}: ")
    assert main(["run", "--model", "classical", "--dataset", "demo", "--anchors", str(path),
                 "--out", str(tmp_path / "runs")]) == 2
    assert f"anchors file {path}: " in capsys.readouterr().err


def test_an_anchors_file_reads_relative_to_its_root(tmp_path):
    path = tmp_path / "sub" / "anchors.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"images": ["a.png", "b.png"], "mos": [1, 2], "std": [0.1, 0.2], "name": "mine"}))
    anchors, doc = read_anchor_file(path)
    assert anchors.images == [str(path.parent / "a.png"), str(path.parent / "b.png")] and anchors.name == "mine"
    assert read_anchor_file(path, root="/data")[0].images[0] == "/data/a.png" and doc["mos"] == [1, 2]
