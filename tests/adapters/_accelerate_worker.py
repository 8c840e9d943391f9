"""One rank of tests/adapters/test_accelerate.py: AdaptiveScheduler through accelerator.prepare.

The recipe under test: build the scheduler on the raw optimizer, ``prepare`` it
with the model and optimizer, let the loop call ``prepared.step()`` (what
Accelerate and the HF Trainer do) and feed signals to the scheduler you built
(``sched.observe(...)``; the prepared wrapper hides ``observe``).
"""

from __future__ import annotations

import json
import os
import sys

import torch
from accelerate import Accelerator

from adaptive_sched import Config
from adaptive_sched.adapters.torch import AdaptiveScheduler

CONFIG = Config(lr_rule="loss_decay", reward_rule="trend", warmup_steps=3, base_lr=0.1, min_lr=1e-4)
STEPS = 8


def local_signals(rank: int, t: int) -> dict[str, float | None]:
    """Per-rank signals (multiples of 1/4, so their means are exact); NaN reward on rank 1 at t=2."""
    reward = float("nan") if (rank, t) == (1, 2) else 0.25 * t + rank
    return {"loss": 1.0 + 0.5 * rank + 0.25 * t, "R": reward}


def model_and_batch(rank: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    g = torch.Generator().manual_seed(1 + rank)
    return model, torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)


def main() -> None:
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    model, x, y = model_and_batch(rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = AdaptiveScheduler(opt, CONFIG)
    model, opt, prepared = acc.prepare(model, opt, sched)
    info = {
        "num_processes": acc.num_processes,
        "wrapped": prepared.scheduler is sched,
        "observe_hidden": not hasattr(prepared, "observe"),
    }
    lrs = []
    for t in range(STEPS):
        loss = torch.nn.functional.mse_loss(model(x), y)
        acc.backward(loss)
        opt.step()
        prepared.step()  # Accelerate steps the wrapped scheduler once per process
        sched.observe(**local_signals(rank, t))
        opt.zero_grad()
        lrs.append(opt.param_groups[0]["lr"])
    info["lrs"] = lrs
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(info, f)
    acc.end_training()


if __name__ == "__main__":
    main()
