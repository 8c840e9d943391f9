"""Sweeps: grid validation, vmapped == one-by-one, one trace per structure, chunking, sharding, tables."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A
from adaptive_sched import _sweep

jax = pytest.importorskip("jax")
jnp = jax.numpy
optax = pytest.importorskip("optax")

BASE = A.Config(lr_rule="trend", base_lr=0.02, trend_threshold=1e-3)
# Two structure groups (trend, variance) x 3 x 2 = 12 configs; 12 is not a multiple of 8.
GRID: dict[str, list[Any]] = {
    "lr_rule": ["trend", "variance"],
    "trend_up": [1.02, 1.05, 1.1],
    "ema_beta": [0.5, 0.9],
}
SEEDS = (0, 3, 7)


def make_train(counter: list[int] | None = None, steps: int = 40) -> Any:
    """Noisy linear regression trained with adam through the optax front door (one config, one seed)."""

    def train(config: A.Config, key: Any) -> dict[str, Any]:
        if counter is not None:
            counter.append(1)  # Python side effect: runs once per trace
        kx, kw, kb = jax.random.split(key, 3)
        x = jax.random.normal(kx, (64, 4))
        y = x @ jax.random.normal(kw, (4,)) + 0.1
        tx = A.optax.inject_hyperparams(optax.adam, config)()
        w = jnp.zeros(4, jnp.float32)
        state = tx.init(w)

        def step(carry: Any, k: Any) -> Any:
            w, state = carry
            idx = jax.random.randint(k, (16,), 0, 64)
            loss, g = jax.value_and_grad(lambda w: jnp.mean((x[idx] @ w - y[idx]) ** 2))(w)
            updates, state = tx.update(g, state, w, value=loss)
            return (optax.apply_updates(w, updates), state), loss

        (w, state), losses = jax.lax.scan(step, (w, state), jax.random.split(kb, steps))
        return {
            "final_loss": jnp.mean((x @ w - y) ** 2),
            "lr": optax.tree.get(state, "learning_rate"),
            "curve": losses,
        }

    return train


@pytest.fixture(scope="module")
def result() -> _sweep.SweepResult:
    return A.sweep(make_train(), BASE, GRID, seeds=SEEDS)


# --------------------------------------------------------------------------- grids


def test_config_grid_is_the_product_in_order() -> None:
    configs = A.config_grid(BASE, {"trend_up": [1.01, 1.05], "lr_rule": ["trend", "variance"]})
    assert [(c.trend_up, c.lr_rule) for c in configs] == [
        (1.01, "trend"),
        (1.01, "variance"),
        (1.05, "trend"),
        (1.05, "variance"),
    ]
    assert all(c.ema_beta == BASE.ema_beta and c.base_lr == BASE.base_lr for c in configs)
    assert A.config_grid(BASE) == [BASE]
    assert A.config_grid(BASE, {"ema_beta": np.array([0.0, 0.5])})[1].ema_beta == 0.5


def test_base_lr_grid_rederives_default_bounds() -> None:
    # Base left min_lr/max_lr at their defaults: they follow each point's base_lr.
    configs = A.config_grid(A.Config(base_lr=1e-3), {"base_lr": [1e-4, 1e-2]})
    assert [(c.min_lr, c.max_lr) for c in configs] == [(1e-4 * 1e-3, 1e-4 * 10.0), (1e-2 * 1e-3, 1e-2 * 10.0)]
    # An explicit bound is kept (and "auto" says so), the other one still follows base_lr.
    with pytest.warns(UserWarning, match=r"sets max_lr=0.5 explicitly, so it stays fixed"):
        configs = A.config_grid(A.Config(base_lr=1e-3, max_lr=0.5), {"base_lr": [1e-4, 1e-2]})
    assert [(c.min_lr, c.max_lr) for c in configs] == [(1e-4 * 1e-3, 0.5), (1e-2 * 1e-3, 0.5)]
    # "keep": the base config's (derived) bounds stay, so 1e-2 > max_lr = 1e-2... is fine, 0.1 is not.
    configs = A.config_grid(A.Config(base_lr=1e-3), {"base_lr": [1e-4, 1e-2]}, lr_bounds="keep")
    assert [(c.min_lr, c.max_lr) for c in configs] == [(1e-3 * 1e-3, 1e-2), (1e-3 * 1e-3, 1e-2)]
    with pytest.raises(ValueError, match=r"grid point \{'base_lr': 0.1\}.*base_lr <= max_lr"):
        A.config_grid(A.Config(base_lr=1e-3), {"base_lr": [0.1]}, lr_bounds="keep")
    # "derive" overrides explicit bounds; a grid over the bound itself wins over everything.
    configs = A.config_grid(A.Config(base_lr=1e-3, max_lr=0.5), {"base_lr": [1e-2]}, lr_bounds="derive")
    assert configs[0].max_lr == 1e-2 * 10.0
    configs = A.config_grid(A.Config(), {"base_lr": [1e-2], "max_lr": [0.3]}, lr_bounds="derive")
    assert (configs[0].min_lr, configs[0].max_lr) == (1e-2 * 1e-3, 0.3)


def test_base_lr_grid_of_recommended_scales_its_bounds() -> None:
    # recommended() sets min_lr = base/100 and max_lr = 10*base explicitly; "scale" keeps both ratios
    # at every point, so the grid equals recommended(b) for each b (a point below the old min_lr too).
    lrs = [1e-5, 1e-3, 1e-1]
    configs = A.config_grid(A.recommended(1e-2), {"base_lr": lrs}, lr_bounds="scale")
    assert configs == [A.recommended(b) for b in lrs]
    # Mixed: an explicit bound keeps its ratio, a default one its default ratio (scaling it is the same).
    c = A.config_grid(A.Config(base_lr=1e-3, max_lr=4e-3), {"base_lr": [1e-2]}, lr_bounds="scale")[0]
    assert (c.min_lr, c.max_lr) == pytest.approx((1e-2 * 1e-3, 4e-2))
    # "auto" keeps recommended's explicit bounds (base/100 and, since issue 16, 100*base) fixed: the
    # bounds no longer match recommended(b), and it says so.
    with pytest.warns(UserWarning, match=r"sets min_lr=0.0001, max_lr=1.0 explicitly.*lr_bounds='scale'"):
        auto = A.config_grid(A.recommended(1e-2), {"base_lr": [1e-3, 1e-1]})
    assert [(c.min_lr, c.max_lr) for c in auto] == [(1e-4, pytest.approx(1.0)), (1e-4, pytest.approx(1.0))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked-for modes are silent
        A.config_grid(A.recommended(1e-2), {"base_lr": [1e-3, 1e-1]}, lr_bounds="keep")
        A.config_grid(A.Config(base_lr=1e-3), {"base_lr": [1e-4, 1e-2]})  # default bounds: nothing kept


BAD_GRIDS = [
    ({"trend_upp": [1.01]}, r"unknown knob 'trend_upp'.*numeric knobs: base_lr"),
    ({"lr_rule": [0.5, 1.0]}, r"grid\['lr_rule'\] contains 0.5: lr_rule is a rule name and must be one of none"),
    ({"lr_rule": ["trend", "trendy"]}, r"contains 'trendy'.*must be one of"),
    ({"trend_up": ["1.01"]}, r"grid\['trend_up'\] contains '1.01': trend_up is a numeric knob"),
    ({"trend_up": [True]}, r"numeric knob"),
    ({"trend_up": []}, r"grid\['trend_up'\] is empty"),
    ({"trend_up": 1.01}, r"grid\['trend_up'\]=1.01 is invalid: must be a list of values"),
    ({"lr_rule": "trend"}, r"must be a list of values"),
    ({"trend_up": [1.01, 0.5]}, r"Config.trend_up=0.5 is invalid: must be a finite number >= 1"),
    ({"ema_beta": [0.9, 1.0]}, r"Config.ema_beta=1.0 is invalid: must be a number in \[0, 1\)"),
    ({"base_lr": [float("nan")]}, r"Config.base_lr=nan is invalid"),
    ({"min_lr": [1.0]}, r"grid point \{'min_lr': 1.0\}.*min_lr <= base_lr"),
    ({"base_momentum": [0.95], "max_momentum": [0.9]}, r"base_momentum <= max_momentum"),
]


@pytest.mark.parametrize(("grid", "message"), BAD_GRIDS, ids=[m[:24] for _, m in BAD_GRIDS])
def test_bad_grid_raises_before_anything_is_traced(grid: dict[str, Any], message: str) -> None:
    traces: list[int] = []
    with pytest.raises(ValueError, match=message):
        A.sweep(make_train(traces), BASE, grid, seeds=2)
    assert traces == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": 0}, r"seeds=0 is invalid"),
        ({"seeds": [1, 1]}, r"duplicates"),
        ({"seeds": [1.5]}, r"seeds=\[1.5\] is invalid"),
        ({"chunk_size": 0}, r"chunk_size=0 is invalid"),
        ({"memory_budget": -1}, r"memory_budget=-1 is invalid"),
        ({"chunk_size": 4, "memory_budget": 1e9}, r"not both"),
        ({"lr_bounds": "derived"}, r"lr_bounds='derived' is invalid: must be one of auto, derive, keep, scale"),
        ({"devices": 99}, r"devices=99 is invalid"),
    ],
)
def test_bad_options_raise_before_anything_is_traced(kwargs: dict[str, Any], message: str) -> None:
    traces: list[int] = []
    with pytest.raises(ValueError, match=message):
        A.sweep(make_train(traces), BASE, {"trend_up": [1.01]}, **{"seeds": 2, **kwargs})
    assert traces == []


def test_devices_true_is_refused_with_the_argument_named() -> None:
    traces: list[int] = []
    with pytest.raises(TypeError, match=r"devices=True is invalid: give an int >= 1, a sequence of devices or None"):
        A.sweep(make_train(traces), BASE, {"trend_up": [1.01]}, seeds=2, devices=True)
    assert traces == []


# --------------------------------------------------------------------------- numbers


def test_vmapped_sweep_equals_each_run_on_its_own(result: _sweep.SweepResult) -> None:
    """Row (i, j) of the sweep is train(configs[i], key(seeds[j])) run alone under jit.

    Not bit-exact by contract: under vmap XLA batches the matmuls and reductions
    and may vectorise/reassociate float32 sums differently than for one run, so
    values agree to float32 rounding (observed max relative error ~1e-7 here);
    rtol=1e-5 leaves room for it compounding over the 40 training steps and is
    still far below any effect of the knobs (different configs differ by >1e-2).
    """
    single = jax.jit(make_train())
    assert len(result.configs) == 12 and result.seeds == SEEDS
    for i, cfg in enumerate(result.configs):
        assert cfg.rules == A.Config(lr_rule=result.points[i]["lr_rule"]).rules
        assert cfg.trend_up == result.points[i]["trend_up"]
        for j, seed in enumerate(SEEDS):
            alone = single(cfg, jax.random.key(seed))
            for name in ("final_loss", "lr", "curve"):
                np.testing.assert_allclose(result.outputs[name][i, j], alone[name], rtol=1e-5, atol=1e-7)
    # The knobs matter (the comparison above is not trivially true).
    lrs = result.output("lr")[:, 0]
    assert len(np.unique(np.round(lrs, 6))) >= 6
    assert result.outputs["curve"].shape == (12, 3, 40)


def test_chunked_equals_unchunked_and_each_group_traces_once(result: _sweep.SweepResult) -> None:
    traces: list[int] = []
    # 6 configs per group in chunks of 4: the last chunk is padded with copies.
    chunked = A.sweep(make_train(traces), BASE, GRID, seeds=SEEDS, chunk_size=4)
    assert len(traces) == 2  # one trace per structure group (trend, variance), not per chunk or config
    assert [(g.rules[0], g.chunk_size, g.n_chunks) for g in chunked.groups] == [("trend", 4, 2), ("variance", 4, 2)]
    for name in ("final_loss", "lr", "curve"):
        np.testing.assert_allclose(chunked.outputs[name], result.outputs[name], rtol=1e-5, atol=1e-7)


def test_memory_budget_picks_chunks_from_the_compiled_size() -> None:
    traces: list[int] = []

    def train(config: A.Config, key: Any) -> Any:
        traces.append(1)
        return jnp.sum(jax.random.normal(key, (4096,)) * config.trend_up)

    grid = {"trend_up": [1.01, 1.02, 1.03, 1.04, 1.05]}
    small = A.sweep(train, BASE, grid, seeds=2, memory_budget=1)
    # A budget below one config's size gives one config per chunk, reusing the probe compilation.
    assert small.groups[0].chunk_size == 1 and small.groups[0].n_chunks == 5 and len(traces) == 1
    per_config = small.groups[0].bytes_per_device
    assert per_config is not None and per_config > 2 * 4096 * 4  # the (2, 4096) normal draws at least
    mid = A.sweep(train, BASE, grid, seeds=2, memory_budget=2.5 * per_config)
    assert (mid.groups[0].chunk_size, mid.groups[0].n_chunks) == (2, 3)
    assert mid.groups[0].bytes_per_device <= 2.5 * per_config
    big = A.sweep(train, BASE, grid, seeds=2, memory_budget="auto")
    assert (big.groups[0].chunk_size, big.groups[0].n_chunks) == (5, 1)
    for res in (mid, big):
        np.testing.assert_allclose(res.output(), small.output(), rtol=1e-5)


SHARD_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, {tests!r})
import jax, numpy as np
import adaptive_sched as A
import test_sweep as T
assert len(jax.devices()) == 4, jax.devices()
sharded = A.sweep(T.make_train(), T.BASE, T.GRID, seeds=T.SEEDS)
chunked = A.sweep(T.make_train(), T.BASE, T.GRID, seeds=T.SEEDS, chunk_size=4)
np.savez({out!r}, **{{f"{{tag}}.{{k}}": v for tag, r in [("sharded", sharded), ("chunked", chunked)]
          for k, v in r.outputs.items()}})
print([(g.n_devices, g.chunk_size, g.n_chunks) for r in (sharded, chunked) for g in r.groups])
"""


