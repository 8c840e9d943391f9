"""Hugging Face front door: drive an :class:`AdaptiveScheduler` from ``transformers.Trainer`` and TRL.

:class:`AdaptiveSchedulerCallback` is a ``transformers.TrainerCallback`` that
feeds what the Trainer logs (the training loss, the gradient norm and, under
TRL's ``GRPOTrainer``/``RLOOTrainer``, the reward and the KL) to the
scheduler; :func:`adaptive_trainer_setup` builds the optimizer, the scheduler
and the callback for a Trainer in one line::

    setup = adaptive_trainer_setup(model, args, reward_rule="trend", kl_rule="target", kl_target=0.05)
    trainer = setup.attach(GRPOTrainer(model=model, args=args, ..., optimizers=setup.optimizers))

What the Trainer does, verified in transformers 5.24 (``transformers/trainer.py``)
and TRL 1.16 (``trl/trainer/grpo_trainer.py``); the callback is built on these facts:

* After each optimizer step the Trainer calls ``lr_scheduler.step()`` with no
  argument, unless the step was skipped (gradient accumulation micro-steps,
  fp16 overflow) (trainer.py:1940-1952). The lr it logs for step ``t`` is read
  just before that call (trainer.py:1947), so it is the lr step ``t`` used.
  :meth:`AdaptiveScheduler.step` makes a signal-less controller update there.
* Signals reach callbacks only through ``on_log``, every ``logging_steps``
  optimizer steps, after that step's ``lr_scheduler.step()`` and before the
  checkpoint of the same step is written (``_maybe_log_save_evaluate``,
  trainer.py:2238-2289). The logged ``loss`` is the mean over the logging
  window and over ranks; ``grad_norm`` is the last step's. ``on_log`` runs on
  every rank with the same values (trainer.py:4210-4211), so every rank's
  scheduler sets the same lr. TRL's ``log`` (grpo_trainer.py:3302-3322) adds
  the window means of ``reward``, ``reward_std``, ``rewards/<func>/mean``,
  ``entropy`` and ``kl`` (``kl`` only when ``beta != 0``, grpo_trainer.py:3267),
  and a metric whose values were all NaN in the window as ``None``.
  ``RLOOTrainer`` logs the same keys the same way (rloo_trainer.py:1711-1727, 1873-1883).
* ``scheduler.pt`` is ``torch.save(scheduler.state_dict())``
  (trainer.py:3584) and is read back with ``torch.load(weights_only=True)``
  (trainer.py:3995-3998); :meth:`AdaptiveScheduler.state_dict` holds plain values
  only, so it loads.
* On ``resume_from_checkpoint`` the Trainer restarts its running loss and
  ``_globalstep_last_logged`` at the checkpoint's step (trainer.py:1645-1649)
  and TRL starts with empty metric buffers: neither checkpoints the logging
  window. See :class:`AdaptiveSchedulerCallback` (``log_on_save``) for how
  the resumed controller still continues exactly.

Importing this module imports torch and transformers, never JAX.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch.optim import Optimizer
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from adaptive_sched import _rules
from adaptive_sched._config import Config
from adaptive_sched._signals import SIGNAL_NAMES, Intake, host_value

from ._callbacks import note_if_never_annealed, schedule_cooldown, signal_keys
from .torch import AdaptiveScheduler

__all__ = ["AdaptiveSchedulerCallback", "AdaptiveSetup", "LogKey", "adaptive_trainer_setup", "negated_objective"]

SIGNALS: tuple[str, ...] = SIGNAL_NAMES  # observe() takes each by its Signals name


LogKey = str | Callable[[Mapping[str, Any]], Any] | None
"""A ``<signal>_key=`` of :class:`AdaptiveSchedulerCallback`: a log key, a function of the log row, or None."""

_SPARSE_LOGGING = 10  # logging_steps above which on_train_begin warns that signal-driven rules see few values


def negated_objective(beta: float, reward_key: str = "reward", kl_key: str = "kl") -> Callable[[Mapping[str, Any]], Any]:
    """A ``loss_key`` that feeds ``-(reward - beta * kl)``, the negated KL-regularised RL objective.

    For GRPO/RLOO with a loss-driven rule (the recommended configuration's
    cut on a rising loss): TRL logs the reward and, when ``beta > 0``, the KL, but its
    "loss" is the policy-gradient surrogate, which does not fall as the policy
    improves. Use the Trainer's own ``beta`` (``args.beta``)::

        AdaptiveSchedulerCallback(sched, loss_key=negated_objective(beta=args.beta))

    Args:
      beta: the KL coefficient (finite, >= 0).
      reward_key: log key of the reward.
      kl_key: log key of the KL (not read when ``beta == 0``; TRL logs none then).

    Returns:
      ``logs -> value``: ``None`` for a row without the reward (not observed);
      NaN (counted as skipped) when the reward or, with ``beta > 0``, the KL is
      logged as ``None``/NaN or missing from a row that has the reward.

    Raises:
      ValueError: ``beta`` is not a finite number >= 0.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"negated_objective(beta={beta!r}) is invalid: must be a finite number >= 0.")
    beta = float(beta)

    def objective(logs: Mapping[str, Any]) -> float | None:
        if reward_key not in logs:
            return None
        reward = _logged(f"logged {reward_key!r}", logs[reward_key])
        if beta == 0.0:
            return -reward
        kl = _logged(f"logged {kl_key!r}", logs[kl_key]) if kl_key in logs else math.nan
        return -(reward - beta * kl)

    objective.__name__ = f"negated_objective(beta={beta!r})"
    return objective


