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

import math
from typing import Any

__all__ = [
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
    "sqrt",
    "where",
]

IS_SCALAR = True  # the core skips its float32 casts for scalar namespaces

float32 = float
int32 = int
bool_ = bool

exp = math.exp
log = math.log
log1p = math.log1p
sqrt = math.sqrt
cos = math.cos
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
