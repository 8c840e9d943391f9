"""Scheduler sweeps: a grid of configs times seeds as one compiled program per structure.

The controller's numeric knobs are pytree leaves and its rule names are static
(see :class:`~adaptive_sched.Config`), so every config that shares rule names
can be stacked along a leading axis and trained by a single
``jit(vmap_configs(vmap_seeds(train_fn)))``. :func:`config_grid` builds and
validates the configs (NumPy only: no JAX, no compilation), :func:`sweep` groups
them by structure (``Config.rules``), compiles one program per group, shards the
config axis over the available devices and runs the grid in equal-shaped
chunks, and returns a :class:`SweepResult` that knows which config and seed
produced every number. Its tables (:meth:`SweepResult.to_table`, ``summary``,
``best``) are pandas DataFrames; pandas comes with the ``[bench]`` extra, and
without it those methods raise an ``ImportError`` that says so (the raw
outputs stay available as NumPy arrays through :meth:`SweepResult.output`).

Example::

    import jax, jax.numpy as jnp, optax
    import adaptive_sched

    def train(config, key):  # one config, one seed
        tx = adaptive_sched.optax.inject_hyperparams(optax.adam, config)()
        w = jax.random.normal(key, (8,))
        state = tx.init(w)

        def step(carry, _):
            w, state = carry
            loss, g = jax.value_and_grad(lambda w: jnp.sum(w**2))(w)
            updates, state = tx.update(g, state, w, value=loss)
            return (optax.apply_updates(w, updates), state), loss

        (w, _), losses = jax.lax.scan(step, (w, state), length=100)
        return {"final_loss": losses[-1]}

    result = adaptive_sched.sweep(
        train,
        adaptive_sched.Config(lr_rule="trend", base_lr=1e-2),
        {"trend_up": [1.01, 1.05], "ema_beta": [0.5, 0.9]},
        seeds=3,
    )
    print(result.best(2, key="final_loss"))
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptive_sched._config import Config, _make, check_field, numeric_fields, rule_fields

if TYPE_CHECKING:
    import jax
    import pandas as pd

__all__ = ["GroupInfo", "PointsRun", "SweepResult", "config_grid", "run_points", "sweep"]

CONFIG_AXIS = "configs"
"""Name of the mesh axis the config axis is sharded over."""

_LR_BOUNDS = ("auto", "derive", "keep", "scale")
_MEMORY_FRACTION = 0.5  # share of the free memory that memory_budget="auto" uses


# --------------------------------------------------------------------------- grid


@dataclasses.dataclass(frozen=True)
class _Grid:
    """A validated grid: the configs plus, for each, its knob values (internal)."""

    configs: tuple[Config, ...]
    knobs: tuple[str, ...]
    values: dict[str, tuple[Any, ...]]  # knob -> its grid values (empty for explicit configs)
    points: tuple[dict[str, Any], ...]  # per config: knob -> value


def _check_values(name: str, values: Any) -> tuple[Any, ...]:
    """Validate one grid entry ``name: values``; return the values as a tuple of Python scalars."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(
            f"grid[{name!r}]={values!r} is invalid: must be a list of values "
            f"(e.g. {name!r}: [v1, v2])."
        )
    values = tuple(values.tolist() if isinstance(values, np.ndarray) else values)
    if not values:
        raise ValueError(f"grid[{name!r}] is empty: give at least one value.")
    rules = rule_fields()
    if name in rules:
        allowed = rules[name]
        for v in values:
            if not isinstance(v, str) or v not in allowed:
                raise ValueError(
                    f"grid[{name!r}] contains {v!r}: {name} is a rule name and must be one of "
                    f"{', '.join(allowed)}."
                )
        return values
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (bool, str, bytes)) or v is None or not isinstance(v, (int, float)):
            raise ValueError(
                f"grid[{name!r}] contains {v!r}: {name} is a numeric knob and takes numbers only."
            )
        try:
            check_field(name, v)
        except ValueError as err:
            raise ValueError(f"grid[{name!r}] contains an invalid value: {err}") from None
        out.append(float(v))
    return tuple(out)


