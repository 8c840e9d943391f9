"""A Python-float namespace with the slice of the Array API that the core uses.

The controller's rules are written once against an array namespace ``xp``
(``jax.numpy``, NumPy or torch through array-api-compat). This module is one
more such namespace whose "arrays" are Python ``float``/``int``/``bool``
scalars. It lets the PyTorch adapter's host mode run the very same rule code
at plain-Python speed, without allocating a tensor or crossing into NumPy for
every scalar operation.

Only the functions the core calls are provided. Each follows the Array API
semantics for 0-d inputs, except that nothing here ever returns NaN where the
array versions would: the core sanitises its inputs before it calls ``log``,
``sqrt`` or ``exp`` (``math`` raises where arrays would produce inf/NaN, which
makes a sanitisation gap loud in the tests instead of silent).

Numeric semantics: float32, like every other front door. Values are
:class:`F32`, a ``float`` whose arithmetic (``+ - * /``) rounds each result to
the nearest float32 (round-to-nearest-even), so an expression gives exactly
the float32 result that NumPy, torch or XLA compute: for ``+ - * /`` and
``sqrt`` of float32 inputs, the float64 result rounded once to float32 *is*
the correctly rounded float32 result (53 >= 2 * 24 + 2, so the double rounding
is innocuous). ``exp``, ``log``, ``log1p`` and ``cos`` are computed in float64
and rounded to float32 (the correctly rounded float32 value in all but
astronomically rare cases). Rounding uses a one-slot ``array('f')`` (CPython
converts a double to a C float on assignment: IEEE round to nearest, overflow
to inf), measured the fastest way to round in pure Python.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

__all__ = [
    "F32",
    "abs",
    "asarray",
    "astype",
    "clip",
    "cos",
    "exp",
    "float32",
    "floor",
    "int32",
    "isfinite",
    "log",
    "log1p",
    "logical_and",
    "logical_not",
    "round_f32",
    "sqrt",
    "where",
]

IS_SCALAR = True  # the core skips its float32 casts for scalar namespaces

_BUF = array("f", [0.0])


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (a plain Python float; overflow gives +-inf)."""
    _BUF[0] = x
    return _BUF[0]


class F32(float):
    """A Python float holding a float32 value; ``+ - * /`` round their result to float32.

    A plain ``float`` operand is first rounded to float32, as NumPy, torch and
    JAX convert a Python scalar next to a float32 array; ``int`` operands are
    taken as they are (exact below 2**24). Operations with anything else (e.g.
    the host-path tracer's symbols) are left to the other operand.
    """

    __slots__ = ()

    def __add__(self, o: Any) -> Any:
        r = float.__add__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __radd__(self, o: Any) -> Any:
        r = float.__radd__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __sub__(self, o: Any) -> Any:
        r = float.__sub__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __rsub__(self, o: Any) -> Any:
        r = float.__rsub__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __mul__(self, o: Any) -> Any:
        r = float.__mul__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __rmul__(self, o: Any) -> Any:
        r = float.__rmul__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __truediv__(self, o: Any) -> Any:
        r = float.__truediv__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __rtruediv__(self, o: Any) -> Any:
        r = float.__rtruediv__(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    def __neg__(self) -> F32:
        return F32(-float(self))

    def __abs__(self) -> F32:
        return F32(float.__abs__(self))

    def __reduce__(self) -> Any:  # pickles as a plain float
        return (float, (float(self),))


def float32(x: Any) -> F32:
    """``x`` as a float32 value (:class:`F32`)."""
    return F32(round_f32(float(x)))


int32 = int
bool_ = bool


def exp(x: float) -> F32:
    return F32(round_f32(math.exp(x)))


def log(x: float) -> F32:
    return F32(round_f32(math.log(x)))


def log1p(x: float) -> F32:
    return F32(round_f32(math.log1p(x)))


def sqrt(x: float) -> F32:
    return F32(round_f32(math.sqrt(x)))


def cos(x: float) -> F32:
    return F32(round_f32(math.cos(x)))


floor = math.floor
isfinite = math.isfinite
abs = abs  # noqa: A001  (the namespace function, as in the Array API)


def asarray(x: Any, dtype: Any = None, device: Any = None) -> Any:
    del device
    if dtype is None:
        return x
    return dtype(x)


def astype(x: Any, dtype: Any) -> Any:
    return dtype(x)


def where(cond: bool, x1: Any, x2: Any) -> Any:
    return x1 if cond else x2


def clip(x: float, min: float, max: float) -> float:  # noqa: A002
    # Array-API argument names.
    if x < min:
        return min
    if x > max:
        return max
    return x


def logical_and(x1: bool, x2: bool) -> bool:
    return x1 and x2


def logical_not(x: bool) -> bool:
    return not x
