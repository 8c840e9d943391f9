"""Checkpoints of the controller: one flat, framework-neutral format and the one validation every door runs.

:func:`state_to_dict` writes a config and its state as ``{name: value}``;
:func:`state_from_dict` reads one back *for the config the caller expects*,
refusing anything that does not fit it (another rule set, other knob values,
missing or extra entries, non-finite or out-of-range values) with a message
naming the entry. The torch adapter's ``load_state_dict`` and the plain core
call it; the optax transformations, whose state is a pytree restored by the
user's checkpointer, call :func:`check_rule_set` on the rule-set id they carry.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from adaptive_sched import _host, _rules
from adaptive_sched._config import Config, check_field
from adaptive_sched._core import SIGNAL_LIMIT, EmaState, State, _inward
from adaptive_sched._signals import SIGNAL_NAMES, host_array

__all__ = [
    "FORMAT_VERSION",
    "ConfigMismatch",
    "check_entry",
    "check_hparams",
    "check_rule_set",
    "config_from_dict",
    "host_array",
    "rule_set_id",
    "state_from_dict",
    "state_to_dict",
]

_INT32_MAX = 2**31 - 1
_SLACK = 1e-6  # relative slack on bounds: float32 rounding of values saved by another namespace

FORMAT_VERSION = 1
_INTS = ("step", "skipped")
_FLOATS = ("log_scale", "current_momentum")


class ConfigMismatch(ValueError):
    """A checkpoint made under another configuration than the expected one.

    Attributes:
      diffs: one ``"<field>: checkpoint X vs config Y"`` line per differing field.
    """

    def __init__(self, diffs: list[str]) -> None:
        super().__init__("the checkpoint was saved under a different configuration: " + "; ".join(diffs))
        self.diffs = diffs


def _plain(v: Any) -> Any:  # the host namespace's float32 scalars are stored as plain floats (weights_only loads)
    return float(v) if type(v) is np.float32 else v


def state_to_dict(state: State) -> dict[str, Any]:
    """``state`` (with its config) as a flat ``{name: value}`` dict (values as stored: arrays or Python numbers).

    Keys: ``format_version``, ``config.<field>`` for every rule field and every
    stored knob, ``step``, ``skipped``, ``log_scale``, ``current_momentum``,
    ``<signal>.<field>`` for each signal's EMA, ``rule_state.<family>.<rule>.<slot>``
    for the active rules' slots and ``rule_state.<family>.<rule>/<name>`` for the
    core's record of their decisions (:func:`adaptive_sched._rules.record_slots`). Rule names are strings; everything else keeps its
    dtype, so a save/load round trip is bit exact.
    """
    config = state.config
    out: dict[str, Any] = {"format_version": FORMAT_VERSION}
    for field, name in zip(_rules.rule_fields(), config.rules):
        out[f"config.{field}"] = name
    for name, value in config.knobs.items():
        out[f"config.{name}"] = _plain(value)
    for name in _INTS + _FLOATS:
        out[name] = _plain(getattr(state, name))
    for sig in SIGNAL_NAMES:
        ema: EmaState = getattr(state, sig)
        for field in EmaState._fields:
            out[f"{sig}.{field}"] = _plain(getattr(ema, field))
    for key, value in state.rule_state.items():
        out[f"rule_state.{key}"] = _plain(value)
    return out


def config_from_dict(d: dict[str, Any]) -> Config:
    """The config a :func:`state_to_dict` dict was saved under (validated like any Config).

    Raises:
      ValueError: a rule name that is not registered, or an invalid knob (the message names the entry).
    """
    _check_version(d)
    kwargs: dict[str, Any] = {}
    for field, allowed in _rules.rule_fields().items():
        value = str(d.get(f"config.{field}", "none"))  # a family registered after the save: "none"
        if value not in allowed:
            raise ValueError(f"config.{field}={value!r} in the state dict is not a known rule")
        kwargs[field] = value
    for key, value in d.items():
        name = key.removeprefix("config.")
        if key.startswith("config.") and _rules.family_of_field(name) is None:
            if _rules.knob_named(name) is None:
                raise ValueError(f"state dict entry {key!r} is not a known Config field")
            arr = check_entry(f"state dict entry {key!r}", value, shape=None)
            try:
                check_field(name, arr)
            except ValueError as err:
                raise ValueError(f"state dict entry {key!r} is invalid: {err}") from None
            kwargs[name] = float(arr) if arr.ndim == 0 else arr
    try:
        return Config(**kwargs)  # the orderings (min_lr <= base_lr, ...)
    except ValueError as err:
        raise ValueError(f"state dict config entries are invalid: {err}") from None


def _check_version(d: Any) -> None:
    version = _as_int(d.get("format_version")) if isinstance(d, dict) else None
    if version != FORMAT_VERSION:
        got = d.get("format_version") if isinstance(d, dict) else type(d).__name__
        raise ValueError(
            f"state format_version={got!r} is not supported: this adaptive_sched reads format_version={FORMAT_VERSION}."
        )


def config_diffs(expected: Config, saved: Config, ours: str = "config") -> list[str]:
    """Where ``saved`` differs from ``expected`` (called ``ours`` in the lines): rule names, knobs as the core's float32 values."""
    diffs = [
        f"{field}: checkpoint {theirs!r} vs {ours} {mine!r}"
        for field, theirs, mine in zip(_rules.rule_fields(), saved.rules, expected.rules)
        if theirs != mine
    ]
    names = dict.fromkeys([*expected.knobs, *saved.knobs])
    for name in names:
        theirs, mine = getattr(saved, name), getattr(expected, name)
        # as the core holds them: float32 values, the bounds rounded inward (what a saved state's config holds)
        a, b = (np.asarray(_inward(name, v), np.float64) for v in (theirs, mine))
        if a.shape != b.shape or not np.array_equal(a.astype(np.float32), b.astype(np.float32)):
            diffs.append(f"{name}: checkpoint {_show(theirs)} vs {ours} {_show(mine)}")
    return diffs