def _expand(
    base: Config | Sequence[Config],
    grid: Mapping[str, Sequence[Any]] | None,
    lr_bounds: str,
) -> _Grid:
    """Validate ``grid`` against ``base`` and build every config (NumPy only, nothing traced)."""
    if lr_bounds not in _LR_BOUNDS:
        raise ValueError(f"lr_bounds={lr_bounds!r} is invalid: must be one of {', '.join(_LR_BOUNDS)}.")
    if not isinstance(base, Config):
        if isinstance(base, (str, bytes)) or not isinstance(base, Sequence):
            raise TypeError(
                f"base_config must be an adaptive_sched.Config or a list of them, got {type(base).__name__}"
            )
        configs = tuple(base)
        if not configs:
            raise ValueError("base_config is an empty list: give at least one Config.")
        for i, c in enumerate(configs):
            if not isinstance(c, Config):
                raise TypeError(f"base_config[{i}] must be an adaptive_sched.Config, got {type(c).__name__}")
        if grid:
            raise ValueError("grid must be None when base_config is a list of Configs.")
        fields = (*rule_fields(), *numeric_fields())
        knobs = tuple(f for f in fields if len({repr(getattr(c, f)) for c in configs}) > 1)
        points = tuple({k: _plain(getattr(c, k)) for k in knobs} for c in configs)
        return _Grid(configs=configs, knobs=knobs, values={}, points=points)

    grid = {} if grid is None else grid
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a mapping knob -> list of values, got {type(grid).__name__}.")
    values: dict[str, tuple[Any, ...]] = {}
    for name, vals in grid.items():
        if name not in rule_fields() and name not in numeric_fields():
            raise ValueError(
                f"unknown knob {name!r} in grid; numeric knobs: {', '.join(numeric_fields())}; "
                f"rule knobs: {', '.join(rule_fields())}."
            )
        values[name] = _check_values(name, vals)

    # Derived lr bounds: Config defaults min_lr/max_lr to base_lr/1000 and base_lr*10.
    derived = base.replace(min_lr=None, max_lr=None)
    rederive = {}
    for bound in ("min_lr", "max_lr"):
        default = np.array_equal(np.asarray(getattr(base, bound)), np.asarray(getattr(derived, bound)))
        rederive[bound] = (
            "base_lr" in values
            and bound not in values
            and (lr_bounds == "derive" or (lr_bounds in ("auto", "scale") and default))
        )

    moved = "base_lr" in values
    explicit = [b for b in ("min_lr", "max_lr") if moved and b not in values and not rederive[b]]
    if lr_bounds == "auto" and explicit:
        kept = ", ".join(f"{b}={_plain(getattr(base, b))!r}" for b in explicit)
        warnings.warn(
            f"config_grid: the grid varies base_lr, and the base config sets {kept} explicitly, so it stays fixed "
            "at every point. Pass lr_bounds='scale' to keep each bound's ratio to base_lr instead (what "
            "recommended(base_lr) does), or lr_bounds='keep' to keep both bounds fixed.",
            UserWarning,
            stacklevel=3,
        )
    # "scale": each bound keeps its ratio to base_lr in the base config.
    ratios = (
        {b: np.asarray(getattr(base, b)) / np.asarray(base.base_lr) for b in explicit}
        if lr_bounds == "scale"
        else {}
    )

    knobs = tuple(values)
    grid_configs: list[Config] = []
    grid_points: list[dict[str, Any]] = []
    for combo in itertools.product(*values.values()):
        point = dict(zip(knobs, combo))
        changes = dict(point)
        changes.update({b: None for b, yes in rederive.items() if yes})
        changes.update({b: _plain(r * np.asarray(point["base_lr"])) for b, r in ratios.items()})
        try:
            grid_configs.append(base.replace(**changes))
        except ValueError as err:
            hint = ""
            if "base_lr" in values and "_lr" in str(err):
                hint = f" (lr_bounds={lr_bounds!r}: see config_grid's docs on how base_lr moves min_lr/max_lr)"
            raise ValueError(f"grid point {point} gives an invalid Config: {err}{hint}") from None
        grid_points.append(point)
    return _Grid(configs=tuple(grid_configs), knobs=knobs, values=values, points=tuple(grid_points))


def _plain(v: Any) -> Any:
    if isinstance(v, str):
        return v
    arr = np.asarray(v)
    return arr.item() if arr.ndim == 0 else arr


