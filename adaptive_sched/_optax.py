"""The optax front door: the controller as an optax transformation."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptive_sched import _rules
from adaptive_sched._checkpoint import check_rule_set, check_slots, rule_set_id
from adaptive_sched._config import Config, ensure_pytree
from adaptive_sched._core import Hparams, Signals, State, init, signal_usage, update
from adaptive_sched._core import diagnostics as _core_diagnostics
from adaptive_sched._signals import SIGNAL_NAMES, check_signal
from adaptive_sched._spmd import pmean_signals

__all__ = [
    "AdaptiveHyperparamsState",
    "PackedState",
    "ScaleByControllerState",
    "controller_state",
    "diagnostics",
    "inject_hyperparams",
    "momentum_arg",
    "scale_by_controller",
    "start_cooldown",
]

_MOMENTUM_ARGS = ("b1", "momentum")


@jax.tree_util.register_pytree_node_class
class PackedState:
    """The controller's :class:`~adaptive_sched.State` as two arrays: its float32 leaves and its int32 leaves.

    A jitted step pays about 2 us per array its arguments and results hold
    (measured on a CPU: an identity ``jax.jit`` over 10, 50 and 100 scalars
    costs 23, 107 and 199 us), and the controller's state is about 100
    scalars (the config's knobs and their logs, the signals' EMAs, the rules'
    slots). Packed, the optimizer state holds two arrays for all of them; the
    update unpacks and repacks them inside the compiled step, where the copies
    cost nothing measurable. The values are the state's, bit for bit.

    ``.state`` is the :class:`~adaptive_sched.State`; ``PackedState.of(state)`` packs one.
    The layout (the State's tree structure and which leaves are int32) is static
    pytree metadata: it depends only on the rule set.
    """

    __slots__ = ("floats", "ints", "layout")

    def __init__(self, floats: Any, ints: Any, layout: tuple[Any, tuple[bool, ...]]) -> None:
        self.floats, self.ints, self.layout = floats, ints, layout

    @classmethod
    def of(cls, state: State) -> PackedState:
        leaves, treedef = jax.tree.flatten(state)
        ints = tuple(jnp.result_type(v) == jnp.int32 for v in leaves)
        shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in leaves))  # stacked configs: a leading batch shape

        def stack(want: bool, dtype: Any) -> jax.Array:
            return jnp.stack([jnp.broadcast_to(jnp.asarray(v, dtype), shape) for v, i in zip(leaves, ints) if i == want], -1)

        return cls(stack(False, jnp.float32), stack(True, jnp.int32), (treedef, ints))

    @property
    def state(self) -> State:
        treedef, ints = self.layout
        floats, int_leaves = iter(jnp.unstack(self.floats, axis=-1)), iter(jnp.unstack(self.ints, axis=-1))
        return jax.tree.unflatten(treedef, [next(int_leaves if i else floats) for i in ints])

    def tree_flatten(self) -> tuple[tuple[Any, Any], Any]:
        return (self.floats, self.ints), self.layout

    @classmethod
    def tree_unflatten(cls, layout: Any, children: Any) -> PackedState:
        return cls(children[0], children[1], layout)

    def __repr__(self) -> str:
        return f"PackedState({self.state!r})"


class AdaptiveHyperparamsState(NamedTuple):
    """State of :func:`inject_hyperparams`.

    Attributes:
      packed: the controller's :class:`~adaptive_sched.State` as a
        :class:`PackedState` (two arrays); ``state.controller`` is the State (with its
        config: ``adaptive_sched.update(state.controller, signals)`` continues it).
      inner_state: the wrapped ``optax.inject_hyperparams`` state; its
        ``hyperparams`` dict holds the lr (and momentum) the controller set, so
        ``optax.tree.get(state, "learning_rate")`` reads the current lr.
      rules_id: int32 id of the config's rule set
        (:func:`adaptive_sched._checkpoint.rule_set_id`); an update refuses a
        state made under another rule set (e.g. a checkpoint restored into
        another config: a checkpointer restores leaves, so only a value can tell).
      previous_update: the last applied update (a tree like the params), from
        which the next update's ``grad_cos`` is computed, when a rule reads it
        (``recommended()``); ``()`` otherwise.
    """

    packed: PackedState
    inner_state: optax.InjectStatefulHyperparamsState
    rules_id: Any
    previous_update: Any = ()

    @property
    def controller(self) -> State:
        """The controller's :class:`~adaptive_sched.State` (unpacked from :attr:`packed`)."""
        return self.packed.state


class ScaleByControllerState(NamedTuple):
    """State of :func:`scale_by_controller`.

    Attributes:
      packed: the controller's :class:`~adaptive_sched.State`, packed; ``state.controller`` is the State (as in
        :class:`AdaptiveHyperparamsState`).
      hparams: the :class:`~adaptive_sched.Hparams` of the last update
        (``optax.tree.get(state, "lr_scale")`` reads the current scale).
      rules_id: as in :class:`AdaptiveHyperparamsState`.
      previous_update: ``()``: this transformation sees update directions, not gradients, so it computes no
        ``grad_cos`` (pass ``grad_cos=`` to feed one).
    """

    packed: PackedState
    hparams: Hparams
    rules_id: Any
    previous_update: Any = ()

    @property
    def controller(self) -> State:
        """The controller's :class:`~adaptive_sched.State` (unpacked from :attr:`packed`)."""
        return self.packed.state


def momentum_arg(factory: Callable[..., Any]) -> str | None:
    """The name of ``factory``'s momentum argument: ``"b1"`` (Adam family), ``"momentum"`` (SGD family) or None."""
    params = inspect.signature(factory).parameters
    for name in _MOMENTUM_ARGS:
        if name in params:
            return name
    return None


def _global_norm(updates: Any) -> jax.Array:
    """Global L2 norm, accumulated in float32 whatever the updates' dtype."""
    return optax.tree.norm(optax.tree.cast(updates, jnp.float32))


# The optax keyword of each signal: the loss arrives as optax's standard extra arg
# ``value=``, every other signal under its Signals field name.
def _keyword(signal: str) -> str:
    return "value" if signal == "loss" else signal


# The torch door's keywords that are not optax's (observe(loss=..., R=...)): optax users
# may pass them by habit, and optax.chain forwards unknown extra args silently, so the
# signal would be lost. torch keyword -> the optax keyword of the same signal.
_TORCH_KEYWORDS = {"loss": _keyword("loss"), "R": _keyword("reward")}


ensure_pytree()  # configs are pytrees wherever this front door runs


def _read_signals(config: Config) -> dict[str, str]:
    """The update keywords whose signal an active rule reads, with (the first) rule that reads it.

    Derived from the registry: ``{"value": "lr_rule='trend'", "reward": ...}``.
    """
    read: dict[str, str] = {}
    for rule in _rules.active_rules(config):
        if rule.signal is not None:
            read.setdefault(_keyword(rule.signal), f"{_rules.FAMILIES[rule.family].field}={rule.name!r}")
    return read


class _SignalReader:
    """Builds :class:`Signals` from an update's keywords; loud on misuse.

    The loss is ``value=`` (optax's convention); every other signal is the
    extra arg named as its :class:`~adaptive_sched.Signals` field (popped from
    ``extra_args``, so the inner optimizer does not see it). The gradient norm
    is the global norm of ``updates`` when a rule reads it and none is given.

    * a torch-door keyword (``loss=``, ``R=``) for a signal an active rule reads,
      with the optax keyword missing: ``TypeError`` naming the right keyword;
    * a rule reading the loss (lr or momentum rule) while ``value=`` is not
      given: one ``UserWarning`` per transformation (at trace time under
      ``jax.jit``, so never per step); a reward/KL rule without its signal is
      a legitimate setup (it holds) and does not warn;
    * a non-scalar signal: ``TypeError``/``ValueError`` naming the keyword.

    Other unknown extra args are ignored, as optax's transformations do
    (``optax.chain`` forwards every extra arg to every transformation).
    """

    def __init__(self, config: Config, sees_gradients: bool = True) -> None:
        self.config = config
        self.read = _read_signals(config)
        uses = signal_usage(config)[0]
        self.wants_grad_norm = uses["grad_norm"]
        # grad_cos needs the raw gradients: inject_hyperparams sees them; scale_by_controller, last in a chain,
        # sees the optimizer's update directions, whose consecutive cosine (momentum) reads "agree" at any lr.
        self.wants_grad_cos = uses["grad_cos"] and sees_gradients
        self.misses_grad_cos = uses["grad_cos"] and not sees_gradients
        self.warned = False

    def init_previous(self, params: Any) -> Any:
        """The previous applied update's slot in the state: zeros like ``params`` if a rule reads ``grad_cos``, else ``()``."""
        return jax.tree.map(jnp.zeros_like, params) if self.wants_grad_cos else ()

    def __call__(self, updates: Any, value: Any, extra_args: dict[str, Any], previous: Any = ()) -> Signals:
        given = {"value": value, **{n: extra_args.pop(n, None) for n in SIGNAL_NAMES if n != "loss"}}
        for wrong, right in _TORCH_KEYWORDS.items():
            if wrong in extra_args and right in self.read and given[right] is None:
                raise TypeError(
                    f"update({wrong}=...) is not a signal of the optax front door: {self.read[right]} reads "
                    f"{right}=; pass update(..., {right}={wrong}) instead ({wrong}= is the torch adapter's keyword)."
                )
        for name, v in given.items():
            check_signal(f"update({name}=...)", v, "a scalar (a 0-d array or a Python number)")
        loss_kw = _keyword("loss")
        if value is None and loss_kw in self.read and not self.warned:
            self.warned = True
            warnings.warn(
                f"adaptive_sched.optax: update() was called without value= but {self.read[loss_kw]} reads the "
                "loss; that rule holds and the lr (or momentum) it drives will not move. Pass the loss on every "
                "update: tx.update(grads, state, params, value=loss). (Warned once per transformation.)",
                UserWarning,
                stacklevel=3,
            )
        if self.misses_grad_cos and given["grad_cos"] is None and not self.warned:
            self.warned = True
            warnings.warn(
                "adaptive_sched.optax.scale_by_controller sees the updates of the optimizer before it, not the "
                "gradients, so it cannot compute grad_cos (the evidence rule then never grows the lr). Use "
                "adaptive_sched.optax.inject_hyperparams, or pass grad_cos= yourself. (Warned once per transformation.)",
                UserWarning,
                stacklevel=3,
            )
        if self.wants_grad_cos and given["grad_cos"] is None:
            norm, given["grad_cos"] = _direction(updates, previous)
            given["grad_norm"] = norm if given["grad_norm"] is None else given["grad_norm"]
        if given["grad_norm"] is None and self.wants_grad_norm:
            given["grad_norm"] = _global_norm(updates)
        return Signals(*(given[_keyword(n)] for n in SIGNAL_NAMES))


def _direction(updates: Any, previous: Any) -> tuple[jax.Array, jax.Array]:
    """``(||g||, cos(g, -u))`` of the incoming updates ``g`` and the previous applied update ``u``, in float32.

    ``cos`` is NaN (not observed: the controller holds) when either norm is 0
    (the first step: ``u`` is zeros) or a sum is not finite; the norm is the
    incoming updates' global norm (inf/NaN when they are). Three reductions
    over the parameters, no host sync.
    """
    g, u = optax.tree.cast(updates, jnp.float32), optax.tree.cast(previous, jnp.float32)
    gg = optax.tree.sum(jax.tree.map(lambda a: a * a, g))
    uu = optax.tree.sum(jax.tree.map(lambda a: a * a, u))
    gu = optax.tree.sum(jax.tree.map(lambda a, b: a * b, g, u))
    ok = (gg > 0) & (uu > 0) & jnp.isfinite(gg) & jnp.isfinite(uu) & jnp.isfinite(gu)
    cos = jnp.where(ok, -gu / jnp.where(ok, jnp.sqrt(gg) * jnp.sqrt(uu), 1.0), jnp.nan)
    return jnp.sqrt(gg), cos.astype(jnp.float32)


def _checked_rules_id(found: Any, config: Config) -> tuple[jax.Array, Any]:
    """The state's ``rules_id``, and whether it is ``config``'s (:func:`check_rule_set`).

    Eagerly a ``ValueError`` naming both rule sets. Under ``jax.jit`` the
    comparison is a value: a mismatch makes the hyperparameters NaN
    (:func:`_poisoned`), so such a step can never run quietly with another rule
    set's state; :func:`diagnostics` and :func:`controller_state` (eager) then
    raise the message. A ``lax.cond`` with a host callback to raise would cost
    about 180 us per step on a CPU (XLA splits the program at a conditional):
    more than the whole controller.
    """
    if not isinstance(found, jax.core.Tracer):
        check_rule_set(config, found)
        return jnp.asarray(found, jnp.int32), True
    found = jnp.asarray(found, jnp.int32)
    return found, found == rule_set_id(config)


def _poisoned(hp: Hparams, ok: Any) -> Hparams:
    """``hp``, NaN where ``ok`` is False (a state of another rule set under jit)."""
    if ok is True:
        return hp
    return Hparams(*(jnp.where(ok, v, jnp.nan) for v in hp))


def inject_hyperparams(
    factory: Callable[..., optax.GradientTransformation],
    config: Config,
    *,
    schedule: optax.Schedule | None = None,
    static_args: str | tuple[str, ...] = (),
    axis_name: Any = None,
) -> Callable[..., optax.GradientTransformationExtraArgs]:
    """Wrap an optax optimizer factory so the controller sets its lr (and momentum).

    Built on :func:`optax.inject_hyperparams`: the factory's ``learning_rate``
    (and, when ``config.momentum_rule != "none"``, its ``b1`` for Adam-family
    factories or ``momentum`` for SGD-family ones) become injected
    hyperparameters that the controller writes before every inner update.
    Hyperparameters are float32 whatever the params' dtype (bf16/fp16 params do
    not turn the lr into bf16).

    Each ``update(updates, state, params=None, *, value=None, reward=None,
    grad_norm=None, kl=None, **extra_args)``:

    1. builds :class:`~adaptive_sched.Signals` from ``value`` (the loss, the
       optax convention), ``reward``, ``kl`` and the gradient norm (the global
       norm of the incoming ``updates``, computed only when the ``grad_norm``
       rule is active and ``grad_norm=`` is not given);
    2. runs :func:`adaptive_sched.update`, which sets this step's lr and momentum;
    3. applies the inner optimizer with them (``value`` and any other extra
       args are forwarded to it; inner transformations that take none ignore them).

    Misuse is loud: ``loss=`` or ``R=`` (the torch adapter's keywords) for a
    signal an active rule reads raise ``TypeError`` naming ``value=`` /
    ``reward=``; a loss rule whose ``value=`` never arrives gives one
    ``UserWarning`` (at trace time under ``jax.jit``); a list or a non-scalar
    array as a signal raises. Other unknown extra args are ignored, as every
    optax transformation does.

    Example::

        tx = adaptive_sched.optax.inject_hyperparams(optax.adamw, config)(weight_decay=0.01)
        state = tx.init(params)
        updates, state = tx.update(grads, state, params, value=loss)
        lr = optax.tree.get(state, "learning_rate")

    Args:
      factory: an optax optimizer factory with a ``learning_rate`` argument
        (``optax.adamw``, ``optax.sgd``, ...).
      config: the controller's :class:`~adaptive_sched.Config`; ``base_lr``
        is the learning rate (do not also pass ``learning_rate``).
      schedule: optional time-based base schedule (any optax schedule, e.g.
        ``optax.warmup_cosine_decay_schedule``). It replaces the constant
        ``base_lr`` as the base the controller's factor multiplies:
        ``lr_t = clip(schedule(t) * lr_scale_t, min_lr, max_lr)``, with ``t``
        the number of updates so far.
      static_args: forwarded to :func:`optax.inject_hyperparams`.
      axis_name: inside ``jax.shard_map``/``jax.pmap``, the mapped axis (or
        tuple of axes) to average the signals over with ``lax.psum`` before
        the update (:func:`adaptive_sched.optax.pmean_signals`), so every
        device sets the same hyperparameters from the global signals. Leave
        it ``None`` under plain ``jit`` (global view) and on one device.

    Returns:
      A function taking the factory's other arguments and returning an
      ``optax.GradientTransformationExtraArgs``.

    Raises:
      TypeError: if ``config`` is not a Config.
      ValueError: if the factory has no ``learning_rate`` argument, or the
        momentum rule is active and the factory has neither ``b1`` nor
        ``momentum``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be an adaptive_sched.Config, got {type(config).__name__}")
    params = inspect.signature(factory).parameters
    if "learning_rate" not in params:
        raise ValueError(
            f"factory={getattr(factory, '__name__', factory)!r} has no 'learning_rate' argument; "
            "use adaptive_sched.optax.scale_by_controller(config) in an optax.chain instead."
        )
    mom_name = None
    if config.momentum_rule != "none":
        mom_name = momentum_arg(factory)
        if mom_name is None:
            raise ValueError(
                f"config.momentum_rule={config.momentum_rule!r} but factory="
                f"{getattr(factory, '__name__', factory)!r} has no momentum argument "
                f"(one of {', '.join(_MOMENTUM_ARGS)}); use momentum_rule='none'."
            )
    injected = optax.inject_hyperparams(factory, static_args=static_args, hyperparam_dtype=jnp.float32)

    def make(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
        bound = inspect.signature(factory).bind_partial(*args, **kwargs)
        if "learning_rate" in bound.arguments:
            raise ValueError(
                "learning_rate is set by the controller: leave it out and set Config.base_lr "
                f"(got learning_rate={bound.arguments['learning_rate']!r})."
            )
        kwargs = dict(bound.arguments)
        kwargs["learning_rate"] = jnp.asarray(config.base_lr, jnp.float32)
        if mom_name is not None:
            if mom_name in bound.arguments:
                raise ValueError(
                    f"{mom_name} is set by the controller (momentum_rule={config.momentum_rule!r}): "
                    f"leave it out and set Config.base_momentum (got {mom_name}={bound.arguments[mom_name]!r})."
                )
            kwargs[mom_name] = jnp.asarray(config.base_momentum, jnp.float32)
        inner = injected(**kwargs)
        read_signals = _SignalReader(config)

        def init_fn(params: Any) -> AdaptiveHyperparamsState:
            return AdaptiveHyperparamsState(
                packed=PackedState.of(init(config, xp=jnp)),
                inner_state=inner.init(params),
                rules_id=jnp.asarray(rule_set_id(config), jnp.int32),
                previous_update=read_signals.init_previous(params),
            )

        def update_fn(
            updates: Any,
            state: AdaptiveHyperparamsState,
            params: Any = None,
            *,
            value: Any = None,
            **extra_args: Any,
        ) -> tuple[Any, AdaptiveHyperparamsState]:
            rules_id, same = _checked_rules_id(state.rules_id, config)
            before = state.controller
            check_slots(config, before)
            signals = read_signals(updates, value, extra_args, state.previous_update)
            signals = pmean_signals(signals, axis_name)  # SPMD: the mean over the mapped axis
            controller, hp = update(before, signals)
            hp = _poisoned(hp, same)
            hyperparams = dict(state.inner_state.hyperparams)
            hyperparams["learning_rate"] = _scheduled_lr(hp, before, schedule)
            if mom_name is not None:
                hyperparams[mom_name] = hp.momentum
            inner_state = state.inner_state._replace(hyperparams=hyperparams)
            if value is not None:
                extra_args["value"] = value
            updates, inner_state = inner.update(updates, inner_state, params, **extra_args)
            previous = updates if read_signals.wants_grad_cos else ()
            return updates, AdaptiveHyperparamsState(PackedState.of(controller), inner_state, rules_id, previous)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    return make


def _scheduled_lr(hp: Hparams, controller: State, schedule: optax.Schedule | None) -> Any:
    """The lr with a base ``schedule``: ``clip(schedule(t) * lr_scale_t, min_lr, max_lr)``, ``t`` the updates before this one."""
    if schedule is None:
        return hp.lr
    lr = jnp.asarray(schedule(controller.step), jnp.float32) * hp.lr_scale
    lo, hi = (jnp.asarray(controller.config.knobs[b], jnp.float32) for b in ("min_lr", "max_lr"))
    return jnp.clip(lr, lo, hi).astype(jnp.float32)


def scale_by_controller(
    config: Config, *, schedule: optax.Schedule | None = None, axis_name: Any = None
) -> optax.GradientTransformationExtraArgs:
    """Scale updates by the controller's ``lr / base_lr``, for any optax chain.

    The signal-driven analogue of :func:`optax.contrib.reduce_on_plateau`: put it
    last in a chain whose optimizer uses ``learning_rate=config.base_lr``, and
    the effective lr is the controller's. Update signature as in
    :func:`inject_hyperparams`; the gradient norm (``grad_norm`` rule) is that
    of the updates arriving here unless ``grad_norm=`` is given, so pass the
    raw gradient norm explicitly if that is what the rule should see.

    Example::

        tx = optax.chain(optax.adam(config.base_lr), adaptive_sched.optax.scale_by_controller(config))
        updates, state = tx.update(grads, state, params, value=loss)

    With ``schedule`` (an optax schedule giving the base lr per step), the
    scale is ``clip(schedule(t) * lr_scale_t, min_lr, max_lr) / base_lr``, so
    the chain's optimizer should still use ``learning_rate=config.base_lr``.

    ``axis_name``: as in :func:`inject_hyperparams` (signals averaged over a
    ``shard_map``/``pmap`` axis).

    Raises:
      ValueError: if ``config.momentum_rule`` is not ``"none"`` (scaling updates
        cannot set an optimizer's momentum; use :func:`inject_hyperparams`).
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be an adaptive_sched.Config, got {type(config).__name__}")
    if config.momentum_rule != "none":
        raise ValueError(
            f"config.momentum_rule={config.momentum_rule!r} cannot be applied by scaling updates; "
            "use momentum_rule='none' or adaptive_sched.optax.inject_hyperparams."
        )

    read_signals = _SignalReader(config, sees_gradients=False)

    def init_fn(params: Any) -> ScaleByControllerState:
        controller = init(config, xp=jnp)
        one = jnp.ones((), jnp.float32)
        # A copy of the momentum: a leaf shared with the controller could not be donated.
        momentum = jnp.array(controller.current_momentum, copy=True)
        hp = Hparams(lr=jnp.asarray(config.base_lr, jnp.float32), momentum=momentum, lr_scale=one)
        return ScaleByControllerState(
            packed=PackedState.of(controller), hparams=hp, rules_id=jnp.asarray(rule_set_id(config), jnp.int32),
            previous_update=read_signals.init_previous(params),
        )

    def update_fn(
        updates: Any,
        state: ScaleByControllerState,
        params: Any = None,
        *,
        value: Any = None,
        **extra_args: Any,
    ) -> tuple[Any, ScaleByControllerState]:
        del params
        rules_id, same = _checked_rules_id(state.rules_id, config)
        before = state.controller
        check_slots(config, before)
        signals = read_signals(updates, value, extra_args, state.previous_update)
        signals = pmean_signals(signals, axis_name)  # SPMD: the mean over the mapped axis
        controller, hp = update(before, signals)
        hp = _poisoned(hp, same)
        if schedule is not None:
            lr = _scheduled_lr(hp, before, schedule)
            hp = hp._replace(lr=lr, lr_scale=lr / jnp.asarray(controller.config.knobs["base_lr"], jnp.float32))
        updates = jax.tree.map(lambda u: (u * hp.lr_scale).astype(u.dtype), updates)
        previous = updates if read_signals.wants_grad_cos else ()
        return updates, ScaleByControllerState(PackedState.of(controller), hp, rules_id, previous)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def start_cooldown(opt_state: Any, steps: Any, start: Any = None) -> Any:
    """``opt_state`` with the cooldown started in every controller it holds (pure, jit-safe).

    The optax form of :func:`adaptive_sched.start_cooldown`: finds each
    :class:`AdaptiveHyperparamsState` / :class:`ScaleByControllerState` in
    ``opt_state`` (inside ``optax.chain``, :func:`multi_steps`, ...) and starts
    a cooldown of ``steps`` updates after step ``start`` (default: the
    controller's current step) in its controller, so the lr decays to
    ``min_lr`` on top of the adaptive lr::

        opt_state = adaptive_sched.optax.start_cooldown(opt_state, steps=1000)

    Args:
      opt_state: the optimizer state; its controllers' ``cooldown_rule`` must not be ``"none"``.
      steps: the cooldown's length in updates (a whole number >= 1; may be traced).
      start: the step after which it begins (default: now; may be traced).

    Raises:
      ValueError: no controller state in ``opt_state``, or as :func:`adaptive_sched.start_cooldown`.
    """
    from adaptive_sched.rules.cooldown import start_cooldown_for

    found = []

    def visit(node: Any) -> Any:
        if isinstance(node, (AdaptiveHyperparamsState, ScaleByControllerState)):
            found.append(node)
            new = start_cooldown_for(node.controller, steps, start, caller="adaptive_sched.optax.start_cooldown")
            return node._replace(packed=PackedState.of(new))
        return node

    is_ours = lambda x: isinstance(x, (AdaptiveHyperparamsState, ScaleByControllerState))  # noqa: E731
    out = jax.tree.map(visit, opt_state, is_leaf=is_ours)
    if not found:
        raise ValueError(
            "adaptive_sched.optax.start_cooldown: opt_state holds no adaptive_sched controller state (from "
            "adaptive_sched.optax.inject_hyperparams or scale_by_controller)"
        )
    return out


def diagnostics(opt_state: Any) -> dict[str, Any]:
    """What the controller in ``opt_state`` decided at its last update and why (pure, jit-safe).

    :func:`adaptive_sched.diagnostics` of the one
    :class:`AdaptiveHyperparamsState` / :class:`ScaleByControllerState` in
    ``opt_state`` (found inside ``optax.chain``, :func:`multi_steps`, ...):
    ``{name: value}`` with each active rule's factor on the lr, its
    statistics and its last event with the step of it. ``"lr"`` and
    ``"lr_scale"`` are what the transformation used (with a base
    ``schedule``: the scheduled lr)::

        diag = adaptive_sched.optax.diagnostics(opt_state)
        print(adaptive_sched.format_diagnostics(adaptive_sched.optax.controller_state(opt_state), diag))

    Computed only when called (e.g. at logging steps), never by ``tx.update``.

    Args:
      opt_state: the optimizer state.

    Raises:
      ValueError: ``opt_state`` holds no controller state, or more than one.
    """
    node = _one_node(opt_state, "diagnostics")
    controller = node.controller
    config = controller.config
    check_slots(config, controller)
    out = _core_diagnostics(controller)
    if isinstance(node, AdaptiveHyperparamsState):
        lr = jnp.asarray(node.inner_state.hyperparams["learning_rate"], jnp.float32)
        out["lr"], out["lr_scale"] = lr, lr / jnp.asarray(config.knobs["base_lr"], jnp.float32)
    else:
        out["lr"], out["lr_scale"] = node.hparams.lr, node.hparams.lr_scale
    return out


def _one_node(opt_state: Any, caller: str) -> AdaptiveHyperparamsState | ScaleByControllerState:
    """The one controller node in ``opt_state`` (inside ``optax.chain``, :func:`multi_steps`, ...)."""
    found: list[Any] = []
    is_ours = lambda x: isinstance(x, (AdaptiveHyperparamsState, ScaleByControllerState))  # noqa: E731
    jax.tree.map(lambda node: found.append(node) if is_ours(node) else None, opt_state, is_leaf=is_ours)
    if len(found) != 1:
        raise ValueError(
            f"{caller}: opt_state holds {len(found)} adaptive_sched controller states (from "
            "adaptive_sched.optax.inject_hyperparams or scale_by_controller); pass the part that holds one"
        )
    node = found[0]
    if not isinstance(node.rules_id, jax.core.Tracer):  # restored from another rule set: say so (jit made it NaN)
        check_rule_set(node.controller.config, node.rules_id)
    return node


def controller_state(opt_state: Any) -> State:
    """The controller's :class:`~adaptive_sched.State` inside ``opt_state`` (it carries its config).

    For the core's functions on an optax run: ``adaptive_sched.format_diagnostics(controller_state(opt_state))``.

    Raises:
      ValueError: ``opt_state`` holds no controller state, or more than one.
    """
    return _one_node(opt_state, "controller_state").controller