def state_from_dict(
    d: dict[str, Any], config: Config | None = None, *, xp: Any = None, device: Any = None, ours: str = "config"
) -> State:
    """Rebuild a :class:`State` from :func:`state_to_dict`'s output, for the config the caller expects.

    Args:
      d: the dict (e.g. after ``numpy.savez``/``load`` or ``torch.load``).
      config: the config the state must belong to: the dict's rule names and
        knobs (compared as float32 values, so a checkpoint from another
        namespace loads) must equal it. ``None``: the dict's own config
        (:func:`config_from_dict`).
      xp: namespace for the arrays (default NumPy); :mod:`adaptive_sched.host`
        for NumPy float32 scalars.
      device: device for the arrays (torch).
      ours: how a mismatch message names ``config`` (``"scheduler"`` for the torch adapter).

    Every entry is validated before anything is built, so a corrupted or
    hand-edited checkpoint cannot smuggle NaN or out-of-range values into the
    controller: the knobs as :class:`Config` validates them; ``step`` and
    ``skipped`` integers in ``[0, 2**31 - 1]``; ``log_scale`` finite with
    ``|log_scale| <= log(max_lr / min_lr) + 1`` (the anti-windup clamp's range);
    ``current_momentum`` in ``[min_momentum, max_momentum]``; per signal,
    ``mean`` and ``ref`` finite with magnitude at most ``SIGNAL_LIMIT``, ``var``
    in ``[0, 4 * SIGNAL_LIMIT**2]`` and ``decay_pow`` in ``[0, 1]`` (bounds get
    a relative slack of 1e-6 for float32 rounding). Every entry must be a real
    number (integer entries an integer dtype) of one common shape. The core's
    record of the rules' decisions (``rule_state.<family>.<rule>/<name>``) is
    checked too (event codes among the rule's events, event steps at most
    ``step``, stateful shares in ``log_scale``'s range); a checkpoint saved
    before the record existed has none of these entries and loads with the
    record empty (no event yet, the whole ``log_scale`` credited to the last
    stateful rule): the lr, the momentum and every rule continue exactly.

    Raises:
      ConfigMismatch: (a ``ValueError``) the dict was saved under another config
        than ``config``; its ``diffs`` name every differing field.
      ValueError: the format version is not one this version reads, keys are
        missing or unexpected, a rule name is invalid, or an entry is not
        finite, out of bounds or of the wrong dtype or shape (the message
        names the entry).
    """
    saved = config_from_dict(d)
    if config is not None:
        diffs = config_diffs(config, saved, ours)
        if diffs:
            raise ConfigMismatch(diffs)
    else:
        config = saved
    # Every key the saved config implies; rule fields may be absent (a family registered since: "none"),
    # and knobs of inactive rules may be present (they are part of the config entries validated above).
    optional = {f"config.{f}" for f in _rules.rule_fields()} | {k for k in d if k.startswith("config.")}
    expected_keys = set(state_to_dict_keys(saved))
    missing = expected_keys - set(d) - {f"config.{f}" for f in _rules.rule_fields()}
    record = {f"rule_state.{key}" for key, _ in _rules.record_slots(saved)}
    if record <= missing:  # saved before the core kept its record of the rules' decisions: they start afresh
        missing -= record
    missing -= {f"rule_state.{key}" for key, slot in _rules.state_slots(saved) if slot.late}  # start at init
    added = set()  # signals added since the save (grad_cos): their smoothing starts afresh, as never observed
    for sig in SIGNAL_NAMES:
        ema = {f"{sig}.{f}" for f in EmaState._fields}
        if ema <= missing:
            missing -= ema
            added.add(sig)
    extra = set(d) - expected_keys - optional
    if missing or extra:
        raise ValueError(f"state dict keys do not match: missing {sorted(missing)}, unexpected {sorted(extra)}")
    if xp is None:
        import numpy

        xp = numpy

    def conv(value: Any, dtype: str) -> Any:
        if xp is _host:
            return int(value) if dtype == "int32" else _host.f32(value)
        arr = xp.asarray(value, device=device) if device is not None else xp.asarray(value)
        return xp.astype(arr, getattr(xp, dtype))

    _validate(d, saved)
    fresh = dict(zip(EmaState._fields, (0.0, 0.0, 1.0, 0.0)))
    emas = [
        EmaState(*(conv(fresh[f] if sig in added else d[f"{sig}.{f}"], "float32") for f in EmaState._fields))
        for sig in SIGNAL_NAMES
    ]
    slots = {key: conv(d.get(f"rule_state.{key}", slot.init), slot.dtype) for key, slot in _rules.state_slots(config)}
    head = [conv(d[n], "int32") for n in _INTS] + [conv(d[n], "float32") for n in _FLOATS]
    return State._make([config, *head, *emas, slots])


