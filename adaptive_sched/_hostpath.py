"""The fast host path: the core's own ``update``, traced once into straight-line Python.

A PyTorch training step on a small model costs ~100 us; a scheduler that wants to
be "cheaper than the step it rides on" gets a few microseconds. Running the
generic core on Python floats costs ~10 us per call, mostly in function calls,
NamedTuple construction and work for rules that are not active.

So, like ``jax.jit`` but for plain Python: :func:`compile_update` runs
:func:`adaptive_sched._core.update_with` once with a *symbolic* namespace whose
values record the operations applied to them. Config knobs are Python
constants (folded: ``log(trend_up)`` is computed once), rule names prune whole
branches, dead operations are dropped, and what remains is emitted as one flat
Python function over the state's scalars. There is still exactly one
implementation of every rule: this module contains no rule logic, and the
tests check the compiled function against the generic path bit for bit.

Numeric semantics are float32, as in every other front door (see
:mod:`adaptive_sched._scalar`): constants fold with float32 rounding and are
emitted as float32 values; the generated Python rounds every float result of
``+ - * /``, of the int-to-float conversion and of each elementwise function
whose :data:`adaptive_sched._scalar.UNARY` row says so, and clips and rounds
the signals on entry. The torch target computes the ``"float64"`` rows in
float64 and rounds once, so host and device mode agree bit for bit.

Like JAX tracers, symbolic values refuse ``bool()``: any Python branch on a
traced value in the core would fail loudly here instead of silently freezing
one branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from adaptive_sched import _scalar
from adaptive_sched._config import Config
from adaptive_sched._core import (
    SIGNAL_LIMIT,
    EmaState,
    Signals,
    State,
    init,
    update_with,
)
from adaptive_sched._rules import state_slots
from adaptive_sched._signals import SIGNAL_NAMES

__all__ = [
    "STATE_FIELDS",
    "HostController",
    "as_python",
    "compile_update",
    "flatten_state",
    "state_fields",
    "unflatten_state",
]

_HEAD = ("step", "skipped", "log_scale", "current_momentum")
STATE_FIELDS: tuple[str, ...] = _HEAD + tuple(
    f"{sig}.{f}" for sig in SIGNAL_NAMES for f in EmaState._fields
)
"""The flat layout of every state (one EMA per :class:`Signals` field); rule slots follow (:func:`state_fields`)."""
_NE = len(EmaState._fields)


def state_fields(config: Config) -> tuple[tuple[str, str], ...]:
    """``(name, dtype)`` of each flat scalar for ``config``: :data:`STATE_FIELDS`, then its rules' slots."""
    head = tuple((n, "int32" if i < 2 else "float32") for i, n in enumerate(STATE_FIELDS))
    return head + tuple((key, slot.dtype) for key, slot in state_slots(config))


def flatten_state(state: State) -> list[Any]:
    """The state's scalars in :func:`state_fields` order (the config is left out)."""
    out = [state.step, state.skipped, state.log_scale, state.current_momentum]
    for name in SIGNAL_NAMES:
        out.extend(getattr(state, name))
    out.extend(state.rule_state.values())
    return out


def unflatten_state(config: Config, flat: list[Any]) -> State:
    """Inverse of :func:`flatten_state` (``config`` with Python-float knobs)."""
    h, n = len(_HEAD), len(SIGNAL_NAMES)
    emas = [EmaState(*flat[h + _NE * i : h + _NE * (i + 1)]) for i in range(n)]
    slots = dict(zip((key for key, _ in state_slots(config)), flat[h + _NE * n :]))
    return State._make([config, *flat[:h], *emas, slots])


def as_python(config: Config, flat: list[Any]) -> list[Any]:
    """``flat`` as Python ints and floats, by :func:`state_fields`' dtypes."""
    return [int(v) if dt == "int32" else float(v) for (_, dt), v in zip(state_fields(config), flat)]


# --------------------------------------------------------------------------- tracing


