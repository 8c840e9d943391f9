"""Cost of observe()'s all-reduce against the training step it rides on (2 gloo ranks, small MLP, DDP).

Run: .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); from launch import run_ranks; \
print(run_ranks(['tests/adapters/_dist_overhead.py'], 2, 600)[0])"

Per iteration each rank times (perf_counter_ns) the step (forward, backward with DDP's gradient
all-reduce, optimizer.step), observe() with averaging over the ranks (sync_signals=True) and
observe() with local signals (sync_signals=False), on the same loss. Prints medians (rank 0).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from adaptive_sched.adapters.torch import AdaptiveScheduler

ITERS, WARMUP = 400, 50


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    torch.manual_seed(rank)
    model = DDP(
        torch.nn.Sequential(
            torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
        )
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    synced = AdaptiveScheduler(opt, lr_rule="trend", reward_rule="scaling")
    local = AdaptiveScheduler(opt, lr_rule="trend", reward_rule="scaling", sync_signals=False)
    assert synced.signal_world_size == 2 and local.signal_world_size == 1
    x, y = torch.randn(32, 32), torch.randn(32, 1)
    t_step, t_sync, t_local, t_raw = [], [], [], []
    small = torch.zeros(3, 4, dtype=torch.float64)
    for i in range(ITERS + WARMUP):
        t0 = time.perf_counter_ns()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        v = loss.item()
        t1 = time.perf_counter_ns()
        synced.observe(loss=v, R=0.5 * rank)
        t2 = time.perf_counter_ns()
        local.observe(loss=v, R=0.5 * rank)
        t3 = time.perf_counter_ns()
        dist.all_reduce(small)  # the bare collective, for reference
        t4 = time.perf_counter_ns()
        if i >= WARMUP:
            t_raw.append(t4 - t3)
            t_step.append(t1 - t0)
            t_sync.append(t2 - t1)
            t_local.append(t3 - t2)
    if True:
        ms, mo, ml, mr = (statistics.median(t) / 1e3 for t in (t_step, t_sync, t_local, t_raw))
        print(
            f"rank {rank} median us: step {ms:.1f}  bare all_reduce {mr:.1f}  observe(sync) {mo:.1f}  observe(local) {ml:.1f}  "
            f"added by the all-reduce {mo - ml:.1f}  ratio added/step {(mo - ml) / ms:.3f}  "
            f"ratio observe(sync)/step {mo / ms:.3f}"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
