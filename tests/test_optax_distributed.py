"""The optax front door under SPMD: signals averaged over a mapped axis (``axis_name``).

The end-to-end run (tests/_spmd_worker.py) needs 4 host devices, which must be
forced before JAX initialises, so it runs in a subprocess. The averaging rule
itself is also checked in-process under ``jax.vmap(axis_name=...)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
chex = pytest.importorskip("chex")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from launch import run_script  # noqa: E402

import adaptive_sched  # noqa: E402
from adaptive_sched.optax import pmean_signals  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def spmd() -> dict[str, Any]:
    out = run_script([str(HERE / "_spmd_worker.py")], env={"JAX_PLATFORMS": "cpu"}, timeout=240)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize(
    ("run", "ref"), [("shard_map", "reference"), ("pmap", "reference"), ("scale_shard_map", "scale_reference")]
)
def test_every_device_gets_the_full_batch_lr(spmd: dict[str, Any], run: str, ref: str) -> None:
    per_device = np.array(spmd[run])  # (steps, devices)
    assert per_device.shape[1] == 4
    assert (per_device == per_device[:, :1]).all(), "devices disagree"
    # The mean of the shards' losses is the full-batch loss up to float32 rounding.
    np.testing.assert_allclose(per_device[:, 0], spmd[ref], rtol=2e-6)
    assert len(set(spmd[ref])) == len(spmd[ref])  # the lr moved every step


def test_without_axis_name_devices_drift_apart(spmd: dict[str, Any]) -> None:
    # The failure axis_name prevents: each device follows its local loss.
    last = spmd["shard_map_local"][-1]
    assert len(set(last)) == 4


def test_plain_jit_with_sharded_batch_needs_no_axis_name(spmd: dict[str, Any]) -> None:
    np.testing.assert_allclose(spmd["jit"], spmd["reference"], rtol=2e-6)


def test_pmean_under_shard_map_ignores_nan_devices(spmd: dict[str, Any]) -> None:
    assert spmd["pmean"]["loss"] == [3.0] * 4  # mean of 1, 3, 5; the NaN device is left out
    assert all(math.isnan(v) for v in spmd["pmean"]["reward"])  # NaN everywhere: not observed


def test_pmean_signals_rule_under_vmap() -> None:
    loss = jnp.array([1.0, jnp.nan, 3.0, jnp.inf])
    kl = jnp.array([0.5, 0.5, 1.5, 1.5])

    def f(lo: jax.Array, k: jax.Array) -> adaptive_sched.Signals:
        return pmean_signals(adaptive_sched.Signals(loss=lo, kl=k), "batch")

    out = jax.vmap(f, axis_name="batch")(loss, kl)
    chex.assert_trees_all_equal(out.loss, jnp.full(4, 2.0))
    chex.assert_trees_all_equal(out.kl, jnp.full(4, 1.0))
    assert out.reward is None and out.grad_norm is None


def test_pmean_signals_without_axis_is_identity_and_checks_shapes() -> None:
    s = adaptive_sched.Signals(loss=jnp.float32(2.0))
    assert pmean_signals(s, None) is s
    with pytest.raises(ValueError, match=r"Signals.loss must be a scalar"):
        jax.vmap(lambda x: pmean_signals(adaptive_sched.Signals(loss=x), "b"), axis_name="b")(jnp.ones((2, 3)))


def test_update_with_axis_name_matches_the_core_on_mean_signals() -> None:
    """The core recipe: pmean_signals then update, under vmap as a stand-in for devices."""
    config = adaptive_sched.Config(lr_rule="loss_decay", base_lr=0.1)
    state = adaptive_sched.init(config, xp=jnp)
    local = jnp.array([1.0, 2.0, 4.0, 9.0])

    def step(x: jax.Array) -> jax.Array:
        return adaptive_sched.update(state, pmean_signals(adaptive_sched.Signals(loss=x), "d"))[1].lr

    lrs = jax.vmap(step, axis_name="d")(local)
    _, hp = adaptive_sched.update(state, adaptive_sched.Signals(loss=jnp.float32(4.0)))
    chex.assert_trees_all_equal(lrs, jnp.full(4, hp.lr))
