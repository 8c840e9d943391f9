"""Statistics and summary helpers against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")

from adaptive_sched.bench import _stats


def test_mean_std_by_hand() -> None:
    mean, std = _stats.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3))  # ddof=1
    assert _stats.mean_std([7.0]) == (7.0, 0.0)
    assert math.isnan(_stats.mean_std([1.0, float("nan")])[0])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        _stats.mean_std([])


def test_iqm_by_hand() -> None:
    assert _stats.iqm([1, 2, 3, 4, 100]) == 3.0  # drops 1 and 100, mean of 2, 3, 4
    assert _stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # middle four: 3, 4, 5, 6
    assert _stats.iqm([1.0, 3.0]) == 2.0  # fewer than 4: the plain mean


def test_bootstrap_ci_by_hand() -> None:
    # two seeds {0, 1}: resampled means are 0 (p=1/4), 0.5 (1/2), 1 (1/4) -> 95% interval (0, 1)
    lo, hi = _stats.bootstrap_ci([0.0, 1.0], n_resamples=4000)
    assert (lo, hi) == (0.0, 1.0)
    # an interval at 40% confidence is the 30%..70% quantiles: 0.5 and 0.5
    assert _stats.bootstrap_ci([0.0, 1.0], confidence=0.4, n_resamples=4000) == (0.5, 0.5)
    assert _stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    x = [0.1, 0.4, 0.35, 0.8, 0.5]
    lo, hi = _stats.bootstrap_ci(x)
    assert min(x) <= lo <= _stats.iqm(x) <= hi <= max(x)
    assert _stats.bootstrap_ci(x) == (lo, hi)  # fixed seed: reproducible
    assert all(math.isnan(v) for v in _stats.bootstrap_ci([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"confidence=1\.5"):
        _stats.bootstrap_ci(x, confidence=1.5)


def test_prob_improvement_by_hand() -> None:
    # pairs: 1 beats 0 (1); 2 ties 2, 2 and beats 0 (0.5 + 0.5 + 1); 3 beats all (3) -> 6 / 9
    assert _stats.prob_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)
    # lower is better: 1 beats 2, 2 (2); 2 ties 2, 2 (1); 3 beats none -> 3 / 9
    assert _stats.prob_improvement([1, 2, 3], [2, 2, 0], higher_is_better=False) == pytest.approx(3 / 9)
    assert _stats.prob_improvement([5.0], [5.0]) == 0.5
    assert _stats.prob_improvement([float("nan")], [0.0]) == 0.0  # a diverged seed loses
    assert _stats.prob_improvement([float("nan")], [0.0], higher_is_better=False) == 0.0


def test_lr_window_by_hand() -> None:
    grid = [0.1, 0.3, 1.0, 3.0, 10.0]
    # best 0.95 at x1; tolerance 0.05 * (0.95 - 0.1) = 0.0425: 0.94 qualifies, 0.9 does not
    w = _stats.lr_window(grid, [0.5, 0.9, 0.95, 0.94, 0.2], reference=0.1, higher_is_better=True)
    assert (w.low, w.high, w.points, w.best) == (1.0, 3.0, 2, 1.0)
    assert w.width == pytest.approx(math.log10(3.0))
    # lower is better: best 2.0 at x1, tolerance 0.05 * |2.0 - 4.0| = 0.1: 2.08 and 2.05 qualify
    w = _stats.lr_window(grid, [3.0, 2.08, 2.0, 2.05, 2.5], reference=4.0, higher_is_better=False)
    assert (w.low, w.high, w.points) == (0.3, 3.0, 3) and w.width == pytest.approx(1.0)
    # a qualifying point beyond a failing one is not part of the contiguous window
    w = _stats.lr_window(grid, [0.95, 0.5, 0.95, 0.5, 0.5], reference=0.0, higher_is_better=True)
    assert w.points == 1 and w.width == 0.0
    w = _stats.lr_window(grid, [np.nan, 0.9, 0.9, np.nan, 0.9], reference=0.0, higher_is_better=True)
    assert (w.low, w.high) == (0.3, 1.0)
    with pytest.raises(ValueError, match="same length"):
        _stats.lr_window(grid, [1.0], reference=0.0, higher_is_better=True)


def test_moving_average_and_steps_to_reach_by_hand() -> None:
    np.testing.assert_allclose(_stats.moving_average(np.array([1.0, 2.0, 3.0, 4.0]), 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(_stats.moving_average(np.array([[2.0, 4.0]]), 5), [[2.0, 3.0]])
    assert _stats.steps_to_reach([0.0, 0.5, 0.9, 1.0], 0.9) == 3
    assert _stats.steps_to_reach([3.0, 2.0, 1.0], 2.0, higher_is_better=False) == 2
    assert _stats.steps_to_reach([0.0, 0.1], 0.9) is None
