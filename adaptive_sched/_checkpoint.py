"""Flat, framework-neutral (de)serialisation of the controller :class:`State`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adaptive_sched import _scalar
from adaptive_sched._config import (
    NUMERIC_FIELDS,
    RULE_FIELDS,
    Config,
    _unflatten,
    check_field,
)
from adaptive_sched._core import SIGNAL_LIMIT, EmaState, State
from adaptive_sched._rules import state_slots
from adaptive_sched._signals import SIGNAL_NAMES

__all__ = ["FORMAT_VERSION", "check_entry", "host_array", "state_from_dict", "state_to_dict"]

_INT32_MAX = 2**31 - 1
_SLACK = 1e-6  # relative slack on bounds: float32 rounding of values saved by another namespace

FORMAT_VERSION = 1
_INTS = ("step", "skipped")
_FLOATS = ("log_scale", "current_momentum")


def state_to_dict(state: State) -> dict[str, Any]:
    """The state as a flat ``{name: value}`` dict (values as stored: arrays or Python numbers).

    Keys: ``format_version``, ``config.<field>`` for the rule names and knobs,
    ``step``, ``skipped``, ``log_scale``, ``current_momentum``, ``<signal>.<field>``
    for each signal's EMA and ``rule_state.<family>.<rule>.<slot>`` for the
    active rules' extra slots (if any). Rule names are strings; everything else keeps its dtype,
    so a save/load round trip is bit exact.
    """

    def plain(v: Any) -> Any:  # the scalar namespace's float32 floats are stored as plain floats
        return float(v) if type(v) is _scalar.F32 else v

    out: dict[str, Any] = {"format_version": FORMAT_VERSION}
    for name in RULE_FIELDS:
        out[f"config.{name}"] = getattr(state.config, name)
    for name in NUMERIC_FIELDS:
        out[f"config.{name}"] = plain(getattr(state.config, name))
    for name in _INTS + _FLOATS:
        out[name] = plain(getattr(state, name))
    for sig in SIGNAL_NAMES:
        ema: EmaState = getattr(state, sig)
        for field in EmaState._fields:
            out[f"{sig}.{field}"] = plain(getattr(ema, field))
    for key, value in state.rule_state.items():
        out[f"rule_state.{key}"] = plain(value)
    return out


def state_from_dict(d: dict[str, Any], xp: Any = None, device: Any = None) -> State:
    """Rebuild a :class:`State` from :func:`state_to_dict`'s output.

    Args:
      d: the dict (e.g. after ``numpy.savez``/``load`` or ``torch.load``).
      xp: namespace for the arrays (default NumPy); ``adaptive_sched._scalar``
        for Python numbers.
      device: device for the arrays (torch).

    Every entry is validated before anything is built, so a corrupted or
    hand-edited checkpoint cannot smuggle NaN or out-of-range values into the
    controller: the knobs as :class:`Config` validates them; ``step`` and
    ``skipped`` integers in ``[0, 2**31 - 1]``; ``log_scale`` finite with
    ``|log_scale| <= log(max_lr / min_lr) + 1`` (the anti-windup clamp's range);
    ``current_momentum`` in ``[min_momentum, max_momentum]``; per signal,
    ``mean`` and ``ref`` finite with magnitude at most ``SIGNAL_LIMIT``, ``var``
    in ``[0, 4 * SIGNAL_LIMIT**2]`` and ``decay_pow`` in ``[0, 1]`` (bounds get
    a relative slack of 1e-6 for float32 rounding). Every entry must be a real
    number (integer entries an integer dtype) of one common shape.

    Raises:
      ValueError: if the format version is not one this version reads, keys
        are missing or unexpected, a rule name is invalid, or an entry is not
        finite, out of bounds or of the wrong dtype or shape (the message names
        the entry).
    """
    version = _as_int(d.get("format_version"))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"state format_version={d.get('format_version')!r} is not supported: "
            f"this adaptive_sched reads format_version={FORMAT_VERSION}."
        )
    rules = tuple(str(d.get(f"config.{n}", "none")) for n in RULE_FIELDS)
    for name, value in zip(RULE_FIELDS, rules):
        if value not in RULE_FIELDS[name]:
            raise ValueError(f"config.{name}={value!r} in the state dict is not a known rule")
    expected = set(state_to_dict_keys(_unflatten(rules, (None,) * len(NUMERIC_FIELDS))))
    missing, extra = expected - set(d), set(d) - expected
    if missing or extra:
        raise ValueError(
            f"state dict keys do not match: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    if xp is None:
        import numpy

        xp = numpy

    def conv(value: Any, dtype: str) -> Any:
        if xp is _scalar:
            return int(value) if dtype == "int32" else _scalar.float32(value)
        arr = xp.asarray(value, device=device) if device is not None else xp.asarray(value)
        return xp.astype(arr, getattr(xp, dtype))

    _validate(d, rules)
    config: Config = _unflatten(rules, tuple(conv(d[f"config.{n}"], "float32") for n in NUMERIC_FIELDS))
    emas = {
        sig: EmaState(*(conv(d[f"{sig}.{f}"], "float32") for f in EmaState._fields)) for sig in SIGNAL_NAMES
    }
    slots = {key: conv(d[f"rule_state.{key}"], slot.dtype) for key, slot in state_slots(config)}
    return State(
        config=config,
        step=conv(d["step"], "int32"),
        skipped=conv(d["skipped"], "int32"),
        log_scale=conv(d["log_scale"], "float32"),
        current_momentum=conv(d["current_momentum"], "float32"),
        **emas,
        rule_state=slots,
    )


def state_to_dict_keys(config: Config | None = None) -> list[str]:
    """The keys :func:`state_to_dict` writes for ``config``'s rules (default: all ``"none"``), in order."""
    out = ["format_version", *(f"config.{n}" for n in RULE_FIELDS), *(f"config.{n}" for n in NUMERIC_FIELDS)]
    out += [*_INTS, *_FLOATS]
    out += [f"{sig}.{f}" for sig in SIGNAL_NAMES for f in EmaState._fields]
    out += [f"rule_state.{key}" for key, _ in state_slots(config if config is not None else Config())]
    return out


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


def check_entry(
    where: str,
    value: Any,
    *,
    integer: bool = False,
    lo: Any = -math.inf,
    hi: Any = math.inf,
    shape: tuple[int, ...] | None = (),
) -> np.ndarray:
    """Validate one checkpoint entry; return it as a float64 (or int64) host array.

    Args:
      where: how the message names the entry (e.g. ``"state dict entry 'log_scale'"``).
      value: the entry (Python number, NumPy value, tensor).
      integer: require an integer dtype (booleans are refused either way).
      lo, hi: inclusive bounds (scalars or arrays broadcasting against the value).
      shape: the required shape, or None for any.

    Raises:
      ValueError: naming ``where``, the value and what is allowed.
    """
    kind = "an integer" if integer else "a finite real number"
    bounds = "" if (np.all(np.asarray(lo) == -math.inf) and np.all(np.asarray(hi) == math.inf)) else (
        f" in [{_show(lo)}, {_show(hi)}]"
    )
    arr = host_array(value)
    if arr is None or arr.dtype.kind == "b" or (integer and arr.dtype.kind not in "iu"):
        raise ValueError(f"{where}={_show(value)} is invalid: must be {kind}{bounds} (got {_type_name(value)}).")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{where} has shape {arr.shape}, expected {shape}.")
    arr = arr.astype(np.int64 if integer else np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (arr >= lo) & (arr <= hi)
    if not np.all(ok):
        raise ValueError(f"{where}={_show(value)} is invalid: must be {kind}{bounds}.")
    return arr


def _validate(d: dict[str, Any], rules: tuple[str, ...]) -> None:
    """Check every numeric entry of a state dict (see :func:`state_from_dict`)."""
    step = host_array(d["step"])
    shape = step.shape if step is not None else ()

    def entry(key: str, **kw: Any) -> np.ndarray:
        return check_entry(f"state dict entry {key!r}", d[key], shape=shape, **kw)

    knobs: dict[str, Any] = {}
    for name in NUMERIC_FIELDS:
        arr = entry(f"config.{name}")  # finite real number of the common shape
        try:
            check_field(name, arr)
        except ValueError as err:
            raise ValueError(f"state dict entry 'config.{name}' is invalid: {err}") from None
        knobs[name] = arr
    try:
        Config(**dict(zip(RULE_FIELDS, rules)), **knobs)  # the orderings (min_lr <= base_lr, ...)
    except ValueError as err:
        raise ValueError(f"state dict config entries are invalid: {err}") from None
    entry("step", integer=True, lo=0, hi=_INT32_MAX)
    entry("skipped", integer=True, lo=0, hi=_INT32_MAX)
    span = np.log(knobs["max_lr"]) - np.log(knobs["min_lr"]) + 1.0
    entry("log_scale", lo=-span * (1 + _SLACK), hi=span * (1 + _SLACK))
    entry(
        "current_momentum",
        lo=knobs["min_momentum"] * (1 - _SLACK),
        hi=np.minimum(knobs["max_momentum"] * (1 + _SLACK), 1.0),
    )
    limit = SIGNAL_LIMIT * (1 + _SLACK)
    for sig in SIGNAL_NAMES:
        entry(f"{sig}.mean", lo=-limit, hi=limit)
        entry(f"{sig}.var", lo=0.0, hi=4 * limit * limit)
        entry(f"{sig}.decay_pow", lo=0.0, hi=1.0)
        entry(f"{sig}.ref", lo=-limit, hi=limit)
    # Rule slots: finite (int32 slots in int32's range); a rule's own invariants are its business.
    config = _unflatten(rules, (None,) * len(NUMERIC_FIELDS))
    for key, slot in state_slots(config):
        if slot.dtype == "int32":
            entry(f"rule_state.{key}", integer=True, lo=-_INT32_MAX - 1, hi=_INT32_MAX)
        else:
            entry(f"rule_state.{key}", lo=-3.4e38, hi=3.4e38)


def _show(value: Any) -> str:
    arr = host_array(value)
    if arr is not None and arr.ndim == 0:
        return repr(arr.item())
    if arr is not None:
        return np.array2string(arr, threshold=6)
    return repr(value) if len(repr(value)) < 60 else f"<{_type_name(value)}>"


def _type_name(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__} of dtype {dtype}" if dtype is not None else type(value).__name__


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
