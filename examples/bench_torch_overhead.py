"""What the controller costs on the host and in torch, measured side by side (medians of interleaved rounds).

Prints, per call:

* the core's ``adaptive_sched.update`` on the host namespace (NumPy float32
  scalars) with ``recommended()`` (target: at most 50 us) and with a lone
  trend rule;
* ``AdaptiveScheduler.observe()`` in host mode with ``recommended()`` (loss,
  gradient norm and ``grad_cos`` given, as its optimizer hook gives them;
  target: at most 30 us and 1% of a training step) and with a lone trend rule
  (loss only; target: at most 5x ``ReduceLROnPlateau.step``);
* ``torch.optim.lr_scheduler.ReduceLROnPlateau.step(metric)`` on the same stream;
* ``observe()`` in device mode (0-d tensors on the CPU, no host sync) with
  ``recommended()``, eager and with ``compile=True`` (``torch.compile`` of the
  core's update; target: at most 100 us and 50 aten operations), and the aten
  operations each dispatches per call;
* one AdamW training step of a 0.8M-parameter MLP (forward, backward, step).

Run: ``python examples/bench_torch_overhead.py`` (``--repeats 3 --calls 100`` for a quick look).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.profiler import profile

import adaptive_sched as A
from adaptive_sched.adapters.torch import AdaptiveScheduler

TARGETS = {"core_recommended": 50e-6, "observe_recommended": 30e-6, "trend_vs_plateau": 5.0, "share_of_step": 0.01}


def _aten_ops(fn: Callable[[], None]) -> int:
    """The aten operations ``fn`` dispatches (a compiled region's fused kernel dispatches none)."""
    with profile() as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def _median_times(fns: dict[str, tuple[Callable[[], None], int]], repeats: int) -> dict[str, float]:
    for fn, _ in fns.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, (fn, n) in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in times.items()}


def main(repeats: int = 9, calls: int = 500, train_calls: int = 20, threads: int | None = 1, seed: int = 0) -> dict[str, Any]:
    """Measure and print the figures; returns them (seconds per call, ratios, op counts).

    Args:
      repeats: interleaved rounds; the medians are over them.
      calls: controller calls per round.
      train_calls: training steps per round.
      threads: torch intra-op threads during the measurement (restored after); ``None`` keeps torch's.
      seed: seed of the signal stream and the model.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(repeats, calls, train_calls, seed)
    finally:
        torch.set_num_threads(previous)


def _measure(repeats: int, calls: int, train_calls: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    losses = [float(v) for v in 2.0 * np.exp(-np.arange(calls) / calls) + 0.05 * rng.normal(size=calls)]
    norms = [float(v) for v in 1.0 + 0.1 * rng.normal(size=calls)]
    coses = [float(v) for v in np.clip(0.1 + 0.3 * rng.normal(size=calls), -1, 1)]
    rec, trend = A.recommended(1e-3), A.Config(lr_rule="trend", base_lr=1e-3, min_lr=1e-6, max_lr=1e-1)

    def sgd(lr: Any = 1e-3) -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=lr)

    s_rec, s_trend = AdaptiveScheduler(sgd(), rec), AdaptiveScheduler(sgd(), trend)
    s_dev = AdaptiveScheduler(sgd(torch.tensor(1e-3)), rec, device_mode=True)
    s_comp = AdaptiveScheduler(sgd(torch.tensor(1e-3)), rec, device_mode=True, compile=True)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(sgd())
    states = {"rec": A.init(rec, xp=A.host), "trend": A.init(trend, xp=A.host)}

    def core(key: str, full: bool) -> Callable[[], None]:
        def run() -> None:
            state, update, signals = states[key], A.update, A.Signals
            for x, g, c in zip(losses, norms, coses):
                state, _ = update(state, signals(loss=x, grad_norm=g, grad_cos=c) if full else signals(loss=x))
            states[key] = state

        return run

    def observe(sched: AdaptiveScheduler, full: bool) -> Callable[[], None]:
        # the controller advances once per optimizer step: tick the step counter as optimizer.step() would
        tick, opt = sched._steps, sched.optimizer

        def run() -> None:
            for x, g, c in zip(losses, norms, coses):
                sched.observe(loss=x, grad_norm=g, grad_cos=c) if full else sched.observe(loss=x)
                tick(opt, (), {})

        return run

    dev_signals = [(torch.tensor(x), torch.tensor(g), torch.tensor(c)) for x, g, c in zip(losses, norms, coses)]

    def observe_device(sched: AdaptiveScheduler, n: int | None = None) -> Callable[[], None]:
        tick, opt = sched._steps, sched.optimizer

        def run() -> None:
            for x, g, c in dev_signals[:n]:
                sched.observe(loss=x, grad_norm=g, grad_cos=c)
                tick(opt, (), {})

        return run

    def run_plateau() -> None:
        for x in losses:
            plateau.step(x)

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 784), torch.nn.ReLU(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))  # fmt: skip
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    xb, yb = torch.randn(64, 784), torch.randint(0, 10, (64,))

    def train() -> None:
        for _ in range(train_calls):
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()

    fns = {
        "core_recommended": (core("rec", True), calls),
        "core_trend": (core("trend", False), calls),
        "observe_recommended": (observe(s_rec, True), calls),
        "observe_trend": (observe(s_trend, False), calls),
        "plateau": (run_plateau, calls),
        "observe_device": (observe_device(s_dev), calls),
        "observe_compiled": (observe_device(s_comp), calls),
        "train_step": (train, train_calls),
    }
    med = _median_times(fns, repeats)
    ops = {"eager": _aten_ops(observe_device(s_dev, 1)), "compiled": _aten_ops(observe_device(s_comp, 1))}
    out: dict[str, Any] = {f"{k}_s": v for k, v in med.items()}
    out.update(
        trend_vs_plateau=med["observe_trend"] / med["plateau"],
        share_of_step=med["observe_recommended"] / med["train_step"],
        device_aten_ops=ops["eager"],
        compiled_aten_ops=ops["compiled"],
        params=params,
        final_lr={"host": s_rec.get_last_lr()[0], "device": float(s_dev.get_last_lr()[0]),
                  "compiled": float(s_comp.get_last_lr()[0])},
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of {repeats} interleaved rounds")
    rows = [
        ("core update, host namespace, recommended()", "core_recommended", "core_recommended"),
        ("core update, host namespace, lone trend rule", "core_trend", None),
        ("observe(), host mode, recommended()", "observe_recommended", "observe_recommended"),
        ("observe(loss), host mode, lone trend rule", "observe_trend", None),
        ("ReduceLROnPlateau.step(metric)", "plateau", None),
        ("observe(), device mode (CPU tensors), recommended()", "observe_device", None),
        ("  ... with compile=True", "observe_compiled", None),
        (f"AdamW step, {params / 1e6:.2f}M-parameter MLP, batch 64", "train_step", None),
    ]
    for label, key, target in rows:
        note = f"  (target <= {TARGETS[target] * 1e6:g} us)" if target else ""
        print(f"  {label:<52} {med[key] * 1e6:10.1f} us{note}")
    print(f"  lone trend observe / ReduceLROnPlateau.step = {out['trend_vs_plateau']:.2f}x (target <= 5x)")
    print(f"  observe(recommended) / training step = {out['share_of_step']:.2%} (target <= 1%)")
    print(f"  device mode: {ops['eager']} aten ops per observe(), {ops['compiled']} with compile=True (target <= 50)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--train-calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: keep torch's default)")
    args = parser.parse_args()
    main(repeats=args.repeats, calls=args.calls, train_calls=args.train_calls, threads=args.threads or None)
