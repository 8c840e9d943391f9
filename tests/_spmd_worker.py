"""Run by tests/test_optax_distributed.py in a subprocess with 4 forced host devices.

Data-parallel linear regression: the batch is split over 4 devices, each device
computes its local loss and gradient (the gradient is pmean-ed, as in any
data-parallel step); the controller gets ``axis_name="data"``. Prints one JSON
object with the per-device lr sequences and the single-device reference.
"""

from __future__ import annotations

import json
from functools import partial

import chex

chex.set_n_cpu_devices(4)  # before JAX initialises its backends

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import adaptive_sched  # noqa: E402
from adaptive_sched.optax import inject_hyperparams, pmean_signals, scale_by_controller  # noqa: E402

STEPS = 6
N_DEV = 4
CONFIG = adaptive_sched.Config(lr_rule="loss_decay", momentum_rule="inverse", base_lr=0.05, base_momentum=0.9)
SCALE_CONFIG = adaptive_sched.Config(lr_rule="loss_decay", base_lr=0.05)


def data() -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = (
        x @ np.array([1.0, -2.0, 0.5], np.float32) + rng.normal(size=16).astype(np.float32) * (1 + np.arange(16) // 4)
    ).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def loss_fn(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((x @ w - y) ** 2)


def make_tx(kind: str, axis_name: str | None) -> optax.GradientTransformationExtraArgs:
    if kind == "inject":
        return inject_hyperparams(optax.sgd, CONFIG, axis_name=axis_name)()
    return optax.chain(optax.sgd(SCALE_CONFIG.base_lr), scale_by_controller(SCALE_CONFIG, axis_name=axis_name))


def lr_of(kind: str, state: object) -> jax.Array:
    return optax.tree.get(state, "learning_rate" if kind == "inject" else "lr")


def reference(kind: str) -> list[float]:
    """One device, the full batch."""
    x, y = data()
    tx = make_tx(kind, None)
    w = jnp.zeros(3)
    state = tx.init(w)
    lrs = []
    for _ in range(STEPS):
        loss, g = jax.value_and_grad(loss_fn)(w, x, y)
        u, state = tx.update(g, state, w, value=loss)
        w = optax.apply_updates(w, u)
        lrs.append(float(lr_of(kind, state)))
    return lrs


def sharded(kind: str, axis_name: str | None) -> list[list[float]]:
    """shard_map over 4 devices: per-device lr at every step."""
    mesh = Mesh(np.array(jax.devices()[:N_DEV]), ("data",))
    tx = make_tx(kind, axis_name)
    chex.clear_trace_counter()  # each call builds a new step: count its traces only

    @chex.assert_max_traces(n=1)
    def local_step(w, state, x, y):  # type: ignore[no-untyped-def]
        loss, g = jax.value_and_grad(loss_fn)(w, x, y)
        g = jax.lax.pmean(g, "data")
        u, state = tx.update(g, state, w, value=loss)
        return optax.apply_updates(w, u), state, lr_of(kind, state)[None]

    step = jax.jit(
        jax.shard_map(
            local_step,
            mesh=mesh,
            in_specs=(P(), P(), P("data"), P("data")),
            out_specs=(P(), P(), P("data")),
            check_vma=False,
        )
    )
    x, y = jax.device_put(data(), NamedSharding(mesh, P("data")))
    w = jnp.zeros(3)
    w, state = jax.device_put((w, tx.init(w)), NamedSharding(mesh, P()))  # replicated, as the step returns them
    out = []
    for _ in range(STEPS):
        w, state, lrs = step(w, state, x, y)
        out.append([float(v) for v in lrs])
    return out


def pmapped() -> list[list[float]]:
    tx = make_tx("inject", "data")

    @partial(jax.pmap, axis_name="data")
    def step(w, state, x, y):  # type: ignore[no-untyped-def]
        loss, g = jax.value_and_grad(loss_fn)(w, x, y)
        g = jax.lax.pmean(g, "data")
        u, state = tx.update(g, state, w, value=loss)
        return optax.apply_updates(w, u), state, lr_of("inject", state)

    x, y = data()
    xs, ys = x.reshape(N_DEV, -1, 3), y.reshape(N_DEV, -1)
    w = jnp.zeros((N_DEV, 3))
    state = jax.pmap(tx.init)(w)
    out = []
    for _ in range(STEPS):
        w, state, lrs = step(w, state, xs, ys)
        out.append([float(v) for v in lrs])
    return out


def global_jit() -> list[float]:
    """Plain jit with the batch sharded over the devices: the global view, no axis_name."""
    mesh = Mesh(np.array(jax.devices()[:N_DEV]), ("data",))
    tx = make_tx("inject", None)

    @jax.jit
    def step(w, state, x, y):  # type: ignore[no-untyped-def]
        loss, g = jax.value_and_grad(loss_fn)(w, x, y)
        u, state = tx.update(g, state, w, value=loss)
        return optax.apply_updates(w, u), state

    x, y = data()
    x = jax.device_put(x, NamedSharding(mesh, P("data")))
    y = jax.device_put(y, NamedSharding(mesh, P("data")))
    w = jnp.zeros(3)
    state = tx.init(w)
    out = []
    for _ in range(STEPS):
        w, state = step(w, state, x, y)
        out.append(float(lr_of("inject", state)))
    return out


def pmean_cases() -> dict[str, list[float | None]]:
    mesh = Mesh(np.array(jax.devices()[:N_DEV]), ("d",))

    def f(loss, reward):  # type: ignore[no-untyped-def]
        s = pmean_signals(adaptive_sched.Signals(loss=loss[0], reward=reward[0]), "d")
        assert s.grad_norm is None and s.kl is None  # not supplied: stays None
        return s.loss[None], s.reward[None]

    fm = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=(P("d"), P("d")), check_vma=False))
    loss, reward = fm(jnp.array([1.0, jnp.nan, 3.0, 5.0]), jnp.full(4, jnp.nan))
    return {"loss": [float(v) for v in loss], "reward": [float(v) for v in reward]}


def main() -> None:
    assert jax.device_count() == N_DEV, jax.devices()
    res = {
        "reference": reference("inject"),
        "shard_map": sharded("inject", "data"),
        "shard_map_local": sharded("inject", None),
        "scale_reference": reference("scale"),
        "scale_shard_map": sharded("scale", "data"),
        "pmap": pmapped(),
        "jit": global_jit(),
        "pmean": pmean_cases(),
    }
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
