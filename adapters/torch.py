"""PyTorch front door: :class:`AdaptiveScheduler`, the pure core driving an optimizer's ``param_groups``.

The scheduler holds the core's :class:`~adaptive_sched.State` and calls
:func:`adaptive_sched.update` once per optimizer step: in host mode on NumPy
float32 scalars (:mod:`adaptive_sched.host`), in device mode on 0-d tensors on
the optimizer's device. It adds what a torch user sees: adopting param groups, writing lr and momentum, torch's
``LRScheduler`` contract and a versioned ``state_dict``. Signals go through
the core's intake, checkpoints through the core's validation. Imports torch,
never JAX.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from adaptive_sched import _host, _rules
from adaptive_sched._checkpoint import ConfigMismatch, check_entry, check_hparams, state_from_dict, state_to_dict
from adaptive_sched._config import Config, numeric_fields, rule_fields
from adaptive_sched._core import (
    Hparams,
    Signals,
    State,
    diagnostics,
    init,
    namespace_of,
    set_slots,
    signal_usage,
    update,
)
from adaptive_sched._distributed import SignalSync
from adaptive_sched._signals import (
    SIGNAL_NAMES,
    check_signal,
    clip_signal,
    finite_mean,
    from_keywords,
    host_value,
)
from adaptive_sched.rules.cooldown import start_cooldown_for
from adaptive_sched.rules.evidence import EVENTS as _EVIDENCE_EVENTS

__all__ = ["FORMAT_VERSION", "AdaptiveScheduler", "direction", "grad_norm"]

assert SIGNAL_NAMES == ("loss", "reward", "grad_norm", "kl", "grad_cos")  # observe()'s hot path lists them in this order
_POSITIONAL = SIGNAL_NAMES[2:]  # observe()'s positional signals after loss, R, model
FORMAT_VERSION = 2
"""Version of :meth:`AdaptiveScheduler.state_dict`'s layout (2 added ``last_epoch`` and ``step_count``; 1 still loads)."""
_SD_KEYS_V1 = frozenset({"format_version", "mode", "controller", "base_lrs", "hparams", "advanced_this_step", "provisional_from"})
_SD_KEYS = {1: _SD_KEYS_V1, 2: _SD_KEYS_V1 | {"last_epoch", "step_count"}}
_EVENT_SLOT = "lr.evidence/event"
_NOTABLE = {1 + _EVIDENCE_EVENTS.index(e): e for e in ("far_above_base_lr", "min_lr_while_improving")}
_NOTE = {
    "far_above_base_lr": "It rose 10x above base_lr on evidence that the steps keep agreeing: base_lr was likely "
    "far too low (or, if the loss misbehaves, pass a lower max_lr). (Warned once per scheduler.)",
    "min_lr_while_improving": "It reached min_lr while the loss still falls: the gradient direction kept "
    "reversing. If the run ends like this, a lower base_lr or a larger batch may do better. (Warned once.)",
}
_SAMPLE = 1 << 13  # elements of a tensor past which direction() estimates its inner products on a sample
_BLOCK = 64  # direction()'s sample: every k-th run of this many contiguous elements
_FOLD_WARN = 64  # observe() calls in one optimizer step that earn a warning (the optimizer may not be stepped)
_MOMENTUM_FLOOR = 1e-6  # a momentum rule never writes less into a group it drives (nesterov, RMSprop's buffer)
_DEVICE_FIX = (
    "device_mode=True updates tensor hyperparameters in place and cannot write a Python float without a host "
    "sync: build the optimizer with tensors on the parameters' device (e.g. Adam(params, "
    "lr=torch.tensor(1e-3, device=dev), fused=True)) or use host mode."
)