def state_to_dict_keys(config: Config | None = None) -> list[str]:
    """The keys :func:`state_to_dict` writes for ``config`` (default: ``Config()``), in order."""
    config = Config() if config is None else config
    out = ["format_version", *(f"config.{f}" for f in _rules.rule_fields()), *(f"config.{n}" for n in config.knobs)]
    out += [*_INTS, *_FLOATS]
    out += [f"{sig}.{f}" for sig in SIGNAL_NAMES for f in EmaState._fields]
    out += [f"rule_state.{key}" for key, _ in _rules.state_slots(config)]
    return out


def check_hparams(config: Config, saved: Any, where: str = "state dict hparams") -> tuple[float, float, float]:
    """Saved :class:`~adaptive_sched.Hparams` (a ``{field: value}`` dict) checked against ``config``'s bounds.

    Each finite and inside its bounds (a relative slack of 1e-6 for float32
    rounding, then clipped), and ``lr == base_lr * lr_scale``.

    Returns:
      ``(lr, momentum, lr_scale)`` as Python floats.

    Raises:
      ValueError: naming the entry.
    """
    fields = ("lr", "momentum", "lr_scale")
    if not isinstance(saved, dict) or set(saved) != set(fields):
        raise ValueError(f"{where}={saved!r} must be a dict with keys {list(fields)}")
    base, lo, hi = (float(getattr(config, n)) for n in ("base_lr", "min_lr", "max_lr"))
    bounds = {"lr": (lo, hi), "momentum": (float(config.min_momentum), float(config.max_momentum)), "lr_scale": (lo / base, hi / base)}
    out = []
    for k in fields:
        a, b = bounds[k]
        v = float(check_entry(f"{where}[{k!r}]", saved[k], lo=a * (1 - _SLACK), hi=b * (1 + _SLACK)))
        out.append(min(max(v, a), b))
    lr, momentum, lr_scale = out
    if abs(lr - base * lr_scale) > 1e-5 * lr:
        raise ValueError(
            f"{where}['lr']={lr!r} and {where}['lr_scale']={lr_scale!r} disagree: lr must be base_lr * lr_scale "
            f"= {base * lr_scale!r}"
        )
    return lr, momentum, lr_scale


# --------------------------------------------------------------------------- rule-set id (optax states)


def _rules_text(config: Config) -> str:
    """``"lr_rule=trend/kl_rule=target"``: the active rules with their fields."""
    return "/".join(f"{f}={r}" for f, r in config.active)


def rule_set_id(config: Config) -> int:
    """A 31-bit id of ``config``'s rule set (a CRC-32 of its active rules; knob values are not part of it).

    The optax states carry it as an int32 leaf: a checkpointer restores a
    pytree's leaves into whatever structure the restoring transformation has,
    so only a value can tell that the leaves were saved under another rule set.
    Built from the active rules only, so a family registered later (its rule
    ``"none"``) leaves existing ids as they are.
    """
    return zlib.crc32(_rules_text(config).encode()) & 0x7FFFFFFF