def config_grid(
    base_config: Config,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    lr_bounds: str = "auto",
) -> list[Config]:
    """Every config of a grid: the Cartesian product of ``grid``'s values applied to ``base_config``.

    Pure NumPy (works without JAX): each config is validated like any
    :class:`~adaptive_sched.Config`, and the grid itself first (unknown knobs,
    a rule knob given numbers or a numeric knob given strings, empty value
    lists, values outside the ranges of :data:`~adaptive_sched._config.FIELD_CHECKS`,
    and points violating ``min_lr <= base_lr <= max_lr`` or the momentum bounds
    all raise ``ValueError`` naming the knob and the value).

    Order: the first knob varies slowest, the last fastest (``itertools.product``).

    Derived lr bounds: ``Config`` defaults ``min_lr = base_lr / 1000`` and
    ``max_lr = base_lr * 10``. When the grid varies ``base_lr`` (and not the
    bound itself), ``lr_bounds`` says what happens to each bound:

    * ``"auto"`` (default): a bound the base config left at its default is
      re-derived from each point's ``base_lr``; a bound it set explicitly is
      kept (every point must then satisfy ``min_lr <= base_lr <= max_lr``).
      A bound set explicitly to exactly its default value counts as default.
    * ``"derive"``: both bounds are re-derived at every point.
    * ``"keep"``: both bounds stay as in the base config.
    * ``"scale"``: each bound keeps its ratio to ``base_lr`` in the base config
      (a default one is re-derived, which is the same). The mode for
      :func:`~adaptive_sched.recommended` configs, whose bounds are
      ``base_lr / 100`` and ``10 * base_lr``: the grid then equals
      ``[recommended(b) for b in grid["base_lr"]]``.

    ``"auto"`` warns when it keeps an explicitly set bound fixed (as for a
    ``recommended()`` config, whose ``min_lr`` is not the default ratio),
    naming ``"scale"`` and ``"keep"``.

    Example::

        configs = config_grid(Config(lr_rule="trend"), {"trend_up": [1.01, 1.05], "base_lr": [1e-3, 1e-2]})
        [(c.trend_up, c.base_lr, c.max_lr) for c in configs]
        # [(1.01, 0.001, 0.01), (1.01, 0.01, 0.1), (1.05, 0.001, 0.01), (1.05, 0.01, 0.1)]

    Args:
      base_config: the config every grid point starts from.
      grid: ``{knob: [values]}``; a knob is a numeric field of ``Config`` or a
        rule field (``lr_rule``, ``momentum_rule``, ``reward_rule``, ``kl_rule``).
        ``None`` or ``{}`` gives ``[base_config]``.
      lr_bounds: ``"auto"``, ``"derive"``, ``"keep"`` or ``"scale"`` (see above).

    Returns:
      The list of configs, in product order.

    Raises:
      TypeError: if ``base_config`` is not a Config.
      ValueError: for a bad grid (see above).
    """
    if not isinstance(base_config, Config):
        raise TypeError(f"base_config must be an adaptive_sched.Config, got {type(base_config).__name__}")
    return list(_expand(base_config, grid, lr_bounds).configs)


def _stack(configs: Sequence[Config]) -> Config:
    """Configs with one structure -> one Config whose numeric leaves are float32 arrays ``(n,)``."""
    # The union of the stored knobs: a point whose inactive-rule knob sits at its default does not store it.
    names = dict.fromkeys(n for c in configs for n in c.knobs)
    return _make(configs[0].active, {n: np.asarray([np.float32(getattr(c, n)) for c in configs]) for n in names})


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class PointsRun:
    """How :func:`run_points` ran: the chunking and the timings.

    Attributes:
      chunk_size: points per compiled call (a multiple of the device count).
      n_chunks: calls of the one compiled program.
      n_devices: devices the point axis was sharded over.
      compile_seconds: tracing + compilation time (including a memory probe, if any).
      run_seconds: execution time of all chunks, results on the host.
      bytes_per_device: XLA's argument + output + temp bytes per device (None if unavailable).
    """

    chunk_size: int
    n_chunks: int
    n_devices: int
    compile_seconds: float
    run_seconds: float
    bytes_per_device: int | None


