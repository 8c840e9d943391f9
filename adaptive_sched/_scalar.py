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
"""

from __future__ import annotations

import builtins
import math
from typing import Any

UNARY: dict[str, Any] = {
    "exp": math.exp,
    "log": math.log,
    "log1p": math.log1p,
    "sqrt": math.sqrt,
    "cos": math.cos,
    "floor": math.floor,
    "isfinite": math.isfinite,
    "abs": builtins.abs,
}
"""The elementwise functions the core may call: name -> Python implementation.

This is the one table to extend when a rule needs a new elementwise function:
the host-path compiler (:mod:`adaptive_sched._hostpath`) records, folds and
emits every entry (as ``torch.<name>`` for the torch target), and this module
exposes each as ``_scalar.<name>``. The name must be the Array API's.
"""

globals().update(UNARY)

__all__ = [
    "asarray",
    "astype",
    "clip",
    "float32",
    "int32",
    "logical_and",
    "logical_not",
    "where",
]
__all__ += list(UNARY)

IS_SCALAR = True  # the core skips its float32 casts for scalar namespaces

float32 = float
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
