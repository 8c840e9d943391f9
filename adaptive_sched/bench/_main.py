"""The benchmark run: tasks x methods x lr grid x seeds, then the torch mirror, then the report."""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import platform
import time
from collections.abc import Sequence
from typing import Any

import jax
import optax
from tqdm.auto import tqdm

import adaptive_sched
from adaptive_sched.bench import _methods, _report, _summary, _torch_mirror
from adaptive_sched.bench._compile_cache import CacheStats
from adaptive_sched.bench._runner import TaskResult, run_task
from adaptive_sched.bench._tasks import RL_TASKS, SIZES, TASK_NAMES, get_task, pretrain_policy

__all__ = ["BenchRun", "run_bench"]

_METHODS_NOTE = (
    "Every method uses Adam (b1=0.9, b2=0.999, no weight decay) unless it is its own optimizer "
    "(prodigy, schedule-free AdamW), no warm-up unless the schedule has one (onecycle), and the "
    "same steps, batches and initialisations (seed s gives the same data order and init to every "
    "method and lr). Each method runs at base lr x {grid}; ours use min_lr = lr x {lo:g} and "
    "max_lr = lr x {hi:g} at every grid point. prodigy is lr-free: its learning_rate (nominally 1) "
    "is set to the grid multiplier, so it sweeps the same factors; schedule-free AdamW still "
    "needs an lr and gets the grid lr like Adam. Loss-driven rules see the training loss (for RL "
    "tasks, the negated KL-regularised objective), reward rules the batch mean reward, the KL rule "
    "the batch mean KL. All methods of a task run in one compiled program (a switch over the "
    "methods' optax transformations, vmapped over method, lr and seed)."
)


def _definitions() -> list[str]:
    return [
        "*final*: the task metric after the last step (held-out accuracy or loss; for RL the mean "
        "reward of a fresh batch of samples from the final policy).",
        "*mean ± std*: over seeds, sample std (ddof=1). *IQM*: interquartile mean "
        "(scipy.stats.trim_mean(x, 0.25): the middle 3 of 5 seeds) with a 95% percentile-bootstrap "
        "interval over seeds (2000 resamples), as in Agarwal et al. 2021, 'Deep RL at the edge of "
        "the statistical precipice'.",
        "*P(beats best baseline)*: P(X > Y) + P(X = Y)/2 over all pairs of seeds (Mann-Whitney U / nm), "
        "X = the method's final metric, Y = the best peer's (best IQM at the base lr; *tuned*: best "
        "peer at its own best grid lr against the method at its own best grid lr).",
        "*tuned*: the grid lr with the best seed-mean final metric (chosen on the same seeds it is "
        "reported on, so optimistic for every method alike).",
        "*lr window*: with m(g) the seed-mean final metric at grid multiplier g, m* = m(g*) the best of "
        "them and m0 the metric of the untrained model, a multiplier qualifies when |m(g) - m*| <= "
        "0.05 |m* - m0| (within 5% of the method's best improvement over the untrained model, which is "
        "scale-free and stays meaningful for losses near 0 and negative rewards); the window is the "
        "longest run of adjacent grid multipliers that contains g* and qualifies throughout (a NaN mean "
        "does not qualify); width = log10(largest / smallest multiplier of the window) in decades (0 = "
        "only the best point; 0.48 or 0.52 = two adjacent points; 1 = three; 2 = the whole grid x0.1..x10).",
        "*Δ vs best tuned* (headline): 100 (m_ours - m_b) / |m_b| for a higher-is-better metric, "
        "100 (m_b - m_ours) / |m_b| for a lower-is-better one, with m_ours the recommended preset's "
        "(ours or ours-horizon) seed mean at the base lr and m_b the best tuned baseline's seed mean at its "
        "best grid lr: positive = ours better; 'within 1%' = Δ >= -1%. Ill-conditioned when m_b is near 0 (rewards).",
        "*untuned vs tuned* (headline): P(a seed of the recommended preset at the base lr beats a seed "
        "of the baseline at the baseline's own best grid lr), over all pairs of seeds; *tuned vs tuned*: the "
        "same with the preset at its own best grid lr.",
        "*horizon known / horizon-free* (headline): ours-horizon is built with the run's length "
        "(recommended(lr, total_steps=steps)), as cosine, one-cycle and ours-cosine are; ours, constant, "
        "plateau, prodigy and schedule-free are not (the methods table's 'uses the run's length').",
        "*worst grid point* (robustness): the method's worst seed-mean final metric over the whole lr grid (a "
        "non-finite mean counts as the worst); Δ as above against the best tuned baseline. A preset's worst "
        "point is *better than every peer's worst* when strictly better than each peer's worst point; *margin*: "
        "its Δ against the best of the peers' worst points.",
        "*no harm* (after the verdict): every method against constant lr at the *same* grid lr: per grid point "
        "P(a seed of the method beats a seed of constant) and Δ of the seed means (% of constant's, positive = "
        "better); *no harm* on a task when P >= 0.25 at every grid point; the worst grid point is the one with the "
        "lowest P (then the lowest Δ).",
        "*thresholds* (appendix): what the recommended configuration is held to, each computed from these summaries; 'ties or wins' and "
        "'never loses' mean P > 0.25 (not a loss by the verdicts), 'wins' P >= 0.75; counts are over the tasks "
        "that ran (the targets are defined on the default run's 5 tasks); the wall time is this run's, before "
        "writing the report.",
        "*diverged*: non-finite loss at any step or non-finite final metric, or a final metric worse "
        "than before training (RL: below the initial reward by more than 10% of the reward range, "
        "a reward collapse). Counted at the base lr (of seeds) and over the whole grid (of grid x seeds).",
        "*RL*: mean reward over training = mean of the batch mean reward over all steps; final reward "
        "var = variance across seeds of the final reward; reward std = within-batch std averaged over "
        "steps; KL = exact per-sample KL of the policy to the frozen pretrained reference, summed over "
        "generated characters; KL std = std over steps of the batch mean KL (stability), averaged over "
        "seeds; steps to 90% = first step where the seed-mean reward (10-step trailing average) "
        "reaches R0 + 0.9 (R_best - R0), R0 the initial reward and R_best the best method's final "
        "reward at the base lr.",
    ]