def test_sharded_over_4_host_devices_equals_unsharded(tmp_path: Path, result: _sweep.SweepResult) -> None:
    out = tmp_path / "sharded.npz"
    script = SHARD_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 6 configs per group: padded to 8 over 4 devices; chunks of 4 = one config per device, 2 chunks.
    assert proc.stdout.strip() == str([(4, 8, 1), (4, 8, 1), (4, 4, 2), (4, 4, 2)])
    data = np.load(out)
    assert result.groups[0].n_devices == 1  # the module's result ran unsharded, in this process
    for name in ("final_loss", "lr", "curve"):
        for tag in ("sharded", "chunked"):
            np.testing.assert_allclose(
                data[f"{tag}.{name}"], result.outputs[name], rtol=1e-5, atol=1e-7, err_msg=tag
            )


def test_explicit_config_list_and_scalar_score() -> None:
    def final_lr(config: A.Config, key: Any) -> Any:  # the controller alone on a falling loss
        def step(state: A.State, loss: Any) -> Any:
            return A.update(state, A.Signals(loss=loss))

        _, hp = jax.lax.scan(step, A.init(config, xp=jnp), jnp.linspace(2.0, 1.0, 8))
        return hp.lr[-1]

    configs = [BASE, BASE.replace(trend_up=1.2), A.Config(lr_rule="none", base_lr=0.01)]
    res = A.sweep(final_lr, configs, seeds=1)
    assert res.knobs == ("lr_rule", "base_lr", "min_lr", "max_lr", "trend_up", "trend_threshold")
    assert res.points[1] == {
        "lr_rule": "trend", "base_lr": 0.02, "min_lr": 0.02 * 1e-3, "max_lr": 0.02 * 10.0,
        "trend_up": 1.2, "trend_threshold": 1e-3,
    }
    assert res.output_names() == ("score",)
    assert res.output().shape == (3, 1)
    assert res.output()[2, 0] == np.float32(0.01)  # rule "none": the base lr exactly
    assert res.output()[1, 0] > res.output()[0, 0] > np.float32(0.02)  # loss falls: lr rises, faster at 1.2
    assert [g.indices for g in res.groups] == [(0, 1), (2,)]
    with pytest.raises(ValueError, match="grid must be None"):
        A.sweep(lambda c, k: c.base_lr, configs, {"trend_up": [1.1]})


