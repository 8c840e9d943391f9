"""Float32 semantics, written once: the operation table, knob values, and a Python-float namespace.

Every front door computes in float32. What that means for each operation the
core uses is one row of :data:`OPS` (its Python implementation and how its
result becomes a float32 value); from that table derive

* :class:`F32`, a Python float holding a float32 value whose ``+ - * /``
  round their result (the torch adapter's host mode runs the core on these);
* this module's elementwise functions (``exp``, ``log``, ... rounded as their
  row says), which make it an array namespace of Python scalars with the
  slice of the Array API the core calls;
* the host-path compiler (:mod:`adaptive_sched._hostpath`): which results the
  generated Python rounds, and which torch ops device mode computes in
  float64 before rounding;
* :func:`knob`: how a config knob enters the arithmetic of each namespace.

Rounding rules. For ``+ - * /`` of float32 inputs, the float64 result
rounded once to float32 *is* the correctly rounded float32 result (53 >= 2 * 24
+ 2, so the double rounding is innocuous): host mode rounds, device mode runs
the native float32 op. Functions that some backend does not round correctly
in float32 (``exp``, ``log``, ``log1p``, ``cos``, and ``sqrt``: torch's float32
``sqrt`` on AVX-512 CPUs is off by an ulp on about one input in six) are
computed in float64 and rounded once, in host and device mode alike: the
correctly rounded float32 value in all but astronomically rare cases. So host
and device mode agree bit for bit. Rounding stores into and reads back a
one-slot ``memoryview`` of format ``'f'`` (CPython converts a double to a C
float on assignment: IEEE round to nearest, overflow to inf, exactly as
``array('f')`` does), measured the fastest way to round in pure Python (about
25 ns a rounding against about 45 ns through the array itself).

The namespace follows the Array API for 0-d inputs, except that nothing here
ever returns NaN where the array versions would: the core sanitises its inputs
before it calls ``log``, ``sqrt`` or ``exp`` (``math`` raises where arrays would
produce inf/NaN, which makes a sanitisation gap loud in the tests).
"""

from __future__ import annotations

import builtins
import math
import operator
from array import array
from collections.abc import Callable
from typing import Any, NamedTuple

# A float32 view of a one-slot array: item access on a memoryview is faster than
# on the array; the byte cast in between is how a memoryview gets format "f".
_BUF = memoryview(array("f", [0.0])).cast("B").cast("f")


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (a plain Python float; overflow gives +-inf)."""
    _BUF[0] = x
    return _BUF[0]


class Op(NamedTuple):
    """One operation of the core's float32 arithmetic (a row of :data:`OPS`).

    Attributes:
      fn: the Python implementation (float64 for floats).
      rounding: how its float result becomes a float32 value, identically in
        every front door:

        * ``"float32"``: every backend's native float32 op is correctly
          rounded (``+ - * /``): host mode rounds ``fn``'s float64 result,
          device mode runs the native op.
        * ``"float64"``: some backend's float32 version is not correctly
          rounded: host mode rounds ``fn``'s float64 result once, device
          mode computes in float64 and rounds the same way.
        * ``"exact"``: nothing to round: the result is exact (``abs``) or not
          a float (``floor`` gives an int, ``isfinite`` a bool).
      result: what it returns: ``"float"`` (a float32 value), ``"int"``,
        ``"bool"`` or ``"input"`` (the kind of its argument).
    """

    fn: Callable[..., Any]
    rounding: str
    result: str = "float"


OPS: dict[str, Op] = {
    "+": Op(operator.add, "float32", "input"),
    "-": Op(operator.sub, "float32", "input"),
    "*": Op(operator.mul, "float32", "input"),
    "/": Op(operator.truediv, "float32"),
    "exp": Op(math.exp, "float64"),
    "log": Op(math.log, "float64"),
    "log1p": Op(math.log1p, "float64"),
    "cos": Op(math.cos, "float64"),
    "sqrt": Op(math.sqrt, "float64"),
    "floor": Op(math.floor, "exact", "int"),
    "isfinite": Op(math.isfinite, "exact", "bool"),
    "isinf": Op(math.isinf, "exact", "bool"),
    "abs": Op(builtins.abs, "exact", "input"),
}
"""The core's arithmetic: name -> :class:`Op`. The binary rows' ``"input"`` result: int op int is an int.