def _logged(label: str, value: Any) -> float:
    """A logged value as a float (the core's intake); ``None`` (TRL's all-NaN metric) is NaN."""
    v = host_value(label, value, "a number or None")
    return math.nan if v is None else v


def _warn_if_sparse(args: TrainingArguments, config: Config) -> None:
    """Warn when the Trainer logs (and so feeds the controller) too rarely for its signal-driven rules."""
    steps = getattr(args, "logging_steps", 1)
    if _strategy(args, "logging_strategy") != "steps" or not steps > _SPARSE_LOGGING:  # a float < 1 is a ratio
        return
    readers = [
        f"{_rules.FAMILIES[r.family].field}={r.name!r}"
        for r in _rules.active_rules(config)
        if r.kind != "clock" and r.signal is not None
    ]
    if not readers:
        return
    detail = ""
    if config.anneal_rule == "slope":
        n = int(float(config.anneal_min_samples))
        detail += (
            f"; anneal_rule='slope' tests {n} optimizer steps into a leg, on the ~{max(1, n // int(steps))} "
            "values logged by then"
        )
    if getattr(config, "search_rule", "none") != "none":
        detail += f"; search_rule={config.search_rule!r} grows the lr once per logged value ({int(steps)} steps apart)"
    warnings.warn(
        f"AdaptiveSchedulerCallback: the Trainer logs, and so feeds the controller, every logging_steps={steps:g} "
        f"optimizer steps, and {', '.join(readers)} read logged signals{detail}. Set logging_steps to 1-10 for "
        "signal-driven rules.",
        UserWarning,
        stacklevel=2,
    )


