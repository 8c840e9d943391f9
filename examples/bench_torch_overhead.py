"""Per-step cost of ``AdaptiveScheduler.observe()`` in host mode, measured side by side.

In one process, with the calls of each kind interleaved over ``repeats`` rounds
(so machine drift hits all of them alike), it prints the median per-call time of

* ``sched.observe(loss=None, R=r, model=None)`` for the seed quickstart's config
  (``lr_rule="trend", reward_rule="trend"``), host mode, Python-float rewards;
* ``torch.optim.lr_scheduler.ReduceLROnPlateau.step(metric)`` on the same stream;
* the core's compiled host-path update alone (``adaptive_sched._hostpath``, what
  host mode runs), so the adapter's own overhead is ``observe - core``; and, for
  reference, the generic ``adaptive_sched.update`` on Python floats;
* one AdamW training step of a ``Linear(10, 10)`` on a batch of 128 (forward,
  MSE loss, backward, ``optimizer.step()``, ``zero_grad()``);

and the two ratios the adapter is held to: ``observe / ReduceLROnPlateau.step``
(target: at most 3) and ``observe / training step`` (target: at most 2%).

Run: ``python examples/bench_torch_overhead.py`` (``--repeats 5`` for a quick look).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import adaptive_sched as A
from adaptive_sched import _scalar
from adaptive_sched._hostpath import compile_update, flatten_state
from adaptive_sched.adapters.torch import AdaptiveScheduler

QUICKSTART: dict[str, Any] = dict(
    lr_rule="trend", momentum_rule="none", reward_rule="trend", ema_reward_beta=0.9, min_lr=1e-6, max_lr=5e-4
)
TARGET_VS_PLATEAU = 3.0
TARGET_SHARE_OF_STEP = 0.02


def _per_call(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / calls


def main(
    repeats: int = 11, calls: int = 1000, train_calls: int = 100, threads: int | None = 1, seed: int = 0
) -> dict[str, Any]:
    """Measure and print the figures; returns them (seconds per call and ratios).

    Args:
      repeats: interleaved rounds; the medians are over them.
      calls: observe/plateau/core calls per round.
      train_calls: training steps per round.
      threads: torch intra-op threads during the measurement (restored after);
        1 by default, the fastest setting for a model this small and the one
        least disturbed by other processes. ``None`` keeps torch's setting.
      seed: seed of the data and reward stream.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(repeats, calls, train_calls, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(repeats: int, calls: int, train_calls: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # A noisy, slowly improving reward stream (Python floats, computed up front).
    rewards = (torch.linspace(0, 1, calls) + 0.3 * torch.randn(calls, generator=gen)).tolist()

    model = torch.nn.Linear(10, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    x, y = torch.randn(128, 10, generator=gen), torch.randn(128, 10, generator=gen)

    # Separate optimizers for the two schedulers, so neither sees the other's writes.
    sched = AdaptiveScheduler(torch.optim.AdamW(torch.nn.Linear(10, 10).parameters(), lr=5e-5), **QUICKSTART)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.AdamW(torch.nn.Linear(10, 10).parameters(), lr=5e-5), mode="max"
    )
    core_state = [A.init(sched.config, xp=_scalar)]
    host_fn = compile_update(sched.config, (False, True, False, False, False))[0]  # reward only
    host_flat = flatten_state(A.init(sched.config, xp=_scalar))

    def run_observe() -> None:
        # The controller advances once per optimizer step (a post-step hook counts them): call the hook as an
        # optimizer step would, so each observe() is one step's update (not folded into the previous one).
        observe, tick, opt_ = sched.observe, sched._steps, sched.optimizer
        for r in rewards:
            observe(loss=None, R=r, model=None)
            tick(opt_, (), {})

    def run_plateau() -> None:
        step = plateau.step
        for r in rewards:
            step(r)

    last: dict[str, float] = {}

    def run_core() -> None:
        fn, flat = host_fn, host_flat
        for r in rewards:
            hp = fn(flat, None, r, None, None, None)
        last["core"] = hp[0]

    def run_generic() -> None:
        state, update, signals = core_state[0], A.update, A.Signals
        for r in rewards:
            state, hp = update(state, signals(None, r, None, None))
        core_state[0] = state
        last["generic"] = hp.lr

    def run_train() -> None:
        for _ in range(train_calls):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()

    fns: dict[str, tuple[Callable[[], None], int]] = {
        "observe": (run_observe, calls),
        "plateau": (run_plateau, calls),
        "core": (run_core, calls),
        "generic": (run_generic, calls),
        "train_step": (run_train, train_calls),
    }
    for fn, _ in fns.values():  # warm up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, (fn, n) in fns.items():
            times[name].append(_per_call(fn, n))
    med = {k: statistics.median(v) for k, v in times.items()}
    vs_plateau = med["observe"] / med["plateau"]
    share = med["observe"] / med["train_step"]
    out: dict[str, Any] = {
        "observe_s": med["observe"],
        "plateau_s": med["plateau"],
        "core_s": med["core"],
        "generic_core_s": med["generic"],
        "adapter_overhead_s": med["observe"] - med["core"],
        "train_step_s": med["train_step"],
        "observe_vs_plateau": vs_plateau,
        "observe_share_of_train_step": share,
        # The three controllers saw the same stream the same number of times: the
        # timed calls did the same work (host mode runs the compiled host path).
        "final_lr": {"observe": sched.get_last_lr()[0], "core": last["core"], "generic": last["generic"]},
    }

    rows = [
        ("observe(R=r), quickstart config, host mode", med["observe"], f"us/call, {calls} calls/round"),
        ("ReduceLROnPlateau.step(metric)", med["plateau"], "us/call"),
        ("core update, compiled host path", med["core"], "us/call"),
        ("  -> adapter's own overhead (observe - core)", out["adapter_overhead_s"], "us/call"),
        ("generic adaptive_sched.update on floats", med["generic"], "us/call (reference)"),
        ("AdamW step, Linear(10,10), batch 128", med["train_step"], f"us/step, {train_calls} steps/round"),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of {repeats} interleaved rounds")
    for label, seconds, unit in rows:
        print(f"  {label:<46} {seconds * 1e6:9.2f} {unit}")
    ok = "ok" if vs_plateau <= TARGET_VS_PLATEAU else "ABOVE TARGET"
    print(f"  observe / ReduceLROnPlateau.step = {vs_plateau:6.2f}x  (target <= {TARGET_VS_PLATEAU:g}x: {ok})")
    ok = "ok" if share <= TARGET_SHARE_OF_STEP else "ABOVE TARGET"
    print(f"  observe / training step          = {share:6.2%}   (target <= {TARGET_SHARE_OF_STEP:.0%}: {ok})")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--train-calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: keep torch's default)")
    args = parser.parse_args()
    main(repeats=args.repeats, calls=args.calls, train_calls=args.train_calls, threads=args.threads or None)
