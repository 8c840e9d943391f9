"""PyTorch front door: :class:`AdaptiveScheduler`, a stateful wrapper over the pure core.

The scheduler owns the controller's state and, whenever the controller
advances, writes the resulting learning rate (and, if a momentum rule is
active, momentum) into the optimizer's ``param_groups``. Every rule is the one
in :mod:`adaptive_sched._core` (host mode runs it through the traced host path
of :mod:`adaptive_sched._hostpath`); this module only converts signals, keeps
the per-group bookkeeping and talks to the optimizer.

Importing this module imports torch, never JAX or optax.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from adaptive_sched import _scalar
from adaptive_sched._checkpoint import check_entry, state_from_dict, state_to_dict
from adaptive_sched._config import NUMERIC_FIELDS, RULE_FIELDS, Config
from adaptive_sched._core import SIGNAL_LIMIT, Hparams, State, init, signal_usage
from adaptive_sched._distributed import SignalSync
from adaptive_sched._hostpath import HostController, as_python, flatten_state
from adaptive_sched._signals import SIGNAL_NAMES, from_keywords

__all__ = ["AdaptiveScheduler", "FORMAT_VERSION"]

_NONE = (False,) * len(SIGNAL_NAMES)  # no signal supplied (step(), and the peek at construction)
_NO_SIGNALS = (None,) * len(SIGNAL_NAMES)
_POSITIONAL = tuple(n for n in SIGNAL_NAMES if n not in ("loss", "reward"))  # observe()'s after loss, R, model
_GRAD_NORM = SIGNAL_NAMES.index("grad_norm")
_LOSS = SIGNAL_NAMES.index("loss")
_REWARD = SIGNAL_NAMES.index("reward")

FORMAT_VERSION = 2
"""Version of :meth:`AdaptiveScheduler.state_dict`'s layout (the controller part has its own).

2 added ``last_epoch`` and ``step_count``; version 1 dicts still load."""

_TINY_LR = 1e-300  # base_lrs must be > 0
_MOMENTUM_FLOOR = 1e-6
"""A momentum rule never writes less than this into a group it drives (see "Momentum")."""

_DEVICE_FIX = (
    "device_mode=True updates tensor hyperparameters in place and cannot write a Python float "
    "without a host sync: build the optimizer with tensors on the parameters' device (e.g. "
    "Adam(params, lr=torch.tensor(1e-3, device=dev), fused=True)) or use host mode."
)
_SD_KEYS_V1 = frozenset(
    {"format_version", "mode", "controller", "base_lrs", "hparams", "advanced_this_step", "provisional_from"}
)
_SD_KEYS = {1: _SD_KEYS_V1, 2: _SD_KEYS_V1 | {"last_epoch", "step_count"}}


class _StepCounter:
    """Optimizer step post-hook that counts ``optimizer.step()`` calls.

    Kept as a separate object (not a bound method of the scheduler) so that the
    optimizer holds no reference to the scheduler.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.n += 1