@dataclasses.dataclass(frozen=True)
class GroupInfo(PointsRun):
    """How one structure group ran: its :class:`PointsRun` (chunks over the config axis, timings), and which configs.

    Attributes:
      rules: the group's ``Config.rules``.
      indices: positions of its configs in :attr:`SweepResult.configs`.
    """

    rules: tuple[str, ...]
    indices: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` returns: every output with the config and seed that produced it.

    Attributes:
      configs: the swept configs, in grid (product) order.
      knobs: the grid's knobs (table columns), in grid order.
      points: per config, ``{knob: value}``.
      grid_values: per knob, its grid values (empty when the configs were given as a list).
      seeds: the seeds; seed ``s`` was passed to ``train_fn`` as ``jax.random.key(s)``.
      outputs: ``train_fn``'s output pytree with NumPy leaves of shape
        ``(len(configs), len(seeds), *leaf_shape)``.
      groups: one :class:`GroupInfo` per structure group.
    """

    configs: tuple[Config, ...]
    knobs: tuple[str, ...]
    points: tuple[dict[str, Any], ...]
    grid_values: dict[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    outputs: Any
    groups: tuple[GroupInfo, ...]

    # ---- outputs by name
    def output_names(self) -> tuple[str, ...]:
        """Names of the output leaves: ``"score"`` for a bare array, else dotted pytree paths."""
        return tuple(self._named_outputs())

    def _named_outputs(self) -> dict[str, np.ndarray]:
        import jax

        flat = jax.tree_util.tree_flatten_with_path(self.outputs)[0]
        if len(flat) == 1 and not flat[0][0]:
            return {"score": flat[0][1]}
        reserved = {"config", "seed", *self.knobs}
        out = {}
        for path, leaf in flat:
            name = ".".join(_key_name(k) for k in path)
            out[f"output.{name}" if name in reserved else name] = leaf
        return out

    def output(self, key: str | None = None) -> np.ndarray:
        """One output leaf, shape ``(n_configs, n_seeds, ...)``; ``key`` may be omitted if there is one."""
        named = self._named_outputs()
        if key is None:
            if len(named) != 1:
                raise ValueError(f"key=None is ambiguous: outputs are {', '.join(named)}; pass key=.")
            return next(iter(named.values()))
        if key not in named:
            raise ValueError(f"key={key!r} is not an output; outputs are: {', '.join(named)}.")
        return named[key]

    def _scalar_key(self, key: str | None) -> tuple[str, np.ndarray]:
        named = self._named_outputs()
        scalars = [k for k, v in named.items() if v.ndim == 2]
        if key is None:
            if len(scalars) != 1:
                raise ValueError(
                    f"key=None is ambiguous: scalar outputs are {', '.join(scalars) or '(none)'}; pass key=."
                )
            key = scalars[0]
        values = self.output(key)
        if values.ndim != 2:
            raise ValueError(f"key={key!r} is not a scalar output (per-run shape {values.shape[2:]}).")
        return key, values

    # ---- tables (pandas)
    def to_table(self) -> pd.DataFrame:
        """One row per (config, seed): ``config`` index, the knobs, ``seed``, every scalar output.

        Needs pandas (in the ``[bench]`` extra); raises ``ImportError`` saying so
        otherwise (the raw outputs stay available through :meth:`output`).
        """
        pd = _pandas("SweepResult.to_table()")
        named = {k: v for k, v in self._named_outputs().items() if v.ndim == 2}
        n, s = len(self.points), len(self.seeds)
        columns: dict[str, Any] = {"config": np.repeat(np.arange(n), s)}
        for knob in self.knobs:
            columns[knob] = [point[knob] for point in self.points for _ in self.seeds]
        columns["seed"] = np.tile(np.asarray(self.seeds), n)
        columns.update({k: v.reshape(n * s) for k, v in named.items()})
        return pd.DataFrame(columns)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_table` as CSV to ``path`` (no index column; needs pandas)."""
        self.to_table().to_csv(path, index=False)

    def summary(self, key: str | None = None) -> pd.DataFrame:
        """One row per config: ``config``, the knobs and ``key``'s mean, std (ddof=0), min and max over seeds."""
        pd = _pandas("SweepResult.summary()")
        key, values = self._scalar_key(key)
        frame = pd.DataFrame(
            {"config": np.arange(len(self.points)), **{k: [p[k] for p in self.points] for k in self.knobs}}
        )
        v = values.astype(np.float64)
        frame[f"{key}_mean"] = v.mean(axis=1)
        frame[f"{key}_std"] = v.std(axis=1)
        frame[f"{key}_min"] = v.min(axis=1)
        frame[f"{key}_max"] = v.max(axis=1)
        frame["n_seeds"] = v.shape[1]
        return frame

    def best(self, k: int = 1, key: str | None = None, higher_is_better: bool = False) -> pd.DataFrame:
        """The ``k`` best configs by the mean of ``key`` over seeds: :meth:`summary`'s rows, indexed by ``rank``.

        Rank 1 is the best; ties keep grid order; a NaN mean ranks last.

        Args:
          k: how many configs (>= 1).
          key: a scalar output; may be omitted if there is only one.
          higher_is_better: rank by descending mean (accuracy, reward) instead
            of ascending (loss).
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k={k!r} is invalid: must be an int >= 1.")
        key, _ = self._scalar_key(key)
        table = self.summary(key)
        top = table.sort_values(f"{key}_mean", ascending=not higher_is_better, kind="stable", na_position="last")
        top = top.head(k).reset_index(drop=True)
        top.index = top.index + 1
        top.index.name = "rank"
        return top

    # ---- heatmap
    def heatmap(
        self,
        path: str | os.PathLike[str],
        key: str | None = None,
        *,
        higher_is_better: bool = False,
        title: str | None = None,
    ) -> tuple[str, str]:
        """Write a PNG heatmap of ``key``'s mean over seeds against the grid's two varying knobs.

        Needs matplotlib (drawn on an Agg canvas; no global backend change).
        Only for grids where exactly two knobs have more than one value. The
        best cell is outlined.

        Returns:
          ``(y_knob, x_knob)``: the knobs on the rows and the columns.

        Raises:
          ValueError: if the result does not come from such a grid.
          ModuleNotFoundError: without matplotlib (the ``bench`` extra installs it).
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            from matplotlib.patches import Rectangle
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                "SweepResult.heatmap() needs matplotlib: pip install 'adaptive-sched[bench]' (or matplotlib)",
                name=e.name,
            ) from e

        varying = [k for k, v in self.grid_values.items() if len(v) > 1]
        if len(varying) != 2:
            raise ValueError(
                f"a heatmap needs a grid with exactly two knobs that take several values, got "
                f"{varying or 'none'}."
            )
        key, values = self._scalar_key(key)
        y_knob, x_knob = varying
        ys, xs = self.grid_values[y_knob], self.grid_values[x_knob]
        grid_knobs = list(self.grid_values)
        shape = [len(v) for v in self.grid_values.values()]
        mean = values.astype(np.float64).mean(axis=1).reshape(shape)
        mat = np.moveaxis(mean, [grid_knobs.index(y_knob), grid_knobs.index(x_knob)], [0, 1])
        mat = mat.reshape(len(ys), len(xs))

        fig = Figure(figsize=(max(6.0, 2.5 + 0.9 * len(xs)), max(3.8, 1.5 + 0.5 * len(ys))), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        im = ax.imshow(mat, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto")
        ax.set_xticks(range(len(xs)), [_label(v) for v in xs])
        ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
        ax.set_xlabel(x_knob)
        ax.set_ylabel(y_knob)
        for (r, c), v in np.ndenumerate(mat):
            rgba = im.cmap(im.norm(v)) if np.isfinite(v) else (0.0, 0.0, 0.0, 1.0)
            light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5
            ax.text(c, r, f"{v:.4g}", ha="center", va="center", fontsize=8, color="black" if light else "white")
        finite = np.where(np.isfinite(mat), mat, np.nan)
        if np.isfinite(finite).any():
            flat = np.nanargmax(finite) if higher_is_better else np.nanargmin(finite)
            r, c = np.unravel_index(flat, mat.shape)
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        fig.colorbar(im, ax=ax, label=f"{key}, mean of {len(self.seeds)} seeds")
        ax.set_title(title or f"{key} ({'higher' if higher_is_better else 'lower'} is better)", fontsize=10)
        fig.tight_layout()
        fig.savefig(os.fspath(path))
        return y_knob, x_knob


def _pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(
            f"{what} needs pandas: pip install 'adaptive-sched[bench]' (or pandas). "
            "Without it, SweepResult.output(key) gives the raw (configs, seeds, ...) NumPy arrays."
        ) from err
    return pd


def _label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


# --------------------------------------------------------------------------- running


def _check_seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds!r} is invalid: give a count >= 1 or a list of ints.")
        return tuple(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise ValueError(f"seeds={seeds!r} is invalid: give a count >= 1 or a list of ints.")
    out = tuple(seeds.tolist() if isinstance(seeds, np.ndarray) else seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in out):
        raise ValueError(f"seeds={seeds!r} is invalid: give a count >= 1 or a non-empty list of ints.")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds={seeds!r} contains duplicates; each seed must appear once.")
    return tuple(int(s) for s in out)


def _check_positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: must be an int >= 1 or None.")
    return int(value)


def _resolve_devices(devices: Sequence[jax.Device] | int | None) -> list[jax.Device]:
    import jax

    available = jax.devices()
    if devices is None:
        return list(available)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices!r} is invalid: must be between 1 and the {len(available)} available devices."
            )
        return list(available[: int(devices)])
    if isinstance(devices, bool):
        raise TypeError(f"devices={devices!r} is invalid: give an int >= 1, a sequence of devices or None.")
    devs = list(devices)
    if not devs:
        raise ValueError("devices is an empty list: give at least one device (or None for all).")
    return devs


