"""Benchmark: a scheduler sweep as one compiled program vs the same runs one after another.

Workload: the bench task ``digits-mlp`` (scikit-learn digits, MLP 64-64-10,
Adam, batch 32, held-out accuracy) under the ``trend`` lr rule, a 4 x 4 x 4 grid
over ``trend_up`` x ``trend_down`` x ``ema_beta`` (64 configs) x 5 seeds = 320
runs of 500 steps, timed three ways in one process:

1. ``adaptive_sched.sweep``: one ``jit(vmap(vmap(train)))`` program, the config
   axis sharded over the JAX devices (as a script, the CPU is split into
   ``--host-devices`` XLA host devices, one per core by default, so that both
   cores of a small machine work on the sweep).
2. Sequential JAX: the same ``train`` jitted once (ahead of time), then called
   run after run, each one waited for.
3. Sequential torch: a line-by-line mirror of the digits-mlp task (same data
   split, model, initialisation scale, batch sampling, evaluation schedule) in
   a plain torch loop driven by ``adaptive_sched.adapters.torch.AdaptiveScheduler``
   (``observe(loss=...)`` after ``optimizer.step()``), with one intra-op
   thread (torch's fastest setting for these tiny ops here). A torch run is
   slow, so by default a random subset of 64 of the 320 runs is timed and the
   total is extrapolated (``mean time per run x 320``); the report says so.

The report gives wall times (compile and run separately for JAX), per-run
medians, the ratios, a correctness check (sweep vs sequential JAX metrics), a
faithfulness check (torch vs JAX accuracy on the same subset), and the load
average before and after, since other processes may share the cores.

Run: ``python examples/bench_sweep.py [--steps 500] [--seeds 5] [--torch-runs 64] [--host-devices 2]``
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any

import numpy as np

GRID: dict[str, list[float]] = {
    "trend_up": [1.005, 1.01, 1.02, 1.05],
    "trend_down": [0.9, 0.95, 0.98, 0.99],
    "ema_beta": [0.5, 0.7, 0.9, 0.95],
}


def torch_mirror_run(config: Any, seed: int, data: dict[str, Any], hidden: int, batch: int, steps: int) -> float:
    """One digits-mlp run in torch with the AdaptiveScheduler; returns the held-out accuracy.

    Mirrors ``adaptive_sched.bench._tasks`` (digits-mlp) on the same arrays
    (``adaptive_sched.bench._data.digits_data``): weights ``N(0, 1/fan_in)``,
    zero biases, Adam (optax defaults = torch defaults), ``batch`` indices drawn
    with replacement every step, mean cross-entropy, the metric evaluated at
    the start, every ``steps // 20`` steps and at the end.
    """
    import torch
    import torch.nn.functional as F

    from adaptive_sched.adapters.torch import AdaptiveScheduler

    gen = torch.Generator().manual_seed(seed)
    xtr, ytr, xte, yte = data["xtr"], data["ytr"], data["xte"], data["yte"]
    n_in = xtr.shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    with torch.no_grad():
        for layer, fan_in in ((model[0], n_in), (model[2], hidden)):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / math.sqrt(fan_in))
            layer.bias.zero_()
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config.base_lr))
    sched = AdaptiveScheduler(optimizer, config=config)

    def evaluate() -> float:
        with torch.no_grad():
            return (model(xte).argmax(dim=1) == yte).float().mean().item()

    every = max(1, steps // 20)
    curve = [evaluate()]
    for t in range(steps):
        idx = torch.randint(0, xtr.shape[0], (batch,), generator=gen)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.observe(loss=loss.detach())
        if (t + 1) % every == 0:
            curve.append(evaluate())
    return evaluate()


def _load() -> float:
    return os.getloadavg()[0]


def main(
    steps: int = 500,
    seeds: int = 5,
    size: str = "default",
    grid: dict[str, list[float]] | None = None,
    jax_runs: int | None = None,
    torch_runs: int = 64,
    torch_threads: int | None = 1,
    chunk_size: int | None = None,
    sweep_repeats: int = 3,
) -> dict[str, Any]:
    """Run the three timings and print the report; returns the figures.

    Args:
      steps: training steps per run.
      seeds: seeds per config.
      size: digits-mlp size (``"default"``: hidden 64, batch 32).
      grid: the sweep grid (default :data:`GRID`, 64 configs).
      jax_runs: how many of the runs sequential JAX times (None: all; fewer
        are extrapolated).
      torch_runs: how many runs (a random subset) torch times; 0 skips torch.
      torch_threads: ``torch.set_num_threads`` (None: torch's default). Default 1:
        torch's default of one intra-op thread per core makes these tiny ops
        5-50x slower whenever another process shares the cores (thread
        spinning), so the comparison uses torch's fastest setting.
      chunk_size: passed to the sweep.
      sweep_repeats: how many times the whole sweep (trace, compile, run) is
        timed; the report gives the medians.
    """
    import jax
    import optax

    import adaptive_sched
    from adaptive_sched import Config
    from adaptive_sched.bench._data import digits_data
    from adaptive_sched.bench._tasks import get_task

    grid = GRID if grid is None else grid
    task = get_task("digits-mlp", size)
    base = Config(lr_rule="trend", base_lr=task.base_lr)
    configs = adaptive_sched.config_grid(base, grid)
    runs = [(i, s) for i in range(len(configs)) for s in range(seeds)]
    n_runs = len(runs)
    load_before = _load()

    def train(config: Config, key: jax.Array) -> jax.Array:
        tx = adaptive_sched.optax.inject_hyperparams(optax.adam, config)()
        return task.run(tx, key, steps=steps)["metric"]

    # 1. the sweep (repeated: each call traces, compiles and runs the whole grid again)
    timings = []
    for _ in range(sweep_repeats):
        t0 = time.perf_counter()
        result = adaptive_sched.sweep(train, base, grid, seeds=seeds, chunk_size=chunk_size)
        total = time.perf_counter() - t0
        timings.append(
            (sum(g.compile_seconds for g in result.groups), sum(g.run_seconds for g in result.groups), total)
        )
    sweep_compile, sweep_run, sweep_total = (float(np.median(col)) for col in zip(*timings))
    acc = result.output()

    # 2. sequential JAX: jit once, then one run after another
    t0 = time.perf_counter()
    compiled = jax.jit(train).lower(configs[0], jax.random.key(0)).compile()
    seq_compile = time.perf_counter() - t0
    n_jax = n_runs if jax_runs is None else min(jax_runs, n_runs)
    jax_idx = np.random.default_rng(1).choice(n_runs, n_jax, replace=False) if n_jax < n_runs else range(n_runs)
    seq_times, seq_diff = [], []
    for r in jax_idx:
        i, s = runs[r]
        t = time.perf_counter()
        value = float(compiled(configs[i], jax.random.key(s)))
        seq_times.append(time.perf_counter() - t)
        seq_diff.append(abs(value - float(acc[i, s])))
    seq_run = float(np.mean(seq_times)) * n_runs  # == the sum when every run is timed
    one_image = 1.0 / task.details["n_test"]
    n_agree = int(np.sum(np.asarray(seq_diff) <= one_image * 1.01))

    # 3. sequential torch with the adapter, on a random subset
    torch_row = None
    if torch_runs > 0:
        import torch

        threads_before = torch.get_num_threads()
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        xtr, ytr, xte, yte = digits_data()
        data = {
            "xtr": torch.from_numpy(xtr), "ytr": torch.from_numpy(ytr).long(),
            "xte": torch.from_numpy(xte), "yte": torch.from_numpy(yte).long(),
        }  # fmt: skip
        n_torch = min(torch_runs, n_runs)
        subset = np.random.default_rng(0).choice(n_runs, n_torch, replace=False)
        torch_times, torch_acc, jax_acc = [], [], []
        try:
            threads = torch.get_num_threads()
            for r in subset:
                i, s = runs[r]
                t = time.perf_counter()
                torch_acc.append(
                    torch_mirror_run(configs[i], s, data, task.details["hidden"], task.details["batch"], steps)
                )
                torch_times.append(time.perf_counter() - t)
                jax_acc.append(float(acc[i, s]))
        finally:
            torch.set_num_threads(threads_before)
        torch_row = {
            "timed": n_torch,
            "per_run_median": float(np.median(torch_times)),
            "total": float(np.mean(torch_times)) * n_runs,
            "threads": threads,
            "torch_acc_mean": float(np.mean(torch_acc)),
            "jax_acc_mean": float(np.mean(jax_acc)),
        }
    load_after = _load()

    # report
    seq_total = seq_compile + seq_run
    print(
        f"digits-mlp ({size}: hidden {task.details['hidden']}, batch {task.details['batch']}), {steps} steps, "
        f"{len(configs)} configs x {seeds} seeds = {n_runs} runs; JAX devices: {len(jax.devices())} "
        f"({jax.devices()[0].platform}); cores: {os.cpu_count()}; "
        f"load average {load_before:.2f} before, {load_after:.2f} after"
    )
    rows = [
        (
            f"sweep (one program, median of {sweep_repeats})",
            f"{sweep_compile:.2f}",
            f"{sweep_run:.2f}",
            f"{sweep_total:.2f}",
            "-",
            "1.0x",
        ),
        (
            f"sequential JAX ({n_jax} timed)",
            f"{seq_compile:.2f}",
            f"{seq_run:.2f}",
            f"{seq_total:.2f}",
            f"{np.median(seq_times) * 1e3:.1f} ms",
            f"{seq_total / sweep_total:.1f}x (run only {seq_run / sweep_run:.1f}x)",
        ),
    ]
    if torch_row is not None:
        extrap = "" if torch_row["timed"] == n_runs else ", extrapolated"
        rows.append(
            (
                f"sequential torch ({torch_row['timed']} timed{extrap})",
                "-",
                f"{torch_row['total']:.2f}",
                f"{torch_row['total']:.2f}",
                f"{torch_row['per_run_median'] * 1e3:.1f} ms",
                f"{torch_row['total'] / sweep_total:.1f}x (run only {torch_row['total'] / sweep_run:.1f}x)",
            )
        )
    header = ("method", "compile s", "run s", "total s", "per run (median)", "slower than sweep")
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print(
        f"check: sweep vs sequential JAX test accuracy: {n_agree}/{n_jax} runs within one test image "
        f"({one_image:.4f}), max difference {max(seq_diff):.4f} (float32 rounding differs under vmap; "
        f"it grows chaotically in runs whose lr sits at max_lr)"
    )
    if torch_row is not None:
        print(
            f"faithfulness: mean test accuracy over the torch subset: torch {torch_row['torch_acc_mean']:.4f}, "
            f"JAX {torch_row['jax_acc_mean']:.4f} (torch threads: {torch_row['threads']})"
        )
    best = result.best(3, higher_is_better=True)
    print("best configs:")
    print(best.to_string(float_format=lambda v: f"{v:.4g}"))
    return {
        "n_runs": n_runs,
        "sweep": {"compile": sweep_compile, "run": sweep_run, "total": sweep_total},
        "sweep_timings": timings,
        "sequential_jax": {"compile": seq_compile, "run": seq_run, "total": seq_total, "timed": n_jax,
                           "max_abs_diff": max(seq_diff), "within_one_image": n_agree},
        "sequential_torch": torch_row,
        "load": (load_before, load_after),
        "result": result,
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", default="default")
    parser.add_argument("--jax-runs", type=int, default=None, help="sequential JAX runs to time (default all)")
    parser.add_argument("--torch-runs", type=int, default=64, help="torch runs to time (random subset; 0 skips)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1, its fastest here)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--sweep-repeats", type=int, default=3, help="times the sweep is timed (median reported)")
    parser.add_argument(
        "--host-devices",
        type=int,
        default=os.cpu_count() or 1,
        help="XLA host devices to split the CPU into (default: one per core); 1 = JAX's default",
    )
    args = parser.parse_args()
    if "jax" in sys.modules:
        raise SystemExit("bench_sweep.py must set XLA_FLAGS before JAX is imported")
    if args.host_devices > 1:
        flag = f"--xla_force_host_platform_device_count={args.host_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    main(
        args.steps, args.seeds, args.size, None, args.jax_runs, args.torch_runs, args.torch_threads,
        args.chunk_size, args.sweep_repeats,
    )  # fmt: skip
