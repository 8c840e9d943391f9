"""PyTorch Lightning front door: a ``Callback`` that feeds training signals to an :class:`AdaptiveScheduler`.

Return the scheduler from ``configure_optimizers`` with ``interval="step"``
(so Lightning steps it, checkpoints it and restores it like any scheduler)
and add :class:`AdaptiveSchedulerCallback` to the Trainer::

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        sched = AdaptiveScheduler(opt, lr_rule="trend", min_lr=1e-5, max_lr=1e-2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = L.Trainer(callbacks=[AdaptiveSchedulerCallback()], ...)

What Lightning does, verified in Lightning 2.6 (``lightning/pytorch``):

* ``AdaptiveScheduler`` subclasses ``torch.optim.lr_scheduler.LRScheduler``,
  so Lightning accepts it without an ``lr_scheduler_step`` override
  (core/optimizer.py:339-348).
* Per training batch: ``training_step`` and the optimizer step, then the
  ``interval="step"`` schedulers' ``step()`` (skipped while accumulating
  gradients) (loops/training_epoch_loop.py:358-360, 456-460), then the
  callbacks' ``on_train_batch_end`` and after them the LightningModule's
  (training_epoch_loop.py:375-376). Lightning moves every ``ModelCheckpoint``
  to the end of the callback list (trainer/connectors/callback_connector.py:240-270),
  so this callback's ``on_train_batch_end`` runs before
  ``ModelCheckpoint(every_n_train_steps=k)`` saves: the checkpoint holds the
  controller state *including* this step's signals. (Calling ``observe``
  from the LightningModule's own ``on_train_batch_end`` instead runs after the
  save, and resume is then not exact.)
* ``outputs`` in ``on_train_batch_end`` is ``training_step``'s return value
  with the loss divided by ``accumulate_grad_batches``
  (loops/optimization/automatic.py:62-89, 329); the callback multiplies it
  back.

Importing this module imports torch and lightning, never JAX.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import lightning.pytorch as pl
import torch

from adaptive_sched._signals import SIGNAL_NAMES, Intake, host_value, pack, unpack

from ._callbacks import note_if_never_annealed, schedule_cooldown, signal_keys
from .torch import AdaptiveScheduler, grad_norm

__all__ = ["AdaptiveSchedulerCallback"]

_OBSERVE_ARG = {name: "R" if name == "reward" else name for name in SIGNAL_NAMES}
SIGNALS: tuple[str, ...] = tuple(_OBSERVE_ARG)
_STATE_KEYS = frozenset({"pending", "consumed", "skipped"})


class AdaptiveSchedulerCallback(pl.Callback):
    """Feeds each training batch's signals to the :class:`AdaptiveScheduler` of ``configure_optimizers``.

    **Where signals come from.** ``training_step``'s return value: a tensor
    is the loss; from a dict, the entries named by ``loss_key`` (Lightning's
    ``"loss"``), ``reward_key``, ``kl_key`` and ``grad_norm_key`` (e.g.
    ``return {"loss": loss, "reward": reward.detach()}``). Each returned value
    is consumed exactly once. Names in ``logged_keys`` are read from
    ``trainer.callback_metrics`` (metrics logged with
    ``self.log(name, value, on_step=True)``) at every optimizer step;
    Lightning keeps the last value of a metric that was not logged in a step,
    so use ``logged_keys`` only for metrics logged at every step (return the
    others from ``training_step``). When a rule reads the gradient norm as its
    signal (``lr_rule="grad_norm"``) and neither source gives one, the
    callback measures the global L2 norm of the LightningModule's gradients in
    ``on_before_optimizer_step`` (accumulated, before clipping) with
    :func:`adaptive_sched.adapters.torch.grad_norm`. (The evidence rule of
    :func:`adaptive_sched.recommended` gets ``grad_cos`` and the gradient norm
    from the scheduler itself, which reads them at each optimizer step.)

    **When the controller advances.** Lightning calls the scheduler's
    ``step()`` after each optimizer step (a signal-less update); at the end of
    that batch this callback calls ``observe`` with the signals, which replaces
    that update (the scheduler's one per-step mechanism; this callback reads its
    ``optimizer_steps`` to know whether the batch's optimizer step ran). With
    gradient accumulation the micro-batches' values are averaged (the core's
    :class:`~adaptive_sched._signals.Intake`: the mean of the finite values)
    into the one update of their optimizer step (the loss unscaled from
    Lightning's division by ``accumulate_grad_batches``). So the controller advances exactly once per
    optimizer step, whatever the ``interval`` (the scheduler's own ``step()``
    never advances it twice), and not at all for a batch whose optimizer step
    did not run (``training_step`` returned ``None``, accumulation, a skipped
    AMP step). Missing entries are not observed; ``None``, NaN and inf are
    passed as NaN (held, and counted in ``State.skipped``).

    **Several processes** (DDP and the like): each rank's ``training_step``
    returns its local values, and each signal is averaged over the ranks that
    observed it (one all-reduce of a small packed tensor per optimizer step)
    before the update: every rank's controller sees the same signals and sets
    the same lr. On torch.distributed the scheduler's ``observe`` does it; when
    the scheduler does not average itself (``sync_signals=False``, or a
    strategy not on torch.distributed) the callback averages through
    ``trainer.strategy.reduce``, in the same layout.

    **Checkpoints.** The scheduler is saved and restored by Lightning with
    the optimizers. This callback's own state (values of micro-batches not yet
    consumed, and the :attr:`consumed`/:attr:`skipped` counters) is in its
    ``state_dict``, which Lightning saves in the checkpoint, so
    ``fit(ckpt_path=...)`` continues exactly like an uninterrupted run.

    Args:
      scheduler: the scheduler to drive; default: the one
        :class:`AdaptiveScheduler` among the LightningModule's schedulers
        (found at ``on_fit_start``).
      loss_key, reward_key, kl_key, grad_norm_key: ``training_step`` output
        keys (``None``: not fed). Defaults ``"loss"``, ``"reward"``, ``"kl"``,
        ``"grad_norm"``.
      logged_keys: ``{signal: metric name}`` read from
        ``trainer.callback_metrics``, e.g. ``{"reward": "train/reward"}``;
        signals: ``loss``, ``reward``, ``kl``, ``grad_norm``. An output value
        takes precedence over a logged one.
      log_diagnostics: at each logging step (Lightning's own decision,
        ``log_every_n_steps``), ``log_dict`` the scheduler's
        :meth:`~AdaptiveScheduler.diagnostics` (each rule's factor on the lr,
        its statistics, its last event and the step of it) as
        ``<diagnostics_prefix><name>`` (``adaptive/lr.evidence/factor``, ...),
        so every logger the Trainer has (TensorBoard, CSV, W&B, ...) gets them;
        computed at logging steps only (in device mode as tensors, no sync
        here). ``False``: not logged.
      diagnostics_prefix: the prefix of those metric names.

    Raises:
      TypeError: a bad argument type.
      ValueError: unknown signal names in ``logged_keys``; at ``on_fit_start``:
        no (or more than one) AdaptiveScheduler in the LightningModule's
        schedulers, or its ``interval`` is not ``"step"`` or its
        ``frequency`` not 1.
    """

    def __init__(
        self,
        scheduler: AdaptiveScheduler | None = None,
        *,
        loss_key: str | None = "loss",
        reward_key: str | None = "reward",
        kl_key: str | None = "kl",
        grad_norm_key: str | None = "grad_norm",
        logged_keys: Mapping[str, str] | None = None,
        log_diagnostics: bool = True,
        diagnostics_prefix: str = "adaptive/",
    ) -> None:
        if scheduler is not None and not isinstance(scheduler, AdaptiveScheduler):
            raise TypeError(
                "AdaptiveSchedulerCallback(scheduler=...) expects an adaptive_sched AdaptiveScheduler or None, "
                f"got {type(scheduler).__name__}"
            )
        output_keys = signal_keys(loss=loss_key, reward=reward_key, grad_norm=grad_norm_key, kl=kl_key)
        logged = dict(logged_keys or {})
        unknown = sorted(set(logged) - set(SIGNALS))
        if unknown:
            raise ValueError(
                f"AdaptiveSchedulerCallback(logged_keys=...) has unknown signals {unknown}; "
                f"allowed: {list(SIGNALS)}"
            )
        for name, key in logged.items():
            if not isinstance(key, str):
                raise TypeError(f"AdaptiveSchedulerCallback(logged_keys[{name!r}]) must be a str, got {key!r}")
        if not isinstance(log_diagnostics, bool):
            raise TypeError(f"AdaptiveSchedulerCallback(log_diagnostics=...) must be a bool, got {log_diagnostics!r}")
        if not isinstance(diagnostics_prefix, str):
            raise TypeError(f"AdaptiveSchedulerCallback(diagnostics_prefix=...) must be a str, got {diagnostics_prefix!r}")
        self.log_diagnostics = log_diagnostics
        self.diagnostics_prefix = diagnostics_prefix
        self.output_keys: dict[str, str] = output_keys
        self.logged_keys: dict[str, str] = logged
        self.scheduler: AdaptiveScheduler | None = None
        self._pending = Intake()  # this optimizer step's values (micro-batches), merged into its one update
        self.consumed: dict[str, int] = self._pending.consumed  # per signal: values taken in ...
        self.skipped: dict[str, int] = self._pending.skipped  # ... and those that were not finite
        self._observed_at = 0  # the scheduler's optimizer-step count at the last observe
        self._grad_norm: float | None = None  # measured before this batch's optimizer step
        if scheduler is not None:
            self._attach(scheduler)

    def _attach(self, scheduler: AdaptiveScheduler) -> None:
        if scheduler is self.scheduler:
            return
        self.scheduler = scheduler
        self._observed_at = scheduler.optimizer_steps  # the scheduler's own step hook: one count for both

    # ------------------------------------------------------------------ Lightning hooks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        configs = [c for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, AdaptiveScheduler)]
        if self.scheduler is not None:
            configs = [c for c in configs if c.scheduler is self.scheduler]
        if len(configs) != 1:
            raise ValueError(
                "AdaptiveSchedulerCallback: configure_optimizers must return exactly one AdaptiveScheduler "
                f"(found {len(configs)}), e.g. "
                '{"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}'
            )
        cfg = configs[0]
        if cfg.interval != "step" or cfg.frequency != 1:
            raise ValueError(
                f"AdaptiveSchedulerCallback: the AdaptiveScheduler is configured with interval={cfg.interval!r}, "
                f"frequency={cfg.frequency!r}; it needs interval='step', frequency=1 (one controller update "
                "per optimizer step)."
            )
        self._attach(cast(AdaptiveScheduler, cfg.scheduler))  # the isinstance filter above
        # The horizon, unless the config has its own or a resumed checkpoint set the cooldown already.
        schedule_cooldown(self.scheduler, trainer.estimated_stepping_batches)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.scheduler is not None:
            note_if_never_annealed(self.scheduler, "AdaptiveSchedulerCallback (Lightning)")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        # The gradient norm for a rule that reads it as its signal (lr_rule="grad_norm"), measured
        # where Lightning has the final (accumulated, not yet clipped) gradients; a grad_norm
        # returned from training_step or logged takes precedence.
        sched = self.scheduler
        if sched is not None and "grad_norm" in sched.signals_read:
            gn = grad_norm(pl_module.parameters())
            self._grad_norm = None if gn is None else float(gn.item())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        scale = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        if isinstance(outputs, torch.Tensor):
            outputs = {"loss": outputs}
        found: dict[str, Any] = {}
        if isinstance(outputs, Mapping):
            for name, key in self.output_keys.items():
                if key in outputs:
                    found[name] = outputs[key]
            if "loss" in found and self.output_keys.get("loss") == "loss" and found["loss"] is not None:
                loss = host_value("AdaptiveSchedulerCallback: loss", found["loss"], "a number or None")
                found["loss"] = loss * scale  # type: ignore[operator]  # undo Lightning's 1/accumulate
        for name, value in found.items():
            self._add(name, value)
        assert self.scheduler is not None
        n = self.scheduler.optimizer_steps
        if n == self._observed_at:
            return  # no optimizer step since the last update: keep the values for the next one
        if self.logged_keys:
            metrics = trainer.callback_metrics
            for name, key in self.logged_keys.items():
                if name not in found and key in metrics:
                    self._add(name, metrics[key])
        if "grad_norm" not in self._pending.values and self._grad_norm is not None:
            self._add("grad_norm", self._grad_norm)
        self._grad_norm = None
        self._observed_at = n
        signals = self._pending.take()
        if trainer.world_size > 1 and self.scheduler.signal_world_size == 1:
            # The scheduler does not average over torch.distributed ranks itself (opted out,
            # or a strategy not on torch.distributed): average here, in the same layout.
            signals = _mean_over_ranks(trainer, pl_module, signals)
        kwargs: dict[str, Any] = {_OBSERVE_ARG[name]: v for name, v in signals.items()}
        self.scheduler.observe(**kwargs)
        if self.log_diagnostics and _logging_step(trainer):
            diag = self.scheduler.diagnostics()
            metrics = {self.diagnostics_prefix + k: v for k, v in diag.items()}
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, logger=bool(trainer.loggers))

    def _add(self, name: str, value: Any) -> None:
        self._pending.add(name, value, f"AdaptiveSchedulerCallback: {name}")

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Pending micro-batch values and the counters (plain Python values)."""
        return {
            "pending": {k: list(v) for k, v in self._pending.values.items()},
            "consumed": dict(self.consumed),
            "skipped": dict(self.skipped),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        if not isinstance(state_dict, dict) or set(state_dict) != _STATE_KEYS:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"not an AdaptiveSchedulerCallback state dict: expected keys {sorted(_STATE_KEYS)}, got {got}")
        self._pending.values = {k: [float(x) for x in v] for k, v in state_dict["pending"].items()}
        self.consumed.update({name: int(state_dict["consumed"].get(name, 0)) for name in SIGNALS})
        self.skipped.update({name: int(state_dict["skipped"].get(name, 0)) for name in SIGNALS})


def _logging_step(trainer: Any) -> bool:
    """Whether Lightning writes its loggers at this batch (what its own ``LearningRateMonitor`` asks)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", False))


def _mean_over_ranks(trainer: Any, pl_module: Any, signals: dict[str, float]) -> dict[str, float]:
    """Each signal averaged over the ranks' finite values (one all-reduce), so every rank sets the same lr.

    Every rank runs ``on_train_batch_end`` after the same optimizer step, so
    the collective is matched. The layout and the rule are the torch
    adapter's (:mod:`adaptive_sched._distributed`): a signal no rank supplied
    stays absent; one that ranks supplied but none finitely becomes NaN (not
    observed, counted).
    """
    # float64: host mode reads Python floats; the mean of equal values is exact.
    t = torch.tensor(pack([signals.get(name) for name in SIGNALS]), dtype=torch.float64, device=pl_module.device)
    t = trainer.strategy.reduce(t, reduce_op="sum")
    return {name: v for name, v in zip(SIGNALS, unpack(t.tolist())) if v is not None}