def _free_memory_per_device(devices: Sequence[jax.Device]) -> float:
    """Free memory per device: the allocator's limit minus use, else the host's available RAM shared out."""
    free = []
    for device in devices:
        try:
            stats = device.memory_stats()
        except Exception:  # some backends do not implement it
            stats = None
        if not stats or "bytes_limit" not in stats:
            # Host memory (CPU devices): one pool shared by all the devices.
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return float(host) / len(devices)
        free.append(float(stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return min(free)


def _memory_bytes(compiled: Any) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def run_points(
    fn: Callable[..., Any],
    points: Any,
    shared: tuple[Any, ...] = (),
    *,
    mesh: Any = None,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
) -> tuple[Any, PointsRun]:
    """Run ``fn(point, *shared)`` for every point of a grid as one compiled ``jit(vmap(fn))``: the one grid runner.

    :func:`sweep` (a config axis, seeds inside ``fn``) and the bench
    (:func:`adaptive_sched.bench._runner.run_task`: a method x lr x seed axis)
    both run through it.

    Args:
      fn: ``fn(point, *shared) -> pytree of arrays`` for one point; pure and traceable.
      points: a pytree whose leaves have a leading axis of length ``n`` (the points).
      shared: arguments every point gets unbatched (replicated on every device).
      mesh: a 1-D :class:`jax.sharding.Mesh` (axis ``"configs"``) to shard the point
        axis over; default: the first device alone.
      chunk_size: points per compiled call (rounded up to a multiple of the device
        count); None: all at once.
      memory_budget: bytes per device a chunk may use (sizes the chunks from XLA's
        memory analysis of the program compiled for one point per device);
        exclusive with ``chunk_size``.

    Returns:
      ``(outputs, info)``: ``fn``'s outputs with a leading axis of length ``n``
      (NumPy arrays), and a :class:`PointsRun`. Chunks are padded with copies of
      the last point; the padding is dropped.
    """
    import jax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if mesh is None:
        mesh = Mesh(np.asarray(jax.devices()[:1], dtype=object), (CONFIG_AXIS,))
    n, d = jax.tree.leaves(points)[0].shape[0], mesh.size
    batched = jax.vmap(fn, in_axes=(0, *(None for _ in shared)))
    if d > 1:
        # check_vma=False: fn is written for one device and need not mark its scan carries as
        # varying over the mesh axis (jax.lax.pcast); every output is split along the point axis.
        specs = (P(CONFIG_AXIS), *(P() for _ in shared))
        batched = jax.shard_map(batched, mesh=mesh, in_specs=specs, out_specs=P(CONFIG_AXIS), check_vma=False)
    program = jax.jit(batched)
    point_sharding = NamedSharding(mesh, P(CONFIG_AXIS))
    shared = jax.device_put(shared, NamedSharding(mesh, P()))

    def compile_at(size: int) -> Any:
        spec = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype, sharding=point_sharding), points
        )
        return program.lower(spec, *shared).compile()

    whole = -(-n // d) * d  # all points, padded to a multiple of the device count
    t0 = time.perf_counter()
    compiled = None
    if memory_budget is not None:
        probe = compile_at(d)  # one point per device
        per_point = _memory_bytes(probe)
        if per_point is None:
            raise ValueError(
                "memory_budget needs XLA's memory analysis, which this backend does not report; pass chunk_size."
            )
        # mem(c) ~ c * mem(1) over-counts the fixed part, so the chunk errs on the small side.
        chunk_size = min(max(1, int(memory_budget // max(per_point, 1))) * d, whole)
        compiled = probe if chunk_size == d else None
    chunk = whole if chunk_size is None else min(-(-chunk_size // d) * d, whole)
    if compiled is None:
        compiled = compile_at(chunk)
    compile_s = time.perf_counter() - t0

    n_chunks = -(-n // chunk)
    take = np.minimum(np.arange(n_chunks * chunk), n - 1)  # pad with copies of the last point
    t0 = time.perf_counter()
    pieces, pending = [], None
    for i in range(n_chunks):
        sel = take[i * chunk : (i + 1) * chunk]
        part = points if chunk == n and i == 0 else jax.tree.map(lambda a, sel=sel: a[sel], points)
        out = compiled(jax.device_put(part, point_sharding), *shared)  # async; fetch the previous chunk meanwhile
        if pending is not None:
            pieces.append(jax.device_get(pending))
        pending = out
    pieces.append(jax.device_get(pending))
    outputs = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[:n], *pieces)
    run_s = time.perf_counter() - t0
    return outputs, PointsRun(chunk, n_chunks, d, compile_s, run_s, _memory_bytes(compiled))


def _run_group(
    train_fn: Callable[[Config, Any], Any],
    configs: Sequence[Config],
    indices: Sequence[int],
    keys: Any,
    mesh: Any,
    chunk_size: int | None,
    memory_budget: float | None,
) -> tuple[Any, GroupInfo]:
    """One structure group's configs through :func:`run_points` (configs outer, seeds inner)."""
    import jax

    def per_config(config: Config, keys: Any) -> Any:
        return jax.vmap(lambda key: train_fn(config, key))(keys)

    stacked = _stack([configs[i] for i in indices])
    outputs, run = run_points(per_config, stacked, (keys,), mesh=mesh, chunk_size=chunk_size, memory_budget=memory_budget)
    return outputs, GroupInfo(**dataclasses.asdict(run), rules=configs[indices[0]].rules, indices=tuple(indices))


def sweep(
    train_fn: Callable[[Config, jax.Array], Any],
    base_config: Config | Sequence[Config],
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] = 1,
    *,
    lr_bounds: str = "auto",
    devices: Sequence[jax.Device] | int | None = None,
    chunk_size: int | None = None,
    memory_budget: float | str | None = None,
) -> SweepResult:
    """Train every (config, seed) of a grid with one compiled program per config structure.

    ``train_fn`` is written for one config and one seed. The configs are
    grouped by :attr:`Config.rules`; each group's numeric knobs are stacked
    into float32 arrays with a leading config axis and run as
    ``jit(vmap(vmap(train_fn, (None, 0)), (0, None)))`` (configs outer, seeds
    inner), so each group traces ``train_fn`` once and compiles once however
    many configs, seeds and chunks it has.

    Sharding: the config axis is split over ``devices`` with
    :func:`jax.shard_map` on a 1-D :class:`jax.sharding.Mesh` (axis
    ``"configs"``); the keys are replicated. Each chunk is padded to a
    multiple of the device count with copies of the group's last config, and
    padding is dropped from the results.

    Chunking: with ``chunk_size`` (or ``memory_budget``) a group runs in equal
    chunks through the same compiled executable (the last chunk padded), so
    peak memory is that of one chunk.

    On CPU, JAX shows a single device however many cores there are; to spread
    a sweep over the cores, start Python with
    ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` (set before
    JAX is imported). The config axis is then sharded over one host device per
    core (see ``examples/bench_sweep.py`` for the effect on a 2-core machine).

    Everything about the grid, the seeds and the options is validated before
    anything is traced or compiled (see :func:`config_grid`).

    Example::

        result = sweep(train, Config(lr_rule="trend"), {"trend_up": [1.01, 1.05], "lr_rule": ["trend", "variance"]}, seeds=4)
        print(result.best(3, key="final_loss"))
        rows = result.to_table()           # a pandas DataFrame, one row per (config, seed)
        result.heatmap("heatmap.png")      # for two-knob grids

    Args:
      train_fn: ``train_fn(config, key) -> pytree of arrays`` (or a scalar
        score) for one config and one seed; pure and traceable (no Python
        control flow on the config's numeric knobs; its rule names are
        static). Seed ``s`` arrives as ``jax.random.key(s)``.
      base_config: the config the grid starts from, or an explicit list of
        configs (then ``grid`` must be None).
      grid: ``{knob: [values]}`` over numeric knobs and rule names; see
        :func:`config_grid` (product order, validation, and how a ``base_lr``
        grid moves ``min_lr``/``max_lr``).
      seeds: a count ``n`` (seeds ``0..n-1``) or a list of distinct ints.
      lr_bounds: ``"auto"``, ``"derive"``, ``"keep"`` or ``"scale"``; see :func:`config_grid`.
      devices: devices to shard the config axis over: None (all of JAX's
        default backend), a count (the first ``n``), or a list of devices.
      chunk_size: configs per compiled call (rounded up to a multiple of the
        device count). None: the whole group at once.
      memory_budget: bytes per device a chunk may use, or ``"auto"`` (half of
        the device's free memory; on CPU, half of the host's available RAM
        divided by the number of devices). The
        per-config size comes from XLA's memory analysis of the program
        compiled for one config per device; a chunk of ``c`` configs per
        device is assumed to need ``c`` times that (an over-estimate). This
        costs one extra small compilation per group unless the budget allows
        only one config per device. Exclusive with ``chunk_size``.

    Returns:
      A :class:`SweepResult` with outputs of shape ``(n_configs, n_seeds, ...)``
      in grid order, the configs, their knob values and per-group timings.

    Raises:
      TypeError: if ``train_fn`` is not callable or ``base_config`` is not a Config (list).
      ValueError: for a bad grid, seeds, devices, chunk_size or memory_budget.
    """
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
    spec = _expand(base_config, grid, lr_bounds)
    seed_list = _check_seeds(seeds)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    if memory_budget is not None:
        if chunk_size is not None:
            raise ValueError("pass chunk_size or memory_budget, not both.")
        if memory_budget != "auto" and (
            isinstance(memory_budget, (bool, str))
            or not isinstance(memory_budget, (int, float))
            or not math.isfinite(memory_budget)
            or memory_budget <= 0
        ):
            raise ValueError(f"memory_budget={memory_budget!r} is invalid: must be a number of bytes > 0 or 'auto'.")

    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh

    from adaptive_sched._config import ensure_pytree

    ensure_pytree()
    devs = _resolve_devices(devices)
    mesh = Mesh(np.asarray(devs, dtype=object), (CONFIG_AXIS,))
    budget = None
    if memory_budget == "auto":
        budget = _MEMORY_FRACTION * _free_memory_per_device(devs)
    elif memory_budget is not None:
        budget = float(memory_budget)
    keys = jnp.stack([jax.random.key(s) for s in seed_list])

    groups: dict[tuple[str, ...], list[int]] = {}
    for i, cfg in enumerate(spec.configs):
        groups.setdefault(cfg.rules, []).append(i)

    n = len(spec.configs)
    parts = [
        _run_group(train_fn, spec.configs, idx, keys, mesh, chunk_size, budget) for idx in groups.values()
    ]

    def scatter(*leaves: np.ndarray) -> np.ndarray:
        full = np.empty((n, *leaves[0].shape[1:]), leaves[0].dtype)
        for (_, info), leaf in zip(parts, leaves):
            full[list(info.indices)] = leaf
        return full

    structures = {jax.tree.structure(out) for out, _ in parts}
    if len(structures) > 1:
        raise ValueError(
            f"train_fn returned differently structured outputs for different rule groups: {structures}"
        )
    outputs = jax.tree.map(scatter, *(out for out, _ in parts))
    return SweepResult(
        configs=spec.configs,
        knobs=spec.knobs,
        points=spec.points,
        grid_values=dict(spec.values),
        seeds=seed_list,
        outputs=outputs,
        groups=tuple(info for _, info in parts),
    )
