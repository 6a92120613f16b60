"""Landmark training draws every anatomy equally often: the three MNI 2009c contrasts (identical
points) share one anatomy's share, Colin27 (its own points) gets a whole one."""

from __future__ import annotations

import numpy as np
import pytest

from nnmamba.train.problems import anatomy_shares


def _points(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 30, (32, 3))


def test_copies_of_one_template_split_its_share_and_another_anatomy_gets_a_whole_one():
    mni2009c = _points(0)
    shares = anatomy_shares([mni2009c, mni2009c.copy(), mni2009c.copy(), _points(1)])
    np.testing.assert_allclose(shares, [1 / 6, 1 / 6, 1 / 6, 1 / 2])


def test_distinct_anatomies_are_drawn_uniformly():
    np.testing.assert_allclose(anatomy_shares([_points(n) for n in range(4)]), [0.25] * 4)


def test_points_within_a_hundredth_of_a_millimetre_are_one_anatomy():
    points = _points(2)
    np.testing.assert_allclose(anatomy_shares([points, points + 1e-4, points + 0.5]), [0.25, 0.25, 0.5])


def test_no_cases_is_an_error():
    with pytest.raises(ValueError, match="no landmark cases"):
        anatomy_shares([])
