"""The benchmark's methods: our presets and the peers, all as optax transformations.

Every method is built from a (possibly traced) base learning rate, so one
compiled program can ``vmap`` over the lr grid and the seeds. All methods of a
task also share one program: :func:`switch` holds every method's optax
transformation and applies the one picked by a traced index (each run still
sees exactly its own method's updates; the others' states are carried but
ignored). That keeps compilation to one program per task on a small CPU.

Every :class:`Method` says whether it is built from the run's length
(``uses_horizon``): ``cosine``, ``onecycle``, ``ours-horizon`` and ``ours-cosine``
are; ``constant``, ``plateau``, ``prodigy``, ``schedule-free``, ``ours`` and the
other presets are not.

Methods (Adam, ``b1=0.9``, no weight decay, unless stated):

* ours (``adaptive_sched.optax.inject_hyperparams(optax.adam, Config(**preset))``):
  the presets in :data:`PRESETS`, with ``min_lr = base/100`` and ``max_lr = base*10``
  at every grid point (:data:`LR_BOUNDS`). ``ours`` is
  ``adaptive_sched.recommended(base_lr)`` (horizon-free) and ``ours-horizon``
  ``adaptive_sched.recommended(base_lr, total_steps=steps)`` (the run's length known).
* ``constant``: ``optax.adam(lr)``.
* ``cosine``: ``optax.cosine_decay_schedule(lr, steps)`` (to 0).
* ``onecycle``: ``optax.cosine_onecycle_schedule(steps, peak_value=lr)`` (optax's
  defaults: 30% warm-up from ``lr/25``, down to ``lr/25e4``).
* ``plateau``: ``optax.contrib.reduce_on_plateau`` after Adam, fed ``value=loss``
  (:data:`PLATEAU`).
* ``prodigy``: ``optax.contrib.prodigy``, lr-free; its ``learning_rate`` (nominally
  1) is set to the grid multiplier, so it sweeps the same factors.
* ``schedule-free``: ``optax.contrib.schedule_free_adamw`` with the grid lr
  (it is schedule-free, not lr-free), evaluated at its averaged iterate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import adaptive_sched
from adaptive_sched._config import numeric_fields, rule_fields
from adaptive_sched._recommended import RECOMMENDED_RULES
from adaptive_sched.bench._tasks import Task, eval_params, read_events, read_hparams

__all__ = [
    "GRID",
    "LR_BOUNDS",
    "Method",
    "PEER_NAMES",
    "PLATEAU",
    "PRESETS",
    "RECOMMENDED",
    "RECOMMENDED_HORIZON",
    "SwitchState",
    "describe_config",
    "get_methods",
    "preset_config",
    "recommended_config",
    "switch",
]

GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
"""Multipliers of the task's base lr that every method is run at."""

LR_BOUNDS: tuple[float, float] = (0.01, 10.0)
"""Our configs use ``min_lr = base * 0.01`` and ``max_lr = base * 10`` at every grid point."""

PRESETS: dict[str, dict[str, Any]] = {
    "ours": dict(RECOMMENDED_RULES),
    "ours-horizon": dict(RECOMMENDED_RULES),
    "ours-quickstart": {"lr_rule": "trend", "reward_rule": "trend", "ema_reward_beta": 0.9},
    "ours-variance": {"lr_rule": "variance"},
    "ours-momentum": {"lr_rule": "trend", "momentum_rule": "relative"},
    "ours-gradnorm": {"lr_rule": "grad_norm"},
    "ours-reward-trend": {"reward_rule": "trend"},
    "ours-reward-scaling": {"reward_rule": "scaling"},
    "ours-kl": {"kl_rule": "target"},
    "ours-cosine": {"lr_rule": "trend", "reward_rule": "trend", "ema_reward_beta": 0.9},
}
"""Our named presets: ``Config`` keyword arguments (the lr bounds come from the grid).

``ours`` is :func:`adaptive_sched.recommended` (the stationarity-test
annealing rule times the grad-norm guard), horizon-free; ``ours-horizon`` the
same given the run's length (``recommended(base_lr, total_steps=steps)``:
the cooldown at the end of the run on top); ``ours-quickstart`` is the seed
README's quickstart (lr ``trend`` + reward ``trend``, ``ema_reward_beta=0.9``;
on tasks without a reward it is the loss trend rule), the bench's ``ours``
before the recommended configuration existed.
``ours-reward-scaling`` also gets ``reward_center``/``reward_span`` = the middle
and half-width of the task's reward range, and ``ours-kl`` gets the task's
``kl_target`` (:func:`preset_config`).
"""

RECOMMENDED = "ours"
"""The preset the headline judges without the run's length: the configuration we tell users to start from.

Its Config comes from :func:`recommended_config`, the one place to change when
the recommended configuration changes."""

