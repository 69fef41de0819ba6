"""Eqn. 2: levels from (MOS, std) of both images, including the std = 0 edge case."""
import numpy as np
import pytest

from harness.core.levels import LEVEL_WEIGHTS, LEVELS, level_from_mos


def test_shared_order_and_weights_unchanged():
    assert LEVELS == ("inferior", "worse", "similar", "better", "superior")
    assert LEVEL_WEIGHTS.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("mos_second, expected", [
    (3.0, "similar"), (2.6, "similar"), (3.4, "similar"),   # |q| <= sigma = 0.5
    (2.4, "worse"), (3.6, "better"),                         # sigma < |q| <= 2 sigma
    (1.9, "inferior"), (4.2, "superior"),                    # |q| > 2 sigma
])
def test_table_of_eqn2(mos_second, expected):
    # first image MOS 3, std 0.3 and 0.4 -> sigma of the difference = 0.5
    level = level_from_mos(3.0, 0.3, mos_second, 0.4)
    assert LEVELS[int(level)] == expected


def test_boundaries_go_to_the_milder_level():
    # q = +-sigma -> similar, q = +-2 sigma -> worse/better (sigma = 1 exactly)
    lv = level_from_mos(0.0, 1.0, np.array([1.0, -1.0, 2.0, -2.0]), 0.0)
    assert [LEVELS[i] for i in lv] == ["similar", "similar", "better", "worse"]


def test_zero_std_equal_mos_is_similar_and_any_difference_is_extreme():
    lv = level_from_mos(np.array([2.0, 2.0, 2.0]), 0.0, np.array([2.0, 2.1, 1.9]), 0.0)
    assert [LEVELS[i] for i in lv] == ["similar", "superior", "inferior"]


def test_vectorised_and_mirror_symmetric():
    rng = np.random.default_rng(0)
    q1, q2 = rng.uniform(1, 5, 1000), rng.uniform(1, 5, 1000)
    s1, s2 = rng.uniform(0, 1, 1000), rng.uniform(0, 1, 1000)
    s1[:50] = 0.0
    s2[:50] = 0.0
    forward = level_from_mos(q1, s1, q2, s2)
    assert forward.shape == (1000,) and forward.dtype.kind == "i"
    assert np.array_equal(level_from_mos(q2, s2, q1, s1), 4 - forward)
    # the label agrees with the direction of the MOS difference
    assert np.all((forward > 2) == (q2 - q1 > np.hypot(s1, s2)))


def test_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        level_from_mos(np.nan, 0.1, 3.0, 0.1)
    with pytest.raises(ValueError, match="std"):
        level_from_mos(3.0, -0.1, 3.0, 0.1)
