"""The training signals (:class:`Signals`) and the one signal intake every front door uses.

Everything that depends on which signals exist derives from ``Signals._fields``:
the State's EMA fields, checkpoint keys, the
torch adapter's ``observe`` keywords and the optax extra arguments. Adding a
signal is one field here (plus, optionally, its EMA decay in :data:`EMA_BETA`).

**The intake.** What a front door or callback does with a value before the
controller sees it is written once, here:

* :func:`check_signal`: a signal is ``None``, a real number, or a real scalar
  array/tensor (a one-element tensor where a door allows it); anything else
  (a bool, a string, a list, a non-scalar array, a complex number) is refused
  with an error naming the door's argument.
* :func:`host_value`: the same, converted to a Python float (one ``.item()``
  for a tensor), for front doors that run on the host.
* :func:`clip_signal`: a finite value beyond ``+-SIGNAL_LIMIT`` is clipped to
  it before any float32 cast (so ``1e40`` is a large loss, not an inf that
  would be dropped); NaN and +-inf pass ("not observed").
* :func:`pack`, :func:`finite_mean`, :func:`unpack` and :class:`Intake`: the
  mean of several values of one signal (micro-steps of one optimizer step,
  log rows of one step, ranks, devices) is the mean of its *finite* values,
  NaN when it was supplied but never finitely, and absent when never
  supplied. The three rows ``(sum of the finite values, their count, times
  supplied)`` are additive, so the mean over ranks is one sum-reduction of
  the packed rows and the mean over micro-steps a running sum of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "EMA_BETA",
    "SIGNAL_LIMIT",
    "SIGNAL_NAMES",
    "Intake",
    "Signals",
    "beta_field",
    "check_signal",
    "clip_signal",
    "finite_mean",
    "from_keywords",
    "host_array",
    "host_value",
    "mean_of_finite",
    "pack",
    "unpack",
]


class Signals(NamedTuple):
    """What training observed this step. ``None`` (or NaN/inf) means not observed.

    Attributes:
      loss: training loss (any sign; lower is better).
      reward: RL reward (any sign; higher is better).
      grad_norm: global gradient norm (>= 0), before any clipping.
      kl: KL divergence of the policy to its reference.
      grad_cos: the gradient's direction against the last step: ``cos(g_t, -u_{t-1})``, the cosine
        between this step's gradient ``g_t`` and the previous applied update ``u_{t-1}`` negated, over
        all parameters (in ``[-1, 1]``). Positive: the gradient still points the way the last step
        went (steps agree: the lr is too small); negative: it points back (overshoot: too large).
        The normalised hypergradient of Baydin et al. (2018, "Online Learning Rate Adaptation with
        Hypergradient Descent", ICLR). The optax door and the torch adapter compute it; undefined
        (a zero norm, the first step) is ``None``/NaN: not observed.
    """

    loss: Any = None
    reward: Any = None
    grad_norm: Any = None
    kl: Any = None
    grad_cos: Any = None


SIGNAL_NAMES: tuple[str, ...] = Signals._fields

SIGNAL_LIMIT = 1e15
"""Finite signals are clipped to ``[-SIGNAL_LIMIT, SIGNAL_LIMIT]`` (keeps squares finite in float32)."""

EMA_BETA: dict[str, str] = {"reward": "ema_reward_beta", "kl": "ema_kl_beta"}
"""Config field of each signal's EMA decay; signals not listed use ``ema_beta``."""


def beta_field(signal: str) -> str:
    """The Config field holding ``signal``'s EMA decay."""
    return EMA_BETA.get(signal, "ema_beta")


_INDEX = {name: i for i, name in enumerate(SIGNAL_NAMES)}
_N = len(SIGNAL_NAMES)


def from_keywords(
    caller: str,
    named: dict[str, Any],
    positional: tuple[Any, ...] = (),
    positional_names: tuple[str, ...] = (),
    alias: tuple[str, str, Any] | None = None,
) -> tuple[list[Any], tuple[str, ...]]:
    """A front door's signal arguments as values in :class:`Signals` order, plus each one's label.

    Args:
      caller: the front door's name for error messages, e.g. ``"observe()"``.
      named: ``{signal: value}`` (a keyword that is not a Signals field raises).
      positional: values given positionally, for ``positional_names`` in order.
      positional_names: the signals ``positional`` fills.
      alias: ``(alias, signal, value)``, e.g. ``("R", "reward", R)``: the value
        (when not None) fills ``signal``, and errors name it by ``alias``.

    Returns:
      ``(values, labels)``: one value (or None) and one name per Signals field.

    Raises:
      TypeError: an unknown keyword, too many positional values, or a signal
        given twice.
    """
    values: list[Any] = [None] * _N
    labels = SIGNAL_NAMES
    if len(positional) > len(positional_names):
        raise TypeError(f"{caller} got {len(positional)} extra positional signals; at most {positional_names}")
    for name, value in zip(positional_names, positional):
        if name in named:
            raise TypeError(f"{caller} got multiple values for argument {name!r}")
        values[_INDEX[name]] = value
    for name, value in named.items():
        i = _INDEX.get(name)
        if i is None:
            allowed = ", ".join([*(a[0] for a in (alias,) if a), *SIGNAL_NAMES])
            raise TypeError(f"{caller} got an unknown signal keyword {name!r}; allowed: {allowed}.")
        values[i] = value
    if alias is not None and alias[2] is not None:
        i = _INDEX[alias[1]]
        if values[i] is not None:
            raise TypeError(f"{caller} got both {alias[0]}= and {alias[1]}=: they are one signal, pass one.")
        values[i] = alias[2]
        labels = tuple(alias[0] if n == alias[1] else n for n in SIGNAL_NAMES)
    return values, labels


# --------------------------------------------------------------------------- checks and coercion

_SCALAR = "None, a number or a one-element tensor"


def check_signal(label: str, value: Any, expected: str = _SCALAR, one_element: bool = False) -> None:
    """Refuse what is not a signal: the one scalar check of every front door.

    Args:
      label: how the message names the argument (``"observe(loss=...)"``,
        ``"update(value=...)"``, ``"Signals.loss"``, ``"logged 'loss'"``).
      value: the value (``None`` passes).
      expected: what the door accepts, in words (the ``TypeError``'s text).
      one_element: accept any one-element array or tensor (torch's
        ``loss.reshape(1)``); otherwise the shape must be ``()``.

    Raises:
      TypeError: a bool (``True`` is not a measurement), a string, a list or
        mapping, a complex number, or a bool/complex array.
      ValueError: an array or tensor with more than one element (or, without
        ``one_element``, any shape but ``()``).
    """
    if value is None or type(value) is float:
        return
    dtype = getattr(value, "dtype", None)
    kind = str(dtype) if dtype is not None else ""
    if (
        isinstance(value, (bool, np.bool_, str, bytes, list, tuple, dict, complex))
        or "bool" in kind
        or "complex" in kind
    ):
        got = f"a {kind} {type(value).__name__}" if dtype is not None else f"{type(value).__name__}: {value!r:.60}"
        raise TypeError(f"{label} must be {expected}, got {got}")
    shape = tuple(getattr(value, "shape", ()))
    if shape == ():
        return
    tensor = hasattr(value, "numel")
    if one_element and math.prod(shape) == 1:
        return
    if tensor:
        raise ValueError(f"{label} must be a scalar, got a tensor of shape {shape}; reduce it first (e.g. the batch mean).")
    raise ValueError(f"{label} must be a scalar (shape ()), got shape {shape}; reduce it first (e.g. the batch mean).")


def host_value(label: str, value: Any, expected: str = _SCALAR) -> float | None:
    """A signal as a Python float (``None`` stays ``None``), after :func:`check_signal`.

    A tensor costs one ``.item()`` (a host sync on an accelerator); a huge
    Python int that no float holds becomes ``inf`` (not observed).
    """
    if value is None or type(value) is float:
        return value
    check_signal(label, value, expected, one_element=True)
    try:
        return float(value.item()) if hasattr(value, "item") else float(value)
    except OverflowError:
        return math.inf
    except (TypeError, ValueError):
        raise TypeError(f"{label} must be {expected}, got {type(value).__name__}") from None


def clip_signal(value: Any) -> Any:
    """Clip a finite signal beyond ``+-SIGNAL_LIMIT`` to it, before any float32 cast.

    A finite float64 beyond float32's range would otherwise become inf in the
    cast and be dropped; clipped first, it is observed like any other large
    value. NaN and +-inf pass through (they are "not observed"). Python
    floats, float64 NumPy arrays and float64 tensors are clipped; values of
    float32 or narrower (and JAX tracers) pass unchanged: they cannot exceed
    float32's range.
    """
    if isinstance(value, float):  # Python floats and numpy.float64 scalars
        return min(max(value, -SIGNAL_LIMIT), SIGNAL_LIMIT) if math.isfinite(value) else value
    if str(getattr(value, "dtype", "")) not in ("float64", "torch.float64") or not hasattr(value, "shape"):
        return value
    import array_api_compat

    xp = array_api_compat.array_namespace(value)
    return xp.where(xp.isfinite(value), xp.clip(value, -SIGNAL_LIMIT, SIGNAL_LIMIT), value)


def host_array(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array on the host (torch tensors via ``detach().cpu()``), or None.

    None for anything that is not a real or integer number or array of them
    (strings, None, complex numbers, objects); booleans come back as bool arrays.
    """
    if value is None or isinstance(value, (str, bytes, complex)):
        return None
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if value.is_complex():
            return None
        if value.dtype.is_floating_point:
            value = value.double()  # bfloat16 has no NumPy dtype
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception:  # e.g. a JAX tracer or an object NumPy cannot read
        return None
    return arr if arr.dtype.kind in "biuf" else None


# --------------------------------------------------------------------------- finite means


def pack(values: Sequence[float | None]) -> list[list[float]]:
    """Host values (Python floats or None, in :data:`SIGNAL_NAMES` order) as the three additive rows.

    Rows: the value where it is finite (else 0), 1 where it is finite, 1 where
    it was supplied (finite or not). Sum packed rows over ranks or steps, then
    :func:`unpack`.
    """
    if len(values) != _N:
        raise ValueError(f"expected {_N} signal values ({', '.join(SIGNAL_NAMES)}), got {len(values)}")
    total, finite, present = [0.0] * _N, [0.0] * _N, [0.0] * _N
    for i, v in enumerate(values):
        if v is None:
            continue
        present[i] = 1.0
        if math.isfinite(v):
            total[i], finite[i] = v, 1.0
    return [total, finite, present]


def unpack(rows: Sequence[Sequence[float]]) -> list[float | None]:
    """Summed rows back to one value per signal: the finite mean, NaN (supplied, never finite) or None."""
    total, finite, present = rows
    return [(t / f if f > 0 else math.nan) if p > 0 else None for t, f, p in zip(total, finite, present)]


def finite_mean(xp: Any, total: Any, n_finite: Any) -> Any:
    """``total / n_finite`` where ``n_finite > 0``, else NaN: :func:`unpack` for arrays (no host sync)."""
    return xp.where(n_finite > 0, total / xp.clip(n_finite, 1.0, None), xp.nan)


def array_rows(xp: Any, values: Sequence[Any]) -> Any:
    """:func:`pack` for arrays: ``(2, n)`` rows (finite sum, finite count) of float32 scalars ``values``.

    Whether a value was supplied is static here (the caller knows which are
    ``None``, e.g. from the trace structure), so only the two value rows are built.
    """
    x = xp.stack([xp.asarray(v, dtype=xp.float32) for v in values])
    finite = xp.isfinite(x)
    return xp.stack([xp.where(finite, x, xp.zeros_like(x)), xp.astype(finite, xp.float32)])


class Intake:
    """Values of one signal set arriving several times (log rows, micro-batches), merged into one update.

    :meth:`add` takes host values (``None``, numbers or tensors, checked and
    converted by :func:`host_value`; ``None`` as a *value* means "logged as
    None", i.e. NaN); :meth:`take` returns each supplied signal's finite mean
    and starts over. :attr:`consumed` and :attr:`skipped` count, per signal,
    the values taken in and those that were not finite.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.consumed: dict[str, int] = dict.fromkeys(SIGNAL_NAMES, 0)
        self.skipped: dict[str, int] = dict.fromkeys(SIGNAL_NAMES, 0)

    def add(self, name: str, value: Any, label: str, expected: str = "a number or None") -> float:
        """Take in one value of signal ``name``; returns it as a float (NaN for ``None``)."""
        v = host_value(label, value, expected)
        v = math.nan if v is None else v
        self.consumed[name] += 1
        if not math.isfinite(v):
            self.skipped[name] += 1
        self.values.setdefault(name, []).append(v)
        return v

    def __bool__(self) -> bool:
        return bool(self.values)

    def means(self) -> dict[str, float]:
        """Each supplied signal's finite mean so far (NaN if none was finite)."""
        return {name: mean_of_finite(vals) for name, vals in self.values.items()}

    def take(self) -> dict[str, float]:
        """:meth:`means`, and the intake starts over."""
        out = self.means()
        self.values = {}
        return out


def mean_of_finite(values: Sequence[float]) -> float:
    """Several host values of one signal: the mean of the finite ones (NaN if none); one value is itself."""
    if len(values) == 1:
        return values[0]
    total, n, _ = (row[0] for row in pack_one(values))
    return total / n if n else math.nan


def pack_one(values: Sequence[float]) -> list[list[float]]:
    """The additive rows of many values of *one* signal (``[[sum], [n_finite], [n]]``)."""
    finite = [v for v in values if math.isfinite(v)]
    return [[math.fsum(finite)], [float(len(finite))], [float(len(values))]]