def _describe(found: int) -> str:
    import itertools

    for names in itertools.product(*_rules.rule_fields().values()):
        cfg = dict(zip(_rules.rule_fields(), names))
        text = "/".join(f"{f}={r}" for f, r in cfg.items() if r != "none")
        if zlib.crc32(text.encode()) & 0x7FFFFFFF == found:
            return ", ".join(f"{f}={r!r}" for f, r in cfg.items())
    return f"an unknown rule set (id {found})"


def check_rule_set(config: Config, found: Any) -> None:
    """Refuse (``ValueError``) a rule-set id that is not ``config``'s, naming the rule set it was made under."""
    expected = rule_set_id(config)
    bad = sorted({int(v) for v in np.ravel(np.asarray(found))} - {expected})
    if bad:
        made_by = "; ".join(_describe(v) for v in bad)
        ours = ", ".join(f"{f}={r!r}" for f, r in zip(_rules.rule_fields(), config.rules))
        raise ValueError(
            f"this adaptive_sched state was made under another rule set ({made_by}) than this config ({ours}); "
            "e.g. a checkpoint restored into another config. Restore it where it was saved, under the same config."
        )


def check_slots(config: Config, state: Any) -> None:
    """Refuse a state whose rule slots are not ``config``'s (its structure: checked at trace time under jit)."""
    found = frozenset(getattr(state, "rule_state", {}) or {})
    expected = frozenset(key for key, _ in _rules.state_slots(config))
    record = frozenset(key for key, _ in _rules.record_slots(config))
    if found != expected and found == expected - record:
        raise ValueError(
            "this adaptive_sched state was saved by a version that did not keep the rules' decision record "
            f"(its rule_state lacks {sorted(record)}); restore it into the state of this version's "
            "tx.init(params) with those entries added at their initial value 0 (the lr continues exactly)."
        )
    if found != expected:
        ours = ", ".join(f"{f}={r!r}" for f, r in zip(_rules.rule_fields(), config.rules))
        raise ValueError(
            f"this adaptive_sched state was made under another rule set than this config ({ours}): its rule slots "
            f"are {sorted(found) or 'none'}, the config's are {sorted(expected) or 'none'}; e.g. a checkpoint "
            "restored into another config. Restore it where it was saved, under the same config."
        )


# --------------------------------------------------------------------------- entries


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


def _validate(d: dict[str, Any], config: Config) -> None:
    """Check every state entry of a state dict against its (validated) config (see :func:`state_from_dict`)."""
    step = host_array(d["step"])
    shape = step.shape if step is not None else ()

    def entry(key: str, **kw: Any) -> np.ndarray:
        return check_entry(f"state dict entry {key!r}", d[key], shape=shape, **kw)

    knobs = {n: np.asarray(getattr(config, n), np.float64) for n in ("min_lr", "max_lr", "min_momentum", "max_momentum")}
    for key in (k for k in d if k.startswith("config.") and _rules.family_of_field(k[7:]) is None):
        entry(key)  # finite real number of the common shape
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
    for sig in (n for n in SIGNAL_NAMES if f"{n}.mean" in d):  # a signal added since the save has no entries
        entry(f"{sig}.mean", lo=-limit, hi=limit)
        entry(f"{sig}.var", lo=0.0, hi=4 * limit * limit)
        entry(f"{sig}.decay_pow", lo=0.0, hi=1.0)
        entry(f"{sig}.ref", lo=-limit, hi=limit)
    # The core's record (absent in a checkpoint saved before it existed): event codes of the rule's
    # events, event steps up to the step, shares of log_scale inside the clamp's range.
    step_now = np.asarray(host_array(d["step"]), np.int64)
    for key, slot in _rules.record_slots(config):
        where = f"rule_state.{key}"
        if where not in d:
            continue
        rule = _rules.RULES[key.split("/")[0]]
        if slot.name == "event":
            entry(where, integer=True, lo=0, hi=len(rule.events))
        elif slot.name == "event_step":
            entry(where, integer=True, lo=0, hi=step_now)
        else:
            entry(where, lo=-span * (1 + _SLACK), hi=span * (1 + _SLACK))
    # Rule slots: finite (int32 slots in int32's range); a rule's own invariants are its business.
    for key, slot in _rules.state_slots(config):
        if _rules.is_record_key(key) or (slot.late and f"rule_state.{key}" not in d):
            continue
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
