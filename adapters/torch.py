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

import dataclasses
import math
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from adaptive_sched import _scalar
from adaptive_sched._checkpoint import state_from_dict, state_to_dict
from adaptive_sched._config import NUMERIC_FIELDS, RULE_FIELDS, Config
from adaptive_sched._core import Hparams, State, init
from adaptive_sched._hostpath import HostController, flatten_state

__all__ = ["AdaptiveScheduler", "FORMAT_VERSION"]

_NONE = (False, False, False, False)  # no signal supplied (step(), and the peek at construction)

FORMAT_VERSION = 1
"""Version of :meth:`AdaptiveScheduler.state_dict`'s layout (the controller part has its own)."""

_CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))
_DEVICE_FIX = (
    "device_mode=True updates tensor hyperparameters in place and cannot write a Python float "
    "without a host sync: build the optimizer with tensors on the parameters' device (e.g. "
    "Adam(params, lr=torch.tensor(1e-3, device=dev), fused=True)) or use host mode."
)
_SD_KEYS = frozenset(
    {"format_version", "mode", "controller", "base_lrs", "hparams", "advanced_this_step", "provisional_from"}
)


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
    defaults to ``optimizer.param_groups[0]["lr"]`` at construction and, when a
    momentum rule is active, ``base_momentum`` defaults to group 0's
    ``momentum`` / ``betas[0]``. A Config is taken as is: its ``base_lr`` is
    the reference lr even if group 0 was built with another one.

    **Parameter groups.** The scheduler stores one base lr per group (in the
    scheduler, never in ``param_groups``). Group ``i``'s base lr is its lr at
    construction times ``base_lr / lr_0`` (so exactly its own lr when
    ``base_lr`` is group 0's lr) and its lr is always
    ``base_lr_i * lr / base_lr``: groups stay proportional, and the Config's
    ``[min_lr, max_lr]`` bounds the reference lr ``lr`` and apply to group
    ``i`` scaled by ``base_lr_i / base_lr``. Groups added later with
    ``optimizer.add_param_group`` are adopted with their lr at the next update
    as base lr. The lr of every group is written at construction and after
    every controller update. At construction it is the lr that a signal-less
    first update would set (``base_lr`` unless a clock-driven rule moves it:
    warmup starts at ``base_lr / warmup_steps``, ``cyclical`` at ``max_lr``),
    computed without advancing the controller.

    **Momentum** is written only when ``momentum_rule != "none"``: to
    ``group["momentum"]`` for SGD-style groups and ``group["betas"][0]`` for
    Adam-style ones (``betas`` keeps its container type; tensor entries are
    updated in place). A group with neither key is left alone and never gets
    a new key; if no group has one, a ``UserWarning`` says so once, at
    construction.

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
      (computed in float64) and the update is the core's ``update`` traced
      once per pattern of supplied signals into straight-line Python
      (:mod:`adaptive_sched._hostpath`, bit-identical to
      ``update(init(config, xp=adaptive_sched._scalar), ...)``); a tensor
      signal costs one ``.item()``; :meth:`get_last_lr` returns Python
      floats. Python float lrs are replaced, tensor lrs are filled in place.
    * Device mode (``device_mode=True``): the state is 0-d float32/int32
      tensors on the device of the optimizer's first parameter, and the update
      is the same trace emitted as torch operations (equal to the core's
      ``update`` on array-api-compat's torch namespace up to float32 rounding:
      config constants are folded in float64); signals stay tensors (Python
      numbers are filled on the device, without a copy); :meth:`observe` never
      synchronises with the host. Because writing a Python float into ``param_groups`` needs the
      value on the host, device mode *requires* every group's ``lr`` (and,
      with a momentum rule, ``momentum`` or ``betas[0]``) to be a tensor on
      that device (e.g. ``Adam(params, lr=torch.tensor(1e-3, device=dev),
      fused=True)`` or ``capturable=True``) and updates it in place with
      ``copy_``; the constructor raises ``ValueError`` otherwise (it never
      converts them behind the optimizer's back). :meth:`get_last_lr`
      returns 0-d tensors. Pass tensor signals on the same device (e.g. the
      detached loss); a tensor on another device is copied.

    **Gradient norm.** ``observe(model=...)`` computes the global L2 norm of
    ``model.parameters()`` gradients (call it before ``zero_grad``) only when
    ``lr_rule == "grad_norm"``, the one rule that reads it; otherwise
    ``model`` is ignored. An explicit ``grad_norm=`` always takes precedence.

    **Bad input.** ``None``, NaN and +-inf signals are "not observed" (the
    core's rule): hyperparameters hold and stay finite and within bounds.

    **Why subclass LRScheduler.** Tools check ``isinstance(sched, LRScheduler)``
    (PyTorch Lightning's scheduler validation, type checks in HF utilities), so
    this class is one. It does not call ``LRScheduler.__init__`` and overrides
    every public method, so none of its hidden machinery applies (its inert
    class-level defaults such as ``_get_lr_called_within_step`` aside): no
    ``initial_lr`` key in param groups, no ``last_epoch`` counter, no wrapping
    of ``optimizer.step``, no ``verbose``, no ``__dict__`` dump as state dict
    (:meth:`state_dict` is an explicit, versioned layout). Composing it inside
    ``torch.optim.lr_scheduler.SequentialLR``/``ChainedScheduler`` is not
    supported; use ``Config.warmup_steps`` for warmup.

    Args:
      optimizer: the ``torch.optim.Optimizer`` whose ``param_groups`` are driven.
      config: a ready :class:`adaptive_sched.Config`; mutually exclusive with
        ``config_kwargs``.
      device_mode: run the controller on the optimizer's device with no host
        synchronisation (see above). Default: host mode.
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
        lr0 = _host_float(groups[0]["lr"])
        config = _make_config(config, config_kwargs, groups, lr0)
        self._config = config
        self._momentum_on = config.momentum_rule != "none"
        self._wants_grad_norm = config.lr_rule == "grad_norm"
        self._ref_lr = float(config.base_lr)
        scale = self._ref_lr / lr0
        own = [_host_float(g["lr"]) for g in groups]
        self._base_lrs: list[float] = [self._ref_lr] + [v if scale == 1.0 else v * scale for v in own[1:]]
        self._warned_no_grads = False
        if self._momentum_on:
            self._warn_missing_momentum(groups)

        # The controller: the core's update traced once per pattern of supplied signals
        # (adaptive_sched._hostpath) into straight-line code over a flat list of the
        # state's scalars, which the compiled functions update in place. Host mode: Python
        # floats. Device mode: 0-d tensors on the parameters' device, torch ops only.
        if device_mode:
            import array_api_compat.torch as xp

            self._check_device_momentum(groups)
            self._xp: Any = xp
            self._ctl = HostController(config, init(config, xp=xp, device=self._device), target="torch")
        else:
            self._xp = _scalar
            self._ctl = HostController(config)
        # The first optimizer step runs before any observe(): give it the hparams a
        # signal-less first update would set (clock-driven rules, i.e. warmup and
        # cyclical, start where they should), without advancing the controller.
        self._hp: Any = self._ctl.compiled(_NONE)(list(self._ctl.flat), None, None, None, None)

        # Step bookkeeping (see "When the controller advances").
        self._counter = _StepCounter()
        handle = optimizer.register_step_post_hook(self._counter)
        weakref.finalize(self, handle.remove)
        self._advanced_at = -1  # counter value at the last controller update
        self._before: Any = None  # state before step()'s update while an observe() may replace it
        self._last_lr: list[Any] = []
        self._apply(*self._hp)

    def _warn_missing_momentum(self, groups: list[dict[str, Any]]) -> None:
        missing = [i for i, g in enumerate(groups) if "momentum" not in g and "betas" not in g]
        rule = self._config.momentum_rule
        if len(missing) == len(groups):
            warnings.warn(
                f"momentum_rule={rule!r} has no effect: {type(self.optimizer).__name__} has no 'momentum' or "
                "'betas' hyperparameter in its param groups (they are left unchanged).",
                UserWarning,
                stacklevel=3,
            )
        elif missing:
            warnings.warn(
                f"momentum_rule={rule!r}: param_groups {missing} have no 'momentum' or 'betas' "
                "hyperparameter; their momentum is left unchanged.",
                UserWarning,
                stacklevel=3,
            )

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
            if not isinstance(mom, torch.Tensor) or mom.device != dev:
                raise ValueError(
                    f"momentum_rule={self._config.momentum_rule!r} with device_mode=True needs {where} to be "
                    f"a tensor on {dev}, got {mom!r}. {_DEVICE_FIX}"
                )

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
    def base_lrs(self) -> list[float]:
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

    def get_last_lr(self) -> list[Any]:
        """The lr last written to each param group.

        Returns:
          One entry per param group: Python floats in host mode, fresh 0-d
          tensors (copies, never aliasing the optimizer's or the scheduler's
          tensors) in device mode.
        """
        if self._device_mode:
            return [v.clone() for v in self._last_lr]
        lr, _, lr_scale = self._hp
        if lr_scale == 1.0:  # identity: each group's own base lr, bit for bit
            return list(self._base_lrs)
        ref = self._ref_lr
        return [lr if b == ref else b * lr_scale for b in self._base_lrs]

    def get_lr(self) -> list[Any]:
        """The lr the scheduler sets for each param group now (same values as :meth:`get_last_lr`).

        There is no "next lr" to compute ahead of time: the next lr depends on
        signals not yet observed. Provided for the LRScheduler contract.
        """
        return self.get_last_lr()

    def step(self, epoch: int | None = None) -> None:
        """Advance the controller without signals, unless it already advanced since the last optimizer step.

        This is what ``transformers.Trainer`` and other loops call after
        ``optimizer.step()``. See the class docstring for how it combines with
        :meth:`observe`.

        Args:
          epoch: not supported (torch deprecated it); must be ``None``.

        Raises:
          ValueError: if ``epoch`` is given.
        """
        if epoch is not None:
            raise ValueError(
                f"AdaptiveScheduler.step(epoch={epoch!r}) is not supported: call step() with no argument "
                "and pass training signals to observe()."
            )
        n = self._counter.n
        if self._advanced_at == n:
            return
        before = self._ctl.flat.copy()
        self._hp = hp = self._ctl.compiled(_NONE)(self._ctl.flat, None, None, None, None)
        self._before = before
        self._advanced_at = n
        self._apply(*hp)

    def observe(
        self,
        loss: Any = None,
        R: Any = None,  # noqa: N803  (the seed's public name for the reward)
        model: torch.nn.Module | None = None,
        grad_norm: Any = None,
        kl: Any = None,
    ) -> None:
        """One controller update with this step's signals; writes the new lr/momentum into the optimizer.

        Call it once per optimizer step, before or after ``optimizer.step()``
        (see the class docstring). Each signal may be ``None`` (not observed),
        a Python number or a one-element tensor; NaN/inf count as not observed.

        Args:
          loss: training loss (lower is better; any sign).
          R: reward (higher is better; any sign).
          model: if given with ``lr_rule="grad_norm"`` and no ``grad_norm``,
            the global L2 norm of its parameters' gradients is computed (call
            before ``zero_grad``). Ignored by every other lr rule.
          grad_norm: global gradient norm (>= 0).
          kl: KL divergence of the policy to its reference.

        Raises:
          TypeError: a signal is neither a number nor a tensor.
          ValueError: a tensor signal has more than one element.
        """
        if grad_norm is None and model is not None and self._wants_grad_norm:
            grad_norm = self._model_grad_norm(model)
        n = self._counter.n
        replace = self._before is not None and self._advanced_at == n
        if self._device_mode:
            conv = self._device_signal
            loss, R, grad_norm, kl = conv("loss", loss), conv("R", R), conv("grad_norm", grad_norm), conv("kl", kl)
        else:
            # Python floats and None pass straight through (the hot path).
            if loss is not None and type(loss) is not float:
                loss = _host_signal("loss", loss)
            if R is not None and type(R) is not float:
                R = _host_signal("R", R)
            if grad_norm is not None and type(grad_norm) is not float:
                grad_norm = _host_signal("grad_norm", grad_norm)
            if kl is not None and type(kl) is not float:
                kl = _host_signal("kl", kl)
        key = (loss is not None, R is not None, grad_norm is not None, kl is not None)
        fn = self._ctl.compiled(key)
        flat = self._ctl.flat
        if replace:
            flat[:] = self._before
        self._hp = hp = fn(flat, loss, R, grad_norm, kl)
        self._before = None
        self._advanced_at = n
        if self._device_mode:
            self._apply(*hp)
        else:
            self._apply_host(hp[0], hp[1], hp[2])

    # ------------------------------------------------------------------ internals

    def _apply(self, lr: Any, momentum: Any, lr_scale: Any) -> None:
        """Write the hparams into every param group (per-group base lrs; momentum if a rule is active)."""
        groups = self.optimizer.param_groups
        base_lrs = self._base_lrs
        if len(groups) != len(base_lrs):
            self._adopt_groups(groups)
            base_lrs = self._base_lrs
        if not self._device_mode:
            self._apply_host(lr, momentum, lr_scale)
            return
        ref = self._ref_lr
        with torch.no_grad():
            last = []
            for i, (g, b) in enumerate(zip(groups, base_lrs)):
                v = lr if b == ref else lr_scale * b
                cur = g["lr"]
                if not isinstance(cur, torch.Tensor):
                    raise ValueError(
                        f"param_groups[{i}]['lr'] became a Python number ({cur!r}); device_mode=True needs "
                        "tensor learning rates (see AdaptiveScheduler's docstring)."
                    )
                cur.copy_(v)
                last.append(v)
            self._last_lr = last
            if self._momentum_on:
                for i, g in enumerate(groups):
                    if "momentum" in g:
                        cur = g["momentum"]
                    elif "betas" in g:
                        cur = g["betas"][0]
                    else:
                        continue
                    if not isinstance(cur, torch.Tensor):
                        raise ValueError(
                            f"param_groups[{i}] momentum became a Python number ({cur!r}); device_mode=True "
                            "needs tensor momentum (see AdaptiveScheduler's docstring)."
                        )
                    cur.copy_(momentum)

    def _apply_host(self, lr: float, momentum: float, lr_scale: float) -> None:
        """Host mode's :meth:`_apply` (the hot path; get_last_lr() recomputes its values from ``_hp``)."""
        groups = self.optimizer.param_groups
        base_lrs = self._base_lrs
        if len(groups) != len(base_lrs):
            self._adopt_groups(groups)
            base_lrs = self._base_lrs
        # The controller computes in float32 (as device mode and JAX do): lr is a float32
        # value. lr_scale == 1 (e.g. every rule "none") writes each group's own base lr,
        # bit for bit, instead of its float32 rounding.
        if len(groups) == 1:  # the common case, without the loop (group 0's base lr is the reference)
            g = groups[0]
            if lr_scale == 1.0:
                lr = base_lrs[0]
            if type(g["lr"]) is float or not isinstance(g["lr"], torch.Tensor):
                g["lr"] = lr
            else:
                g["lr"].fill_(lr)
        else:
            ref = self._ref_lr
            for g, b in zip(groups, base_lrs):
                v = b if lr_scale == 1.0 else (lr if b == ref else b * lr_scale)
                if type(g["lr"]) is float or not isinstance(g["lr"], torch.Tensor):
                    g["lr"] = v
                else:
                    g["lr"].fill_(v)
        if self._momentum_on:
            for g in groups:
                if "momentum" in g:
                    cur = g["momentum"]
                    if isinstance(cur, torch.Tensor):
                        cur.fill_(momentum)
                    else:
                        g["momentum"] = momentum
                elif "betas" in g:
                    betas = g["betas"]
                    if isinstance(betas[0], torch.Tensor):
                        betas[0].fill_(momentum)
                    else:
                        g["betas"] = type(betas)((momentum, *betas[1:]))

    def _adopt_groups(self, groups: list[dict[str, Any]]) -> None:
        """Give groups added by ``optimizer.add_param_group`` their current lr as base lr."""
        if len(groups) < len(self._base_lrs):
            raise RuntimeError(
                f"the optimizer has {len(groups)} param groups but the scheduler was built for "
                f"{len(self._base_lrs)}; param groups cannot be removed."
            )
        new = groups[len(self._base_lrs) :]
        if self._device_mode:
            self._check_device_groups(new)
        self._base_lrs = self._base_lrs + [_host_float(g["lr"]) for g in new]

    def _device_signal(self, name: str, v: Any) -> Any:
        if v is None:
            return None
        dev = self._device
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                raise ValueError(
                    f"observe({name}=...) must be a scalar, got a tensor of shape {tuple(v.shape)}; "
                    "reduce it first (e.g. the batch mean)."
                )
            v = v.detach()
            if v.ndim:
                v = v.reshape(())
            if v.dtype != torch.float32:  # e.g. a bf16 loss: the controller computes in float32
                v = v.to(torch.float32)
            if v.device != dev:
                v = v.to(dev, non_blocking=True)
            return v
        # A fill kernel with the value as an argument: no host-to-device copy, no sync.
        return torch.full((), _number(name, v), dtype=torch.float32, device=dev)

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
        (``format_version`` 1): ``mode`` (``"host"``/``"device"``),
        ``controller`` (:func:`adaptive_sched.state_to_dict` of the state),
        ``base_lrs`` (one float per group), ``hparams`` (``lr``, ``momentum``,
        ``lr_scale`` of the last update), ``advanced_this_step`` (the
        controller already advanced since the last optimizer step) and
        ``provisional_from`` (the controller dict before a :meth:`step`
        update that a following :meth:`observe` would replace, else ``None``).
        """
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
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output and write its lr/momentum into the optimizer.

        The checkpoint must come from a scheduler with the same configuration
        (rule names and every knob, compared at float32 precision, so a
        checkpoint from the other mode loads too) and the same number of param
        groups. Everything is validated before anything changes: on error the
        scheduler and the optimizer are untouched.

        Raises:
          ValueError: not an AdaptiveScheduler state dict, a format version
            this version does not read, a different configuration or number
            of param groups, or malformed entries.
        """
        d = state_dict
        if not isinstance(d, dict) or "format_version" not in d:
            keys = sorted(d)[:8] if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an AdaptiveScheduler state dict (no 'format_version'; got {keys})")
        version = d["format_version"]
        if not isinstance(version, int) or version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise ValueError(
                f"AdaptiveScheduler state dict format_version={version!r} is not supported: this version of "
                f"adaptive_sched reads format_version={FORMAT_VERSION}"
                + (" (the checkpoint was written by a newer version)." if newer else ".")
            )
        if set(d) != _SD_KEYS:
            raise ValueError(
                f"AdaptiveScheduler state dict keys do not match: missing {sorted(_SD_KEYS - set(d))}, "
                f"unexpected {sorted(set(d) - _SD_KEYS)}"
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
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"AdaptiveScheduler state dict has an invalid controller entry: {err}") from err
        base_lrs = d["base_lrs"]
        groups = self.optimizer.param_groups
        if not isinstance(base_lrs, (list, tuple)) or len(base_lrs) != len(groups):
            n_saved = len(base_lrs) if isinstance(base_lrs, (list, tuple)) else base_lrs
            raise ValueError(
                f"the state dict is for {n_saved} param groups but the optimizer has {len(groups)}"
            )
        base_lrs = [float(b) for b in base_lrs]
        if not all(math.isfinite(b) and b > 0 for b in base_lrs):
            raise ValueError(f"state dict base_lrs={base_lrs} must be finite numbers > 0")
        base_lrs[0] = self._ref_lr  # group 0's base lr is the reference (equal up to float32, checked above)
        hpd = d["hparams"]
        if not isinstance(hpd, dict) or set(hpd) != set(Hparams._fields):
            raise ValueError(f"state dict hparams={hpd!r} must be a dict with keys {list(Hparams._fields)}")
        hp = tuple(self._scalar_like(hpd[k]) for k in Hparams._fields)
        advanced = d["advanced_this_step"]
        if not isinstance(advanced, bool):
            raise ValueError(f"state dict advanced_this_step={advanced!r} must be a bool")
        if self._device_mode:  # e.g. optimizer.load_state_dict() may have put lr tensors elsewhere
            self._check_device_groups(groups)
        # Everything validated: commit.
        self._ctl.flat = state
        self._hp = hp
        self._base_lrs = base_lrs
        self._before = before if advanced else None
        self._advanced_at = self._counter.n if advanced else -1
        self._apply(*hp)

    def _snapshot_from_dict(self, d: dict[str, Any]) -> Any:
        """A controller dict as this mode holds it: the flat list of the state's scalars."""
        if self._device_mode:
            return flatten_state(state_from_dict(d, xp=self._xp, device=self._device))
        flat = flatten_state(state_from_dict(d, xp=_scalar))
        return [int(v) if i < 2 else float(v) for i, v in enumerate(flat)]

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
            if any(x.startswith("base_lr") for x in diffs):
                hint = (
                    " (base_lr defaults to the optimizer's lr at construction: build the scheduler before "
                    "optimizer.load_state_dict(), or pass base_lr explicitly)"
                )
            raise ValueError(
                "cannot load an AdaptiveScheduler state dict from a different configuration: "
                + "; ".join(diffs)
                + hint
            )

    def _scalar_like(self, v: Any) -> Any:
        if self._device_mode:
            return torch.as_tensor(v, dtype=torch.float32, device=self._device).detach().clone()
        return _host_float(v)

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
    unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(
            f"AdaptiveScheduler got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"valid Config fields are: {', '.join(_CONFIG_FIELDS)}."
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
    if isinstance(v, (str, bytes)):
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


def _host_signal(name: str, v: Any) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(
                f"observe({name}=...) must be a scalar, got a tensor of shape {tuple(v.shape)}; "
                "reduce it first (e.g. the batch mean)."
            )
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