class _Graph:
    """The recorded operations: ``(name, op, args)`` nodes, hash-consed (common subexpressions once)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, str, tuple[Any, ...]]] = []
        self.memo: dict[tuple[Any, ...], Sym] = {}

    def emit(self, op: str, *args: Any) -> Sym:
        key = (op, *(("sym", a.name) if isinstance(a, Sym) else (type(a).__name__, a) for a in args))
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        sym = Sym(self, f"v{len(self.nodes)}")
        self.nodes.append((sym.name, op, args))
        self.memo[key] = sym
        return sym


def _is_const(x: Any) -> bool:
    return not isinstance(x, Sym)


class Sym:
    """A symbolic Python float/int/bool: operations on it are recorded, not performed."""

    __slots__ = ("graph", "name")

    def __init__(self, graph: _Graph, name: str) -> None:
        self.graph = graph
        self.name = name

    def _bin(self, op: str, other: Any, reflected: bool = False) -> Any:
        a, b = (other, self) if reflected else (self, other)
        # exact identities only: x+0, x-0, x*1, x/1 (sign of a zero aside)
        if op in ("+", "-") and _is_const(b) and b == 0 and not isinstance(b, bool):
            return a
        if op == "+" and _is_const(a) and a == 0 and not isinstance(a, bool):
            return b
        if op in ("*", "/") and _is_const(b) and b == 1:
            return a
        if op == "*" and _is_const(a) and a == 1:
            return b
        return self.graph.emit(op, a, b)

    def __add__(self, o: Any) -> Any:
        return self._bin("+", o)

    def __radd__(self, o: Any) -> Any:
        return self._bin("+", o, True)

    def __sub__(self, o: Any) -> Any:
        return self._bin("-", o)

    def __rsub__(self, o: Any) -> Any:
        return self._bin("-", o, True)

    def __mul__(self, o: Any) -> Any:
        return self._bin("*", o)

    def __rmul__(self, o: Any) -> Any:
        return self._bin("*", o, True)

    def __truediv__(self, o: Any) -> Any:
        return self._bin("/", o)

    def __rtruediv__(self, o: Any) -> Any:
        return self._bin("/", o, True)

    def __lt__(self, o: Any) -> Any:
        return self._bin("<", o)

    def __le__(self, o: Any) -> Any:
        return self._bin("<=", o)

    def __gt__(self, o: Any) -> Any:
        return self._bin(">", o)

    def __ge__(self, o: Any) -> Any:
        return self._bin(">=", o)

    def __neg__(self) -> Any:
        return self.graph.emit("neg", self)

    def __bool__(self) -> bool:
        raise TypeError("a traced value was used in a Python branch; the core must use xp.where")

    __hash__ = None  # type: ignore[assignment]


def _graph_of(*xs: Any) -> _Graph | None:
    for x in xs:
        if isinstance(x, Sym):
            return x.graph
    return None


_MATH = _scalar.UNARY  # the one table of elementwise functions (implementation and rounding)
# Constant folding uses the scalar namespace's float32 semantics (results rounded as the table says).
_FOLD = {f: getattr(_scalar, f) for f in _MATH}
_ROUNDED = tuple(f for f, row in _MATH.items() if row.rounding != "exact")  # float results, rounded


class _SymNamespace:
    """The slice of the Array API the core uses, recording onto the graph (constants fold)."""

    IS_SCALAR = True
    float32 = staticmethod(_scalar.float32)
    int32 = int

    def _call(self, fname: str, x: Any) -> Any:
        return _FOLD[fname](x) if _is_const(x) else x.graph.emit(fname, x)

    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> Any:
        del device
        return x if isinstance(x, Sym) or dtype is None else dtype(x)

    def astype(self, x: Any, dtype: Any) -> Any:
        return dtype(x) if _is_const(x) else x.graph.emit("int" if dtype is int else "float", x)

    def where(self, cond: Any, x1: Any, x2: Any) -> Any:
        if _is_const(cond):
            return _scalar.where(cond, x1, x2)
        if x1 is x2 or (_is_const(x1) and _is_const(x2) and x1 == x2 and type(x1) is type(x2)):
            return x1
        return cond.graph.emit("where", cond, x1, x2)

    def clip(self, x: Any, min: Any, max: Any) -> Any:  # noqa: A002
        g = _graph_of(x, min, max)
        return _scalar.clip(x, min, max) if g is None else g.emit("clip", x, min, max)

    def logical_and(self, x1: Any, x2: Any) -> Any:
        for a, b in ((x1, x2), (x2, x1)):
            if _is_const(a):
                return b if a else False
        return x1.graph.emit("and", x1, x2)

    def logical_not(self, x: Any) -> Any:
        return (not x) if _is_const(x) else x.graph.emit("not", x)


for _fname in _MATH:  # one recording method per elementwise function
    setattr(_SymNamespace, _fname, lambda self, x, _f=_fname: self._call(_f, x))

_SYM = _SymNamespace()

# --------------------------------------------------------------------------- code generation
# Templates per target; {0}, {1}, ... are the rendered arguments.

_BINARY = ("+", "-", "*", "/", "<", "<=", ">", ">=")
_PY_TEMPLATES = {
    "neg": "(-{0})",
    **{f: f"_{f}({{0}})" for f in _MATH},
    "float": "float({0})",
    "int": "int({0})",
    "where": "({1} if {0} else {2})",
    "clip": "({1} if {0} < {1} else ({2} if {0} > {2} else {0}))",  # as adaptive_sched._scalar.clip
    "and": "({0} and {1})",
    "not": "(not {0})",
}
_TORCH_TEMPLATES = {
    "neg": "(-{0})",
    **{f: f"torch.{f}({{0}})" for f, row in _MATH.items() if row.rounding != "float64"},
    # float64, rounded once to float32: what host mode computes (see adaptive_sched._scalar.UNARY)
    **{f: f"torch.{f}({{0}}.double()).float()" for f, row in _MATH.items() if row.rounding == "float64"},
    "float": "{0}.to(torch.float32)",
    "int": "{0}.to(torch.int32)",
    "where": "torch.where({0}, {1}, {2})",
    "clip": "torch.clamp({0}, {1}, {2})",
    "and": "torch.logical_and({0}, {1})",
    "not": "torch.logical_not({0})",
}
_SIGNAL_LIMIT_F32 = _scalar.round_f32(SIGNAL_LIMIT)


def _signal_f32(v: float, _b: Any = _scalar._BUF, _lim: float = _SIGNAL_LIMIT_F32) -> float:
    """A Python-float signal as float32: finite values clipped to +-SIGNAL_LIMIT first (NaN/inf kept)."""
    if -_lim <= v <= _lim:
        _b[0] = v
        return _b[0]
    if math.isnan(v) or v == math.inf or v == -math.inf:
        return v
    return _lim if v > 0 else -_lim


_GLOBALS: dict[str, Any] = {f"_{f}": row.fn for f, row in _MATH.items()}  # float64; rounded in the code
_GLOBALS.update(_NAN=math.nan, _INF=math.inf, _B=_scalar._BUF, _sig=_signal_f32)


def _lit(x: Any) -> str:
    if isinstance(x, Sym):
        return x.name
    if isinstance(x, (bool, int)):
        return repr(x)
    x = _scalar.round_f32(float(x))  # every constant is a float32 value, as the array backends see it
    if math.isfinite(x):
        return repr(x)
    return "_NAN" if math.isnan(x) else ("_INF" if x > 0 else "(-_INF)")


def _kinds(nodes: list[tuple[str, str, tuple[Any, ...]]], inputs: dict[str, str]) -> dict[str, str]:
    """Each value's kind: ``"i"`` (int), ``"f"`` (float32 value) or ``"b"`` (bool).

    ``inputs`` gives the kinds of the state's scalars and the signals; an
    elementwise function's kind is its :data:`adaptive_sched._scalar.UNARY` row's ``result``.
    """
    kind = dict(inputs)
    by_result = {"float": "f", "int": "i", "bool": "b"}

    def k(a: Any) -> str:
        if isinstance(a, Sym):
            return kind[a.name]
        return "b" if isinstance(a, bool) else ("i" if isinstance(a, int) else "f")

    for name, op, args in nodes:
        ks = [k(a) for a in args]
        row = _MATH.get(op)
        if row is not None:
            kind[name] = ks[0] if row.result == "input" else by_result[row.result]
        elif op in ("<", "<=", ">", ">=", "and", "not"):
            kind[name] = "b"
        elif op == "int":
            kind[name] = "i"
        elif op == "float":
            kind[name] = "f"
        elif op == "where":
            kind[name] = "f" if "f" in ks[1:] else ks[1]
        else:  # + - * / neg clip
            kind[name] = "f" if "f" in ks else ks[0]
    return kind


# Ops whose float result host mode rounds to float32: + - * /, the int -> float32
# conversion (exact below 2**24, rounded above, as astype does) and every elementwise
# function whose UNARY row is not "exact". Comparisons, where, clip and neg return one
# of their (float32) inputs exactly.
_ROUND_OPS = frozenset((*_BINARY[:4], "float", *_ROUNDED))


def _render(op: str, args: tuple[Any, ...], templates: dict[str, str]) -> str:
    lits = [_lit(a) for a in args]
    if op in _BINARY:
        return f"({lits[0]} {op} {lits[1]})"
    return templates[op].format(*lits)


HostUpdate = Callable[..., tuple[Any, Any, Any]]


def compile_update(
    config: Config, present: tuple[bool, ...], target: str = "python"
) -> tuple[HostUpdate, str]:
    """Trace the core's ``update`` for ``config`` and a pattern of supplied signals.

    Args:
      config: the controller's Config (its knobs become constants).
      present: for each of ``Signals``' fields, whether a value is supplied
        (``False`` = ``None``).
      target: ``"python"`` (Python floats, the host path) or ``"torch"`` (0-d
        tensors on one device: float32 state, int32 counters, float32 signals;
        every operation is a torch op, so nothing syncs with the host).

    Returns:
      ``(fn, source)``. ``fn(S, loss, reward, grad_norm, kl)`` takes the flat
      state list ``S`` (:func:`state_fields` order; updated in place) and the
      signals in :class:`Signals` order (NaN/inf allowed; the ones not ``present`` are ignored), and
      returns ``(lr, momentum, lr_scale)``. ``source`` is the generated code.
    """
    if target not in ("python", "torch"):
        raise ValueError(f"compile_update(target={target!r}) is invalid: must be 'python' or 'torch'.")
    cfg = init(config, xp=_scalar).config  # knobs as Python floats
    g = _Graph()
    if len(present) != len(SIGNAL_NAMES):
        raise ValueError(f"compile_update(present=...) needs one flag per signal {SIGNAL_NAMES}, got {present!r}")
    inputs = [Sym(g, f"s{i}") for i in range(len(state_fields(config)))]
    sig_names = [f"x_{name}" for name in Signals._fields]
    signals = Signals(*(Sym(g, n) if p else None for n, p in zip(sig_names, present)))
    new_state, hp = update_with(_SYM, unflatten_state(cfg, list(inputs)), signals)

    outputs = flatten_state(new_state)
    results = [hp.lr, hp.momentum, hp.lr_scale]
    changed = [out for inp, out in zip(inputs, outputs) if out is not inp]
    deps = {name: [a.name for a in args if isinstance(a, Sym)] for name, _, args in g.nodes}
    live: set[str] = set()
    stack = [x.name for x in changed + results if isinstance(x, Sym)]
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(deps.get(n, ()))

    templates = _TORCH_TEMPLATES if target == "torch" else _PY_TEMPLATES
    body = [f"    s{i} = S[{i}]" for i in range(len(inputs)) if f"s{i}" in live or inputs[i] in results]
    if target == "torch":
        body += [f"    {name} = {_render(op, args, templates)}" for name, op, args in g.nodes if name in live]
    else:
        # float32 semantics on Python floats: every float-valued result of _ROUND_OPS is
        # rounded to float32 (through a one-slot array('f')); signals are clipped and
        # rounded on entry.
        fields = state_fields(config)
        kind = _kinds(
            g.nodes,
            {**{f"s{i}": ("i" if dt == "int32" else "f") for i, (_, dt) in enumerate(fields)},
             **dict.fromkeys(sig_names, "f")},
        )  # fmt: skip
        body += ["    _b = _B"]
        body += [f"    {n} = _sig({n})" for n, p in zip(sig_names, present) if p]
        for name, op, args in g.nodes:
            if name not in live:
                continue
            expr = _render(op, args, templates)
            if kind[name] == "f" and op in _ROUND_OPS:
                body.append(f"    _b[0] = {expr}; {name} = _b[0]")
            else:
                body.append(f"    {name} = {expr}")
    for i, (inp, out) in enumerate(zip(inputs, outputs)):
        if out is not inp:
            value = _lit(out)
            if target == "torch" and not isinstance(out, Sym):  # a constant: keep the state a tensor
                value = f"torch.full_like(S[{i}], {value})"
            body.append(f"    S[{i}] = {value}")
    rendered = [_lit(r) for r in results]
    if target == "torch":  # results are tensors even where they fold to constants
        rendered = [r if isinstance(x, Sym) else f"torch.full_like(S[2], {r})" for r, x in zip(rendered, results)]
    body.append(f"    return ({', '.join(rendered)})")
    source = f"def host_update({', '.join(['S', *sig_names])}):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = dict(_GLOBALS)
    if target == "torch":
        import torch

        namespace["torch"] = torch
    exec(compile(source, f"<adaptive_sched update {target} {config.rules}>", "exec"), namespace)  # noqa: S102
    return namespace["host_update"], source


class HostController:
    """The controller as a flat state plus :func:`compile_update`'s functions.

    Holds the state's scalars in :attr:`flat` (:data:`STATE_FIELDS` order) and
    one compiled function per pattern of supplied signals (at most 2**len(Signals._fields)),
    compiled on first use. With ``target="python"`` it gives the same numbers as
    ``adaptive_sched.update`` on a state from ``init(config, xp=adaptive_sched._scalar)``;
    with ``target="torch"`` the state is 0-d tensors and every operation a torch op.

    Args:
      config: the controller's Config.
      state: the state to start from, default ``init(config, xp=adaptive_sched._scalar)``;
        required for ``target="torch"`` (it fixes the device).
      target: ``"python"`` or ``"torch"`` (see :func:`compile_update`).

    Attributes:
      config: the Config.
      flat: the state's scalars; the compiled functions update this list in place.
    """

    __slots__ = ("_fns", "_state_config", "_target", "config", "flat")

    def __init__(self, config: Config, state: State | None = None, target: str = "python") -> None:
        if state is None:
            if target != "python":
                raise ValueError(f"HostController(target={target!r}) needs a state (it fixes the device).")
            state = init(config, xp=_scalar)
        self.config = config
        self._target = target
        self._state_config = state.config  # as the target holds it, for unflatten_state
        self.flat: list[Any] = flatten_state(state)
        if target == "python":  # plain ints and floats (float32 values): fast, and pickle as floats
            self.flat = as_python(config, self.flat)
        self._fns: dict[tuple[bool, ...], HostUpdate] = {}

    def compiled(self, present: tuple[bool, ...]) -> HostUpdate:
        """The function for this pattern of supplied signals: ``fn(flat, loss, reward, grad_norm, kl)``."""
        fn = self._fns.get(present)
        if fn is None:
            fn = self._fns[present] = compile_update(self.config, present, self._target)[0]
        return fn

    def update(self, *args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        """One step with :class:`Signals`' fields as arguments; returns ``(lr, momentum, lr_scale)``.

        Signals are ``None`` or, for ``target="python"``, numbers (converted to
        Python floats: a numpy float32 would silently change the precision);
        for ``target="torch"``, float32 tensors on the state's device.
        """
        values = list(Signals(*args, **kwargs))
        fn = self.compiled(tuple(v is not None for v in values))
        if self._target == "python":
            values = [v if v is None or type(v) is float else float(v) for v in values]
        return fn(self.flat, *values)

    def unflatten(self, flat: list[Any]) -> State:
        """A flat list of this controller's scalars (e.g. a saved copy of :attr:`flat`) as a State.

        For ``target="python"`` the floats come back as :class:`adaptive_sched._scalar.F32`
        (as ``init(config, xp=adaptive_sched._scalar)`` makes them), so the generic core
        continues from this state with the same float32 arithmetic.
        """
        if self._target == "python":
            flat = [v if type(v) is int else _scalar.float32(v) for v in flat]
        return unflatten_state(self._state_config, list(flat))

    @property
    def state(self) -> State:
        """The current state as an :class:`~adaptive_sched.State`."""
        return self.unflatten(self.flat)

    @state.setter
    def state(self, state: State) -> None:
        flat = flatten_state(state)
        if self._target == "python":
            flat = as_python(self.config, flat)
        self.flat = flat