class AdaptiveSchedulerCallback(TrainerCallback):
    """Feeds the signals ``transformers.Trainer`` (and TRL) log to an :class:`AdaptiveScheduler`.

    Pass the scheduler to the Trainer too, as ``optimizers=(optimizer,
    scheduler)``: the Trainer then calls ``scheduler.step()`` after each
    optimizer step (a signal-less controller update), and this callback's
    ``on_log`` calls ``scheduler.observe(..., replace=True)`` with the logged
    values, which *replaces* that step's update (the scheduler's one
    per-step mechanism, counted by its ``optimizer_steps``; see
    :class:`AdaptiveScheduler`). Hence:

    * **One controller update per optimizer step**, whatever
      ``logging_steps`` and ``gradient_accumulation_steps`` are: the
      controller's ``step`` equals the number of optimizer steps that ran.
    * **Each logged value is consumed exactly once**, at the optimizer step
      where it is logged: the value the Trainer logs for a window of ``k``
      steps (a mean over the window) is one observation; the other steps of
      the window are signal-less updates (EMAs and signal-driven rules hold,
      warmup and ``cyclical`` advance). If several logs carrying signals
      arrive within one optimizer step (a ``trainer.log`` of your own, a
      skipped fp16 step), they are merged into that step's single update
      (each signal: the mean of its finite values, by the core's
      :class:`~adaptive_sched._signals.Intake`); logs that arrive before
      the first optimizer step of the process are kept and merged into the
      first one.
    * **Not observed**: a key missing from a log row means the signal was not
      logged (``None`` to the controller); a key present with ``None`` (TRL's
      all-NaN metric), NaN or inf is passed as NaN, so the controller holds
      and counts it in ``State.skipped``. :attr:`consumed` and
      :attr:`skipped` count, per signal, the logged values this callback
      consumed and those that were not observable (this process only).

    **Exact resume.** The Trainer and TRL do not checkpoint their logging
    window: after ``resume_from_checkpoint`` the first log covers only the
    steps since the checkpoint, so if a window spanned the checkpoint the
    resumed run would log (and the controller would observe) different
    values. With ``log_on_save=True`` (default) the callback sets
    ``control.should_log`` whenever the Trainer is about to save (after
    ``DefaultFlowCallback`` decided it, in ``on_step_end`` and
    ``on_epoch_end``; at evaluation steps with ``save_strategy="best"``),
    which flushes the window before every checkpoint: no window spans one,
    the controller's state in ``scheduler.pt`` is complete, and a resumed run
    continues exactly like an uninterrupted one (same logged values, same
    controller states, same lrs) for any ``save_steps``/``logging_steps``.
    The price is an extra log row at save steps that are not logging steps.
    With ``log_on_save=False`` resume is exact only when every checkpoint
    step is also a logging step (``save_steps`` a multiple of
    ``logging_steps``, ``save_strategy`` and ``logging_strategy`` both
    ``"epoch"``, or ``logging_steps=1``). Exactness of the lr assumes the
    resumed model produces the same signals (it does when the framework
    restores its RNG and data order, as Trainer does on CPU). A log that
    merges into the checkpoint's step *after* resuming (the rare cases of
    the merge rule above, right at a checkpoint) goes into the next step.

    Args:
      scheduler: the :class:`AdaptiveScheduler` given to the Trainer in
        ``optimizers=(optimizer, scheduler)``.
      loss_key: log key of the training loss (default ``"loss"``); ``None``
        not to feed it. Under GRPO/RLOO the "loss" is the policy-gradient
        surrogate, which does not improve as training progresses; for a
        loss-driven rule (e.g. :func:`adaptive_sched.recommended`'s cut on
        a rising loss) pass ``loss_key=negated_objective(beta=args.beta)``, which
        feeds ``-(reward - beta * kl)`` built from each log row. Any key may
        be such a function of the log row (``logs -> number``, or ``None``
        when the row does not carry the signal).
      reward_key: log key of the reward (default ``"reward"``, TRL's weighted
        sum over reward functions; e.g. ``"rewards/my_func/mean"`` for one
        function); ``None`` not to feed it.
      kl_key: log key of the KL (default ``"kl"``, logged by TRL when
        ``beta != 0``); ``None`` not to feed it.
      grad_norm_key: log key of the gradient norm (default ``"grad_norm"``,
        the pre-clipping norm of the logging step); ``None`` not to feed it.
      log_on_save: flush the logging window at every checkpoint (see above).
      log_diagnostics: add the scheduler's :meth:`~AdaptiveScheduler.diagnostics`
        (each rule's factor on the lr, its statistics, its last event and the
        step of it) to every training log row, as ``<diagnostics_prefix><name>``
        (``adaptive/lr.evidence/factor``, ...), so they reach whatever
        ``report_to`` names (TensorBoard, W&B, MLflow, ...) and
        ``state.log_history``; computed at logging steps only. ``False``: not logged.
      diagnostics_prefix: the prefix of those log keys.

    **Diagnostics reach the loggers.** The Trainer runs its callbacks in
    order, its own reporting callbacks (``TensorBoardCallback``, ...) before
    the ones passed as ``callbacks=``, and hands a callback no reference to
    that order. :meth:`attach` puts this callback right after the Trainer's
    ``DefaultFlowCallback`` (``setup.attach(trainer)`` after building the
    Trainer), so its ``on_log`` observes the row's signals and adds the
    diagnostics before the reporting callbacks write the row. Not attached,
    the diagnostics still reach ``state.log_history`` but not the reporting
    callbacks, and ``on_train_begin`` warns when ``args.report_to`` names any.

    Raises:
      TypeError: ``scheduler`` is not an :class:`AdaptiveScheduler`, a key is
        neither a string nor ``None``, ``log_on_save`` or ``log_diagnostics`` is
        not a bool, or ``diagnostics_prefix`` not a str.
    """

    def __init__(
        self,
        scheduler: AdaptiveScheduler,
        *,
        loss_key: LogKey = "loss",
        reward_key: LogKey = "reward",
        kl_key: LogKey = "kl",
        grad_norm_key: LogKey = "grad_norm",
        log_on_save: bool = True,
        log_diagnostics: bool = True,
        diagnostics_prefix: str = "adaptive/",
    ) -> None:
        if not isinstance(scheduler, AdaptiveScheduler):
            raise TypeError(
                "AdaptiveSchedulerCallback(scheduler=...) expects an adaptive_sched AdaptiveScheduler, "
                f"got {type(scheduler).__name__}"
            )
        keys = signal_keys(functions=True, loss=loss_key, reward=reward_key, grad_norm=grad_norm_key, kl=kl_key)
        for name, flag in (("log_on_save", log_on_save), ("log_diagnostics", log_diagnostics)):
            if not isinstance(flag, bool):
                raise TypeError(f"AdaptiveSchedulerCallback({name}=...) must be a bool, got {flag!r}")
        if not isinstance(diagnostics_prefix, str):
            raise TypeError(f"AdaptiveSchedulerCallback(diagnostics_prefix=...) must be a str, got {diagnostics_prefix!r}")
        self.scheduler = scheduler
        self.keys: dict[str, LogKey] = keys
        self.log_on_save = log_on_save
        self.log_diagnostics = log_diagnostics
        self.diagnostics_prefix = diagnostics_prefix
        self._intake = Intake()  # the core's: this optimizer step's values, checked, converted and counted
        self._intake_at = 0  # the scheduler's optimizer-step count the intake's values belong to
        self._attached = False  # attach() placed it before the reporting callbacks
        self.consumed: dict[str, int] = self._intake.consumed
        self.skipped: dict[str, int] = self._intake.skipped
        if "grad_norm" in keys:
            # The logs feed the gradient norm, so observe()'s "pass model= or grad_norm=" advice does not apply to
            # a row without it (TRL's last, partial logging window): that row is "not observed". on_train_end
            # warns instead if the key never came.
            scheduler._warned.add("grad_norm")

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        reporters = [r for r in (getattr(args, "report_to", None) or []) if r != "none"]
        if self.log_diagnostics and reporters and not self._attached:
            warnings.warn(
                f"AdaptiveSchedulerCallback: the Trainer's reporting callbacks ({', '.join(reporters)}) run before "
                "this callback, so they write each row before its diagnostics are added (state.log_history still "
                "gets them); call setup.attach(trainer) (or callback.attach(trainer)) after building the Trainer.",
                UserWarning,
                stacklevel=2,
            )
        _warn_if_sparse(args, self.scheduler.config)
        schedule_cooldown(self.scheduler, getattr(state, "max_steps", None))  # the horizon, unless known or resumed
        sched = kwargs.get("lr_scheduler")
        inner = getattr(sched, "scheduler", sched)  # accelerate's AcceleratedScheduler wraps it
        if sched is not None and inner is not self.scheduler:
            raise ValueError(
                "AdaptiveSchedulerCallback: the Trainer's lr_scheduler is "
                f"{type(inner).__name__}, not this callback's AdaptiveScheduler; pass "
                "optimizers=(optimizer, scheduler) to the Trainer (adaptive_trainer_setup builds both)."
            )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        # DefaultFlowCallback (trainer_callback.py:568-606) runs before user callbacks and has set
        # should_save; _maybe_log_save_evaluate then logs before it saves (trainer.py:2252-2289).
        if self.log_on_save and control.should_save:
            control.should_log = True
        if self.log_on_save and control.should_evaluate and _strategy(args, "save_strategy") == "best":
            control.should_log = True  # "best" decides to save after evaluating (trainer.py:2281)
        return control

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        return self.on_step_end(args, state, control, **kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        note_if_never_annealed(self.scheduler, "AdaptiveSchedulerCallback")
        key = self.keys.get("grad_norm")
        never = float(self.scheduler.controller_state.grad_norm.decay_pow) >= 1.0  # no gradient norm ever observed
        if key is not None and never and self.scheduler.optimizer_steps > 0 and not getattr(self, "_noted_gn", False):
            self._noted_gn = True
            cfg = self.scheduler.config
            readers = [f"{f}={n!r}" for f, n in cfg.active if _rules.lookup(f[:-5], n).signal == "grad_norm"]
            if readers:
                warnings.warn(
                    f"AdaptiveSchedulerCallback: grad_norm_key={getattr(key, '__name__', key)!r} never appeared in the "
                    f"logs, so {', '.join(readers)} (which reads the gradient norm) held all run; log it or pass "
                    "grad_norm_key= naming the logged key.",
                    UserWarning,
                    stacklevel=2,
                )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            fed = self.consume(logs)
            if self.log_diagnostics and (fed or "learning_rate" in logs):  # a training row, not an eval row
                diag = self.diagnostic_logs()
                history = getattr(state, "log_history", None)
                # Trainer.log appended a copy of this row to the history just before on_log: complete it too
                if history and history[-1].get("step") == state.global_step and all(k in history[-1] for k in logs):
                    history[-1].update(diag)
                logs.update(diag)

    def diagnostic_logs(self) -> dict[str, float | int]:
        """The scheduler's :meth:`~AdaptiveScheduler.diagnostics` as log entries: ``{prefix + name: number}``.

        Plain numbers, as the Trainer's reporting callbacks take them (in
        device mode, one host transfer for all of them: it runs at logging
        steps only).
        """
        diag = self.scheduler.diagnostics()
        values = list(diag.values())
        if values and isinstance(values[0], torch.Tensor):
            ints = [v.dtype == torch.int32 for v in values]
            host = torch.stack([v.to(torch.float64) for v in values]).tolist()
            values = [int(x) if i else x for x, i in zip(host, ints)]
        return {self.diagnostics_prefix + k: v for k, v in zip(diag, values)}

    def attach(self, trainer: Any) -> Any:
        """Put this callback right after ``trainer``'s ``DefaultFlowCallback``, adding it if absent; returns ``trainer``.

        There its ``on_step_end`` sees the save decision (``log_on_save``) and
        its ``on_log`` adds the diagnostics before the reporting callbacks
        (``report_to``) write the row. Call it once the Trainer (or TRL
        trainer) is built, before ``train()``; calling it again is harmless.

        Raises:
          TypeError: ``trainer`` has no ``callback_handler`` (not a ``transformers.Trainer``).
        """
        from transformers.trainer_callback import DefaultFlowCallback

        handler = getattr(trainer, "callback_handler", None)
        callbacks = getattr(handler, "callbacks", None)
        if not isinstance(callbacks, list):
            raise TypeError(
                f"AdaptiveSchedulerCallback.attach(trainer=...) expects a transformers.Trainer, got {type(trainer).__name__}"
            )
        others = [c for c in callbacks if c is not self]
        flow = [i for i, c in enumerate(others) if isinstance(c, DefaultFlowCallback)]
        at = flow[-1] + 1 if flow else 0
        callbacks[:] = [*others[:at], self, *others[at:]]
        self._attached = True
        return trainer

    # ------------------------------------------------------------------ the accounting

    def consume(self, logs: dict[str, Any]) -> bool:
        """Consume one log row: observe its signals at this optimizer step (see the class docstring).

        ``on_log`` calls it; call it yourself only to feed a log row that
        does not go through ``Trainer.log``.

        Returns:
          Whether the row carried a signal.
        """
        n = self.scheduler.optimizer_steps
        if self._intake_at not in (0, n):  # values of an earlier, finished optimizer step
            self._intake.take()
        added = False
        for name, key in self.keys.items():
            if callable(key):
                raw = key(logs)
                if raw is None:
                    continue  # this row does not carry the signal
                self._intake.add(name, raw, f"{name}_key={getattr(key, '__name__', key)!r}(logs)")
            elif key in logs:
                self._intake.add(name, logs[key], f"logged {key!r}")
            else:
                continue
            added = True
        if not added or n == 0:
            return added  # nothing to observe, or no optimizer step yet in this process: merged into the first one
        # One update per optimizer step: this step's update is redone with the mean of its rows' values.
        self.scheduler.observe(replace=True, **self._intake.means())  # type: ignore[arg-type]
        self._intake_at = n
        return True


class AdaptiveSetup(NamedTuple):
    """What :func:`adaptive_trainer_setup` returns; unpacks as ``optimizer, scheduler, callback``."""

    optimizer: Optimizer
    scheduler: AdaptiveScheduler
    callback: AdaptiveSchedulerCallback

    @property
    def optimizers(self) -> tuple[Optimizer, AdaptiveScheduler]:
        """``(optimizer, scheduler)``, the Trainer's ``optimizers=`` argument."""
        return (self.optimizer, self.scheduler)

    @property
    def callbacks(self) -> list[TrainerCallback]:
        """``[callback]``, for the Trainer's ``callbacks=`` argument."""
        return [self.callback]

    def attach(self, trainer: Any) -> Any:
        """``callback.attach(trainer)``: the callback placed before the Trainer's reporting callbacks; returns ``trainer``."""
        return self.callback.attach(trainer)


def adaptive_trainer_setup(
    model: torch.nn.Module,
    args: TrainingArguments,
    config: Config | None = None,
    *,
    device_mode: bool = False,
    callback_kwargs: dict[str, Any] | None = None,
    **config_kwargs: Any,
) -> AdaptiveSetup:
    """Optimizer, :class:`AdaptiveScheduler` and :class:`AdaptiveSchedulerCallback` for a Trainer, in one line.

    The optimizer is the one the Trainer would build from ``args``
    (``args.optim``, ``learning_rate``, ``weight_decay`` with no decay on
    biases and norms, Adam betas and epsilon: ``Trainer.get_optimizer_cls_and_kwargs``
    and ``Trainer.get_decay_parameter_names``, trainer.py:1259-1326). A Trainer
    given ``optimizers=`` ignores ``args.lr_scheduler_type`` and
    ``args.warmup_steps``; so unless ``warmup_steps`` is given here, the
    controller's warmup is taken from ``args.warmup_steps`` (a count, or a
    ratio of ``args.max_steps``). ``base_lr`` defaults to
    ``args.learning_rate``; a config whose ``base_lr`` differs wins, with a
    warning::

        setup = adaptive_trainer_setup(model, args, reward_rule="trend", min_lr=1e-7, max_lr=1e-4)
        trainer = setup.attach(Trainer(model=model, args=args, ..., optimizers=setup.optimizers))

    Args:
      model: the model the Trainer trains (its trainable parameters are optimized).
      args: the ``TrainingArguments`` (or a TRL config) of that Trainer.
      config: a ready :class:`adaptive_sched.Config`; exclusive with ``config_kwargs``.
      device_mode: see :class:`AdaptiveScheduler`.
      callback_kwargs: keyword arguments of :class:`AdaptiveSchedulerCallback`
        (``reward_key=``, ``log_on_save=`` ...).
      **config_kwargs: :class:`adaptive_sched.Config` fields.

    Returns:
      ``AdaptiveSetup(optimizer, scheduler, callback)`` with the
      ``.optimizers`` and ``.callbacks`` shortcuts.

    Raises:
      TypeError: ``model`` is not a ``torch.nn.Module`` or ``args`` not ``TrainingArguments``.
      ValueError: ``args.optim`` names an optimizer built from the model
        rather than from parameter groups (GaLore, LOMO, Muon ...; build it
        yourself and use :class:`AdaptiveScheduler` with
        :class:`AdaptiveSchedulerCallback`), or warmup is a ratio and
        ``args.max_steps`` is not set.
    """
    from transformers import Trainer

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"adaptive_trainer_setup(model=...) expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(args, TrainingArguments):
        raise TypeError(
            f"adaptive_trainer_setup(args=...) expects transformers.TrainingArguments, got {type(args).__name__}"
        )
    # Trainer.create_optimizer passes its (any nn.Module) model here too (trainer.py:1303).
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)  # type: ignore[arg-type]
    special = sorted({"params", "model", "optimizer_dict"} & set(optimizer_kwargs))
    if special or not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, Optimizer)):
        raise ValueError(
            f"adaptive_trainer_setup: args.optim={args.optim!r} builds its optimizer from the model "
            f"({special or optimizer_cls}); build that optimizer yourself, then "
            "AdaptiveScheduler(optimizer, ...) and AdaptiveSchedulerCallback(scheduler)."
        )
    # get_decay_parameter_names does not use the Trainer instance (trainer.py:1408-1418).
    decay = set(Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    optimizer = optimizer_cls([g for g in groups if g["params"]], **optimizer_kwargs)
    if config is None and "warmup_steps" not in config_kwargs and args.warmup_steps > 0:
        if args.warmup_steps >= 1:
            config_kwargs["warmup_steps"] = float(int(args.warmup_steps))
        elif args.max_steps > 0:
            config_kwargs["warmup_steps"] = float(args.get_warmup_steps(args.max_steps))
        else:
            raise ValueError(
                f"adaptive_trainer_setup: args.warmup_steps={args.warmup_steps} is a ratio of the training steps, "
                "which are not known before the Trainer runs (args.max_steps is not set); pass warmup_steps= "
                "(a number of optimizer steps)."
            )
    scheduler = AdaptiveScheduler(optimizer, config, device_mode=device_mode, **config_kwargs)
    base_lr = float(scheduler.config.base_lr)
    if not math.isclose(base_lr, float(args.learning_rate), rel_tol=1e-6):
        warnings.warn(
            f"adaptive_trainer_setup: the config's base_lr={base_lr:g} differs from args.learning_rate="
            f"{float(args.learning_rate):g}; the scheduler sets the lr from base_lr (the Trainer's "
            "learning_rate is not used). Pass recommended(base_lr=args.learning_rate) or base_lr=... to match.",
            UserWarning,
            stacklevel=2,
        )
    callback = AdaptiveSchedulerCallback(scheduler, **(callback_kwargs or {}))
    return AdaptiveSetup(optimizer, scheduler, callback)


def _strategy(args: TrainingArguments, field: str) -> str:
    """``args.<field>`` (an ``IntervalStrategy``/``SaveStrategy`` or its string) as its string value."""
    s = getattr(args, field, None)
    return str(getattr(s, "value", s))
