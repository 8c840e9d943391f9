"""The host namespace: the core's arithmetic on NumPy float32 scalars, for one controller on the CPU.

``init(config, xp=adaptive_sched.host)`` makes a state of ``numpy.float32``
scalars (and Python ints for the counters); :func:`adaptive_sched.update` then
runs on them with the slice of the Array API the core calls, implemented here
on scalars (about 60 ns an operation, against about 1 us for a 0-d NumPy
array). The PyTorch adapter's host mode runs the core this way.

Numbers are float32 as in every other door: NumPy rounds each ``+ - * /`` of
float32 scalars to float32 (and a Python float next to one is converted to
float32 first, NEP 50), which is what torch and JAX compute. ``exp``, ``log``,
``log1p``, ``cos`` and ``sqrt`` are computed in float64 and rounded once, so
they are the correctly rounded float32 values; the torch device namespace
(:func:`adaptive_sched._core.namespace_of`) computes them the same way, so host
and device mode agree bit for bit. JAX's float32 transcendental functions are
not correctly rounded: a JAX state agrees to a few ulps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

float32 = np.float32
int32 = int
_INF = 3.4028235677973366e38  # float32's max plus half an ulp: a float64 at or past it rounds to inf


def f32(x: Any) -> Any:
    """``x`` rounded to a float32 scalar (past float32's range: +-inf, without NumPy's overflow warning)."""
    x = float(x)
    return np.float32(x) if -_INF < x < _INF or x != x else np.float32(math.copysign(math.inf, x))


def _rounded(fn: Any) -> Any:
    def rounded(x: Any) -> Any:
        return f32(fn(x))

    rounded.__name__ = rounded.__qualname__ = fn.__name__
    rounded.__doc__ = f"``{fn.__name__}(x)`` in float64, rounded once to float32."
    return rounded


exp = _rounded(math.exp)
log = _rounded(math.log)
log1p = _rounded(math.log1p)
cos = _rounded(math.cos)
sqrt = _rounded(math.sqrt)
floor = math.floor
isfinite = math.isfinite
isinf = math.isinf
abs = abs


def asarray(x: Any, dtype: Any = None, device: Any = None) -> Any:
    del device
    return x if dtype is None else f32(x) if dtype is float32 else dtype(x)


def astype(x: Any, dtype: Any) -> Any:
    if dtype is float32:
        return x if type(x) is np.float32 else f32(x)
    return dtype(x)


def zeros_like(x: Any) -> Any:
    return type(x)(0)


def where(cond: Any, x1: Any, x2: Any, _f: Any = float, _c: Any = np.float32) -> Any:
    r = x1 if cond else x2
    return _c(r) if r.__class__ is _f else r  # a constant of the rule code, as the float32 value an array holds


def clip(x: Any, min: Any, max: Any, _f: Any = float, _c: Any = np.float32) -> Any:  # noqa: A002  (the Array API's names)
    r = min if min is not None and x < min else max if max is not None and x > max else x
    return _c(r) if r.__class__ is _f else r


def logical_and(x1: Any, x2: Any) -> bool:
    return bool(x1 and x2)


def logical_not(x: Any) -> bool:
    return not x


__all__ = ["abs", "asarray", "astype", "clip", "cos", "exp", "f32", "float32", "floor", "int32", "isfinite",
           "isinf", "log", "log1p", "logical_and", "logical_not", "sqrt", "where", "zeros_like"]  # fmt: skip
