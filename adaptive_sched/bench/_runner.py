"""Run every method x lr-grid point x seed of one task as a single compiled program."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_sched._sweep import run_points
from adaptive_sched.bench._methods import Method, switch
from adaptive_sched.bench._tasks import Task

__all__ = ["TaskResult", "run_task"]


@dataclasses.dataclass
class TaskResult:
    """Raw outputs of one task.

    Attributes:
      task: the task.
      methods: method names, in the order of the leading axis.
      grid: lr multipliers, in the order of the second axis.
      seeds: number of seeds (third axis).
      steps: training steps per run.
      arrays: ``Task.run`` outputs stacked to shape ``(methods, grid, seeds, ...)``.
      compile_s: seconds spent compiling the program.
      run_s: seconds spent running it.
    """

    task: Task
    methods: list[str]
    grid: list[float]
    seeds: int
    steps: int
    arrays: dict[str, np.ndarray]
    compile_s: float
    run_s: float


def run_task(
    task: Task,
    methods: Sequence[Method],
    grid: Sequence[float],
    seeds: int,
    steps: int | None = None,
    seed: int = 0,
) -> TaskResult:
    """Train ``task`` with every method at every ``grid`` multiplier of its base lr, ``seeds`` times.

    One ``jax.jit`` program, vmapped over the flattened (method, lr, seed)
    axis (:func:`adaptive_sched._sweep.run_points`, the grid runner sweeps use too): each run builds all methods' transformations from its traced lr and
    applies the one its traced method index selects (:func:`switch`). Seeds
    are common random numbers: seed ``s`` gives the same initialisation and
    data order for every method and lr.

    Args:
      task: the task.
      methods: the methods (at least one).
      grid: multipliers of ``task.base_lr`` (positive).
      seeds: number of seeds (>= 1).
      steps: training steps (default ``task.steps``).
      seed: the root PRNG seed.

    Raises:
      ValueError: for an empty method list or grid, a non-positive multiplier
        or a seed count below 1.
    """
    if not methods:
        raise ValueError("methods=() is invalid: must name at least one method.")
    if not grid or any(not (g > 0) for g in grid):
        raise ValueError(f"grid={tuple(grid)!r} is invalid: must be non-empty positive multipliers.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} is invalid: must be an integer >= 1.")
    n_steps = task.steps if steps is None else int(steps)
    k, g, s = len(methods), len(grid), seeds
    index = jnp.asarray(np.repeat(np.arange(k), g * s), jnp.int32)
    lrs_host = np.tile(np.repeat(np.asarray(grid, np.float64) * task.base_lr, s), k)
    lrs = jnp.asarray(lrs_host.astype(np.float32))
    keys = jax.random.split(jax.random.key(seed), s)
    keys = jnp.tile(keys, k * g)

    def one(point: tuple[jax.Array, jax.Array, jax.Array]) -> dict[str, jax.Array]:
        i, lr, key = point
        txs = [m.build(lr, task, n_steps) for m in methods]
        return task.run(switch(txs, i), key, n_steps)

    out, run = run_points(one, (index, lrs, keys))  # the sweeps' grid runner: one jit(vmap) program
    arrays = {name: np.asarray(v).reshape((k, g, s, *v.shape[1:])) for name, v in out.items()}
    return TaskResult(
        task=task,
        methods=[m.name for m in methods],
        grid=[float(x) for x in grid],
        seeds=s,
        steps=n_steps,
        arrays=arrays,
        compile_s=run.compile_seconds,
        run_s=run.run_seconds,
    )
