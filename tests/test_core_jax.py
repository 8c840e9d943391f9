"""The core under JAX: jit == eager == NumPy, vmap == loop, one trace, float32 in x64 mode."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from streams import ALL_COMBOS, as_float, config_for, random_stream, run_numpy

import adaptive_sched as A

jax = pytest.importorskip("jax")
jnp = jax.numpy

COMBOS = [
    ("trend", "relative", "trend", "target"),
    ("loss_decay", "inverse", "scaling", "none"),
    ("variance", "exp", "variance", "target"),
    ("grad_norm", "normalized", "none", "none"),
    ("cyclical", "none", "trend", "target"),
    ("none", "none", "none", "none"),
]


def nanify(sig: A.Signals) -> A.Signals:
    """Same values, fixed structure: None becomes NaN (not observed, not counted)."""
    return A.Signals(*(math.nan if v is None else v for v in sig))


def stacked(signals: list[A.Signals]) -> A.Signals:
    return A.Signals(*(np.array([v for v in col], np.float64) for col in zip(*signals)))


@pytest.mark.parametrize("combo", COMBOS, ids="-".join)
def test_jit_equals_eager_equals_numpy(combo: tuple[str, ...], x64: bool) -> None:
    cfg = config_for(combo)
    stream = [nanify(s) for s in random_stream(7, 60)]
    step = jax.jit(A.update)
    s_jit = s_eager = A.init(cfg, xp=jnp)
    lr_j, lr_e, mom_j = [], [], []
    for sig in stream:
        s_jit, hj = step(s_jit, sig)
        s_eager, he = A.update(s_eager, sig)
        lr_j.append(as_float(hj.lr))
        lr_e.append(as_float(he.lr))
        mom_j.append(as_float(hj.momentum))
        assert hj.lr.dtype == jnp.float32 and hj.momentum.dtype == jnp.float32
    assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in jax.tree.leaves(s_jit))
    lr_n, mom_n = run_numpy(cfg, stream)
    # To float32 rounding: under jit the knobs are traced leaves and XLA fuses (and contracts to FMA) what
    # eager dispatches op by op; a few ulps through exp/log (3.7e-6 seen on the grad-norm rule's power).
    np.testing.assert_allclose(lr_j, lr_e, rtol=1e-5)
    np.testing.assert_allclose(lr_j, lr_n, rtol=1e-5)
    np.testing.assert_allclose(mom_j, mom_n, rtol=1e-5, atol=1e-7)


def test_traces_once_over_100_steps(x64: bool) -> None:
    traces = []

    cfg = config_for(("trend", "relative", "trend", "target"))

    def counted(state: A.State, sig: A.Signals) -> Any:
        traces.append(1)
        return A.update(state, sig)

    step = jax.jit(counted)
    state = A.init(cfg)
    rng = np.random.default_rng(0)
    for t in range(100):
        vals = [float(v) for v in rng.normal(size=4) * 10.0 ** rng.integers(-3, 4)]
        if t % 7 == 0:
            vals[t % 4] = math.nan
        if t % 11 == 0:
            vals[(t + 1) % 4] = math.inf
        state, _hp = step(state, A.Signals(*vals))
    assert len(traces) == 1
    assert int(state.step) == 100


def test_vmap_over_three_stacked_configs_equals_three_runs(x64: bool) -> None:
    cfgs = [
        config_for(("trend", "exp", "trend", "target"), trend_up=u, ema_beta=b, base_lr=lr, min_lr=lr / 100)
        for u, b, lr in ((1.05, 0.5, 1e-3), (1.2, 0.9, 3e-3), (1.5, 0.0, 1e-2))
    ]
    batch = jax.tree.map(lambda *xs: np.array(xs, np.float32), *cfgs)
    stream = [nanify(s) for s in random_stream(11, 40)]

    def scan_run(cfg: A.Config, sigs: A.Signals) -> Any:
        def body(state: A.State, sig: A.Signals) -> Any:
            state, hp = A.update(state, sig)
            return state, (hp.lr, hp.momentum)

        return jax.lax.scan(body, A.init(cfg), sigs)[1]

    sigs = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), stacked(stream))
    lr_v, mom_v = jax.jit(jax.vmap(scan_run, in_axes=(0, None)))(batch, sigs)
    for i, cfg in enumerate(cfgs):
        lr_i, mom_i = jax.jit(scan_run)(cfg, sigs)
        np.testing.assert_allclose(np.asarray(lr_v[i]), np.asarray(lr_i), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(mom_v[i]), np.asarray(mom_i), rtol=1e-6)
        lr_n, _ = run_numpy(cfg, stream)
        np.testing.assert_allclose(np.asarray(lr_i), lr_n, rtol=1e-5)


def test_jitted_property_bounds_on_hostile_streams() -> None:
    # A sample of combinations through the compiled path (every combination is
    # covered eagerly by the hypothesis test in test_core.py).
    rng = np.random.default_rng(5)
    picks = [ALL_COMBOS[i] for i in rng.choice(len(ALL_COMBOS), size=12, replace=False)]
    for combo in picks:
        cfg = config_for(combo)
        stream = [nanify(s) for s in random_stream(int(rng.integers(1 << 30)), 30, hostile=0.5)]
        sigs = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), stacked(stream))

        def body(state: A.State, sig: A.Signals, cfg: A.Config = cfg) -> Any:
            state, hp = A.update(state, sig)
            return state, hp

        final, hps = jax.jit(lambda s, x: jax.lax.scan(body, s, x))(A.init(cfg), sigs)
        lr, mom = np.asarray(hps.lr), np.asarray(hps.momentum)
        assert np.all(np.isfinite(lr)) and np.all(np.isfinite(mom)), combo
        assert np.all(lr >= np.float32(cfg.min_lr)) and np.all(lr <= np.float32(cfg.max_lr)), combo
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(final)), combo


def test_low_precision_signals_give_float32_hparams(x64: bool) -> None:
    cfg = A.Config(lr_rule="trend", momentum_rule="inverse")
    state = A.init(cfg, xp=jnp)
    state, hp = jax.jit(A.update)(state, A.Signals(loss=jnp.bfloat16(2.5)))
    state, hp = jax.jit(A.update)(state, A.Signals(loss=jnp.float16(1.5)))
    assert hp.lr.dtype == jnp.float32 and hp.momentum.dtype == jnp.float32
    assert float(hp.momentum) == pytest.approx(1 - 1 / (1 + (0.1 * 2.5 * 0.9 + 0.1 * 1.5) / 0.19), rel=1e-5)


def test_flatten_save_load_continue_is_bit_exact(tmp_path: Any, x64: bool) -> None:
    cfg = config_for(("trend", "relative", "scaling", "target"))
    stream = [nanify(s) for s in random_stream(2, 60)]
    step = jax.jit(A.update)
    state = A.init(cfg)
    full = []
    for sig in stream:
        state, hp = step(state, sig)
        full.append((np.asarray(hp.lr), np.asarray(hp.momentum)))
    state = A.init(cfg)
    for sig in stream[:30]:
        state, _ = step(state, sig)
    leaves, treedef = jax.tree.flatten(state)
    np.savez(tmp_path / "ckpt.npz", *[np.asarray(x) for x in leaves])
    with np.load(tmp_path / "ckpt.npz") as f:
        loaded = [f[f"arr_{i}"] for i in range(len(leaves))]
    state = jax.tree.unflatten(treedef, loaded)
    for t, sig in enumerate(stream[30:], start=30):
        state, hp = step(state, sig)
        assert np.asarray(hp.lr).tobytes() == full[t][0].tobytes()
        assert np.asarray(hp.momentum).tobytes() == full[t][1].tobytes()


_IMPORT_ORDER = r"""
import sys
{first}
import jax, jax.numpy as jnp
import adaptive_sched as A
cfg = A.Config(lr_rule="trend", trend_up=1.5)
leaves = jax.tree.leaves(cfg)
assert len(leaves) == len(cfg.knobs) == 13, leaves  # the core knobs and trend's
state = A.init(cfg)
assert len(jax.tree.leaves(state.config)) == 2 * 13  # the knobs as float32 scalars, and their logs
s, hp = jax.jit(A.update)(state, A.Signals(loss=1.0))
print("ok")
"""


@pytest.mark.parametrize("first", ["import adaptive_sched", "pass"], ids=["sched-first", "jax-first"])
def test_config_is_registered_whatever_the_import_order(first: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ORDER.format(first=first)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_imports_no_optional_framework() -> None:
    code = (
        "import sys, adaptive_sched as A; c = A.Config(lr_rule='trend'); A.update(A.init(c), A.Signals(loss=1.0));"
        "bad = [m for m in ('jax', 'optax', 'torch', 'matplotlib', 'sklearn') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_config_built_before_jax_is_imported_jits_once_its_state_exists() -> None:
    # New-user finding: a Config built before `import jax` (a configs module, a notebook cell) was an opaque
    # leaf, and jax.jit(A.update) rejected it until some other Config happened to be built.
    code = (
        "import adaptive_sched as A; cfg = A.recommended(1e-4)\n"
        "import jax\n"
        "state = A.init(cfg)\n"
        "state, hp = jax.jit(A.update)(state, A.Signals(loss=1.0, grad_norm=1.0))\n"
        "assert len(jax.tree.leaves(cfg)) == len(cfg.knobs), jax.tree.leaves(cfg)\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