RECOMMENDED_HORIZON = "ours-horizon"
"""The preset the headline judges with the run's length known: :func:`recommended_config` given ``total_steps``."""


def recommended_config(base_lr: Any, total_steps: int | None = None) -> adaptive_sched.Config:
    """The recommended configuration at ``base_lr`` (may be traced): the bench's :data:`RECOMMENDED` preset.

    ``adaptive_sched.recommended(base_lr=base_lr)``, whose default bounds are the
    bench's :data:`LR_BOUNDS` (``base/100 .. 10*base``); with ``total_steps``
    (the :data:`RECOMMENDED_HORIZON` preset)
    ``adaptive_sched.recommended(base_lr=base_lr, total_steps=total_steps)``.

    Args:
      base_lr: the base lr (a number, an array or a tracer).
      total_steps: the run's length, or None for the horizon-free configuration.
    """
    if total_steps is None:
        return adaptive_sched.recommended(base_lr=base_lr)
    return adaptive_sched.recommended(base_lr=base_lr, total_steps=total_steps)


def describe_config(config: adaptive_sched.Config) -> str:
    """``Config(...)`` with the fields that differ from ``Config()``'s defaults; lr bounds as multiples of ``base_lr``.

    ``config`` must hold concrete (not traced) values; ``base_lr`` itself is
    left out (the bench sets it per grid point).
    """
    default = adaptive_sched.Config()
    base = float(config.base_lr)
    parts = []
    for name in (*rule_fields(), *numeric_fields()):
        value = getattr(config, name)
        if name == "base_lr":
            continue
        if name in ("min_lr", "max_lr"):
            parts.append(f"{name}=lr*{float(value) / base:g}")
        elif isinstance(value, str):
            if value != getattr(default, name):
                parts.append(f"{name}={value!r}")
        elif float(value) != float(getattr(default, name)):
            parts.append(f"{name}={float(value):g}")
    return "Config(" + ", ".join(parts) + ")"


PRESET_FAMILY: dict[str, str] = {
    "ours": "the recommended configuration (adaptive_sched.recommended), horizon-free",
    "ours-horizon": "the recommended configuration given the run's length (total_steps=steps)",
    "ours-quickstart": "loss + reward trend (the original quickstart's rules)",
    "ours-variance": "loss-driven",
    "ours-momentum": "loss-driven (+momentum)",
    "ours-gradnorm": "grad-norm-driven",
    "ours-reward-trend": "reward-driven",
    "ours-reward-scaling": "reward-driven",
    "ours-kl": "KL-target",
    "ours-cosine": "quickstart x cosine base schedule (lr = cosine(t) x factor)",
}
PRESET_SCHEDULES: dict[str, str] = {"ours-cosine": "cosine"}
"""Presets whose base lr follows a time-based schedule (``schedule=`` of the optax
front door): ``"cosine"`` is ``optax.cosine_decay_schedule(lr, steps)``, the
same schedule as the ``cosine`` peer, times the controller's factor."""
HORIZON_PRESETS: tuple[str, ...] = (RECOMMENDED_HORIZON, *PRESET_SCHEDULES)
"""Our presets built from the run's length (``Method.uses_horizon``)."""
_RL_ONLY = ("ours-reward-trend", "ours-reward-scaling", "ours-kl")
_NON_RL_ONLY = ("ours-variance", "ours-momentum")

PLATEAU: dict[str, Any] = {
    "factor": 0.5,
    "patience": 5,
    "accumulation_size": 5,
    "rtol": 1e-4,
    "cooldown": 0,
    "min_scale": LR_BOUNDS[0],
}
"""``optax.contrib.reduce_on_plateau`` settings: halve the lr after 5 windows of
5 steps without a relative improvement of the window-mean loss of 1e-4, down
to ``base * 0.01`` (the same floor as ours)."""

_B1 = 0.9
PEER_NAMES: tuple[str, ...] = ("constant", "cosine", "onecycle", "plateau", "prodigy", "schedule-free")


@dataclasses.dataclass(frozen=True)
class Method:
    """One method of the benchmark.

    Attributes:
      name: short name used in tables and plots.
      family: ``"ours: ..."``, ``"time-based"``, ``"signal-based"`` or ``"lr-free"``.
      ours: whether this is one of our presets.
      description: how it is built (for the report).
      build: ``(lr, task, steps) -> tx``; ``lr`` may be a traced scalar.
      uses_horizon: whether ``build`` uses the run's length ``steps`` (a
        schedule over the run, or ``total_steps``); False for methods that
        would build the same transformation for any run length.
    """

    name: str
    family: str
    ours: bool
    description: str
    build: Callable[[Any, Task, int], optax.GradientTransformationExtraArgs] = dataclasses.field(
        repr=False, compare=False
    )
    uses_horizon: bool = False


