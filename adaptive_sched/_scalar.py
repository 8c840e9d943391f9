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
the float32 result that NumPy, torch or XLA compute: for ``+ - * /`` of
float32 inputs, the float64 result rounded once to float32 *is* the correctly
rounded float32 result (53 >= 2 * 24 + 2, so the double rounding is
innocuous). The elementwise functions are rounded as their row of
:data:`UNARY` says (``exp``, ``log``, ``log1p``, ``cos`` and ``sqrt``:
computed in float64 and rounded once, the correctly rounded float32 value in
all but astronomically rare cases). Rounding uses a one-slot ``array('f')`` (CPython
converts a double to a C float on assignment: IEEE round to nearest, overflow
to inf), measured the fastest way to round in pure Python.
"""

from __future__ import annotations

import builtins
import math
from array import array
from collections.abc import Callable
from typing import Any, NamedTuple

_BUF = array("f", [0.0])


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (a plain Python float; overflow gives +-inf)."""
    _BUF[0] = x
    return _BUF[0]


class Unary(NamedTuple):
    """One elementwise function of the core (a row of :data:`UNARY`).

    Attributes:
      fn: the Python implementation (float64 for floats).
      rounding: how its float result becomes a float32 value, identically in
        every front door:

        * ``"float64"``: some backend's float32 implementation is not
          correctly rounded (``exp``, ``log``, ...; also ``sqrt``: torch's
          float32 ``sqrt`` on AVX-512 CPUs is off by an ulp on about one
          input in six): host mode rounds ``fn``'s float64 result once,
          device mode computes in float64 and rounds the same way.
        * ``"float32"``: correctly rounded in float32 by every backend:
          host mode rounds ``fn``'s float64 result (the same value), device
          mode runs the native float32 op.
        * ``"exact"``: nothing to round: the result is exact (``abs``) or not
          a float (``floor`` gives an int, ``isfinite`` a bool).
      result: what it returns: ``"float"`` (a float32 value), ``"int"``,
        ``"bool"`` or ``"input"`` (the kind of its argument).
    """

    fn: Callable[[Any], Any]
    rounding: str
    result: str = "float"


UNARY: dict[str, Unary] = {
    "exp": Unary(math.exp, "float64"),
    "log": Unary(math.log, "float64"),
    "log1p": Unary(math.log1p, "float64"),
    "cos": Unary(math.cos, "float64"),
    "sqrt": Unary(math.sqrt, "float64"),  # torch CPU float32 sqrt is not exact
    "floor": Unary(math.floor, "exact", "int"),
    "isfinite": Unary(math.isfinite, "exact", "bool"),
    "abs": Unary(builtins.abs, "exact", "input"),
}
"""The elementwise functions the core may call: name -> :class:`Unary` (implementation, rounding).

This is the one table to extend when a rule needs a new elementwise function
(one line: its Python implementation and how its result is rounded): this
module exposes each as ``_scalar.<name>`` (rounded as the row says), and the
host-path compiler (:mod:`adaptive_sched._hostpath`) records, folds and emits
every entry (as ``torch.<name>`` for the torch target, in float64 where the
row says so). The name must be the Array API's.
"""


class F32(float):
    """A Python float holding a float32 value; ``+ - * /`` round their result to float32.

    A plain ``float`` operand is first rounded to float32, as NumPy, torch and
    JAX convert a Python scalar next to a float32 array; ``int`` operands are
    taken as they are (exact below 2**24). Operations with anything else (e.g.
    the host-path tracer's symbols) are left to the other operand.
    """

    __slots__ = ()

    def __neg__(self) -> F32:
        return F32(-float(self))

    def __abs__(self) -> F32:
        return F32(float.__abs__(self))

    def __reduce__(self) -> Any:  # pickles as a plain float
        return (float, (float(self),))


def _rounded(op: str) -> Callable[[F32, Any], Any]:
    """``float``'s operator ``op`` with the float operand and the result rounded to float32 (see :class:`F32`)."""
    base = getattr(float, op)

    def method(self: F32, o: Any) -> Any:
        r = base(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    method.__name__ = op
    return method


for _op in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__"):
    setattr(F32, _op, _rounded(_op))


def float32(x: Any) -> F32:
    """``x`` as a float32 value (:class:`F32`)."""
    return F32(round_f32(float(x)))


def _const(x: Any) -> Any:
    """A plain Python float (a constant of the rule code) as the float32 value arrays would use."""
    return F32(round_f32(x)) if type(x) is float else x


def _namespace_function(name: str, row: Unary) -> Callable[[Any], Any]:
    fn = row.fn
    if row.rounding == "exact":
        return fn

    def rounded(x: Any) -> F32:
        return F32(round_f32(fn(x)))

    rounded.__name__ = rounded.__qualname__ = name
    rounded.__doc__ = f"``{name}(x)`` rounded to float32 (see UNARY)."
    return rounded


globals().update({name: _namespace_function(name, row) for name, row in UNARY.items()})

__all__ = [
    "F32",
    "UNARY",
    "Unary",
    "asarray",
    "astype",
    "clip",
    "float32",
    "int32",
    "logical_and",
    "logical_not",
    "round_f32",
    "where",
]
__all__ += list(UNARY)

IS_SCALAR = True  # the core skips its float32 casts for scalar namespaces

int32 = int
bool_ = bool


def asarray(x: Any, dtype: Any = None, device: Any = None) -> Any:
    del device
    if dtype is None:
        return x
    return dtype(x)


def astype(x: Any, dtype: Any) -> Any:
    return dtype(x)


def where(cond: bool, x1: Any, x2: Any) -> Any:
    return _const(x1 if cond else x2)


def clip(x: float, min: float, max: float) -> float:  # noqa: A002
    # Array-API argument names. A bound that is a plain float constant (e.g. 1e-12)
    # comes back as its float32 value, as an array's clip would give it.
    if x < min:
        return _const(min)
    if x > max:
        return _const(max)
    return _const(x)


def logical_and(x1: bool, x2: bool) -> bool:
    return x1 and x2


def logical_not(x: bool) -> bool:
    return not x