# --------------------------------------------------------------------------- results


def test_tables_best_and_csv(result: _sweep.SweepResult, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    table = result.to_table()
    assert isinstance(table, pd.DataFrame) and len(table) == 12 * 3
    assert tuple(table.columns) == ("config", "lr_rule", "trend_up", "ema_beta", "seed", "final_loss", "lr")
    row = table.iloc[4]  # config 1, seed 3
    assert (row["config"], row["seed"], row["ema_beta"]) == (1, 3, 0.9)
    assert row["final_loss"] == pytest.approx(float(result.outputs["final_loss"][1, 1]))
    np.testing.assert_array_equal(table["seed"], np.tile(SEEDS, 12))
    np.testing.assert_array_equal(table["lr"], result.outputs["lr"].reshape(-1))

    means = result.outputs["final_loss"].mean(axis=1)
    summary = result.summary("final_loss")
    np.testing.assert_allclose(summary["final_loss_mean"], means, rtol=1e-6)
    np.testing.assert_allclose(summary["final_loss_std"], result.outputs["final_loss"].std(axis=1), rtol=1e-5)
    assert list(summary["lr_rule"]) == [p["lr_rule"] for p in result.points]
    best = result.best(3, key="final_loss")
    assert best.index.name == "rank" and list(best.index) == [1, 2, 3]
    assert list(best["config"]) == list(np.argsort(means, kind="stable")[:3])
    assert best.loc[1, "final_loss_mean"] == pytest.approx(means.min())
    worst = result.best(1, key="final_loss", higher_is_better=True)
    assert worst.loc[1, "config"] == int(np.argmax(means))
    with pytest.raises(ValueError, match="ambiguous"):
        result.best(1)
    with pytest.raises(ValueError, match="not a scalar output"):
        result.best(1, key="curve")
    with pytest.raises(ValueError, match="k=0 is invalid"):
        result.best(0, key="lr")
    assert "final_loss_mean" in best.to_string()

    path = tmp_path / "rows.csv"
    result.to_csv(path)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(table.columns)  # no index column
    assert len(rows) == 36 and float(rows[4]["final_loss"]) == pytest.approx(row["final_loss"])


def test_tables_without_pandas_say_what_to_install(result: _sweep.SweepResult, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    for call in (result.to_table, lambda: result.best(1, key="final_loss"), lambda: result.summary("lr")):
        with pytest.raises(ImportError, match=r"needs pandas: pip install 'adaptive-sched\[bench\]'"):
            call()
    assert result.output("final_loss").shape == (12, 3)  # the raw outputs need no pandas


def test_best_ranks_nan_last() -> None:
    res = A.sweep(
        lambda c, k: jnp.where(c.trend_up > 1.04, jnp.nan, c.trend_up), BASE, {"trend_up": [1.05, 1.03, 1.01]}
    )
    pytest.importorskip("pandas")
    assert list(res.best(3)["trend_up"]) == [1.01, 1.03, 1.05]
    assert list(res.best(3, higher_is_better=True)["trend_up"]) == [1.03, 1.01, 1.05]


def test_heatmap_png_for_two_knob_grids(tmp_path: Path) -> None:
    res = A.sweep(
        lambda c, k: c.trend_up * c.ema_beta, BASE, {"trend_up": [1.01, 1.1], "ema_beta": [0.1, 0.5, 0.9], "decay_k": [0.1]}
    )
    path = tmp_path / "h.png"
    assert res.heatmap(path, higher_is_better=True) == ("trend_up", "ema_beta")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    three = A.sweep(lambda c, k: c.trend_up, BASE, {"trend_up": [1.01, 1.1], "ema_beta": [0.1, 0.5], "decay_k": [0.1, 0.2]})
    with pytest.raises(ValueError, match="exactly two knobs"):
        three.heatmap(tmp_path / "x.png")


def test_import_stays_light() -> None:
    code = (
        "import sys, adaptive_sched as A; A.config_grid(A.Config(), {'ema_beta': [0.5]}); "
        "assert A.sweep and not {'jax', 'matplotlib', 'pandas'} & set(sys.modules); "
        "assert {'sweep', 'config_grid'} <= set(A.__all__); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_heatmap_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = A.sweep(lambda c, k: c.trend_up * c.ema_beta, BASE, {"trend_up": [1.01, 1.1], "ema_beta": [0.1, 0.5]})
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match=r"adaptive-sched\[bench\]"):
        res.heatmap(tmp_path / "h.png")