class _StepCounter:
    """Optimizer step post-hook counting ``optimizer.step()`` calls (no bound method: the optimizer keeps no scheduler)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.n += 1


class _Group:
    """What the scheduler last wrote into one param group, to tell whether anyone else changed it since."""

    __slots__ = ("base", "chained", "driven", "scale", "tensor", "version", "written")

    def __init__(self, group: dict[str, Any], base: float, driven: bool) -> None:
        cur = group["lr"]
        self.base, self.driven, self.scale = base, driven, 1.0
        self.chained = _lr_value(cur) != _lr_value(group.get("initial_lr", cur))  # an earlier scheduler moved it
        self.written: Any = _lr_value(cur)
        self.tensor = cur if isinstance(cur, torch.Tensor) and not self.chained else None
        self.version = cur._version if isinstance(cur, torch.Tensor) else 0


class AdaptiveScheduler(LRScheduler):
    """Signal-driven lr/momentum scheduler for any ``torch.optim.Optimizer`` (the README's PyTorch section has it all).

    :meth:`observe` runs the core's update on what training observed and
    writes the new lr (with a momentum rule, momentum) into the param groups;
    :meth:`step` is a signal-less update unless one was made since the last
    ``optimizer.step()``. Read :attr:`hparams`, :attr:`controller_state`,
    :attr:`config` and :meth:`get_last_lr`; :meth:`diagnostics` says what each
    rule decided and why.

    Args:
      optimizer: the optimizer whose ``param_groups`` are driven.
      config: a ready Config; exclusive with ``config_kwargs`` (whose ``base_lr``
        defaults to group 0's lr, ``base_momentum`` to its momentum).
      device_mode: run the controller on the optimizer's device with no host
        sync (tensor lrs required); bit-equal to host mode.
      compile: with ``device_mode``, run the core's update through
        ``torch.compile`` (one fused kernel on a CPU, a few on a GPU, instead
        of about 580 small tensor operations with ``recommended()``). The
        first update of each pattern of given signals compiles (seconds);
        the numbers agree with the eager update to float32 rounding (the
        compiler may fuse and reorder), not bit for bit.
      sync_signals: with ``torch.distributed`` on several ranks, average each
        :meth:`observe`'s signals over ``process_group`` (one all-reduce).
      process_group: the group to average over (default: the default group).
      **config_kwargs: Config fields (``lr_rule=``, ``min_lr=``, ...).

    Raises:
      TypeError: a bad optimizer, config or keyword.
      ValueError: an invalid Config value, or device mode without tensor hyperparameters.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        config: Config | None = None,
        *,
        device_mode: bool = False,
        compile: bool = False,  # noqa: A002  (torch.compile's name)
        sync_signals: bool = True,
        process_group: Any = None,
        **config_kwargs: Any,
    ) -> None:
        # LRScheduler.__init__ is not called: no wrapping of optimizer.step, no __dict__ state dict.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"AdaptiveScheduler(optimizer=...) expects a torch.optim.Optimizer, got {type(optimizer).__name__}")
        for name, flag in (("device_mode", device_mode), ("compile", compile), ("sync_signals", sync_signals)):
            if not isinstance(flag, bool):
                raise TypeError(f"AdaptiveScheduler({name}=...) must be a bool, got {flag!r}")
        self.optimizer, groups = optimizer, optimizer.param_groups
        if compile and not device_mode:
            raise ValueError("AdaptiveScheduler(compile=True) needs device_mode=True: host mode runs the core on "
                             "NumPy scalars, which torch.compile does not speed up")  # fmt: skip
        self._device = _first_param(optimizer).device if device_mode else None
        self._compiled: Any = None  # torch.compile of the core's update (compile=True)
        if device_mode:
            self._check_device(groups, lr=True)
        own = [_lr_value(g.get("initial_lr", g["lr"])) for g in groups]
        self._base_lr_from_optimizer = config is None and "base_lr" not in config_kwargs
        self._config = config = _make_config(config, config_kwargs, groups, own[0])
        self._momentum_on = config.momentum_rule != "none"
        self._reads_grad_norm = "grad_norm" in _rules.signals_read(config)
        uses = signal_usage(config)[0]
        # grad_cos: computed by a pre-step hook from the gradients and the optimizer's state (direction())
        self._reads_grad_cos = uses["grad_cos"]
        self._direction_now: tuple[Any, Any] | None = None  # (grad_cos, grad norm) at the last optimizer step
        self._previous_grads: dict[Any, torch.Tensor] = {}  # plain SGD only: the last step's gradients
        self._general = device_mode or self._reads_grad_norm or self._reads_grad_cos  # observe()'s general path
        # host mode warns on the evidence rule's notable events
        self._events = not device_mode and config.lr_rule == "evidence"
        self._ref_lr, self._warned = float(config.base_lr), set[str]()
        scale = self._ref_lr / own[0]
        self._groups: list[_Group] = []
        self._adopt(groups, [self._ref_lr] + [v if scale == 1.0 else v * scale for v in own[1:]])
        self._state = self._fresh()
        # The first optimizer step runs before any update: it gets the lr a signal-less first update would set.
        self._hp: Any = self._run(self._state, [None] * len(SIGNAL_NAMES))[1]
        if compile:  # after one eager update, which fills the config's derived data (compiled code only reads it)
            self._compiled = torch.compile(_core_update, dynamic=False)
        # every signal a rule reads is averaged over ranks (grad_cos too: with sharded gradients each rank's differs)
        self._sync = SignalSync(sync_signals, process_group, _first_param(optimizer).device, device_mode,
                                [uses[n] for n in SIGNAL_NAMES])  # fmt: skip
        self._sync_on: bool | None = None  # decided at the first update with signals (see _advance)
        # One update per optimizer step: _at is the optimizer step of the last update, _before the state before
        # it (this step's update is redone, not repeated), _signals whether it had signals (False: step()'s),
        # _seen the signals of this step's observe() calls (they fold into its one update).
        self._steps, self._at, self._signals = _StepCounter(), -1, True
        self._before: State | None = None
        self._seen: list[Any] = []
        self._hook()
        self.last_epoch, self._step_count = 0, 1  # torch's counters (mirrors)
        self._write(self._hp)

    def _fresh(self) -> State:
        """A fresh controller state: NumPy float32 scalars (host mode) or 0-d tensors on the device."""
        if self._device is None:
            return init(self._config, xp=_host)
        return init(self._config, xp=torch, device=self._device)

    def _run(self, state: State, values: Any) -> tuple[State, Any]:
        """The core's update on ``values`` (Signals' fields); host mode's hparams as Python floats."""
        new, hp = (self._compiled or update)(state, Signals(*values))
        if self._device is None:
            return new, (float(hp.lr), float(hp.momentum), float(hp.lr_scale))
        return new, hp

    def _hook(self) -> None:
        weakref.finalize(self, self.optimizer.register_step_post_hook(self._steps).remove)
        if self._reads_grad_cos:
            weakref.finalize(self, self.optimizer.register_step_pre_hook(_DirectionHook(self)).remove)

    def _adopt(self, groups: list[dict[str, Any]], bases: list[float] | None = None) -> None:
        """Track new param groups (base lr: their ``initial_lr`` or lr, unless given); warn about undriven momentum."""
        first = len(self._groups)
        if len(groups) < first:
            raise RuntimeError(f"the optimizer has {len(groups)} param groups but the scheduler was built for "
                               f"{first}; param groups cannot be removed.")  # fmt: skip
        new = groups[first:]
        if self._device is not None:
            self._check_device(new, lr=bases is None)
        missing: list[int] = []
        zero: list[int] = []
        for i, g in enumerate(new):
            mom = _group_momentum(g)
            (missing if mom is None else zero if mom <= 0.0 else []).append(first + i)
            base = bases[i] if bases is not None else _lr_value(g.get("initial_lr", g["lr"]))
            self._groups.append(_Group(g, base, self._momentum_on and mom is not None and mom > 0.0))
            g.setdefault("initial_lr", g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"])
        if self._momentum_on and (missing or zero):
            parts = [f"param_groups {missing} have no 'momentum' or 'betas' hyperparameter"] if missing else []
            if zero:
                parts.append(f"param_groups {zero} were built with momentum 0 (a momentum rule drives only groups "
                             "built with momentum > 0; pass e.g. momentum=0.9 to the optimizer to let it)")  # fmt: skip
            effect = "on" if any(r.driven for r in self._groups) else "has no effect on"
            head = f"momentum_rule={self._config.momentum_rule!r} {effect} {type(self.optimizer).__name__}: "
            warnings.warn(head + "; ".join(parts) + ". Their momentum is left unchanged.", UserWarning, stacklevel=4)

    def _check_device(self, groups: list[dict[str, Any]], lr: bool = True) -> None:
        """Device mode: raise ``ValueError`` unless the hparams it writes are tensors on the device."""
        dev = self._device
        for i, g in enumerate(groups):
            cur = g["lr"]
            if lr and not (isinstance(cur, torch.Tensor) and cur.device == dev):
                got = f" is on {cur.device} but the parameters are on {dev}" if isinstance(cur, torch.Tensor) else (
                    f"={cur!r} is a Python number")  # fmt: skip
                raise ValueError(f"param_groups[{i}]['lr']{got}. {_DEVICE_FIX}")
            if not getattr(self, "_momentum_on", False) or ("momentum" not in g and "betas" not in g):
                continue
            mom, where = (g["momentum"], "['momentum']") if "momentum" in g else (g["betas"][0], "['betas'][0]")
            if not (isinstance(mom, (int, float)) and mom == 0) and not (isinstance(mom, torch.Tensor) and mom.device == dev):
                raise ValueError(f"momentum_rule={self._config.momentum_rule!r} with device_mode=True needs "
                                 f"param_groups[{i}]{where} to be a tensor on {dev}, got {mom!r}. {_DEVICE_FIX}")  # fmt: skip

    # ------------------------------------------------------------------ what a user reads

    @property
    def config(self) -> Config:
        """The :class:`adaptive_sched.Config` this scheduler runs."""
        return self._config

    @property
    def device_mode(self) -> bool:
        """Whether the controller runs on the optimizer's device."""
        return self._device is not None

    @property
    def signal_world_size(self) -> int:
        """How many ranks :meth:`observe` averages its signals over (1: local signals only)."""
        return self._sync.world_size()

    @property
    def optimizer_steps(self) -> int:
        """``optimizer.step()`` calls counted since construction (the step hook both callbacks read)."""
        return self._steps.n

    @property
    def signals_read(self) -> tuple[str, ...]:
        """The signals the config's active rules read (e.g. ``("loss", "grad_norm")``)."""
        return _rules.signals_read(self._config)

    @property
    def base_lrs(self) -> list[float]:  # type: ignore[override]
        """Each param group's base lr (a copy): its lr when every rule leaves the lr alone."""
        return [r.base for r in self._groups]

    @property
    def controller_state(self) -> State:
        """The controller's current :class:`adaptive_sched.State` (NumPy float32 scalars in host mode)."""
        return self._state

    @property
    def hparams(self) -> Hparams:
        """The hyperparameters of the last update (``lr`` is the reference lr, group 0's by default)."""
        return Hparams(*self._hp)

    def get_last_lr(self) -> list[Any]:
        """The lr last written to each group, of the group's own type (floats, or fresh 0-d tensor copies)."""
        if len(self.optimizer.param_groups) != len(self._groups):
            self._adopt(self.optimizer.param_groups)
        out = []
        for g, r in zip(self.optimizer.param_groups, self._groups):
            w, cur = r.written, g["lr"]
            if isinstance(cur, torch.Tensor):
                w = w.detach().to(cur.dtype).clone() if isinstance(w, torch.Tensor) else torch.full_like(cur, w)
            out.append(w)
        return out

    def get_lr(self) -> list[Any]:
        """As :meth:`get_last_lr` (the next lr depends on signals not yet observed)."""
        return self.get_last_lr()

    def diagnostics(self) -> dict[str, Any]:
        """What the controller decided at its last update and why: :func:`adaptive_sched.diagnostics`, ``{name: value}``.

        Per active rule its factor on the lr (``"anneal.slope/factor"``), its
        statistics (``"anneal.slope/tstat"``, ...) and its last event with the
        step of it; ``lr``, ``momentum`` and ``lr_scale`` are what the scheduler
        last wrote (:attr:`hparams`). Host mode: Python floats (ints for the
        counters, event codes and steps); device mode: 0-d tensors on the
        device, computed without a host sync. Computed only when called,
        never by :meth:`observe` or :meth:`step`;
        :func:`adaptive_sched.format_diagnostics` prints it.
        """
        out = diagnostics(self._state)
        if self._device is None:
            out = {k: v if isinstance(v, int) else float(v) for k, v in out.items()}
        out.update(zip(Hparams._fields, self._hp))
        return out

    def __repr__(self) -> str:
        lr = self._hp[0]
        text = (f"{type(self).__name__}(\n    optimizer: {type(self.optimizer).__name__} "
                f"({len(self.optimizer.param_groups)} param group(s))\n    config: {self._config!r}\n"
                f"    mode: {'host' if self._device is None else 'device'}, step: {self.last_epoch}, "
                f"lr: {float(lr) if self._device is None else lr!r}\n")  # fmt: skip
        if self._device is None and self.optimizer.param_groups:
            cur = _lr_value(self.optimizer.param_groups[0]["lr"])
            if not math.isclose(cur, float(lr), rel_tol=1e-6):
                text += (f"    optimizer lr (group 0): {cur!r} (changed by another scheduler or by hand; the "
                         "controller's factor multiplies onto it)\n")  # fmt: skip
        decisions = self._decisions()
        return text + (f"    decisions: {decisions}\n" if decisions else "") + ")"

    def _decisions(self) -> str:
        """The rules' last events, ``"search.range landed at step 52, anneal.slope cut at step 145"`` ('' if none)."""
        rules = [r for r in _rules.active_rules(self._config) if r.events]
        if not rules:
            return ""
        d = self.diagnostics()
        out = []
        for r in rules:
            name = _rules.event_name(r, int(d[f"{r.key}/event"]))
            if name is not None:
                out.append(f"{r.key} {name} at step {int(d[f'{r.key}/event_step'])}")
        return ", ".join(out)

    # ------------------------------------------------------------------ torch's LRScheduler contract

    def _get_closed_form_lr(self) -> list[Any]:
        """Each group's lr in closed form: ``base_lr_i * lr_scale`` of the last update (torch's hook)."""
        lr, _, lr_scale = self._hp
        if self._device is None and lr_scale == 1.0:
            return [r.base for r in self._groups]
        return [lr if r.base == self._ref_lr else lr_scale * r.base for r in self._groups]

    def _update_lr(self, epoch: int | None = None) -> None:
        """torch's internal (``SequentialLR``'s milestone): set ``last_epoch``, write the closed form; no update."""
        if epoch is None:
            self._advance([None] * len(SIGNAL_NAMES), "step")
            return
        self.last_epoch = epoch
        self._write(self._hp, absolute=True)

    def _initial_step(self) -> None:
        """torch's internal (``SequentialLR`` on the scheduler that runs first): as torch's, no controller update."""
        self._step_count = 1
        self.last_epoch += 1
        self._write(self._hp, absolute=True)

    def step(self, epoch: int | None = None) -> None:
        """Advance the controller without signals, unless it already advanced since the last optimizer step.

        Args:
          epoch: deprecated in torch, supported as its schedulers do: sets
            :attr:`last_epoch` and writes the closed-form lrs without an update; warns.

        Raises:
          ValueError: ``epoch`` is not an int (a metric belongs in :meth:`observe`).
        """
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
            raise ValueError(f"AdaptiveScheduler.step({epoch!r}): step() takes no metric (this is not ReduceLROnPlateau); "
                             "pass training signals to observe(loss=..., R=...) and call step() with no argument.")  # fmt: skip
        self._step_count += 1
        if epoch is not None:
            warnings.warn("AdaptiveScheduler.step(epoch) is deprecated (as in torch): it sets last_epoch and rewrites "
                          "each group's lr from the current controller state without advancing it. Call step() with "
                          "no argument.", UserWarning, stacklevel=2)  # fmt: skip
        self._update_lr(epoch)

    # ------------------------------------------------------------------ signals and the update of a step

    def observe(
        self,
        loss: Any = None,
        R: Any = None,  # noqa: N803  (the seed's public name for the reward)
        model: torch.nn.Module | None = None,
        *more: Any,
        replace: bool = False,
        **signals: Any,
    ) -> None:
        """This optimizer step's signals (each ``None``, a number or a one-element real tensor): the controller's update.

        The controller advances once per optimizer step (counted by a hook on
        ``optimizer.step()``). Several calls before the next optimizer step
        (gradient-accumulation micro-steps, a loss and a reward logged apart)
        fold into that step's one update: each signal is the mean of its finite
        values over the calls (NaN if none was finite), and the lr written is
        the one that update sets. NaN/inf are not observed (and counted);
        finite values beyond the signal limit are clipped to it.

        Args:
          loss: training loss (lower is better); R: reward (higher is better; alias of ``reward=``).
          model: with a rule reading the gradient norm and no ``grad_norm=``, its gradients' global L2
            norm is computed here (call before ``zero_grad``; a pass over every gradient). Cheaper: pass
            the norm you already have, ``grad_norm=torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)``
            (it returns the norm *before* clipping, which is the one the grad-norm rule wants: the clipped
            norm would sit at the clip value). ``grad_norm=None`` without ``model=`` says it was not
            observed this step (the rule holds, no warning).
          *more, **signals: the other :class:`~adaptive_sched.Signals` fields, by name or after ``model``.
          replace: redo this optimizer step's update with these signals instead of making another (a
            :meth:`step` update is always replaced); the HF callback merges log rows this way.

        Raises:
          TypeError: not a real number or tensor, an unknown keyword, or both ``R=`` and ``reward=``.
          ValueError: a tensor signal with more than one element.
        """
        if more or signals or replace or model is not None or self._general:
            given = bool(more) or "grad_norm" in signals  # grad_norm=None given: not observed, no advice
            signals["loss"] = loss
            values, labels = from_keywords("observe()", signals, more, _POSITIONAL, ("R", "reward", R))
            values = [self._signal(f"observe({lb}=...)", v) for lb, v in zip(labels, values)]
            if self._reads_grad_cos and self._direction_now is not None:  # from the last optimizer.step()
                cos, norm = (v if v is None or self._device is not None else float(v) for v in self._direction_now)
                values[4] = cos if values[4] is None else values[4]
                values[2] = norm if values[2] is None and not given and model is None else values[2]
            if self._reads_grad_norm and values[2] is None and (model is not None or not given):
                values[2] = self._model_grad_norm(model)
            self._advance(values, "replace" if replace else "observe")
            return
        if loss is not None and type(loss) is not float:  # host mode's observe(loss=..., R=...): the hot path
            loss = host_value("observe(loss=...)", loss)
        if R is not None and type(R) is not float:
            R = host_value("observe(R=...)", R)
        self._advance((loss, R, None, None, None), "observe")

    def _signal(self, label: str, v: Any) -> Any:
        if self._device is None or v is None:
            return host_value(label, v)
        if isinstance(v, torch.Tensor):
            check_signal(label, v, one_element=True)
            v = clip_signal(v.detach().reshape(()))  # a float64 1e40 is clipped on the device before the cast
            return v.to(self._device, torch.float32, non_blocking=True)
        # A fill kernel with the value as an argument: no host-to-device copy, no sync.
        return torch.full((), clip_signal(host_value(label, v)), dtype=torch.float32, device=self._device)

    def _model_grad_norm(self, model: Any) -> Any:
        if model is None:
            readers = ", ".join(f"{f}={n!r}" for f, n in self._config.active if _rules.lookup(f[:-5], n).signal == "grad_norm")
            self._warn_once("grad_norm", f"observe() got neither grad_norm= nor model=, but {readers} reads the gradient "
                            "norm; that rule holds (the lr it drives does not move). Pass observe(..., model=model) "
                            "before optimizer.zero_grad(), or grad_norm=... (Warned once per scheduler.)")  # fmt: skip
            return None
        norm = grad_norm(model.parameters())
        if norm is None:
            self._warn_once("grads", "observe(model=...) found no gradients (call it before optimizer.zero_grad()); "
                            "the gradient norm is treated as not observed.")  # fmt: skip
            return None
        return norm if self._device is not None else float(norm.item())

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)

    def _advance(self, values: Any, kind: str) -> None:
        """The one place the controller advances: one update per optimizer step, redone rather than repeated.

        ``kind``: ``"step"`` (signal-less, only if nothing advanced since the last optimizer step),
        ``"observe"`` (this step's update, with the finite mean of the signals of every ``observe()``
        since the last optimizer step: gradient-accumulation micro-steps fold into their step) or
        ``"replace"`` (this step's update with these signals alone).
        """
        n = self._steps.n
        if self._at != n:  # the first update since the last optimizer step
            self._at = n
            self.last_epoch += 1
            self._before = self._state
            self._seen = []
        elif kind == "step":
            return
        elif self._before is not None:
            self._state = self._before  # redo this optimizer step's update
        else:  # resumed from a checkpoint taken after this step's update: the state before it is not known
            self.last_epoch += 1
            self._before = self._state
        if kind == "replace":
            self._seen = []
        if kind != "step":
            values = self._fold(values)
        self._signals = signals = kind != "step"
        if signals and self._sync_on is not False:
            # Several ranks (torch.distributed initialised by the first update with signals, as DDP needs it
            # before training): the signals' mean over the ranks, one all-reduce. Else never asked again.
            self._sync_on = self._sync.world_size() > 1
            if self._sync_on:
                values = self._sync(values)
        self._state, self._hp = self._run(self._state, values)
        self._write(self._hp)
        if self._events:  # host mode: the evidence rule's notable decisions, once each
            code = self._state.rule_state[_EVENT_SLOT]
            if code in _NOTABLE:
                self._warn_once(_NOTABLE[code], f"the lr {_NOTABLE[code]} at optimizer step {self._steps.n} "
                                "(diagnostics: 'lr.evidence/event'). " + _NOTE[_NOTABLE[code]])  # fmt: skip

    def _fold(self, values: Any) -> Any:
        """``values`` folded into this optimizer step's earlier ``observe()`` signals: each signal's finite mean.

        :attr:`_seen` holds the step's first values until a second call, then
        running sums (the finite values' sum and count, and whether given), so
        memory and time stay constant however many calls a step gets. A signal
        given but never finite is NaN, one never given ``None``
        (:func:`adaptive_sched._signals.mean_of_finite`; on the device with tensor ops, no sync).
        """
        seen = self._seen
        if not seen:
            seen.append(values)
            return values
        if len(seen) == 1:  # the second call of this step: start the running sums from the first
            first = seen.pop()
            seen.append([self._fold_sums(v) for v in first])
            seen.append(1)
        sums, calls = seen[0], seen[1] + 1
        seen[1] = calls
        if calls == _FOLD_WARN:
            warnings.warn(f"observe() was called {_FOLD_WARN} times since the last optimizer step: the controller "
                          "advances once per optimizer step (torch.optim.Optimizer.step), so these calls fold into "
                          "one update with the mean of their signals (gradient accumulation). If your loop steps "
                          "the parameters without calling this optimizer's step(), the lr will not move. (Warned once "
                          "per scheduler.)", UserWarning, stacklevel=4)  # fmt: skip
        out: list[Any] = []
        for i, v in enumerate(values):
            if v is not None:
                add = self._fold_sums(v)
                sums[i] = add if sums[i] is None else (sums[i][0] + add[0], sums[i][1] + add[1])
            total = sums[i]
            if total is None:
                out.append(None)
            elif self._device is None:
                out.append(total[0] / total[1] if total[1] else math.nan)
            else:
                out.append(finite_mean(torch, total[0], total[1]))
        return out

    def _fold_sums(self, v: Any) -> Any:
        """One value as ``(finite value or 0, 1 if finite else 0)``; ``None`` stays ``None``."""
        if v is None:
            return None
        if self._device is None:
            return (v, 1.0) if math.isfinite(v) else (0.0, 0.0)
        finite = torch.isfinite(v)
        return torch.where(finite, v, 0.0), finite.to(torch.float32)

    # ------------------------------------------------------------------ writing the optimizer

    def _write(self, hp: Any, absolute: bool = False) -> None:
        """Write each group's lr (``base_i * lr_scale``, or a factor on top where chained) and momentum.

        ``absolute``: the closed form even where someone else changed the lr
        (``load_state_dict``, ``SequentialLR``'s milestone), ending the chaining.
        """
        lr, momentum, lr_scale = hp
        groups, recs = self.optimizer.param_groups, self._groups
        if len(groups) != len(recs):
            self._adopt(groups)
        host, ref = self._device is None, self._ref_lr
        identity = host and lr_scale == 1.0  # every rule "none": each group's own base lr, bit for bit
        for g, r in zip(groups, recs):
            cur, base = g["lr"], r.base
            v = base if identity else (lr if base == ref else lr_scale * base)
            if host and cur.__class__ is float:
                if absolute:
                    r.chained = False
                elif r.chained or cur != r.written:  # someone else changed it: a factor on top (torch's chainable form)
                    v, r.chained = cur * (lr_scale / r.scale), True
                g["lr"] = r.written = v
            elif not isinstance(cur, torch.Tensor):
                i = next(k for k, x in enumerate(groups) if x is g)
                raise ValueError(f"param_groups[{i}]['lr'] became a Python number ({cur!r}); device_mode=True "
                                 "needs tensor learning rates (see AdaptiveScheduler's docstring).")  # fmt: skip
            else:
                with torch.no_grad():
                    if absolute or (not r.chained and cur is r.tensor and cur._version == r.version):
                        cur.copy_(v) if isinstance(v, torch.Tensor) else cur.fill_(v)
                        r.chained = False
                    else:  # changed by someone else: a factor on top, without a host sync
                        cur.mul_(lr_scale / r.scale)
                        v, r.chained = cur.detach().clone(), True
                r.tensor, r.version, r.written = cur, cur._version, v
            r.scale = lr_scale
        if self._momentum_on:
            self._write_momentum(groups, momentum)

    @torch.no_grad()
    def _write_momentum(self, groups: list[dict[str, Any]], mu: Any) -> None:
        if float(self._config.min_momentum) < _MOMENTUM_FLOOR:
            mu = torch.clamp_min(mu, _MOMENTUM_FLOOR) if isinstance(mu, torch.Tensor) else max(mu, _MOMENTUM_FLOOR)
        for i, (g, r) in enumerate(zip(groups, self._groups)):
            if not r.driven:
                continue
            key = "momentum" if "momentum" in g else "betas"
            cur = g[key] if key == "momentum" else g[key][0]
            if isinstance(cur, torch.Tensor):
                cur.fill_(mu)
            elif self._device is not None:
                raise ValueError(f"param_groups[{i}] momentum became a Python number ({cur!r}); device_mode=True "
                                 "needs tensor momentum (see AdaptiveScheduler's docstring).")  # fmt: skip
            else:
                g[key] = mu if key == "momentum" else type(g[key])((mu, *g[key][1:]))

    # ------------------------------------------------------------------ rule slots, checkpoints, copies

    def cooldown(self, steps: int, start: int | None = None) -> None:
        """Start the cooldown: the lr decays over the next ``steps`` optimizer steps to ``min_lr``, on top of the adaptive lr.

        :func:`adaptive_sched.start_cooldown` for this scheduler: the decay
        has the shape of the config's ``cooldown_rule`` (``recommended()``:
        linear) and begins after step ``start`` (default: now, so the next
        update is the first decayed one). It lives in the controller's state,
        so :meth:`state_dict` taken mid-cooldown resumes it exactly.

        Raises:
          ValueError: the config's ``cooldown_rule`` is ``"none"``, or ``steps``/``start`` are invalid.
        """
        self._state = start_cooldown_for(self._state, steps, start, caller="AdaptiveScheduler.cooldown")

    def set_slots(self, family: str, **values: Any) -> None:
        """Set slots of ``family``'s active rule (:func:`adaptive_sched.set_slots`), e.g. to start a cooldown now."""
        self._state = set_slots(self._state, family, **values)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: plain Python values and tensors only (loads with ``torch.load(weights_only=True)``).

        Layout (``format_version`` 2): ``mode``, ``controller`` (:func:`adaptive_sched.state_to_dict`),
        ``base_lrs``, ``hparams`` (of the last update), ``advanced_this_step`` (the controller advanced since
        the last optimizer step), ``provisional_from`` (the controller before a :meth:`step` update that a
        following :meth:`observe` would replace, else ``None``), ``last_epoch`` and ``step_count``.
        """
        if len(self.optimizer.param_groups) != len(self._groups):
            self._adopt(self.optimizer.param_groups)
        advanced = self._at == self._steps.n
        before = self._before if advanced and not self._signals else None
        return {
            "format_version": FORMAT_VERSION,
            "mode": "host" if self._device is None else "device",
            "controller": self._to_dict(self._state),
            "base_lrs": self.base_lrs,
            "hparams": dict(zip(Hparams._fields, self._hp)),
            "advanced_this_step": advanced,
            "provisional_from": None if before is None else self._to_dict(before),
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output and write its lrs, everything validated first (on error nothing changes).

        Raises:
          ValueError: not an AdaptiveScheduler state dict, an unsupported format version, another
            configuration (rules and knobs compared as float32 values) or number of param groups,
            or an invalid entry (the message names it).
        """
        d = state_dict
        if not isinstance(d, dict) or "format_version" not in d:
            keys = sorted(d)[:8] if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an AdaptiveScheduler state dict (no 'format_version'; got {keys})")
        version = d["format_version"]
        if type(version) is not int or version not in _SD_KEYS:
            newer = " (the checkpoint was written by a newer version)" if type(version) is int and version > FORMAT_VERSION else ""
            raise ValueError(f"AdaptiveScheduler state dict format_version={version!r} is not supported: this version "
                             f"of adaptive_sched reads format_version {sorted(_SD_KEYS)}{newer}.")  # fmt: skip
        if set(d) != _SD_KEYS[version]:
            raise ValueError(f"AdaptiveScheduler state dict keys do not match: missing {sorted(_SD_KEYS[version] - set(d))}, "
                             f"unexpected {sorted(set(d) - _SD_KEYS[version])}")  # fmt: skip
        if d["mode"] not in ("host", "device"):
            raise ValueError(f"state dict mode={d['mode']!r} is invalid: must be 'host' or 'device'")
        state, before = (None if c is None else self._load_controller(c) for c in (d["controller"], d["provisional_from"]))
        groups, bases = self.optimizer.param_groups, d["base_lrs"]
        if not isinstance(bases, (list, tuple)) or len(bases) != len(groups):
            n = len(bases) if isinstance(bases, (list, tuple)) else bases
            raise ValueError(f"the state dict is for {n} param groups but the optimizer has {len(groups)}")
        # group 0's is the reference (> 0; base_lr, checked with the config); others may be 0 (a frozen group)
        bases = [float(check_entry(f"state dict base_lrs[{i}]", b, lo=1e-300 if i == 0 else 0.0)) for i, b in enumerate(bases)]
        hp: Any = check_hparams(self._config, d["hparams"])
        if self._device is not None:
            hp = tuple(torch.full((), v, dtype=torch.float32, device=self._device) for v in hp)
            self._check_device(groups)  # e.g. optimizer.load_state_dict() may have put lr tensors elsewhere
        if not isinstance(d["advanced_this_step"], bool):
            raise ValueError(f"state dict advanced_this_step={d['advanced_this_step']!r} must be a bool")
        counts = (d["last_epoch"], d["step_count"]) if version >= 2 else (d["controller"]["step"], None)
        last_epoch = int(check_entry("state dict last_epoch", counts[0], integer=True))
        step_count = last_epoch + 1 if counts[1] is None else int(check_entry("state dict step_count", counts[1], integer=True, lo=0))
        # Everything validated: commit.
        if len(groups) != len(self._groups):
            self._adopt(groups)
        for r, b in zip(self._groups[1:], bases[1:]):
            r.base = b
        advanced = d["advanced_this_step"]
        self._state, self._hp = state, hp  # type: ignore[assignment]
        self._before, self._signals = (before, before is None) if advanced else (None, True)
        self._at = self._steps.n if advanced else -1
        self.last_epoch, self._step_count = last_epoch, step_count
        self._write(hp, absolute=True)

    def _to_dict(self, state: State) -> dict[str, Any]:
        """:func:`adaptive_sched.state_to_dict` of ``state`` with the scheduler's config as the user gave it."""
        return state_to_dict(state._replace(config=self._config))

    def _load_controller(self, d: Any) -> State:
        """A controller dict (validated for this config by the core) as this mode holds it."""
        if not isinstance(d, dict):
            raise ValueError(f"state dict controller entry must be a dict, got {type(d).__name__}")
        try:
            xp = _host if self._device is None else namespace_of(torch.zeros(()))
            return state_from_dict(d, self._config, xp=xp, device=self._device, ours="scheduler")
        except ConfigMismatch as err:
            hint = (" (base_lr defaults to the optimizer's lr at construction: build the scheduler before "
                    "optimizer.load_state_dict(), or pass base_lr explicitly)")  # fmt: skip
            hint = hint if any(x.startswith("base_lr") for x in err.diffs) and self._base_lr_from_optimizer else ""
            raise ValueError("cannot load an AdaptiveScheduler state dict from a different configuration: "
                             + "; ".join(err.diffs) + hint) from None  # fmt: skip
        except (TypeError, KeyError, ValueError) as err:
            raise ValueError(f"AdaptiveScheduler state dict has an invalid controller entry: {err}") from None

    def __getstate__(self) -> dict[str, Any]:
        """``copy.deepcopy`` / ``pickle``: the controller states as :func:`adaptive_sched.state_to_dict` dicts."""
        before = None if self._before is None else self._to_dict(self._before)
        return {**self.__dict__, "_state": self._to_dict(self._state), "_before": before, "_direction_now": None,
                "_previous_grads": {}, "_compiled": None, "_compile": self._compiled is not None}  # fmt: skip

    def __setstate__(self, d: dict[str, Any]) -> None:
        compiled = d.pop("_compile", False)
        self.__dict__.update(d)
        self._state = self._load_controller(d["_state"])
        self._before = None if d["_before"] is None else self._load_controller(d["_before"])
        self._compiled = torch.compile(_core_update, dynamic=False) if compiled else None
        # torch's Optimizer drops its hooks when copied or pickled: count the copy's steps.
        hooks = getattr(self.optimizer, "_optimizer_step_post_hooks", None)
        if hooks is None or not any(h is self._steps for h in hooks.values()):
            self._hook()
        for g, r in zip(self.optimizer.param_groups, self._groups):  # a copied tensor starts a new version counter
            if r.tensor is not None and g["lr"] is r.tensor:
                r.version = r.tensor._version


def _core_update(state: State, signals: Signals) -> tuple[State, Hparams]:
    """The core's update, as ``compile=True`` hands it to ``torch.compile``."""
    return update(state, signals)


def _make_config(config: Config | None, kwargs: dict[str, Any], groups: list[dict[str, Any]], lr0: float) -> Config:
    """The scheduler's Config from ``config`` or Config-field keyword arguments (defaults from group 0)."""
    if config is not None:
        if kwargs:
            raise TypeError("AdaptiveScheduler takes either config=Config(...) or Config fields as keyword "
                            f"arguments, not both (got config and {sorted(kwargs)}).")  # fmt: skip
        if not isinstance(config, Config):
            raise TypeError(f"AdaptiveScheduler(config=...) expects an adaptive_sched.Config, got {type(config).__name__}")
        for name, value in config.knobs.items():
            if getattr(value, "ndim", 0) != 0:
                raise ValueError(f"Config.{name} has shape {tuple(value.shape)}: AdaptiveScheduler needs scalar knobs "
                                 "(a batched sweep config drives the pure core, not one optimizer).")  # fmt: skip
        return config
    fields = (*rule_fields(), *numeric_fields())
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(f"AdaptiveScheduler got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"valid Config fields are: {', '.join(fields)}.")  # fmt: skip
    kwargs, derived = dict(kwargs), []
    if "base_lr" not in kwargs:
        kwargs["base_lr"] = lr0
        derived.append(f"base_lr from optimizer.param_groups[0]['lr']={lr0!r}")
    mom = _group_momentum(groups[0])
    if kwargs.get("momentum_rule", "none") != "none" and "base_momentum" not in kwargs and mom is not None:
        kwargs["base_momentum"] = mom
        derived.append(f"base_momentum from param_groups[0]={mom!r}")
    try:
        return Config(**kwargs)
    except ValueError as err:
        if not derived:
            raise
        raise ValueError(f"{err} (took {' and '.join(derived)}; pass it explicitly to override)") from err


class _DirectionHook:
    """The optimizer's pre-step hook of a scheduler that reads ``grad_cos``: :func:`direction` of this step."""

    def __init__(self, sched: AdaptiveScheduler) -> None:
        self._sched = weakref.ref(sched)

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        sched = self._sched()
        if sched is not None:
            sched._direction_now = direction(optimizer, sched._previous_grads)


def direction(optimizer: Optimizer, previous_grads: dict[Any, torch.Tensor]) -> tuple[Any, Any]:
    """``(grad_cos, grad norm)`` of the gradients now against the optimizer's last step: 0-d float32 tensors.

    ``grad_cos = cos(g_t, d_{t-1})`` with ``d_{t-1} = -u_{t-1}``, the previous
    update's direction, read from the optimizer's state where it holds it (no
    copy of the parameters):

    * Adam/AdamW (``exp_avg``, ``exp_avg_sq``; ``max_exp_avg_sq`` with
      amsgrad): ``d = m^ / (sqrt(v^) + eps)`` with the bias corrections of
      the last step, plus ``weight_decay * p`` where the decay is decoupled
      (AdamW); the lr cancels in the cosine;
    * SGD with momentum: ``d = momentum_buffer``;
    * otherwise (plain SGD, ...): ``d`` = the last step's gradient
      (``+ weight_decay * p``), kept in ``previous_grads`` (at most 16,383
      elements a tensor; an optimizer with momentum state never fills it).

    A tensor of more than 8,192 elements enters the inner products through a
    systematic sample of about 8,192 (:func:`_sample`: every ``k``-th run of
    64 contiguous elements, ``k = numel // 8192``, reweighted by
    ``numel / sample size``), whose cosine is within a few hundredths of the
    whole's (far inside the evidence rule's 0.1 dead zone); the gradient norm
    is always exact (it also catches any NaN/inf).

    Called by a pre-step hook, before the optimizer updates its state, so
    ``g_t`` and the state of step ``t - 1`` meet. Sums in float32 (bf16
    params are upcast per tensor). ``grad_cos`` is ``None`` where there is no
    previous step, NaN where a norm is 0 or a sum not finite; the norm is
    ``None`` when no parameter has a gradient. No host sync but reading a CPU
    step count.
    """
    grads: list[torch.Tensor] = []  # every gradient, whole (the exact norm)
    gs: list[torch.Tensor] = []  # the samples of the gradients and the directions, and each sample's weight
    ds: list[torch.Tensor] = []
    roots: list[float] = []
    for group in optimizer.param_groups:
        wd = float(group.get("weight_decay", 0.0) or 0.0)
        decoupled = bool(group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)))
        stateful = "betas" in group or float(group.get("momentum", 0.0) or 0.0) > 0.0  # the state holds d
        for p in group["params"]:
            if p.grad is None or p.grad.is_sparse:
                continue
            grads.append(p.grad)
            # Past _SAMPLE elements a tensor's inner products are estimated on a systematic sample of about
            # _SAMPLE elements, reweighted to the whole tensor: the cosine to a few hundredths, at a small cost.
            k = max(1, p.numel() // _SAMPLE)
            g = _sample(p.grad, k)
            st = optimizer.state.get(p, {})
            if "exp_avg" in st and "exp_avg_sq" in st:
                b1, b2 = (float(b) for b in group["betas"])
                n = float(st["step"])
                v = st.get("max_exp_avg_sq", st["exp_avg_sq"]) if group.get("amsgrad") else st["exp_avg_sq"]
                denom = _sample(v, k, copy=True).sqrt_().mul_(1.0 / math.sqrt(1.0 - b2**n)).add_(group["eps"])
                m = _sample(st["exp_avg"], k)
                if decoupled and wd:  # d = m^ / denom + wd * p
                    d = torch.addcdiv(_sample(p, k).mul(wd), m, denom, value=1.0 / (1.0 - b1**n))
                else:  # the bias correction of m is a common factor: it cancels in the cosine
                    d = torch.div(m, denom, out=denom)  # into our own temporary, never the optimizer's state
            elif st.get("momentum_buffer") is not None:
                d = _sample(st["momentum_buffer"], k)
            elif stateful:  # the first step: the optimizer has no state yet
                continue
            else:
                last = previous_grads.get(p)
                previous_grads[p] = g.clone()  # the sample only
                if last is None:
                    continue
                d = last
                if wd:
                    d = d + wd * _sample(p, k)
            gs.append(g)
            ds.append(d)
            roots.append(math.sqrt(p.numel() / g.numel()))
    if not grads:
        return None, None
    norm = _total_norm(grads)
    if not ds:  # no previous step to compare with
        return None, norm
    # sum_i w_i <g_i, d_i> and sum_i w_i <d_i, d_i>: each sample scaled by sqrt(w_i), all in one vector
    gcat, dcat = torch.cat(torch._foreach_mul(gs, roots)), torch.cat(torch._foreach_mul(ds, roots))
    dot, dd, gg = torch.dot(gcat, dcat), torch.dot(dcat, dcat), norm * norm
    ok = (gg > 0) & (dd > 0) & torch.isfinite(dot) & torch.isfinite(gg) & torch.isfinite(dd)
    cos = torch.where(ok, dot / torch.where(ok, norm * dd.sqrt(), 1.0), math.nan)
    return cos, norm


def _sample(t: torch.Tensor, k: int, copy: bool = False) -> torch.Tensor:
    """A systematic sample of ``t``'s elements as a contiguous float32 vector: rows of ``_BLOCK``, every ``k``-th row.

    ``t`` viewed as rows of ``_BLOCK`` elements (the tail that does not fill
    a row dropped), every ``k``-th row from the first: contiguous runs read a
    cache line at a time (a stride of single elements misses the cache on each).
    ``k == 1``: the whole tensor. ``copy``: always a new tensor (the caller
    writes into it), never the optimizer's own storage.
    """
    x = t.detach().reshape(-1)
    if k > 1:
        rows = x.numel() // _BLOCK
        x = x[: rows * _BLOCK].view(rows, _BLOCK)[::k].reshape(-1)
    x = x.float()
    return x.clone() if copy and x.data_ptr() == t.data_ptr() else x


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor | None:
    """Global L2 norm of the parameters' gradients, as a tensor (no host sync); None when there are none."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return _total_norm(grads) if grads else None


@torch.no_grad()
def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of ``grads``, in float32 (bf16 gradients too): one fused pass, NaN/inf propagate."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)))


def _first_param(optimizer: Optimizer) -> torch.Tensor:
    for g in optimizer.param_groups:
        for p in g["params"]:
            return p
    raise ValueError("the optimizer has no parameters")


def _lr_value(v: Any) -> float:
    """An lr as a Python float; a float32 (or narrower) tensor reads as the shortest decimal that rounds to it.

    ``torch.tensor(1e-3)`` holds 0.0010000000474974513 and reads back as ``1e-3`` (what the user wrote): float32
    rounding never trips ``base_lr <= max_lr``, and writing the lr back gives the same float32 value.
    """
    x = float(v.item()) if isinstance(v, torch.Tensor) else float(v)
    if isinstance(v, torch.Tensor) and v.dtype in (torch.float32, torch.float16, torch.bfloat16) and math.isfinite(x):
        return float(str(np.float32(x)))
    return x


def _group_momentum(group: dict[str, Any]) -> float | None:
    mom = group.get("momentum", group["betas"][0] if "betas" in group else None)
    return None if mom is None else float(mom.item() if isinstance(mom, torch.Tensor) else mom)