class AdaptiveScheduler(LRScheduler):
    """Signal-driven lr/momentum scheduler for any ``torch.optim.Optimizer``.

    Feed it what training observes (loss, reward, gradient norm, KL) through
    :meth:`observe`; it runs the controller of :mod:`adaptive_sched` (the same
    :func:`adaptive_sched.update` that the optax front door and the pure core
    use) and writes the new hyperparameters into ``optimizer.param_groups``::

        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        sched = AdaptiveScheduler(optimizer, lr_rule="trend", reward_rule="trend",
                                  min_lr=1e-6, max_lr=5e-4)
        for batch in loader:
            loss = compute_loss(batch); loss.backward()
            optimizer.step()
            sched.observe(loss=loss, R=reward)   # or sched.step() (HF Trainer)
            optimizer.zero_grad()

    **Configuration.** Either a ready :class:`adaptive_sched.Config` or its
    fields as keyword arguments (not both). With keyword arguments, ``base_lr``
    defaults to group 0's lr at construction (its ``initial_lr`` if an earlier
    torch scheduler set one) and, when a momentum rule is active,
    ``base_momentum`` defaults to group 0's ``momentum`` / ``betas[0]``. A
    float32 tensor lr reads as the shortest decimal that rounds to it
    (``torch.tensor(1e-3)`` reads as ``1e-3``, so ``max_lr=1e-3`` is not
    tripped by float32 rounding). A Config is taken as is: its ``base_lr`` is
    the reference lr even if group 0 was built with another one.

    **Parameter groups.** The scheduler stores one base lr per group (in the
    scheduler; ``initial_lr`` in each group is only a mirror for torch's
    tools). Group ``i``'s base lr is its ``initial_lr`` if present, else its
    lr, at construction, times ``base_lr / lr_0`` (so exactly its own lr when
    ``base_lr`` is group 0's) and its lr is ``base_lr_i * lr / base_lr``:
    groups stay proportional, and the Config's ``[min_lr, max_lr]`` bounds the
    reference lr ``lr`` and apply to group ``i`` scaled by
    ``base_lr_i / base_lr``. Groups added later with
    ``optimizer.add_param_group`` are adopted (same rule, and
    :meth:`get_last_lr` lists them at once). The lr of every group is written
    at construction and after every controller update. At construction it is
    the lr that a signal-less first update would set (``base_lr`` unless a
    clock-driven rule moves it: warmup starts at ``base_lr / warmup_steps``,
    ``cyclical`` at ``max_lr``), computed without advancing the controller.

    **Other schedulers and manual changes (torch's chainable form).** If
    anything else changed a group's lr since the scheduler last wrote it
    (another scheduler in a ``ChainedScheduler``, an earlier scheduler's
    warmup, user code), that group is *chained* from then on: each update
    multiplies its current lr by ``lr_scale_t / lr_scale_{t-1}`` instead of
    overwriting it, as torch's chainable schedulers do, so the factors
    multiply (the ``[min_lr, max_lr]`` bounds then apply to this scheduler's
    factor only) and an all-``none`` config leaves the other scheduler's lr
    untouched. Tensor lrs are tracked by their version counter (no host
    sync). :meth:`load_state_dict` and ``SequentialLR``'s milestone write the
    closed form ``base_lr_i * lr_scale`` and end the chaining.

    **Momentum policy.** Momentum is written only when ``momentum_rule !=
    "none"``, to ``group["momentum"]`` (SGD, RMSprop) or ``group["betas"][0]``
    (Adam, AdamW, ...; ``betas`` keeps its container type, tensor entries are
    updated in place), and only into the groups that had momentum > 0 when
    the scheduler adopted them: a group built without momentum (``SGD``'s and
    ``RMSprop``'s default 0) keeps it off, and a group without either key
    (Adagrad, LBFGS, Rprop) is left alone and never gets a new key. One
    ``UserWarning`` at construction (and at the adoption of added groups)
    lists the groups not driven and why. A driven group's momentum is never
    switched off: values below ``1e-6`` are written as ``1e-6`` (torch refuses
    ``nesterov=True`` with momentum 0, and ``RMSprop`` keeps a momentum
    buffer only if momentum was > 0 at its first step). ``hparams.momentum``
    is the controller's value, before this floor.

    **When the controller advances (one update per optimizer step).** The
    scheduler counts ``optimizer.step()`` calls with a step post-hook
    (``Optimizer.register_step_post_hook``) and applies two rules:

    * :meth:`observe` always performs one controller update with its signals.
      If the only update since the last ``optimizer.step()`` was a signal-less
      one made by :meth:`step`, ``observe`` *replaces* it (it recomputes from
      the state before it), so that optimizer step still counts once.
    * :meth:`step` performs a signal-less update (every signal "not
      observed": EMAs and signal-driven rules hold, clock-driven parts such as
      ``cyclical`` and warmup advance) only if the controller has not advanced
      since the last ``optimizer.step()``; otherwise it does nothing. Calling
      it several times per optimizer step (as ``accelerate`` does with several
      processes) is harmless.

    So ``optimizer.step(); sched.observe(...); sched.step()``,
    ``optimizer.step(); sched.step(); sched.observe(...)`` and
    ``optimizer.step(); sched.step()`` (``transformers.Trainer``) all advance
    the controller exactly once per optimizer step, and ``observe`` before
    ``optimizer.step()`` works too (its update replaces the previous step's
    ``step()`` update). Call ``observe`` once per optimizer step: each call is
    one controller update. The hook does not fire for optimizer steps replayed
    from a captured CUDA graph; call :meth:`observe` there.

    **Modes.** Both run the same rule code; they differ in where the numbers
    live.

    * Host mode (default, ``device_mode=False``): the state is Python floats
      holding float32 values (every arithmetic result is rounded to float32,
      see "Numeric semantics" in the README) and the update is the core's
      ``update`` traced once per pattern of supplied signals into
      straight-line Python (:mod:`adaptive_sched._hostpath`, bit-identical to
      ``update(init(config, xp=adaptive_sched._scalar), ...)``); a tensor
      signal costs one ``.item()``. Python float lrs are replaced (by the
      float32 lr; with ``lr_scale == 1``, e.g. every rule ``"none"``, by each
      group's base lr bit for bit), tensor lrs are filled in place. In both modes :meth:`get_last_lr` returns each
      group's lr in the group's own type (floats, or 0-d tensor copies).
    * Device mode (``device_mode=True``): the state is 0-d float32/int32
      tensors on the device of the optimizer's first parameter, and the update
      is the same trace emitted as torch operations, bit for bit equal to
      host mode (state and hparams: the same float32 constants, ``exp``/``log``/
      ``log1p``/``cos`` computed in float64 and rounded as host mode does);
      signals stay tensors (Python
      numbers are filled on the device, without a copy); :meth:`observe` never
      synchronises with the host. Because writing a Python float into ``param_groups`` needs the
      value on the host, device mode *requires* every group's ``lr`` (and,
      with a momentum rule, ``momentum`` or ``betas[0]``) to be a tensor on
      that device (e.g. ``Adam(params, lr=torch.tensor(1e-3, device=dev),
      fused=True)`` or ``capturable=True``) and updates it in place with
      ``copy_``; the constructor raises ``ValueError`` otherwise (it never
      converts them behind the optimizer's back). Pass tensor signals on the same device (e.g. the
      detached loss); a tensor on another device is copied.

    **Gradient norm.** ``observe(model=...)`` computes the global L2 norm of
    ``model.parameters()`` gradients (call it before ``zero_grad``) only when
    ``lr_rule == "grad_norm"``, the one rule that reads it; otherwise
    ``model`` is ignored. An explicit ``grad_norm=`` always takes precedence.

    **Several processes** (DDP, FSDP, Accelerate, ``torchrun``). When
    ``torch.distributed`` is initialised and ``process_group`` (default: the
    default group) has more than one rank, :meth:`observe` averages its
    signals over the ranks with one ``all_reduce`` of one small packed tensor
    (:mod:`adaptive_sched._distributed`) before the update, so every rank sets
    the identical lr and momentum. A signal that is ``None``/NaN on some ranks
    is averaged over the ranks that have a finite value; NaN on every rank
    that supplied it is "not observed". ``observe`` is then a collective:
    call it on every rank, once per optimizer step (:meth:`step` is not: its
    signal-less update is the same on every rank). Device mode keeps the
    all-reduce on device without a host sync; there every signal an active
    rule reads is passed to the update (NaN when no rank observed it, which
    ``State.skipped`` counts) and signals no rule reads are dropped. Every
    rank holds the same state, so rank 0's :meth:`state_dict` restores every
    rank. ``sync_signals=False`` opts out (each rank uses its local signals).

    **Bad input.** ``None``, NaN and +-inf signals are "not observed" (the
    core's rule): hyperparameters hold and stay finite and within bounds.
    Finite values beyond ``SIGNAL_LIMIT`` (a Python ``1e40``, a float64
    tensor of ``1e300``) are clipped to it and observed, in both modes.

    **torch's scheduler contract.** Tools check ``isinstance(sched,
    LRScheduler)`` (PyTorch Lightning's scheduler validation, type checks in
    HF utilities), so this class is one, without calling
    ``LRScheduler.__init__`` (no wrapping of ``optimizer.step``, no
    ``verbose``, no ``__dict__`` dump as state dict: :meth:`state_dict` is an
    explicit, versioned layout). It keeps the attributes torch's schedulers
    and the tools around them read, as mirrors of its own state: every group
    gets ``initial_lr`` (``setdefault``, as torch: an earlier scheduler's
    value is kept and used as base lr); :attr:`last_epoch` is 0 after
    construction and counts controller updates (one per optimizer step, so
    it counts :meth:`step` calls in a ``Trainer`` loop); ``_step_count`` is 1
    after construction and counts :meth:`step` calls (``accelerate``
    increments it too). It composes with torch's own schedulers:
    ``SequentialLR(opt, [LinearLR(opt, ...), sched], milestones=[k])``, in
    either construction order, starts the adaptive phase at step ``k`` from
    the base lr (``_update_lr(0)`` / ``step(0)`` write the closed form), and
    ``ChainedScheduler([ExponentialLR(opt, 0.9), sched])`` multiplies the two
    (chainable form, above). Inside ``SequentialLR``, call :meth:`observe`
    only in the adaptive phase (before it, its factor would multiply the
    other scheduler's lr). ``copy.deepcopy`` and ``pickle`` work (the copy
    counts its own optimizer's steps).

    Args:
      optimizer: the ``torch.optim.Optimizer`` whose ``param_groups`` are driven.
      config: a ready :class:`adaptive_sched.Config`; mutually exclusive with
        ``config_kwargs``.
      device_mode: run the controller on the optimizer's device with no host
        synchronisation (see above). Default: host mode.
      sync_signals: when ``torch.distributed`` is initialised with more than
        one rank, average each :meth:`observe`'s signals over the ranks (see
        "Several processes"). ``False``: every rank uses its local signals.
      process_group: the group to average over (default: the default group).
      **config_kwargs: :class:`adaptive_sched.Config` fields (``lr_rule=``,
        ``min_lr=``, ...).

    Raises:
      TypeError: ``optimizer`` is not an Optimizer, ``config`` is not a
        Config, both ``config`` and keyword arguments are given, or a keyword
        is not a Config field.
      ValueError: a Config value is invalid, or device mode cannot write a
        group's lr/momentum without a host sync.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        config: Config | None = None,
        *,
        device_mode: bool = False,
        sync_signals: bool = True,
        process_group: Any = None,
        **config_kwargs: Any,
    ) -> None:
        # LRScheduler.__init__ is deliberately not called (see the class docstring).
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "AdaptiveScheduler(optimizer=...) expects a torch.optim.Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        if not isinstance(device_mode, bool):
            raise TypeError(f"AdaptiveScheduler(device_mode=...) must be a bool, got {device_mode!r}")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        self._device_mode = device_mode
        self._device: torch.device | None = _first_param(optimizer).device if device_mode else None
        if device_mode:
            self._check_device_lrs(groups)
        # Each group's base lr: its `initial_lr` if an earlier torch scheduler set one (it
        # may already have moved `lr`, e.g. LinearLR's warmup), else its lr; torch's
        # convention (setdefault) is kept, so later schedulers read the same base.
        own = [_lr_value(g.get("initial_lr", g["lr"])) for g in groups]
        lr0 = own[0]
        self._base_lr_from_optimizer = config is None and "base_lr" not in config_kwargs
        config = _make_config(config, config_kwargs, groups, lr0)
        self._config = config
        self._momentum_on = config.momentum_rule != "none"
        self._mom_floor = _MOMENTUM_FLOOR if float(config.min_momentum) < _MOMENTUM_FLOOR else None
        self._wants_grad_norm = signal_usage(config)[0]["grad_norm"]
        self._ref_lr = float(config.base_lr)
        scale = self._ref_lr / lr0
        self._base_lrs: list[float] = [self._ref_lr] + [v if scale == 1.0 else v * scale for v in own[1:]]
        self._warned_no_grads = False
        self._warned_no_grad_norm = False
        if device_mode:
            self._check_device_momentum(groups)
        self._driven: list[bool] = self._driven_groups(groups, 0) if self._momentum_on else []

        self._xp, self._ctl = self._make_controller()
        # The first optimizer step runs before any observe(): give it the hparams a
        # signal-less first update would set (clock-driven rules, i.e. warmup and
        # cyclical, start where they should), without advancing the controller.
        self._hp: Any = self._ctl.compiled(_NONE)(list(self._ctl.flat), *_NO_SIGNALS)
        # Several processes: observe() averages its signals over the ranks (adaptive_sched._distributed).
        if not isinstance(sync_signals, bool):
            raise TypeError(f"AdaptiveScheduler(sync_signals=...) must be a bool, got {sync_signals!r}")
        uses = signal_usage(config)[0]
        self._sync = SignalSync(
            sync_signals, process_group, _first_param(optimizer).device, device_mode, [uses[n] for n in SIGNAL_NAMES]
        )

        # Step bookkeeping (see "When the controller advances").
        self._counter = _StepCounter()
        self._register_counter()
        self._advanced_at = -1  # counter value at the last controller update
        self._before: Any = None  # state before step()'s update while an observe() may replace it
        # torch's LRScheduler attributes, mirrors (see "torch's scheduler contract"):
        # last_epoch = _epochs + the controller's step count (host mode reads it off the
        # state, for free; device mode counts updates in _epochs).
        self._epochs = 0
        self._step_count = 1
        # What the scheduler last wrote into each group (see "Other schedulers"): the value
        # (`_w`), the lr_scale it carried (`_ws`) and, for tensor lrs, the tensor and its
        # version counter (`_tens`, `_ver`), which tell whether anyone changed it since.
        # A group whose lr was changed by anyone else is "chained" from then on: each update
        # multiplies its lr by lr_scale / previous lr_scale (`_chained`).
        self._w: list[Any] = []
        self._ws: list[Any] = []
        # Host mode's fast path: the float last written to the only group while it is a plain
        # (float lr, not chained) group, else None; then _w[0]/_ws[0] are derived from it.
        self._plain0: float | None = None
        self._tens: list[Any] = []
        self._ver: list[int] = []
        self._chained: list[bool] = []
        for g, own_lr in zip(groups, own):
            g.setdefault("initial_lr", g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"])
            self._new_record(g, own_lr)
        self._apply(*self._hp)

    # ------------------------------------------------------------------ construction helpers

    def _make_controller(self) -> tuple[Any, HostController]:
        """The controller: the core's update traced once per pattern of supplied signals.

        (:mod:`adaptive_sched._hostpath`) into straight-line code over a flat list of the
        state's scalars, which the compiled functions update in place. Host mode: Python
        floats. Device mode: 0-d tensors on the parameters' device, torch ops only.
        """
        config = self._config
        if self._device_mode:
            import array_api_compat.torch as xp

            return xp, HostController(config, init(config, xp=xp, device=self._device), target="torch")
        return _scalar, HostController(config)

    def _register_counter(self) -> None:
        handle = self.optimizer.register_step_post_hook(self._counter)
        weakref.finalize(self, handle.remove)

    def _new_record(self, g: dict[str, Any], own: float) -> None:
        """Start tracking a group: untouched unless an earlier scheduler moved its lr off ``initial_lr``."""
        cur = g["lr"]
        untouched = _lr_value(cur) == own
        self._w.append(_lr_value(cur))
        self._ws.append(1.0)
        self._chained.append(not untouched)
        if isinstance(cur, torch.Tensor):
            self._tens.append(cur if untouched else None)
            self._ver.append(cur._version)
        else:
            self._tens.append(None)
            self._ver.append(0)

    def _driven_groups(self, groups: list[dict[str, Any]], first: int) -> list[bool]:
        """The momentum policy: which groups a momentum rule drives; warns once about the others."""
        driven, missing, zero = [], [], []
        for i, g in enumerate(groups):
            mom = _group_momentum(g)
            driven.append(mom is not None and mom > 0.0)
            if mom is None:
                missing.append(first + i)
            elif mom <= 0.0:
                zero.append(first + i)
        rule = self._config.momentum_rule
        name = type(self.optimizer).__name__
        if missing or zero:
            parts = []
            if missing:
                parts.append(f"param_groups {missing} have no 'momentum' or 'betas' hyperparameter")
            if zero:
                parts.append(
                    f"param_groups {zero} were built with momentum 0 (a momentum rule drives only groups "
                    "built with momentum > 0; pass e.g. momentum=0.9 to the optimizer to let it)"
                )
            head = f"momentum_rule={rule!r} has no effect on {name}: " if not any(driven) else (
                f"momentum_rule={rule!r} on {name}: "
            )
            warnings.warn(
                head + "; ".join(parts) + ". Their momentum is left unchanged.", UserWarning, stacklevel=3
            )
        return driven

    def _check_device_groups(self, groups: list[dict[str, Any]]) -> None:
        """Device mode: raise ``ValueError`` unless every hparam it writes is a tensor on the device."""
        self._check_device_lrs(groups)
        self._check_device_momentum(groups)

    def _check_device_lrs(self, groups: list[dict[str, Any]]) -> None:
        dev = self._device
        for i, g in enumerate(groups):
            lr = g["lr"]
            if not isinstance(lr, torch.Tensor):
                raise ValueError(f"param_groups[{i}]['lr']={lr!r} is a Python number. {_DEVICE_FIX}")
            if lr.device != dev:
                raise ValueError(
                    f"param_groups[{i}]['lr'] is on {lr.device} but the parameters are on {dev}. "
                    + _DEVICE_FIX
                )

    def _check_device_momentum(self, groups: list[dict[str, Any]]) -> None:
        if not self._momentum_on:
            return
        dev = self._device
        for i, g in enumerate(groups):
            if "momentum" in g:
                mom, where = g["momentum"], f"param_groups[{i}]['momentum']"
            elif "betas" in g:
                mom, where = g["betas"][0], f"param_groups[{i}]['betas'][0]"
            else:
                continue
            if isinstance(mom, (int, float)) and mom == 0:
                continue  # not driven (momentum policy): never written
            if not isinstance(mom, torch.Tensor) or mom.device != dev:
                raise ValueError(
                    f"momentum_rule={self._config.momentum_rule!r} with device_mode=True needs {where} to be "
                    f"a tensor on {dev}, got {mom!r}. {_DEVICE_FIX}"
                )

    # ------------------------------------------------------------------ copies

    def __getstate__(self) -> dict[str, Any]:
        """``copy.deepcopy`` / ``pickle``: everything but the compiled controller, which is rebuilt."""
        d = self.__dict__.copy()
        del d["_xp"]
        d["_ctl"] = list(self._ctl.flat)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        flat = d.pop("_ctl")
        d.setdefault("_warned_no_grad_norm", False)  # pickled before these attributes existed
        d.setdefault("_base_lr_from_optimizer", True)
        self.__dict__.update(d)
        self._xp, self._ctl = self._make_controller()
        self._ctl.flat = flat
        # torch's Optimizer drops its hooks when copied or pickled: count the copy's steps.
        hooks = getattr(self.optimizer, "_optimizer_step_post_hooks", None)
        if hooks is None or not any(h is self._counter for h in hooks.values()):
            self._register_counter()
        # A copied tensor starts a new version counter.
        for i, g in enumerate(self.optimizer.param_groups[: len(self._tens)]):
            t = self._tens[i]
            if t is not None and g["lr"] is t:
                self._ver[i] = t._version

    # ------------------------------------------------------------------ the LRScheduler contract

    @property
    def config(self) -> Config:
        """The :class:`adaptive_sched.Config` this scheduler runs."""
        return self._config

    @property
    def device_mode(self) -> bool:
        """Whether the controller runs on the optimizer's device (see the class docstring)."""
        return self._device_mode

    @property
    def signal_world_size(self) -> int:
        """How many ranks :meth:`observe` averages its signals over (1: local signals only).

        More than 1 when ``sync_signals`` is on and ``torch.distributed`` is
        initialised with several ranks in ``process_group``.
        """
        return self._sync.world_size()

    # Read-only on purpose (LRScheduler's is a writable list): the base lrs are fixed at
    # construction, and LRScheduler.__init__, which assigns them, is not called.
    @property
    def base_lrs(self) -> list[float]:  # type: ignore[override]
        """Each param group's base lr (a copy): its lr when every rule leaves the lr alone."""
        return list(self._base_lrs)

    @property
    def controller_state(self) -> State:
        """The controller's current :class:`adaptive_sched.State` (Python numbers in host mode)."""
        return self._ctl.state

    @property
    def hparams(self) -> Hparams:
        """The hyperparameters of the last update (``lr`` is the reference lr, group 0's by default)."""
        return Hparams(*self._hp)

    @property
    def last_epoch(self) -> int:
        """torch's counter: 0 after construction, +1 per controller update (tools may set it, e.g. ``SequentialLR``)."""
        return self._epochs if self._device_mode else self._epochs + self._ctl.flat[0]

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        self._epochs = value if self._device_mode else value - self._ctl.flat[0]

    def get_last_lr(self) -> list[Any]:
        """The lr last written to each param group, one entry per group, of the group's own type.

        Returns:
          Python floats for groups with a float lr, fresh 0-d tensors (copies,
          never aliasing the optimizer's or the scheduler's tensors) for groups
          with a tensor lr. A group added with ``optimizer.add_param_group``
          since the last update is listed with its own lr.
        """
        groups = self.optimizer.param_groups
        if self._plain0 is not None:
            self._w[0] = self._plain0
        if len(groups) != len(self._base_lrs):
            self._adopt_groups(groups)
        out = []
        for g, w in zip(groups, self._w):
            cur = g["lr"]
            if isinstance(cur, torch.Tensor):
                w = w.detach().to(cur.dtype).clone() if isinstance(w, torch.Tensor) else torch.full_like(cur, w)
            out.append(w)
        return out

    def get_lr(self) -> list[Any]:
        """The lr the scheduler sets for each param group now (same values as :meth:`get_last_lr`).

        There is no "next lr" to compute ahead of time: the next lr depends on
        signals not yet observed. Provided for the LRScheduler contract.
        """
        return self.get_last_lr()

    def _get_closed_form_lr(self) -> list[Any]:
        """Each group's lr in closed form: ``base_lr_i * lr_scale`` of the last update (torch's hook)."""
        lr, _, lr_scale = self._hp
        if not self._device_mode and lr_scale == 1.0:  # as _apply_host writes it
            return list(self._base_lrs)
        return [lr if b == self._ref_lr else lr_scale * b for b in self._base_lrs]

    def _update_lr(self, epoch: int | None = None) -> None:
        """torch's internal: ``SequentialLR`` calls ``_update_lr(0)`` at the milestone that starts this scheduler.

        With an epoch it sets :attr:`last_epoch` and writes the closed form
        (each group's base lr times the controller's current factor, whatever
        the previous scheduler left in the group); the controller does not
        advance. Without one it is :meth:`step`.
        """
        if epoch is None:
            self._advance()
            return
        self.last_epoch = epoch
        lr, momentum, lr_scale = self._hp
        self._apply(lr, momentum, lr_scale, absolute=True)

    def _initial_step(self) -> None:
        """torch's internal: ``SequentialLR`` calls it on the scheduler that runs first.

        As torch's: the step count restarts at 1 and :attr:`last_epoch` moves
        one on; the groups get the closed-form lrs; the controller does not advance.
        """
        self._step_count = 1
        self.last_epoch += 1
        lr, momentum, lr_scale = self._hp
        self._apply(lr, momentum, lr_scale, absolute=True)

    def step(self, epoch: int | None = None) -> None:
        """Advance the controller without signals, unless it already advanced since the last optimizer step.

        This is what ``transformers.Trainer`` and other loops call after
        ``optimizer.step()``. See the class docstring for how it combines with
        :meth:`observe`.

        Args:
          epoch: deprecated in torch, supported as torch's schedulers do (old
            torch's ``SequentialLR`` passes ``0`` at a milestone): sets
            :attr:`last_epoch` to ``epoch`` and writes the closed-form lrs
            without advancing the controller; warns.

        Raises:
          ValueError: ``epoch`` is not an int (e.g. a metric passed as to
            ``ReduceLROnPlateau.step``: signals go to :meth:`observe`).
        """
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
            raise ValueError(
                f"AdaptiveScheduler.step({epoch!r}): step() takes no metric (this is not ReduceLROnPlateau); "
                "pass training signals to observe(loss=..., R=...) and call step() with no argument."
            )
        self._step_count += 1
        if epoch is not None:
            warnings.warn(
                "AdaptiveScheduler.step(epoch) is deprecated (as in torch): it sets last_epoch and rewrites each "
                "group's lr from the current controller state without advancing it. Call step() with no argument.",
                UserWarning,
                stacklevel=2,
            )
            self._update_lr(epoch)
            return
        self._advance()

    def _advance(self) -> None:
        n = self._counter.n
        if self._advanced_at == n:
            return
        before = self._ctl.flat.copy()
        self._hp = hp = self._ctl.compiled(_NONE)(self._ctl.flat, *_NO_SIGNALS)
        self._before = before
        self._advanced_at = n
        if self._device_mode:
            self._epochs += 1
        self._apply(*hp)

    def observe(
        self,
        loss: Any = None,
        R: Any = None,  # noqa: N803  (the seed's public name for the reward)
        model: torch.nn.Module | None = None,
        *more: Any,
        **signals: Any,
    ) -> None:
        """One controller update with this step's signals; writes the new lr/momentum into the optimizer.

        Call it once per optimizer step, before or after ``optimizer.step()``
        (see the class docstring). Each signal may be ``None`` (not observed),
        a Python number or a one-element real tensor; NaN/inf count as not
        observed, finite values beyond the signal limit (``1e40``, a float64
        tensor of ``1e300``) are clipped to it and observed, in both modes.

        Args:
          loss: training loss (lower is better; any sign).
          R: reward (higher is better; any sign); the seed's alias of ``reward=``.
          model: if given with ``lr_rule="grad_norm"`` and no ``grad_norm``,
            the global L2 norm of its parameters' gradients is computed (call
            before ``zero_grad``). Ignored by every other lr rule.
          *more, **signals: the other :class:`~adaptive_sched.Signals` fields,
            by name (``reward=``, ``grad_norm=``, ``kl=``) or positionally after
            ``model`` in Signals order (``grad_norm``, ``kl``).

        Raises:
          TypeError: a signal is neither a real number nor a real tensor, an
            unknown keyword, or both ``R=`` and ``reward=``.
          ValueError: a tensor signal has more than one element.
        """
        if signals or more or self._device_mode:
            signals["loss"] = loss
            values, labels = from_keywords("observe()", signals, more, _POSITIONAL, ("R", "reward", R))
            if self._device_mode:
                conv = self._device_signal
                values = [conv(label, v) for label, v in zip(labels, values)]
            else:
                values = [v if v is None or type(v) is float else _host_signal(lb, v) for lb, v in zip(labels, values)]
        else:  # host mode's observe(loss=..., R=..., model=...): the hot path, no keyword parsing
            if loss is not None and type(loss) is not float:
                loss = _host_signal("loss", loss)
            if R is not None and type(R) is not float:
                R = _host_signal("R", R)
            values = list(_NO_SIGNALS)
            values[_LOSS] = loss
            values[_REWARD] = R
        if values[_GRAD_NORM] is None and self._wants_grad_norm:
            if model is not None:
                gn = self._model_grad_norm(model)
                values[_GRAD_NORM] = (
                    gn if self._device_mode or gn is None or type(gn) is float else _host_signal("grad_norm", gn)
                )
            elif not self._warned_no_grad_norm:
                self._warned_no_grad_norm = True
                warnings.warn(
                    f"observe() got neither grad_norm= nor model=, but lr_rule={self._config.lr_rule!r} reads the "
                    "gradient norm; that rule holds (the lr it drives does not move). Pass observe(..., "
                    "model=model) before optimizer.zero_grad(), or grad_norm=... (Warned once per scheduler.)",
                    UserWarning,
                    stacklevel=2,
                )
        n = self._counter.n
        replace = self._before is not None and self._advanced_at == n
        values = self._sync(values)  # mean over the ranks when torch.distributed runs several (one all-reduce)
        fn = self._ctl.compiled(tuple([v is not None for v in values]))
        flat = self._ctl.flat
        if replace:
            flat[:] = self._before
        self._hp = hp = fn(flat, *values)
        self._before = None
        if self._device_mode:
            if self._advanced_at != n:
                self._epochs += 1
            self._advanced_at = n
            self._apply(*hp)
            return
        self._advanced_at = n
        # _apply_host's common case inlined: one group with a float lr that only this scheduler writes
        groups = self.optimizer.param_groups
        g = groups[0]
        cur = g["lr"]
        if type(cur) is float and cur == self._plain0 and len(groups) == 1 and not self._momentum_on:
            # the float32 lr; lr_scale == 1 writes the base lr bit for bit (see _apply_host)
            g["lr"] = self._plain0 = hp[0] if hp[2] != 1.0 else self._ref_lr
        else:
            self._apply_host(hp[0], hp[1], hp[2])

    # ------------------------------------------------------------------ internals

    def _apply(self, lr: Any, momentum: Any, lr_scale: Any, absolute: bool = False) -> None:
        """Write the hparams into every param group (see "Parameter groups" and "Other schedulers").

        ``absolute``: write each group's closed form ``base_lr_i * lr_scale`` even
        if something else changed its lr (load_state_dict, SequentialLR's milestone).
        """
        groups = self.optimizer.param_groups
        if len(groups) != len(self._base_lrs):
            self._adopt_groups(groups)
        if not self._device_mode:
            self._apply_host(lr, momentum, lr_scale, absolute)
            return
        ref = self._ref_lr
        w, ws, tens, ver, chained = self._w, self._ws, self._tens, self._ver, self._chained
        with torch.no_grad():
            for i, (g, b) in enumerate(zip(groups, self._base_lrs)):
                cur = g["lr"]
                if not isinstance(cur, torch.Tensor):
                    raise ValueError(
                        f"param_groups[{i}]['lr'] became a Python number ({cur!r}); device_mode=True needs "
                        "tensor learning rates (see AdaptiveScheduler's docstring)."
                    )
                if absolute or (not chained[i] and cur is tens[i] and cur._version == ver[i]):
                    v = lr if b == ref else lr_scale * b
                    chained[i] = False
                else:  # changed by someone else: apply this update as a factor on top (chainable form)
                    v = cur * (lr_scale / ws[i])
                    chained[i] = True
                cur.copy_(v)
                w[i], ws[i], tens[i], ver[i] = v, lr_scale, cur, cur._version
            if self._momentum_on:
                if self._mom_floor is not None:
                    momentum = torch.clamp_min(momentum, self._mom_floor)
                for i, g in enumerate(groups):
                    if not self._driven[i]:
                        continue
                    cur = g["momentum"] if "momentum" in g else g["betas"][0]
                    if not isinstance(cur, torch.Tensor):
                        raise ValueError(
                            f"param_groups[{i}] momentum became a Python number ({cur!r}); device_mode=True "
                            "needs tensor momentum (see AdaptiveScheduler's docstring)."
                        )
                    cur.copy_(momentum)

    def _apply_host(self, lr: float, momentum: float, lr_scale: float, absolute: bool = False) -> None:
        """Host mode's :meth:`_apply` (observe() inlines the common case of one plain float-lr group)."""
        groups = self.optimizer.param_groups
        w, ws, chained = self._w, self._ws, self._chained
        if self._plain0 is not None:  # catch up with the fast path's writes
            w[0] = self._plain0
            # the lr_scale that came with it, as the core computes it: float32(lr / float32(base_lr))
            # (1 for the base lr itself, written bit for bit when lr_scale == 1)
            p = self._plain0
            ws[0] = 1.0 if p == self._ref_lr else _scalar.round_f32(p / _scalar.round_f32(self._ref_lr))
        if len(groups) != len(w):
            self._adopt_groups(groups)
        ref = self._ref_lr
        tens, ver = self._tens, self._ver
        v: Any
        # The controller computes in float32 (as device mode and JAX do): lr is a float32
        # value. lr_scale == 1 (e.g. every rule "none") writes each group's own base lr,
        # bit for bit, instead of its float32 rounding.
        identity = lr_scale == 1.0
        for i, (g, b) in enumerate(zip(groups, self._base_lrs)):
            cur = g["lr"]
            if isinstance(cur, torch.Tensor):
                if absolute or (not chained[i] and cur is tens[i] and cur._version == ver[i]):
                    v = b if identity else (lr if b == ref else b * lr_scale)
                    cur.fill_(v)
                    chained[i] = False
                else:  # changed by someone else (chainable form), without a host sync
                    cur.mul_(lr_scale / ws[i])
                    v = cur.detach().clone()
                    chained[i] = True
                tens[i], ver[i] = cur, cur._version
            else:
                if absolute or (not chained[i] and cur == w[i]):
                    v = b if identity else (lr if b == ref else b * lr_scale)
                    chained[i] = False
                else:  # changed by someone else: apply this update as a factor on top
                    v = cur * (lr_scale / ws[i])
                    chained[i] = True
                g["lr"] = v
            w[i], ws[i] = v, lr_scale
        g = groups[0]
        self._plain0 = w[0] if len(groups) == 1 and type(g["lr"]) is float and not chained[0] else None
        if self._momentum_on:
            if self._mom_floor is not None and momentum < self._mom_floor:
                momentum = self._mom_floor
            for g, driven in zip(groups, self._driven):
                if not driven:
                    continue
                if "momentum" in g:
                    cur = g["momentum"]
                    if isinstance(cur, torch.Tensor):
                        cur.fill_(momentum)
                    else:
                        g["momentum"] = momentum
                else:
                    betas = g["betas"]
                    if isinstance(betas[0], torch.Tensor):
                        betas[0].fill_(momentum)
                    else:
                        g["betas"] = type(betas)((momentum, *betas[1:]))

    def _adopt_groups(self, groups: list[dict[str, Any]]) -> None:
        """Adopt groups added by ``optimizer.add_param_group``: base lr = their ``initial_lr`` or lr."""
        if len(groups) < len(self._base_lrs):
            raise RuntimeError(
                f"the optimizer has {len(groups)} param groups but the scheduler was built for "
                f"{len(self._base_lrs)}; param groups cannot be removed."
            )
        first = len(self._base_lrs)
        new = groups[first:]
        if self._device_mode:
            self._check_device_groups(new)
        for g in new:
            b = _lr_value(g.get("initial_lr", g["lr"]))
            g.setdefault("initial_lr", g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"])
            self._base_lrs.append(b)
            self._new_record(g, b)
        if self._momentum_on:
            self._driven.extend(self._driven_groups(new, first))

    def _device_signal(self, name: str, v: Any) -> Any:
        if v is None:
            return None
        dev = self._device
        if isinstance(v, torch.Tensor):
            _check_tensor_signal(name, v)
            v = v.detach()
            if v.ndim:
                v = v.reshape(())
            if v.dtype == torch.float64:  # clip on the device before float32 would turn 1e40 into inf
                v = torch.where(torch.isfinite(v), v.clamp(-SIGNAL_LIMIT, SIGNAL_LIMIT), v)
            if v.dtype != torch.float32:  # e.g. a bf16 loss: the controller computes in float32
                v = v.to(torch.float32)
            if v.device != dev:
                v = v.to(dev, non_blocking=True)
            return v
        # A fill kernel with the value as an argument: no host-to-device copy, no sync. Finite
        # values are clipped here, as the host path does, before float32 could overflow.
        x = _number(name, v)
        if x > SIGNAL_LIMIT:
            x = x if x == math.inf else SIGNAL_LIMIT
        elif x < -SIGNAL_LIMIT:
            x = x if x == -math.inf else -SIGNAL_LIMIT
        return torch.full((), x, dtype=torch.float32, device=dev)

    def _model_grad_norm(self, model: torch.nn.Module) -> Any:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            if not self._warned_no_grads:
                self._warned_no_grads = True
                warnings.warn(
                    "observe(model=...) found no gradients (call it before optimizer.zero_grad()); "
                    "the gradient norm is treated as not observed.",
                    UserWarning,
                    stacklevel=3,
                )
            return None
        norm = _total_norm(grads)
        return norm if self._device_mode else norm.item()

    # ------------------------------------------------------------------ checkpointing

    def _controller_dict(self, snapshot: Any) -> dict[str, Any]:
        return state_to_dict(self._ctl.unflatten(snapshot))

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: plain Python values and tensors only.

        It survives ``torch.save`` + ``torch.load(weights_only=True)``. Layout
        (``format_version`` 2): ``mode`` (``"host"``/``"device"``),
        ``controller`` (:func:`adaptive_sched.state_to_dict` of the state),
        ``base_lrs`` (one float per group), ``hparams`` (``lr``, ``momentum``,
        ``lr_scale`` of the last update), ``advanced_this_step`` (the
        controller already advanced since the last optimizer step),
        ``provisional_from`` (the controller dict before a :meth:`step`
        update that a following :meth:`observe` would replace, else ``None``),
        ``last_epoch`` and ``step_count`` (torch's counters, see the class docstring).
        """
        groups = self.optimizer.param_groups
        if len(groups) != len(self._base_lrs):  # a group added since the last update
            self._adopt_groups(groups)
        advanced = self._advanced_at == self._counter.n
        provisional = advanced and self._before is not None
        return {
            "format_version": FORMAT_VERSION,
            "mode": "device" if self._device_mode else "host",
            "controller": self._controller_dict(self._ctl.flat),
            "base_lrs": list(self._base_lrs),
            "hparams": dict(zip(Hparams._fields, self._hp)),
            "advanced_this_step": advanced,
            "provisional_from": self._controller_dict(self._before) if provisional else None,
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output and write its lr/momentum into the optimizer.

        The checkpoint must come from a scheduler with the same configuration
        (rule names and every knob, compared at float32 precision, so a
        checkpoint from the other mode loads too) and the same number of param
        groups. Every entry is validated before anything changes (finite, in
        bounds, of the right type: the controller part by
        :func:`adaptive_sched.state_from_dict`, ``base_lrs`` finite and >= 0 (> 0 for group 0),
        ``hparams`` inside the configured bounds); on error the scheduler and
        the optimizer are untouched. Version 1 dicts (no ``last_epoch``) load
        with ``last_epoch`` set to the controller's step count. Each group's lr
        is written in closed form, ``base_lr_i * lr_scale``.

        Raises:
          ValueError: not an AdaptiveScheduler state dict, a format version
            this version does not read, a different configuration or number
            of param groups, or an invalid entry (the message names it).
        """
        d = state_dict
        if not isinstance(d, dict) or "format_version" not in d:
            keys = sorted(d)[:8] if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an AdaptiveScheduler state dict (no 'format_version'; got {keys})")
        version = d["format_version"]
        if type(version) is not int or version not in _SD_KEYS:
            newer = type(version) is int and version > FORMAT_VERSION
            raise ValueError(
                f"AdaptiveScheduler state dict format_version={version!r} is not supported: this version of "
                f"adaptive_sched reads format_version {sorted(_SD_KEYS)}"
                + (" (the checkpoint was written by a newer version)." if newer else ".")
            )
        expected = _SD_KEYS[version]
        if set(d) != expected:
            raise ValueError(
                f"AdaptiveScheduler state dict keys do not match: missing {sorted(expected - set(d))}, "
                f"unexpected {sorted(set(d) - expected)}"
            )
        if d["mode"] not in ("host", "device"):
            raise ValueError(f"state dict mode={d['mode']!r} is invalid: must be 'host' or 'device'")
        prov = d["provisional_from"]
        self._check_same_config(d["controller"])
        if prov is not None:
            self._check_same_config(prov)
        try:
            state = self._snapshot_from_dict(d["controller"])
            before = None if prov is None else self._snapshot_from_dict(prov)
        except (TypeError, KeyError) as err:
            raise ValueError(f"AdaptiveScheduler state dict has an invalid controller entry: {err}") from err
        except ValueError as err:
            raise ValueError(f"AdaptiveScheduler state dict has an invalid controller entry: {err}") from None
        base_lrs = d["base_lrs"]
        groups = self.optimizer.param_groups
        if not isinstance(base_lrs, (list, tuple)) or len(base_lrs) != len(groups):
            n_saved = len(base_lrs) if isinstance(base_lrs, (list, tuple)) else base_lrs
            raise ValueError(
                f"the state dict is for {n_saved} param groups but the optimizer has {len(groups)}"
            )
        # group 0's is the reference (> 0); others may be 0 (a frozen group)
        base_lrs = [
            float(check_entry(f"state dict base_lrs[{i}]", b, lo=_TINY_LR if i == 0 else 0.0))
            for i, b in enumerate(base_lrs)
        ]
        base_lrs[0] = self._ref_lr  # group 0's base lr is the reference (equal up to float32, checked above)
        hp = self._hparams_from_dict(d["hparams"])
        advanced = d["advanced_this_step"]
        if not isinstance(advanced, bool):
            raise ValueError(f"state dict advanced_this_step={advanced!r} must be a bool")
        if version >= 2:
            last_epoch = int(check_entry("state dict last_epoch", d["last_epoch"], integer=True))
            step_count = int(check_entry("state dict step_count", d["step_count"], integer=True, lo=0))
        else:
            last_epoch = int(check_entry("state dict controller step", d["controller"]["step"], integer=True))
            step_count = last_epoch + 1
        if self._device_mode:  # e.g. optimizer.load_state_dict() may have put lr tensors elsewhere
            self._check_device_groups(groups)
        # Everything validated: commit.
        if len(groups) != len(self._w):  # groups added since the last update: track them first
            self._adopt_groups(groups)
        self._ctl.flat = state
        self._hp = hp
        self._base_lrs = base_lrs
        self._before = before if advanced else None
        self._advanced_at = self._counter.n if advanced else -1
        self.last_epoch = last_epoch
        self._step_count = step_count
        self._apply(*hp, absolute=True)

    def _hparams_from_dict(self, hpd: Any) -> tuple[Any, Any, Any]:
        """Validate ``hparams`` (finite, inside the configured bounds) and convert them to this mode's scalars."""
        if not isinstance(hpd, dict) or set(hpd) != set(Hparams._fields):
            raise ValueError(f"state dict hparams={hpd!r} must be a dict with keys {list(Hparams._fields)}")
        cfg = self._config
        base, lo, hi = float(cfg.base_lr), float(cfg.min_lr), float(cfg.max_lr)
        bounds = {
            "lr": (lo, hi),
            "momentum": (float(cfg.min_momentum), float(cfg.max_momentum)),
            "lr_scale": (lo / base, hi / base),
        }
        out = []
        for k in Hparams._fields:
            a, b = bounds[k]
            # float32 rounding of a value saved in the other mode may sit just outside a bound
            v = float(check_entry(f"state dict hparams[{k!r}]", hpd[k], lo=a * (1 - 1e-6), hi=b * (1 + 1e-6)))
            out.append(min(max(v, a), b))
        lr, momentum, lr_scale = out
        if abs(lr - base * lr_scale) > 1e-5 * lr:
            raise ValueError(
                f"state dict hparams['lr']={lr!r} and hparams['lr_scale']={lr_scale!r} disagree: "
                f"lr must be base_lr * lr_scale = {base * lr_scale!r}"
            )
        return self._scalar_like(lr), self._scalar_like(momentum), self._scalar_like(lr_scale)

    def _snapshot_from_dict(self, d: dict[str, Any]) -> Any:
        """A controller dict as this mode holds it: the flat list of the state's scalars."""
        if self._device_mode:
            return flatten_state(state_from_dict(d, xp=self._xp, device=self._device))
        return as_python(self._config, flatten_state(state_from_dict(d, xp=_scalar)))  # Python ints and floats

    def _check_same_config(self, controller: Any) -> None:
        if not isinstance(controller, dict):
            raise ValueError(f"state dict controller entry must be a dict, got {type(controller).__name__}")
        mine = self._config
        diffs = []
        for name in RULE_FIELDS:
            saved = controller.get(f"config.{name}")
            if saved != getattr(mine, name):
                diffs.append(f"{name}: checkpoint {saved!r} vs scheduler {getattr(mine, name)!r}")
        for name in NUMERIC_FIELDS:
            key = f"config.{name}"
            if key not in controller:
                diffs.append(f"{name}: missing from checkpoint")
                continue
            try:
                saved = _f32(controller[key])
            except (TypeError, ValueError, RuntimeError):
                diffs.append(f"{name}: checkpoint value {controller[key]!r} is not a number")
                continue
            if saved != _f32(getattr(mine, name)):
                theirs, ours = _host_float(controller[key]), float(getattr(mine, name))
                diffs.append(f"{name}: checkpoint {theirs!r} vs scheduler {ours!r}")
        if diffs:
            hint = ""
            if any(x.startswith("base_lr") for x in diffs) and self._base_lr_from_optimizer:
                hint = (
                    " (base_lr defaults to the optimizer's lr at construction: build the scheduler before "
                    "optimizer.load_state_dict(), or pass base_lr explicitly)"
                )
            raise ValueError(
                "cannot load an AdaptiveScheduler state dict from a different configuration: "
                + "; ".join(diffs)
                + hint
            )

    def _scalar_like(self, v: float) -> Any:
        if self._device_mode:
            return torch.full((), v, dtype=torch.float32, device=self._device)
        return v

    def __repr__(self) -> str:
        mode = "device" if self._device_mode else "host"
        return f"{type(self).__name__}({type(self.optimizer).__name__}, {self._config!r}, mode={mode!r})"


def _make_config(
    config: Config | None, kwargs: dict[str, Any], groups: list[dict[str, Any]], lr0: float
) -> Config:
    """The scheduler's Config from ``config`` or Config-field keyword arguments (see the class docstring)."""
    if config is not None:
        if kwargs:
            raise TypeError(
                "AdaptiveScheduler takes either config=Config(...) or Config fields as keyword "
                f"arguments, not both (got config and {sorted(kwargs)})."
            )
        if not isinstance(config, Config):
            raise TypeError(
                f"AdaptiveScheduler(config=...) expects an adaptive_sched.Config, got {type(config).__name__}"
            )
        for name in NUMERIC_FIELDS:
            if getattr(getattr(config, name), "ndim", 0) != 0:
                raise ValueError(
                    f"Config.{name} has shape {tuple(getattr(config, name).shape)}: AdaptiveScheduler needs "
                    "scalar knobs (a batched sweep config drives the pure core, not one optimizer)."
                )
        return config
    fields = (*RULE_FIELDS, *NUMERIC_FIELDS)  # live views of the registry
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(
            f"AdaptiveScheduler got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"valid Config fields are: {', '.join(fields)}."
        )
    kwargs = dict(kwargs)
    derived = []
    if "base_lr" not in kwargs:
        kwargs["base_lr"] = lr0
        derived.append(f"base_lr from optimizer.param_groups[0]['lr']={lr0!r}")
    if kwargs.get("momentum_rule", "none") != "none" and "base_momentum" not in kwargs:
        mom = _group_momentum(groups[0])
        if mom is not None:
            kwargs["base_momentum"] = mom
            derived.append(f"base_momentum from param_groups[0]={mom!r}")
    try:
        return Config(**kwargs)
    except ValueError as err:
        if not derived:
            raise
        raise ValueError(f"{err} (took {' and '.join(derived)}; pass it explicitly to override)") from err


# ---------------------------------------------------------------------- helpers


def _first_param(optimizer: Optimizer) -> torch.Tensor:
    for g in optimizer.param_groups:
        for p in g["params"]:
            return p
    raise ValueError("the optimizer has no parameters")


def _host_float(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _lr_value(v: Any) -> float:
    """An lr as a Python float; a float32 (or narrower) tensor reads as the shortest decimal that rounds to it.

    ``torch.tensor(1e-3)`` holds 0.0010000000474974513; read back as ``1e-3`` (what
    the user wrote), so float32 rounding never trips ``base_lr <= max_lr`` and
    writing the lr back gives the same float32 value.
    """
    if isinstance(v, torch.Tensor):
        x = float(v.item())
        if v.dtype in (torch.float32, torch.float16, torch.bfloat16) and math.isfinite(x):
            import numpy as np

            return float(str(np.float32(x)))
        return x
    return float(v)


def _f32(v: Any) -> float:
    """``v`` rounded to float32 (for comparing configs across modes)."""
    import numpy as np

    return float(np.float32(_host_float(v)))


def _group_momentum(group: dict[str, Any]) -> float | None:
    if "momentum" in group:
        return _host_float(group["momentum"])
    if "betas" in group:
        return _host_float(group["betas"][0])
    return None


def _number(name: str, v: Any) -> float:
    if isinstance(v, (str, bytes, bool)):  # a bool is not a measurement (True would read as 1.0)
        raise TypeError(
            f"observe({name}=...) must be None, a number or a one-element tensor, got {type(v).__name__}"
        )
    try:
        return float(v)
    except OverflowError:  # e.g. a huge int: not finite in float, so "not observed"
        return math.inf
    except (TypeError, ValueError):
        raise TypeError(
            f"observe({name}=...) must be None, a number or a one-element tensor, got {type(v).__name__}"
        ) from None


def _check_tensor_signal(name: str, v: torch.Tensor) -> None:
    """A tensor signal must hold one real number (host and device mode alike)."""
    if v.numel() != 1:
        raise ValueError(
            f"observe({name}=...) must be a scalar, got a tensor of shape {tuple(v.shape)}; "
            "reduce it first (e.g. the batch mean)."
        )
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"observe({name}=...) must be a real number, got a {v.dtype} tensor")


def _host_signal(name: str, v: Any) -> float:
    if isinstance(v, torch.Tensor):
        _check_tensor_signal(name, v)
        return float(v.item())
    return _number(name, v)


def _total_norm(grads: Iterable[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of ``grads``, as a tensor (no host sync)."""
    fn = getattr(torch.nn.utils, "get_total_norm", None)
    if fn is not None:  # torch >= 2.6
        return fn(grads, norm_type=2.0)
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(g.detach(), 2.0) for g in grads]
        dev = norms[0].device
        return torch.linalg.vector_norm(torch.stack([n.to(dev) for n in norms]), 2.0)
