"""Quickstart: the pure core, with no framework at all (NumPy), then vmapped in JAX.

``init(config) -> state`` and ``update(state, signals) -> (state, hparams)`` are
pure functions; the state carries its config. Here the recommended
configuration, with the reward-trend and KL-target rules added for RL
fine-tuning, is driven by a reward and a KL stream from a toy bandit (with a
reward or a KL observed, its lr search stays off: growth would push the KL up),
and the same controller is then run for three configs at once under
``jax.vmap`` + ``jax.lax.scan``.

Run: ``python examples/core_quickstart.py``
"""

from __future__ import annotations

from typing import Any

import numpy as np

import adaptive_sched as A


def main(steps: int = 200, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    config = A.recommended(1e-4, reward_rule="trend", kl_rule="target", ema_reward_beta=0.9, max_lr=1e-3)
    state = A.init(config)  # NumPy arrays: no JAX needed
    lrs = []
    for t in range(steps):
        reward = np.tanh(t / 50) + 0.3 * rng.normal()  # improving, noisy
        kl = 0.05 + 0.01 * rng.normal()  # under the KL target of 0.1
        state, hp = A.update(state, A.Signals(reward=reward, kl=kl))
        lrs.append(float(hp.lr))
    print(f"NumPy: lr {lrs[0]:.2e} -> {lrs[-1]:.2e} after {steps} steps, {int(state.skipped)} signals skipped")

    out: dict[str, Any] = {"numpy_lr": lrs}
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:  # the core does not need JAX
        return out

    configs = [config.replace(reward_up=u) for u in (1.001, 1.01, 1.05)]
    batch = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *configs)
    rewards = jnp.asarray(np.tanh(np.arange(steps) / 50) + 0.3 * rng.normal(size=steps), jnp.float32)

    def run(cfg: A.Config) -> Any:
        def body(s: A.State, r: Any) -> Any:
            s, hp = A.update(s, A.Signals(reward=r))
            return s, hp.lr

        return jax.lax.scan(body, A.init(cfg), rewards)[1]

    vm = np.asarray(jax.jit(jax.vmap(run))(batch))
    print("JAX vmap over reward_up=(1.001, 1.01, 1.05): final lr", ", ".join(f"{v:.2e}" for v in vm[:, -1]))
    out["vmap_lr"] = vm
    return out


if __name__ == "__main__":
    main()
