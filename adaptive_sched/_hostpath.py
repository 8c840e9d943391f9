"""The host path: the core's own ``update``, traced once into straight-line Python (or torch) code.

A PyTorch training step on a small model costs ~100 us; a scheduler that wants to
be "cheaper than the step it rides on" gets about a microsecond. Running the
generic core on Python floats costs ~30 us per call, mostly in function calls,
NamedTuple construction and work for rules that are not active.

So, like ``jax.jit`` but for plain Python: :func:`compile_update` runs
:func:`adaptive_sched._core.step` once with a *symbolic* namespace whose
values record the operations applied to them. Config knobs are constants
(folded: ``log(trend_up)`` is computed once), rule names prune whole branches,
dead operations are dropped, and what remains is emitted as one flat function
over the state's scalars. There is exactly one implementation of every rule:
this module contains no rule logic, and the tests check the compiled function
against the generic core bit for bit.

For Python (host mode) the function is specialised on what almost every step
looks like: each supplied signal finite and, where a rule reads it, observed
before. Traced with those as constants, the core's ``where(ok, ...)`` and
``where(has_prev, ...)`` fold away; any other step falls through to the
general trace (compiled on first need).

Numeric semantics are float32 and come from one table,
:data:`adaptive_sched._scalar.OPS`: constants fold with float32 rounding and
are emitted as float32 values; the generated Python rounds every float result
of an operation whose row rounds (and of the int-to-float conversion), and
rounds the signals on entry; the torch target computes the ``"float64"`` rows
in float64 and rounds once. So host and device mode agree bit for bit.

Like JAX tracers, symbolic values refuse ``bool()``: a Python branch on a traced
value in the core fails loudly here instead of silently freezing one branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from adaptive_sched import _scalar
from adaptive_sched._config import Config
from adaptive_sched._core import EmaState, Signals, State, _usage, diagnostics, init, step
from adaptive_sched._rules import state_slots
from adaptive_sched._signals import SIGNAL_LIMIT, SIGNAL_NAMES

__all__ = [
    "STATE_FIELDS",
    "HostController",
    "as_python",
    "compile_diagnostics",
    "compile_update",
    "flatten_state",
    "state_fields",
    "unflatten_state",
]

_HEAD = ("step", "skipped", "log_scale", "current_momentum")
STATE_FIELDS: tuple[str, ...] = _HEAD + tuple(f"{sig}.{f}" for sig in SIGNAL_NAMES for f in EmaState._fields)
"""The flat layout of every state (one EMA per :class:`Signals` field); rule slots follow (:func:`state_fields`)."""
_NE = len(EmaState._fields)


def state_fields(config: Config) -> tuple[tuple[str, str], ...]:
    """``(name, dtype)`` of each flat scalar for ``config``: :data:`STATE_FIELDS`, then its rules' slots."""
    head = tuple((n, "int32" if i < 2 else "float32") for i, n in enumerate(STATE_FIELDS))
    return head + tuple((key, slot.dtype) for key, slot in state_slots(config))


def flatten_state(state: State) -> list[Any]:
    """The state's scalars in :func:`state_fields` order."""
    out = [state.step, state.skipped, state.log_scale, state.current_momentum]
    for name in SIGNAL_NAMES:
        out.extend(getattr(state, name))
    out.extend(state.rule_state.values())
    return out


def unflatten_state(config: Config, flat: list[Any]) -> State:
    """Inverse of :func:`flatten_state` (``config`` names the rule slots)."""
    h, n = len(_HEAD), len(SIGNAL_NAMES)
    emas = [EmaState(*flat[h + _NE * i : h + _NE * (i + 1)]) for i in range(n)]
    slots = dict(zip((key for key, _ in state_slots(config)), flat[h + _NE * n :]))
    return State._make([config, *flat[:h], *emas, slots])


def as_python(config: Config, flat: list[Any]) -> list[Any]:
    """``flat`` as Python ints and floats, by :func:`state_fields`' dtypes."""
    return [int(v) if dt == "int32" else float(v) for (_, dt), v in zip(state_fields(config), flat)]


# --------------------------------------------------------------------------- tracing

_OPS = _scalar.OPS
_FOLD = {f: getattr(_scalar, f) for f in _scalar.UNARY}  # constant folding: float32 semantics
_KIND = {"float": "f", "int": "i", "bool": "b"}


