"""Statistics for the benchmark: seed aggregates, intervals, comparisons, lr sensitivity.

Follows Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS): report the interquartile mean (IQM) with a
percentile-bootstrap confidence interval rather than a bare mean, and the
probability of improvement ``P(X > Y)`` between two methods.

All helpers take NumPy arrays of per-seed results and orient nothing
implicitly: functions that need a direction take ``higher_is_better``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats

__all__ = [
    "LrWindow",
    "bootstrap_ci",
    "iqm",
    "lr_window",
    "mean_std",
    "moving_average",
    "prob_improvement",
    "steps_to_reach",
]


def _vector(x: Sequence[float] | np.ndarray, name: str = "x") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}.")
    return arr


def mean_std(x: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value).

    NaN entries propagate (a diverged seed makes the mean NaN, visibly).
    """
    arr = _vector(x)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return float(np.mean(arr)), std


def iqm(x: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the values.

    ``scipy.stats.trim_mean(x, 0.25)``: drops ``floor(0.25 n)`` values at each
    end (so for 5 seeds the mean of the middle 3, for 4 the middle 2, for
    fewer than 4 the plain mean), as in Agarwal et al. (2021).
    """
    return float(scipy.stats.trim_mean(_vector(x), 0.25))


def _iqm_axis(a: np.ndarray, axis: int) -> np.ndarray:
    return scipy.stats.trim_mean(a, 0.25, axis=axis)


def bootstrap_ci(
    x: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the IQM over seeds.

    Resamples the seeds with replacement ``n_resamples`` times
    (``scipy.stats.bootstrap(method="percentile")``, fixed ``seed``) and returns
    the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles of the
    resampled IQMs. With a single value, or non-finite values, the interval is
    ``(IQM, IQM)`` / NaN respectively.

    Raises:
      ValueError: if ``confidence`` is not in (0, 1) or ``n_resamples < 1``.
    """
    arr = _vector(x)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is invalid: must be in (0, 1).")
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples!r} is invalid: must be >= 1.")
    if not np.all(np.isfinite(arr)):
        return float("nan"), float("nan")
    if np.all(arr == arr[0]):  # one seed, or no spread: nothing to resample
        value = iqm(arr)
        return value, value
    rng = np.random.default_rng(seed)
    kw = {"rng": rng} if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else {"random_state": rng}
    res = scipy.stats.bootstrap(
        (arr,),
        _iqm_axis,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        **kw,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def prob_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, higher_is_better: bool = True
) -> float:
    """Probability that a run of X beats a run of Y: ``P(X > Y) + P(X = Y) / 2``.

    Over all pairs of seeds (Agarwal et al., 2021, Sec. 4.3):
    ``(1 / (n m)) sum_i sum_j [1(x_i > y_j) + 0.5 * 1(x_i = y_j)]``, which is the
    Mann-Whitney ``U`` statistic of X divided by ``n m``. For a lower-is-better
    metric the comparison is reversed. A NaN result (diverged seed) loses to
    any finite one.
    """
    a, b = _vector(x, "x"), _vector(y, "y")
    if not higher_is_better:
        a, b = -a, -b
    a = np.where(np.isnan(a), -np.inf, a)
    b = np.where(np.isnan(b), -np.inf, b)
    u = scipy.stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    return float(u) / (a.size * b.size)


class LrWindow(NamedTuple):
    """The lr range over which a method stays within tolerance of its best.

    Attributes:
      low: smallest grid multiplier of the window.
      high: largest grid multiplier of the window.
      width: ``log10(high / low)``, in decades (0 when only the best point qualifies).
      points: number of grid points in the window.
      best: the grid multiplier with the best mean.
    """

    low: float
    high: float
    width: float
    points: int
    best: float


def lr_window(
    grid: Sequence[float] | np.ndarray,
    means: Sequence[float] | np.ndarray,
    reference: float,
    higher_is_better: bool,
    tolerance: float = 0.05,
) -> LrWindow:
    """Width of the contiguous lr window whose mean result is within ``tolerance`` of the method's best.

    With ``m_i`` the seed-mean result at grid multiplier ``g_i`` (sorted),
    ``m*`` the best of them and ``m_0 = reference`` the result before
    training, a point qualifies when it is within ``tolerance * |m* - m_0|``
    of ``m*`` (5% of the method's best improvement over the untrained model,
    which stays meaningful for negative rewards and for losses near 0). The
    window is the longest run of consecutive qualifying points that contains
    the best one; its width is ``log10(g_high / g_low)`` decades. NaN means
    count as failing.

    Raises:
      ValueError: if ``grid`` and ``means`` differ in length or are empty.
    """
    g = _vector(grid, "grid")
    m = _vector(means, "means")
    if g.shape != m.shape:
        raise ValueError(f"grid and means must have the same length, got {g.size} and {m.size}.")
    order = np.argsort(g)
    g, m = g[order], m[order]
    score = m if higher_is_better else -m
    score = np.where(np.isfinite(score), score, -np.inf)
    if not np.any(np.isfinite(score)):
        return LrWindow(float("nan"), float("nan"), 0.0, 0, float("nan"))
    ib = int(np.argmax(score))
    ref = reference if higher_is_better else -reference
    tol = tolerance * abs(score[ib] - ref)
    ok = score >= score[ib] - tol
    lo = ib
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    hi = ib
    while hi < g.size - 1 and ok[hi + 1]:
        hi += 1
    return LrWindow(float(g[lo]), float(g[hi]), float(np.log10(g[hi] / g[lo])), hi - lo + 1, float(g[ib]))


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis: ``y_t = mean(x_{max(0, t-w+1)..t})``."""
    if window < 1:
        raise ValueError(f"window={window!r} is invalid: must be >= 1.")
    arr = np.asarray(x, dtype=np.float64)
    c = np.cumsum(arr, axis=-1)
    out = np.empty_like(c)
    n = arr.shape[-1]
    w = min(window, n)
    out[..., :w] = c[..., :w] / np.arange(1, w + 1)
    if n > w:
        out[..., w:] = (c[..., w:] - c[..., :-w]) / w
    return out


def steps_to_reach(curve: Sequence[float] | np.ndarray, target: float, higher_is_better: bool = True) -> int | None:
    """The first step (1-based) at which ``curve`` reaches ``target``, or None if it never does."""
    arr = _vector(curve, "curve")
    hit = arr >= target if higher_is_better else arr <= target
    idx = np.flatnonzero(hit)
    return int(idx[0]) + 1 if idx.size else None