def preset_config(name: str, task: Task, base_lr: Any, steps: int | None = None) -> adaptive_sched.Config:
    """Our preset ``name`` as a :class:`adaptive_sched.Config` for ``task`` at ``base_lr`` (may be traced).

    Args:
      name: a preset of :data:`PRESETS`.
      task: the task (task-dependent knobs, the default run length).
      base_lr: the base lr (a number, an array or a tracer).
      steps: the run's length, read by :data:`RECOMMENDED_HORIZON` only
        (default ``task.steps``).

    Raises:
      ValueError: for an unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"preset name={name!r} is invalid: must be one of {', '.join(PRESETS)}.")
    if name == RECOMMENDED:
        return recommended_config(base_lr)
    if name == RECOMMENDED_HORIZON:
        return recommended_config(base_lr, total_steps=task.steps if steps is None else steps)
    kwargs = dict(preset_kwargs(name, task))
    lo, hi = LR_BOUNDS
    return adaptive_sched.Config(base_lr=base_lr, min_lr=base_lr * lo, max_lr=base_lr * hi, **kwargs)


def preset_kwargs(name: str, task: Task) -> dict[str, Any]:
    """The Config keyword arguments of preset ``name`` on ``task`` (task-dependent values filled in)."""
    kwargs = dict(PRESETS[name])
    if name == "ours-reward-scaling" and task.reward_range is not None:
        low, high = task.reward_range
        kwargs.update(reward_center=(low + high) / 2.0, reward_span=(high - low) / 2.0)
    if name == "ours-kl" and "kl_target" in task.details:
        kwargs.update(kl_target=float(task.details["kl_target"]))
    return kwargs


_HORIZON_DESC = (
    "adaptive_sched.recommended(lr, total_steps=steps): ours' rules plus the cooldown over the end of the run "
    "(steps = the task's steps)"
)


def _ours(name: str) -> Method:
    def build(lr: Any, task: Task, steps: int) -> optax.GradientTransformationExtraArgs:
        cfg = preset_config(name, task, lr, steps)
        kwargs = {} if cfg.momentum_rule != "none" else {"b1": _B1}
        schedule = optax.cosine_decay_schedule(lr, steps) if name in PRESET_SCHEDULES else None
        return adaptive_sched.optax.inject_hyperparams(optax.adam, cfg, schedule=schedule)(**kwargs)

    if name == RECOMMENDED:
        desc = describe_config(recommended_config(1.0))
    elif name == RECOMMENDED_HORIZON:
        desc = _HORIZON_DESC
    else:
        desc = "Config(" + ", ".join(f"{k}={v!r}" for k, v in PRESETS[name].items()) + ")"
    return Method(name, f"ours: {PRESET_FAMILY[name]}", True, desc, build, uses_horizon=name in HORIZON_PRESETS)


def _adam(lr: Any) -> optax.GradientTransformationExtraArgs:
    return optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(learning_rate=lr, b1=_B1)


def _peers() -> list[Method]:
    def constant(lr: Any, task: Task, steps: int) -> Any:
        return _adam(lr)

    def cosine(lr: Any, task: Task, steps: int) -> Any:
        return _adam(optax.cosine_decay_schedule(lr, steps))

    def onecycle(lr: Any, task: Task, steps: int) -> Any:
        return _adam(optax.cosine_onecycle_schedule(steps, lr))

    def plateau(lr: Any, task: Task, steps: int) -> Any:
        return optax.chain(_adam(lr), optax.contrib.reduce_on_plateau(**PLATEAU))

    def prodigy(lr: Any, task: Task, steps: int) -> Any:
        inject = optax.inject_hyperparams(optax.contrib.prodigy, hyperparam_dtype=jnp.float32)
        return inject(learning_rate=lr / task.base_lr)

    def schedule_free(lr: Any, task: Task, steps: int) -> Any:
        inject = optax.inject_hyperparams(optax.contrib.schedule_free_adamw, hyperparam_dtype=jnp.float32)
        return inject(learning_rate=lr, b1=_B1)

    plateau_desc = ", ".join(f"{k}={v}" for k, v in PLATEAU.items())
    return [
        Method("constant", "time-based", False, "optax.adam(lr)", constant),
        Method(
            "cosine", "time-based", False, "optax.cosine_decay_schedule(lr, steps), to 0", cosine,
            uses_horizon=True,
        ),
        Method(
            "onecycle", "time-based", False,
            "optax.cosine_onecycle_schedule(steps, peak_value=lr), optax defaults", onecycle,
            uses_horizon=True,
        ),
        Method(
            "plateau", "signal-based", False,
            f"optax.chain(adam(lr), optax.contrib.reduce_on_plateau({plateau_desc})), value=loss",
            plateau,
        ),
        Method(
            "prodigy", "lr-free", False,
            "optax.contrib.prodigy(learning_rate=grid multiplier) (nominal 1)", prodigy,
        ),
        Method(
            "schedule-free", "lr-free", False,
            "optax.contrib.schedule_free_adamw(lr), evaluated at its averaged iterate", schedule_free,
        ),
    ]  # fmt: skip


def get_methods(task: Task, names: Sequence[str] | None = None) -> tuple[Method, ...]:
    """The methods run on ``task``: our presets that apply to it, then the peers.

    RL-only presets (reward, KL) run on RL tasks; ``ours-variance`` and
    ``ours-momentum`` (loss-shape rules) on the supervised tasks only.

    Args:
      task: the task.
      names: optional subset of method names (in this order); ``None`` = all.

    Raises:
      ValueError: if a name is unknown or does not apply to ``task``.
    """
    skip = _NON_RL_ONLY if task.is_rl else _RL_ONLY
    ours = [_ours(n) for n in PRESETS if n not in skip]
    available = {m.name: m for m in ours + _peers()}
    if names is None:
        return tuple(available.values())
    out = []
    for n in names:
        if n not in available:
            raise ValueError(
                f"method name={n!r} is invalid for task {task.name!r}: must be one of "
                f"{', '.join(available)}."
            )
        out.append(available[n])
    return tuple(out)


# --------------------------------------------------------------------------- switch


class SwitchState(NamedTuple):
    """State of :func:`switch`.

    Attributes:
      inner: every method's optimizer state.
      selected: which method this run applies (not ``index``, which would shadow ``tuple.index``).
      effective_lr: the lr the selected method used in the last update
        (:func:`adaptive_sched.bench._tasks.read_hparams` of its state).
      effective_momentum: its momentum (NaN where not readable).
      effective_events: the controller events of its last update
        (:func:`adaptive_sched.bench._tasks.read_events`; 0 for a peer).
    """

    inner: tuple[Any, ...]
    selected: jax.Array
    effective_lr: jax.Array
    effective_momentum: jax.Array
    effective_events: jax.Array

    def eval_params(self, params: Any) -> Any:
        """The selected method's evaluation parameters (schedule-free: its averaged iterate)."""
        return _select(self.selected, [eval_params(s, params) for s in self.inner])


