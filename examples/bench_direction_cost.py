"""What ``grad_cos`` costs in PyTorch: a training step of a 1.07M-parameter MLP with and without the direction hook.

Two identical models and AdamW optimizers train side by side on the same
batches, one with :func:`adaptive_sched.adapters.torch.direction` called as the
scheduler's pre-step hook calls it (after ``backward()``, before
``optimizer.step()``), rounds interleaved; it prints the median time of a
training step (forward, backward, [hook], ``optimizer.step()``) of each, the
hook's added time as a share of the plain optimizer step and of the training
step (target: at most 10% of an AdamW step), and the hook's time alone.

Run: ``python examples/bench_direction_cost.py`` (``--steps 50`` for a quick look).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from adaptive_sched.adapters.torch import direction


def main(steps: int = 400, threads: int | None = 1, seed: int = 0) -> dict[str, Any]:
    """Measure and print; returns seconds per step and the shares."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(steps, seed)
    finally:
        torch.set_num_threads(previous)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 10))  # fmt: skip


def _measure(steps: int, seed: int) -> dict[str, Any]:
    models = [_model(seed), _model(seed)]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1) for m in models]
    gen = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(64, 784, generator=gen), torch.randint(0, 10, (64,), generator=gen)) for _ in range(8)]
    times: dict[str, list[float]] = {"plain": [], "hook": [], "optimizer_step": [], "direction": []}
    prev: dict[Any, torch.Tensor] = {}
    for i in range(steps + 10):
        x, y = batches[i % len(batches)]
        for which, (model, opt) in enumerate(zip(models, opts)):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            t1 = time.perf_counter()
            if which == 1:
                direction(opt, prev)
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if i >= 10:  # warmed up
                times["hook" if which else "plain"].append(t3 - t0)
                times["direction" if which else "optimizer_step"].append(t2 - t1 if which else t3 - t2)
    med = {k: statistics.median(v) for k, v in times.items()}
    added = med["hook"] - med["plain"]
    out = {**{f"{k}_s": v for k, v in med.items()}, "added_s": added, "share_of_optimizer_step": added / med["optimizer_step"],
           "share_of_training_step": added / med["plain"], "params": sum(p.numel() for p in models[0].parameters())}  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {out['params'] / 1e6:.2f}M parameters, "
          f"medians of {steps} interleaved steps")  # fmt: skip
    print(f"  training step without the hook {med['plain'] * 1e3:.3f} ms, with it {med['hook'] * 1e3:.3f} ms "
          f"(added {added * 1e3:.3f} ms)")  # fmt: skip
    print(f"  AdamW optimizer.step {med['optimizer_step'] * 1e3:.3f} ms; the hook alone {med['direction'] * 1e3:.3f} ms")
    print(f"  added time = {out['share_of_optimizer_step']:.0%} of an AdamW optimizer step (target <= 10%), "
          f"{out['share_of_training_step']:.1%} of the training step")  # fmt: skip
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: keep torch's default)")
    args = parser.parse_args()
    main(steps=args.steps, threads=args.threads or None)
