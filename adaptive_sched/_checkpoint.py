"""Flat, framework-neutral (de)serialisation of the controller :class:`State`."""

from __future__ import annotations

from typing import Any

from adaptive_sched import _scalar
from adaptive_sched._config import NUMERIC_FIELDS, RULE_FIELDS, Config, _unflatten
from adaptive_sched._core import EmaState, State, init

__all__ = ["FORMAT_VERSION", "state_from_dict", "state_to_dict"]

FORMAT_VERSION = 1
_SIGNALS = ("loss", "reward", "grad_norm", "kl")
_INTS = ("step", "skipped")
_FLOATS = ("log_scale", "current_momentum")


def state_to_dict(state: State) -> dict[str, Any]:
    """The state as a flat ``{name: value}`` dict (values as stored: arrays or Python numbers).

    Keys: ``format_version``, ``config.<field>`` for the rule names and knobs,
    ``step``, ``skipped``, ``log_scale``, ``current_momentum`` and ``<signal>.<field>``
    for the four EMAs. Rule names are strings; everything else keeps its dtype,
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
    for sig in _SIGNALS:
        ema: EmaState = getattr(state, sig)
        for field in EmaState._fields:
            out[f"{sig}.{field}"] = plain(getattr(ema, field))
    return out


def state_from_dict(d: dict[str, Any], xp: Any = None, device: Any = None) -> State:
    """Rebuild a :class:`State` from :func:`state_to_dict`'s output.

    Args:
      d: the dict (e.g. after ``numpy.savez``/``load`` or ``torch.load``).
      xp: namespace for the arrays (default NumPy); ``adaptive_sched._scalar``
        for Python numbers.
      device: device for the arrays (torch).

    Raises:
      ValueError: if the format version is not one this version reads, or keys
        are missing or unexpected, or a rule name is invalid.
    """
    version = _as_int(d.get("format_version", None))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"state format_version={d.get('format_version')!r} is not supported: "
            f"this adaptive_sched reads format_version={FORMAT_VERSION}."
        )
    expected = set(state_to_dict_keys())
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

    rules = tuple(str(d[f"config.{n}"]) for n in RULE_FIELDS)
    for name, value in zip(RULE_FIELDS, rules):
        if value not in RULE_FIELDS[name]:
            raise ValueError(f"config.{name}={value!r} in the state dict is not a known rule")
    config: Config = _unflatten(rules, tuple(conv(d[f"config.{n}"], "float32") for n in NUMERIC_FIELDS))
    emas = {
        sig: EmaState(*(conv(d[f"{sig}.{f}"], "float32") for f in EmaState._fields)) for sig in _SIGNALS
    }
    return State(
        config=config,
        step=conv(d["step"], "int32"),
        skipped=conv(d["skipped"], "int32"),
        log_scale=conv(d["log_scale"], "float32"),
        current_momentum=conv(d["current_momentum"], "float32"),
        **emas,
    )


def state_to_dict_keys() -> list[str]:
    """The keys :func:`state_to_dict` writes, in order."""
    return list(state_to_dict(init(Config(), xp=_scalar)))


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
