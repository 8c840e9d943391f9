"""One rank of tests/adapters/test_torch_distributed.py (run as a script, 2 gloo processes).

Every rank feeds its own local signals (see ``local_signals``) to AdaptiveScheduler and
writes the lr/momentum sequences it saw to ``<out>/rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch
import torch.distributed as dist

from adaptive_sched import Config
from adaptive_sched.adapters.torch import AdaptiveScheduler

CONFIG = Config(lr_rule="trend", reward_rule="scaling", momentum_rule="inverse", base_lr=0.1, base_momentum=0.9)
STEPS = 8
SPLIT = 4  # the checkpoint run saves after this many steps
SYNC_METHODS = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "tolist", "numpy", "__array__")


def local_signals(rank: int, t: int) -> dict[str, float | None]:
    """Different losses/rewards per rank (multiples of 1/8: their means are exact in float32)."""
    loss: float | None = 2.0 - 0.125 * t + (0.5 if rank else -0.25)
    reward: float | None = 0.25 * t * (1 + rank)
    if rank == 1 and t == 3:
        reward = float("nan")  # NaN on one rank: the mean is rank 0's value
    if rank == 0 and t == 5:
        loss = None  # missing on one rank
    if t == 6:
        reward = None  # missing everywhere: not observed
    return {"loss": loss, "R": reward}


def make(device_mode: bool, **kwargs: Any) -> tuple[torch.optim.Optimizer, AdaptiveScheduler]:
    p = torch.nn.Parameter(torch.ones(3))
    if device_mode:
        opt = torch.optim.SGD([p], lr=torch.tensor(0.1), momentum=torch.tensor(0.9))
    else:
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    return opt, AdaptiveScheduler(opt, CONFIG, device_mode=device_mode, **kwargs)


def run(
    opt: torch.optim.Optimizer, sched: AdaptiveScheduler, rank: int, steps: range, device_mode: bool
) -> list[list[float]]:
    out = []
    for t in steps:
        p = opt.param_groups[0]["params"][0]
        p.grad = torch.full_like(p, 0.5)
        opt.step()
        sig = local_signals(rank, t)
        if device_mode:
            sig = {k: None if v is None else torch.tensor(v) for k, v in sig.items()}
            saved = {m: getattr(torch.Tensor, m) for m in SYNC_METHODS}

            def boom(*a: Any, **k: Any) -> Any:
                raise AssertionError("host synchronisation in device-mode observe()")

            for m in SYNC_METHODS:
                setattr(torch.Tensor, m, boom)
            try:
                sched.observe(**sig)
            finally:
                for m, f in saved.items():
                    setattr(torch.Tensor, m, f)
        else:
            sched.observe(**sig)
        g = opt.param_groups[0]
        out.append([float(g["lr"]), float(g["momentum"])])
    return out


def main() -> None:
    out_dir = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    res: dict[str, Any] = {}
    for mode in ("host", "device"):
        dm = mode == "device"
        res[mode] = run(*make(dm), rank, range(STEPS), dm)
    res["group"] = run(*make(False, process_group=dist.new_group([0, 1])), rank, range(STEPS), False)
    res["opt_out"] = run(*make(False, sync_signals=False), rank, range(STEPS), False)
    # Checkpoint on rank 0 after SPLIT steps, restored on every rank into fresh objects.
    for mode in ("host", "device"):
        dm = mode == "device"
        opt, sched = make(dm)
        first = run(opt, sched, rank, range(SPLIT), dm)
        path = os.path.join(out_dir, f"sched_{mode}.pt")
        if rank == 0:
            torch.save(sched.state_dict(), path)
        dist.barrier()
        opt2, sched2 = make(dm)
        sched2.load_state_dict(torch.load(path, weights_only=True))
        res[f"resumed_{mode}"] = first + run(opt2, sched2, rank, range(SPLIT, STEPS), dm)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