def _select(index: jax.Array, options: Sequence[Any]) -> Any:
    out = options[0]
    for i, option in enumerate(options[1:], start=1):
        out = jax.tree.map(lambda a, b, i=i: jnp.where(index == i, b, a), out, option)
    return out


def switch(
    txs: Sequence[optax.GradientTransformation], index: jax.Array
) -> optax.GradientTransformationExtraArgs:
    """A transformation that applies ``txs[index]`` (``index`` may be traced).

    Every transformation's state is initialised and updated with the same
    gradients, params and extra args; only the selected one's updates are
    returned. So a run with ``index = i`` follows exactly the trajectory of
    ``txs[i]`` alone, and one compiled program serves all methods (under
    ``vmap`` every branch is computed: the cost is one optimizer update per
    method per step, small next to the model's forward and backward pass).
    """
    txs = [optax.with_extra_args_support(t) for t in txs]
    index = jnp.asarray(index, jnp.int32)

    def init_fn(params: Any) -> SwitchState:
        states = tuple(t.init(params) for t in txs)
        lr, mom = _select(index, [read_hparams(s) for s in states])
        return SwitchState(states, index, lr, mom, _select(index, [read_events(s) for s in states]))

    def update_fn(
        updates: Any, state: SwitchState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, SwitchState]:
        outs = [t.update(updates, s, params, **extra_args) for t, s in zip(txs, state.inner)]
        new_updates = _select(state.selected, [u for u, _ in outs])
        states = tuple(s for _, s in outs)
        lr, mom = _select(state.selected, [read_hparams(s) for s in states])
        events = _select(state.selected, [read_events(s) for s in states])
        return new_updates, SwitchState(states, state.selected, lr, mom, events)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def method_table(task: Task, methods: Sequence[Method]) -> list[Mapping[str, str]]:
    """Rows ``{name, family, uses_horizon, description}`` for the report, presets resolved for ``task``.

    ``uses_horizon`` is ``"yes"`` or ``"no"`` (:attr:`Method.uses_horizon`).
    """
    rows: list[Mapping[str, str]] = []
    for m in methods:
        desc = m.description
        if m.name == RECOMMENDED:
            desc = describe_config(recommended_config(task.base_lr))
        elif m.ours and m.name != RECOMMENDED_HORIZON:
            kw = preset_kwargs(m.name, task)
            desc = "Config(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
            if m.name in PRESET_SCHEDULES:
                desc += ", schedule=optax.cosine_decay_schedule(lr, steps)"
        rows.append(
            {"name": m.name, "family": m.family, "uses_horizon": "yes" if m.uses_horizon else "no", "description": desc}
        )
    return rows