def _kind(x: Any) -> str:
    """A value's kind: ``"i"`` (int), ``"f"`` (float32 value) or ``"b"`` (bool)."""
    if isinstance(x, Sym):
        return x.kind
    return "b" if isinstance(x, bool) else ("i" if isinstance(x, int) else "f")


class _Graph:
    """The recorded operations: ``(name, op, args)`` nodes, hash-consed (common subexpressions once)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, str, tuple[Any, ...]]] = []
        self.kinds: dict[str, str] = {}
        self.memo: dict[tuple[Any, ...], Sym] = {}

    def emit(self, op: str, *args: Any) -> Sym:
        key = (op, *(("sym", a.name) if isinstance(a, Sym) else (type(a).__name__, a) for a in args))
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        kinds = [_kind(a) for a in args]
        row = _OPS.get(op)
        if row is not None and row.result != "input":
            kind = _KIND[row.result]
        elif op in ("<", "<=", ">", ">=", "and", "not"):
            kind = "b"
        elif op in ("int", "float"):
            kind = op[0]
        elif op == "where":
            kind = "f" if "f" in kinds[1:] else kinds[1]
        else:  # + - * neg abs clip
            kind = "f" if "f" in kinds else kinds[0]
        sym = Sym(self, f"v{len(self.nodes)}", kind)
        self.kinds[sym.name] = kind
        self.nodes.append((sym.name, op, args))
        self.memo[key] = sym
        return sym


def _is_const(x: Any) -> bool:
    return not isinstance(x, Sym)


class Sym:
    """A symbolic Python float/int/bool: operations on it are recorded, not performed.

    ``finite``: an input known to be finite (a supplied signal in the
    specialised trace): ``isfinite`` of it is the constant ``True``.
    ``seen``: an EMA's ``decay_pow`` known to be below 1 (the signal was
    observed before): ``sym < 1.0`` is the constant ``True``.
    """

    __slots__ = ("finite", "graph", "kind", "name", "seen")

    def __init__(self, graph: _Graph, name: str, kind: str = "f", finite: bool = False, seen: bool = False) -> None:
        self.graph = graph
        self.name = name
        self.kind = kind
        self.finite = finite
        self.seen = seen

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
        if self.seen and _is_const(o) and o == 1.0:
            return True
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


class _SymNamespace:
    """The slice of the Array API the core uses, recording onto the graph (constants fold)."""

    __name__ = "adaptive_sched._hostpath"  # read by array-api-compat's namespace tests
    IS_SCALAR = True
    float32 = staticmethod(_scalar.float32)
    int32 = int

    def _call(self, fname: str, x: Any) -> Any:
        if fname == "isfinite" and isinstance(x, Sym) and x.finite:
            return True
        return _FOLD[fname](x) if _is_const(x) else x.graph.emit(fname, x)

    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> Any:
        del device
        return x if isinstance(x, Sym) or dtype is None else dtype(x)

    def astype(self, x: Any, dtype: Any) -> Any:
        if _is_const(x):
            return dtype(x)
        kind = "i" if dtype is int else "f"
        return x if x.kind == kind else x.graph.emit("int" if kind == "i" else "float", x)

    def zeros_like(self, x: Any) -> Any:
        return {"b": False, "i": 0}.get(_kind(x), 0.0)

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


for _fname in _scalar.UNARY:  # one recording method per elementwise function
    setattr(_SymNamespace, _fname, lambda self, x, _f=_fname: self._call(_f, x))

_SYM = _SymNamespace()

# --------------------------------------------------------------------------- code generation
# Templates per target; {0}, {1}, ... are the rendered arguments. Derived from _scalar.OPS.

_COMPARE = ("<", "<=", ">", ">=")
_PY_TEMPLATES = {
    "neg": "(-{0})",
    **{f: f"_{f}({{0}})" for f in _scalar.UNARY},
    "abs": "({0} if {0} > 0.0 else 0.0 - {0})",  # abs() of every float (-0.0, NaN, -inf too), without a call
    "float": "float({0})",
    "int": "int({0})",
    "where": "({1} if {0} else {2})",
    "clip": "({1} if {0} < {1} else ({2} if {0} > {2} else {0}))",  # as adaptive_sched._scalar.clip
    "and": "({0} and {1})",
    "not": "(not {0})",
}
_TORCH_TEMPLATES = {
    "neg": "(-{0})",
    # "float64" rows: computed in float64 and rounded once to float32, as host mode computes them
    **{f: f"torch.{f}({{0}}.double()).float()" if row.rounding == "float64" else f"torch.{f}({{0}})"
       for f, row in _scalar.UNARY.items()},
    "float": "{0}.to(torch.float32)",
    "int": "{0}.to(torch.int32)",
    "where": "torch.where({0}, {1}, {2})",
    "clip": "torch.clamp({0}, {1}, {2})",
    "and": "torch.logical_and({0}, {1})",
    "not": "torch.logical_not({0})",
}  # fmt: skip
# Ops whose float result host mode rounds to float32: every OPS row that rounds, and the
# int -> float32 conversion (exact below 2**24, rounded above, as astype does). Comparisons,
# where, clip and neg return one of their (float32) inputs exactly.
_ROUND_OPS = frozenset((*(op for op, row in _OPS.items() if row.rounding != "exact"), "float"))
_SIGNAL_LIMIT_F32 = _scalar.round_f32(SIGNAL_LIMIT)


def _signal_f32(v: float, _b: Any = _scalar._BUF, _lim: float = _SIGNAL_LIMIT_F32) -> float:
    """A Python-float signal as float32: finite values clipped to +-SIGNAL_LIMIT first (NaN/inf kept)."""
    if -_lim <= v <= _lim:
        _b[0] = v
        return _b[0]
    if math.isnan(v) or v == math.inf or v == -math.inf:
        return v
    return _lim if v > 0 else -_lim


_GLOBALS: dict[str, Any] = {f"_{f}": row.fn for f, row in _scalar.UNARY.items()}  # float64; rounded in the code
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


def _render(op: str, args: tuple[Any, ...], templates: dict[str, str]) -> str:
    lits = [_lit(a) for a in args]
    if op in _scalar.BINARY or op in _COMPARE:
        return f"({lits[0]} {op} {lits[1]})"
    return templates[op].format(*lits)


HostUpdate = Callable[..., tuple[Any, Any, Any]]
_SIG_ARGS = [f"x_{name}" for name in Signals._fields]


def _seen_inputs(config: Config, present: tuple[bool, ...]) -> list[int]:
    """Flat indices of the ``decay_pow`` of each supplied signal a rule reads (the steady trace's "observed before")."""
    uses = _usage(config)[0]
    return [STATE_FIELDS.index(f"{sig}.decay_pow") for sig, p in zip(SIGNAL_NAMES, present) if p and uses[sig]]


def _trace(config: Config, present: tuple[bool, ...], finite: bool) -> tuple[_Graph, list[Any], list[Any], list[Any]]:
    """Run the core on symbols: ``(graph, inputs, outputs, results)``.

    ``finite``: the specialised trace: supplied signals are finite and every
    supplied signal a rule reads was observed before (the steady state of a run).
    """
    g = _Graph()
    fields = state_fields(config)
    seen = set(_seen_inputs(config, present)) if finite else set()
    inputs = [Sym(g, f"s{i}", "i" if dt == "int32" else "f", seen=i in seen) for i, (_, dt) in enumerate(fields)]
    signals = Signals(*(Sym(g, n, "f", finite) if p else None for n, p in zip(_SIG_ARGS, present)))
    new_state, hp, _ = step(unflatten_state(config, list(inputs)), signals, xp=_SYM)
    return g, inputs, flatten_state(new_state), [hp.lr, hp.momentum, hp.lr_scale]


def _body(config: Config, present: tuple[bool, ...], target: str, finite: bool) -> list[str]:
    """The statements of one traced update (indented by 4), ending in its ``return``."""
    return _emit(*_trace(config, present, finite), present, target, finite)


def _emit(
    g: _Graph, inputs: list[Any], outputs: list[Any], results: list[Any], present: tuple[bool, ...], target: str, finite: bool
) -> list[str]:
    """The statements (indented by 4) computing a trace's changed state entries and its ``results``, then ``return``."""
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
    if target == "python":
        body.append("    _b = _B")
        for n, p in zip(_SIG_ARGS, present):
            if p and n in live:  # float32 on entry: finite (clipped by the core) or, in the general trace, any
                body.append(f"    _b[0] = {n}; {n} = _b[0]" if finite else f"    {n} = _sig({n})")
    for name, op, args in g.nodes:
        if name not in live:
            continue
        expr = _render(op, args, templates)
        if target == "python" and op == "abs" and g.kinds[name] != "f":
            expr = f"_abs({_lit(args[0])})"  # the inline form is for floats
        if target == "python" and g.kinds[name] == "f" and op in _ROUND_OPS:
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
    if target == "torch":  # results are tensors even where they fold to constants (S[0] an int32, S[2] a float32)
        rendered = [
            r if isinstance(x, Sym) else f"torch.full_like(S[{0 if _kind(x) == 'i' else 2}], {r})"
            for r, x in zip(rendered, results)
        ]
    body.append(f"    return ({', '.join(rendered)})")
    return body


def _pattern(config: Config, present: tuple[bool, ...], target: str, namespace: dict[str, Any], tag: str) -> list[str]:
    """The statements (indented by 4) of the update for one pattern of supplied signals, ending in a ``return``.

    For ``"python"``: the steady-state trace under ``if`` every supplied
    signal is finite and, if a rule reads it, was observed before, else a
    call of ``_general_<tag>``, the general trace, compiled into ``namespace``
    on its first call.
    """
    if target == "torch":
        return _body(config, present, "torch", False)
    checks = [f"{n} - {n} == 0.0" for n, p in zip(_SIG_ARGS, present) if p]
    checks += [f"S[{i}] < 1.0" for i in _seen_inputs(config, present)]
    fast = _body(config, present, "python", True)
    if not checks:
        return fast
    name, args = f"_general_{tag}", [n if p else "None" for n, p in zip(_SIG_ARGS, present)]  # absent: ignored

    def general(*values: Any) -> Any:
        source = f"def {name}(S, {', '.join(_SIG_ARGS)}):\n" + "\n".join(_body(config, present, "python", False)) + "\n"
        exec(compile(source, f"<adaptive_sched update python-general {config.rules}>", "exec"), namespace)  # noqa: S102
        return namespace[name](*values)

    namespace[name] = general
    return [f"    if {' and '.join(checks)}:", *("    " + line for line in fast), f"    return {name}(S, {', '.join(args)})"]


def _namespace(target: str) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(_GLOBALS)
    if target == "torch":
        import torch

        namespace["torch"] = torch
    return namespace


def _check(present: tuple[bool, ...], target: str) -> tuple[bool, ...]:
    if target not in ("python", "torch"):
        raise ValueError(f"compile_update(target={target!r}) is invalid: must be 'python' or 'torch'.")
    if len(present) != len(SIGNAL_NAMES):
        raise ValueError(f"compile_update(present=...) needs one flag per signal {SIGNAL_NAMES}, got {present!r}")
    return tuple(bool(p) for p in present)


def compile_update(config: Config, present: tuple[bool, ...], target: str = "python") -> tuple[HostUpdate, str]:
    """Trace the core's update for ``config`` and a pattern of supplied signals.

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
      returns ``(lr, momentum, lr_scale)``. ``source`` is the generated code
      (for ``"python"``: the finite-signals body; steps with a NaN/inf signal
      run the general trace, compiled on first need).
    """
    present = _check(present, target)
    namespace = _namespace(target)
    lines = _pattern(config, present, target, namespace, "0")
    source = f"def host_update(S, {', '.join(_SIG_ARGS)}):\n" + "\n".join(lines) + "\n"
    exec(compile(source, f"<adaptive_sched update {target} {config.rules}>", "exec"), namespace)  # noqa: S102
    return namespace["host_update"], source


def compile_diagnostics(config: Config, target: str = "python") -> tuple[Callable[[list[Any]], tuple[Any, ...]], tuple[str, ...], str]:
    """:func:`adaptive_sched.diagnostics` for ``config``, traced into straight-line code like the update.

    One implementation (the core's), so the values are bit-equal to the
    generic core's on Python floats, and ``target="torch"`` computes them
    with torch ops on the state's device (no host sync), bit-equal to those.

    Returns:
      ``(fn, names, source)``: ``fn(S)`` takes the flat state (:func:`state_fields`
      order; not modified) and returns the values in the order of ``names``.
    """
    _check((False,) * len(SIGNAL_NAMES), target)
    g = _Graph()
    fields = state_fields(config)
    inputs = [Sym(g, f"s{i}", "i" if dt == "int32" else "f") for i, (_, dt) in enumerate(fields)]
    diag = diagnostics(unflatten_state(config, list(inputs)), xp=_SYM)
    lines = _emit(g, inputs, list(inputs), list(diag.values()), (False,) * len(SIGNAL_NAMES), target, False)
    source = "def diagnostics(S):\n" + "\n".join(lines) + "\n"
    namespace = _namespace(target)
    exec(compile(source, f"<adaptive_sched diagnostics {target} {config.rules}>", "exec"), namespace)  # noqa: S102
    return namespace["diagnostics"], tuple(diag), source


class HostController:
    """The controller as a flat state plus the core's update compiled for its config.

    Holds the state's scalars in :attr:`flat` (:data:`STATE_FIELDS` order).
    :attr:`run` is one generated function holding the update of every pattern
    of supplied signals seen so far (each compiled on first use, then the
    function is regenerated with it), so a call costs no dispatch beyond an
    ``if`` on which signals are ``None``. With ``target="python"`` it gives the
    same numbers as ``adaptive_sched.update`` on a state from
    ``init(config, xp=adaptive_sched._scalar)``; with ``target="torch"`` the state
    is 0-d tensors and every operation a torch op.

    Args:
      config: the controller's Config.
      state: the state to start from, default ``init(config, xp=adaptive_sched._scalar)``;
        required for ``target="torch"`` (it fixes the device).
      target: ``"python"`` or ``"torch"`` (see :func:`compile_update`).

    Attributes:
      config: the Config.
      flat: the state's scalars; the compiled functions update this list in place.
      run: ``run(flat, signals) -> (lr, momentum, lr_scale)``, ``signals`` a list in :class:`Signals` order.
    """

    __slots__ = ("_bodies", "_namespace", "_target", "config", "flat", "run")

    def __init__(self, config: Config, state: State | None = None, target: str = "python") -> None:
        if state is None:
            if target != "python":
                raise ValueError(f"HostController(target={target!r}) needs a state (it fixes the device).")
            state = init(config, xp=_scalar)
        self.config = config
        self._target = target
        self.flat: list[Any] = flatten_state(state)
        if target == "python":  # plain ints and floats (float32 values): fast, and pickle as floats
            self.flat = as_python(config, self.flat)
        self._bodies: dict[tuple[bool, ...], list[str]] = {}
        self._namespace = _namespace(target)
        self._namespace["_miss"] = self._miss
        self.run: HostUpdate = self._miss

    def _miss(self, S: list[Any], values: list[Any]) -> Any:
        """A pattern not compiled yet: add it to :attr:`run` and run it."""
        present = tuple(v is not None for v in values)
        self._bodies[present] = _pattern(self.config, present, self._target, self._namespace, str(len(self._bodies)))
        lines = ["def run(S, V):", f"    {', '.join(_SIG_ARGS)}, = V"]
        # the signal-less pattern (construction, step()) last: observe()'s patterns are checked first
        for k, (pat, body) in enumerate(sorted(self._bodies.items(), key=lambda item: not any(item[0]))):
            cond = " and ".join(f"{n} is {'not ' if p else ''}None" for n, p in zip(_SIG_ARGS, pat))
            lines += [f"    {'if' if k == 0 else 'elif'} {cond}:", *("    " + line for line in body)]
        lines.append("    return _miss(S, V)")
        source = "\n".join(lines) + "\n"
        exec(compile(source, f"<adaptive_sched update {self._target} {self.config.rules}>", "exec"), self._namespace)  # noqa: S102
        self.run = self._namespace["run"]
        return self.run(S, values)

    def update(self, *args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        """One step with :class:`Signals`' fields as arguments; returns ``(lr, momentum, lr_scale)``.

        Signals are ``None`` or, for ``target="python"``, numbers (converted to
        Python floats: a numpy float32 would silently change the precision);
        for ``target="torch"``, float32 tensors on the state's device.
        """
        values = list(Signals(*args, **kwargs))
        if self._target == "python":
            values = [v if v is None or type(v) is float else float(v) for v in values]
        return self.run(self.flat, values)

    def unflatten(self, flat: list[Any]) -> State:
        """A flat list of this controller's scalars (e.g. a saved copy of :attr:`flat`) as a State.

        For ``target="python"`` the floats come back as :class:`adaptive_sched._scalar.F32`
        (as ``init(config, xp=adaptive_sched._scalar)`` makes them), so the generic core
        continues from this state with the same float32 arithmetic.
        """
        if self._target == "python":
            flat = [v if type(v) is int else _scalar.float32(v) for v in flat]
        return unflatten_state(self.config, list(flat))

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
