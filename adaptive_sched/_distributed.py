"""Signals averaged over the ranks of a ``torch.distributed`` process group.

In data-parallel training every rank sees its own local loss, reward and
gradient norm. A controller fed local signals would set a different lr on
every rank and the replicas would drift apart; averaging each signal over the
ranks before the update makes every rank compute the same hyperparameters.

**Layout (one collective).** A step's signals are packed into one float
tensor of shape ``(3, len(SIGNAL_NAMES))`` whose columns follow
:data:`adaptive_sched._signals.SIGNAL_NAMES` and whose rows are

* ``sum``: the value where it is finite, else 0;
* ``n_finite``: 1 where the value is finite, else 0;
* ``n_present``: 1 where a value (finite or not) was supplied, else 0;

and reduced with one ``all_reduce(SUM)``. Signal ``s`` then is

.. math::

   \\bar x_s = \\frac{\\sum_{r:\\,x_{r,s}\\ \\mathrm{finite}} x_{r,s}}{n^{\\mathrm{finite}}_s},

the mean over the ranks that observed it (a NaN or a missing value on some
ranks does not pull the mean towards 0), NaN when ranks supplied it but none
finitely (not observed, counted in ``State.skipped`` as on one process), and
``None`` when no rank supplied it. The Lightning callback uses the same layout
(:func:`pack_rows`, :func:`unpack_rows`).

Importing this module imports torch (it is used by the torch front doors only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from adaptive_sched._signals import SIGNAL_NAMES, array_rows, finite_mean, pack, unpack

__all__ = ["SignalSync", "pack_rows", "unpack_rows"]

_N = len(SIGNAL_NAMES)


pack_rows = pack  # the layout is the intake's (adaptive_sched._signals): one definition
unpack_rows = unpack


class SignalSync:
    """Averages a step's signals over a process group (the torch adapter's hook in ``observe``).

    Active only when ``enabled``, ``torch.distributed`` is initialised and the
    group has more than one rank; otherwise :meth:`__call__` returns the values
    unchanged. Every rank of the group must call it the same number of times
    (it is a collective): call ``observe`` once per optimizer step on every rank.

    Host mode: the packed tensor is float64 on ``device`` (the parameters'
    device, so NCCL gets a CUDA tensor; the current CUDA device when the
    parameters are on the CPU and the group is NCCL only); one ``.tolist()``
    reads the result.
    Device mode: float32 on ``device``, built, reduced and unpacked with tensor
    operations only (no host synchronisation); since the pattern of supplied
    signals must be known on the host without a sync and must be the same on
    every rank, every signal an active rule reads is passed (NaN when no rank
    observed it, so ``State.skipped`` also counts those steps) and the signals
    no rule reads are dropped.

    Args:
      enabled: the scheduler's ``sync_signals`` flag.
      group: the process group (``None``: the default group).
      device: where the packed tensor lives.
      device_mode: the scheduler's mode (see above).
      uses: per signal, whether an active rule reads it (device mode's pattern).
    """

    def __init__(
        self, enabled: bool, group: Any, device: torch.device, device_mode: bool, uses: Sequence[bool]
    ) -> None:
        self.enabled = enabled
        self.group = group
        self.device = device
        self.device_mode = device_mode
        self.uses = tuple(uses)
        self._world: int | None = None
        self._possible = enabled and dist.is_available()
        self._present: dict[tuple[bool, ...], torch.Tensor] = {}

    def world_size(self) -> int:
        """The number of ranks the signals are averaged over (1 when inactive)."""
        if not self.enabled or not dist.is_available() or not dist.is_initialized():
            return 1
        if self._world is None:
            # -1 when this rank is not in ``group``: it then keeps its local signals.
            self._world = max(dist.get_world_size(self.group), 1)
            if not self.device_mode and self.device.type == "cpu" and dist.get_backend(self.group) == "nccl":
                # Host mode with parameters on the CPU (e.g. offloaded) and an NCCL-only group.
                self.device = torch.device("cuda", torch.cuda.current_device())
        return self._world

    def __call__(self, values: list[Any]) -> list[Any]:
        if not self._possible or not dist.is_initialized() or self.world_size() == 1:  # the common 1-process case
            return values
        if self.device_mode:
            return self._device(values)
        t = torch.tensor(pack_rows(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return unpack_rows(t.tolist())

    def _device(self, values: list[Any]) -> list[Any]:
        if not any(self.uses):  # no rule reads a signal (the same config on every rank): nothing to average
            return [None] * _N
        dev = self.device
        mask = tuple(v is not None for v in values)
        present = self._present.get(mask)
        if present is None:
            present = self._present[mask] = torch.tensor(mask, dtype=torch.float32).to(dev)
        import array_api_compat.torch as xp

        nan = torch.full((), math.nan, dtype=torch.float32, device=dev)  # a missing value is not finite
        packed = torch.cat([array_rows(xp, [nan if v is None else v for v in values]), present[None]])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.group)
        mean = finite_mean(torch, packed[0], packed[1])
        # Note: ``present`` after the reduction is not read: reading it would need a host sync.
        return [mean[i] if used else None for i, used in enumerate(self.uses)]