@dataclasses.dataclass(frozen=True)
class BenchRun:
    """What :func:`run_bench` wrote and how long it took.

    Attributes:
      report: the path of ``report.md``.
      wall_s: seconds from the start to the report (excluding writing it).
      compile_s: seconds spent tracing and compiling (or loading) the tasks' programs.
      run_s: seconds spent running them.
      other_s: the rest: data, policy pretraining, plots, torch mirror.
      compile_cache: the persistent compilation cache's line for the report.
    """

    report: pathlib.Path
    wall_s: float
    compile_s: float
    run_s: float
    other_s: float
    compile_cache: str

    def describe(self) -> str:
        """The timing lines the console command prints."""
        return (
            f"wall time {self.wall_s:.1f} s: compile {self.compile_s:.1f} s, run {self.run_s:.1f} s, "
            f"other {self.other_s:.1f} s (data, policy pretraining, plots and the torch mirror if it ran)\n"
            f"{self.compile_cache}"
        )


def run_bench(
    out_dir: pathlib.Path | str,
    task_names: Sequence[str] = TASK_NAMES,
    seeds: int = 5,
    size: str = "default",
    torch_mirror: bool = True,
    grid: Sequence[float] = _methods.GRID,
    compile_cache: CacheStats | None = None,
) -> BenchRun:
    """Run the benchmark and write ``report.md``, ``results.json`` and figures to ``out_dir``.

    Args:
      out_dir: output directory (created).
      task_names: tasks to run (from ``TASK_NAMES``).
      seeds: seeds per method and lr (>= 1).
      size: ``"quick"``, ``"default"`` or ``"full"`` (``"tiny"`` for tests).
      torch_mirror: run the torch mirror when torch and the torch adapter are importable.
      grid: multipliers of each task's base lr.
      compile_cache: the live counts of the persistent compilation cache the
        caller configured (:func:`adaptive_sched.bench._compile_cache.counting`),
        reported in the report; None when the caller did not configure one.

    Returns:
      A :class:`BenchRun`: the path of ``report.md`` and the timings.

    Raises:
      ValueError: for an unknown task or size, or ``seeds < 1``.
    """
    t_start = time.perf_counter()
    bad = [n for n in task_names if n not in TASK_NAMES]
    if bad or not task_names:
        raise ValueError(f"task_names={list(task_names)!r} is invalid: choose from {', '.join(TASK_NAMES)}.")
    if size not in SIZES:
        raise ValueError(f"size={size!r} is invalid: must be one of {', '.join(SIZES)}.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} is invalid: must be an integer >= 1.")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    mirror_tasks = [n for n in _torch_mirror.MIRROR_TASKS if n in task_names] if torch_mirror else []
    needs_policy = any(n in RL_TASKS for n in task_names)
    stages = len(task_names) + int(needs_policy) + int(bool(mirror_tasks)) + 1
    timing: dict[str, float] = {}
    results: list[TaskResult] = []
    summaries: dict[str, Any] = {}
    figures: dict[str, list[str]] = {}
    method_rows: list[dict[str, str]] = []
    all_methods: list[str] = []
    with tqdm(total=stages, desc="adaptive-sched bench", unit="stage", dynamic_ncols=True) as bar:
        policy = None
        if needs_policy:
            bar.set_postfix_str("pretraining the char-lm policy")
            t0 = time.perf_counter()
            policy = pretrain_policy(size)
            timing["pretrain policy"] = time.perf_counter() - t0
            bar.update()
        for name in task_names:
            task = get_task(name, size, policy=policy)
            methods = _methods.get_methods(task)
            bar.set_postfix_str(f"{name}: {len(methods)} methods x {len(grid)} lrs x {seeds} seeds")
            res = run_task(task, methods, grid, seeds)
            ours = {m.name for m in methods if m.ours}
            summaries[name] = _summary.summarize(res, ours)
            summaries[name]["headline"] = _summary.headlines(
                res, summaries[name], horizon_known=_methods.RECOMMENDED_HORIZON, horizon_free=_methods.RECOMMENDED
            )
            t0 = time.perf_counter()
            figures[name] = _report.plot_task(res, ours, out)
            timing[f"plots {name}"] = time.perf_counter() - t0
            results.append(res)
            for row in _methods.method_table(task, methods):
                if row["name"] not in all_methods:
                    all_methods.append(row["name"])
                    method_rows.append(dict(row))
            bar.update()
        torch_result: dict[str, Any] | None = None
        torch_lines: list[str]
        if mirror_tasks:
            bar.set_postfix_str("torch mirror")
            t0 = time.perf_counter()
            torch_result, torch_lines = _torch_mirror.run_and_describe(
                mirror_tasks, size, seeds, out, policy=policy, progress=bar.set_postfix_str
            )
            timing["torch mirror"] = time.perf_counter() - t0
            bar.update()
        else:
            torch_lines = [
                "Skipped: " + ("--no-torch was given." if not torch_mirror else
                               "none of its tasks (" + ", ".join(_torch_mirror.MIRROR_TASKS) + ") was selected.")
            ]
        order = list(_methods.PRESETS) + list(_methods.PEER_NAMES)
        all_methods.sort(key=lambda m: order.index(m) if m in order else len(order))
        method_rows.sort(key=lambda r: all_methods.index(r["name"]))
        bar.set_postfix_str("writing the report")
        ours_all = {m for r in results for m in r.methods if summaries[r.task.name]["methods"][m]["ours"]}
        sens = _report.plot_sensitivity(results, ours_all, out)
        wall = time.perf_counter() - t_start
        compile_s = sum(r.compile_s for r in results)
        run_s = sum(r.run_s for r in results)
        cache_line = (
            "not configured by this run (run_bench leaves JAX's configuration as the caller set it)"
            if compile_cache is None
            else compile_cache.describe()
        )
        targets = _summary.targets(results, summaries, wall)
        lo, hi = _methods.LR_BOUNDS
        grid_text = "{" + ", ".join(f"{g:g}" for g in grid) + "}"
        setup = {
            "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "version": adaptive_sched.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
            "cpus": os.cpu_count(),
            "size": size,
            "seeds": seeds,
            "grid": list(grid),
            "wall_s": wall,
            "compile_s": compile_s,
            "run_s": run_s,
            "other_s": wall - compile_s - run_s,
            "compile_cache": cache_line,
            "recommended": _methods.RECOMMENDED,
            "recommended_horizon": _methods.RECOMMENDED_HORIZON,
            "recommended_config": _methods.describe_config(_methods.recommended_config(1.0)),
            "targets": targets,
            "default_run": (size, seeds, tuple(task_names), tuple(grid)) == ("default", 5, TASK_NAMES, _methods.GRID),
            "methods_note": _METHODS_NOTE.format(grid=grid_text, lo=lo, hi=hi),
            "method_rows": method_rows,
            "presets": {k: v for k, v in _methods.PRESETS.items() if k in all_methods},
            "definitions": _definitions(),
            "all_methods": all_methods,
            "other_timing": ", ".join(f"{k} {v:.1f} s" for k, v in timing.items())
            + " (the wall time above excludes writing the report).",
        }
        report = out / "report.md"
        _report.write_report(report, results, summaries, figures, sens, setup, torch_lines)
        meta = {
            "adaptive_sched": adaptive_sched.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "size": size,
            "seeds": seeds,
            "grid": list(grid),
            "lr_bounds": list(_methods.LR_BOUNDS),
            "presets": _methods.PRESETS,
            "plateau": _methods.PLATEAU,
            "wall_s_before_report": wall,
            "compile_s": compile_s,
            "run_s": run_s,
            "timing": timing,
            "compile_cache": None if compile_cache is None else {
                "directory": None if compile_cache.directory is None else str(compile_cache.directory),
                "hits": compile_cache.hits,
                "writes": compile_cache.writes,
                "saved_s": compile_cache.saved_s,
            },
            "recommended": _methods.RECOMMENDED,
            "recommended_horizon": _methods.RECOMMENDED_HORIZON,
            "recommended_config": setup["recommended_config"],
            "default_run": setup["default_run"],
        }
        _report.write_json(out / "results.json", results, summaries, meta, torch_result, targets)
        bar.update()
    return BenchRun(report, wall, compile_s, run_s, wall - compile_s - run_s, cache_line)