This is the one table to extend when a rule needs a new elementwise function
(one line: its Python implementation and how its result is rounded; the name
must be the Array API's): this module exposes it as ``_scalar.<name>``, and
the host-path compiler records, folds and emits it (as ``torch.<name>`` for
device mode, in float64 where the row says so).
"""

BINARY: tuple[str, ...] = ("+", "-", "*", "/")
UNARY: dict[str, Op] = {name: row for name, row in OPS.items() if name not in BINARY}
"""The elementwise functions of :data:`OPS` (every row but the four arithmetic operators)."""
Unary = Op  # the former name of a row


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


def _rounded(dunder: str) -> Callable[[F32, Any], Any]:
    """``float``'s operator with the float operand and the result rounded to float32 (see :class:`F32`)."""
    base = getattr(float, dunder)

    def method(self: F32, o: Any) -> Any:
        r = base(self, round_f32(o) if type(o) is float else o)
        return r if r is NotImplemented else F32(round_f32(r))

    method.__name__ = dunder
    return method


_DUNDERS = {"+": "add", "-": "sub", "*": "mul", "/": "truediv"}
for _sym, _row in OPS.items():
    if _sym in _DUNDERS and _row.rounding == "float32":
        for _d in (f"__{_DUNDERS[_sym]}__", f"__r{_DUNDERS[_sym]}__"):
            setattr(F32, _d, _rounded(_d))


def float32(x: Any) -> F32:
    """``x`` as a float32 value (:class:`F32`)."""
    return F32(round_f32(float(x)))


def _const(x: Any) -> Any:
    """A plain Python float (a constant of the rule code) as the float32 value arrays would use."""
    return F32(round_f32(x)) if type(x) is float else x


def _namespace_function(name: str, row: Op) -> Callable[[Any], Any]:
    fn = row.fn
    if row.rounding == "exact":
        return fn

    def rounded(x: Any) -> F32:
        return F32(round_f32(fn(x)))

    rounded.__name__ = rounded.__qualname__ = name
    rounded.__doc__ = f"``{name}(x)`` rounded to float32 (see OPS)."
    return rounded


globals().update({name: _namespace_function(name, row) for name, row in UNARY.items()})


def knob_kind(xp: Any, like: Any = None) -> Any:
    """Which form :func:`knob` gives in ``xp`` (a cache key): ``"python"``, ``"numpy"`` or ``("torch", device)``."""
    if getattr(xp, "IS_SCALAR", False):
        return "python"
    import array_api_compat

    if array_api_compat.is_jax_namespace(xp):
        return "python"
    if array_api_compat.is_torch_namespace(xp):
        return ("torch", str(getattr(like, "device", "")))
    return xp.__name__


def knob(xp: Any, value: Any, like: Any = None) -> Any:
    """A config knob as the float32 value the arithmetic in namespace ``xp`` uses.

    A concrete number becomes its float32 value in the form that keeps every
    expression of knobs alone (``1 - beta``, ``log(up)``: see
    :func:`adaptive_sched.rules.log_knob`) a host float32 computation, the same
    in every front door: :class:`F32` for this namespace, the host-path tracer
    and JAX (a weakly typed Python scalar that XLA folds into the program),
    ``numpy.float32`` for NumPy (strongly typed, so ``where`` of two knobs
    stays float32), a 0-d float32 tensor on ``like``'s device for torch (whose
    functions refuse Python numbers). Arrays (stacked configs, JAX tracers)
    become float32 arrays of ``xp``.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if getattr(xp, "IS_SCALAR", False):
        return float32(value) if number else value
    import array_api_compat

    if number:
        if array_api_compat.is_numpy_namespace(xp):
            import numpy as np

            return np.float32(value)
        if array_api_compat.is_torch_namespace(xp):
            return xp.asarray(float32(value), dtype=xp.float32, device=getattr(like, "device", None))
        return float32(value)
    return xp.astype(xp.asarray(value), xp.float32)


__all__ = [
    "BINARY",
    "F32",
    "OPS",
    "UNARY",
    "Op",
    "asarray",
    "astype",
    "clip",
    "float32",
    "int32",
    "knob",
    "knob_kind",
    "logical_and",
    "logical_not",
    "round_f32",
    "where",
    "zeros_like",
]
__all__ += list(UNARY)

# --------------------------------------------------------------------------- the namespace

IS_SCALAR = True  # marks a namespace of Python scalars (this one and the host-path tracer)

int32 = int
bool_ = bool


def asarray(x: Any, dtype: Any = None, device: Any = None) -> Any:
    del device
    if dtype is None:
        return x
    return dtype(x)


def astype(x: Any, dtype: Any) -> Any:
    return x if type(x) is F32 and dtype is float32 else dtype(x)


def zeros_like(x: Any) -> Any:
    return type(x)(0)


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
