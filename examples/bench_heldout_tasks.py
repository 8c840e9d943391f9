"""Five small tasks outside the bench, at Adam's default lr, where the best lr is 10-100x higher.

The bench's base lrs are near the right lr; a user who installs a scheduler to
skip tuning often starts from Adam's default 1e-3, too low for small models.
These tasks (offline, CPU-sized, 400 Adam steps, lr grid 1e-4..1e-1 around
the base 1e-3) measure what the recommended configuration does there, beside
the configuration before the lr search (the slope test with its own x2 growth,
bounds base/100..10*base) and the peers:

* ``quadratic``: an ill-conditioned noisy quadratic (50 dims, condition 100);
  metric: its noiseless value.
* ``wine-softmax``: softmax regression on scikit-learn's wine data; held-out log-loss.
* ``diabetes-linreg``: linear regression on scikit-learn's diabetes data; held-out MSE.
* ``digits-deep-tanh``: a 64-128-128-10 tanh MLP on digits, batch 64; held-out log-loss.
* ``ngram-mlp-lm``: a 4-gram MLP character model on the bench's text; held-out nats/char.

Run: ``python examples/bench_heldout_tasks.py`` (about 2 minutes), or
``--tasks quadratic --steps 40 --seeds 1`` (quick).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_sched
from adaptive_sched.bench import _data, _methods, _runner, _summary, _tasks

F32 = jnp.float32
GRID: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
BASE_LR = 1e-3


def _task(problem: Any, name: str, steps: int) -> Any:
    return _tasks._make_task(problem, name=name, metric_name="heldout_loss", higher_is_better=False, steps=steps,
                             size="default", base_lr=BASE_LR, description=name)  # fmt: skip


def _minibatch(loss: Any, x: np.ndarray, y: np.ndarray, batch: int) -> Any:
    def grad_step(p: Any, key: jax.Array) -> Any:
        idx = jax.random.randint(key, (batch,), 0, x.shape[0])
        v, g = jax.value_and_grad(loss)(p, jnp.asarray(x)[idx], jnp.asarray(y)[idx])
        return v, g, {}

    return grad_step


def quadratic(steps: int) -> Any:
    lam = jnp.asarray(np.logspace(-2, 0, 50), F32)

    def f(p: Any) -> Any:
        return 0.5 * jnp.sum(lam * p["x"] ** 2)

    def grad_step(p: Any, key: jax.Array) -> Any:
        v, g = jax.value_and_grad(f)(p)
        z = jax.random.normal(key, (50,), F32)
        return v + 0.03 * z[0], {"x": g["x"] + 0.3 * jnp.sqrt(lam) * z}, {}

    problem = _tasks._Problem(lambda k: {"x": jax.random.normal(k, (50,), F32)}, grad_step, lambda p, k: f(p))
    return _task(problem, "quadratic", steps)


def _standardised(data: Any, test: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tr, te = _data.split(len(data.target), test, seed=seed)
    x = data.data.astype(np.float64)
    x = ((x - x[tr].mean(0)) / (x[tr].std(0) + 1e-12)).astype(np.float32)
    return x, tr, te


def wine_softmax(steps: int) -> Any:
    from sklearn.datasets import load_wine

    d = load_wine()
    x, tr, te = _standardised(d, 0.3, 1)
    y = d.target.astype(np.int32)

    def loss(p: Any, xb: Any, yb: Any) -> Any:
        ce = optax.softmax_cross_entropy_with_integer_labels(xb @ p["w"] + p["b"], yb).mean()
        return ce + 1e-3 * jnp.sum(p["w"] ** 2)

    def evaluate(p: Any, key: jax.Array) -> Any:
        return optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(x[te]) @ p["w"] + p["b"], jnp.asarray(y[te])).mean()

    init = lambda k: {"w": jax.random.normal(k, (13, 3), F32) * 0.1, "b": jnp.zeros(3, F32)}  # noqa: E731
    return _task(_tasks._Problem(init, _minibatch(loss, x[tr], y[tr], 16), evaluate), "wine-softmax", steps)


def diabetes_linreg(steps: int) -> Any:
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x, tr, te = _standardised(d, 0.3, 2)
    y = ((d.target - d.target[tr].mean()) / d.target[tr].std()).astype(np.float32)

    def mse(p: Any, xb: Any, yb: Any) -> Any:
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    init = lambda k: {"w": jax.random.normal(k, (10,), F32) * 0.1, "b": jnp.zeros((), F32)}  # noqa: E731
    problem = _tasks._Problem(init, _minibatch(mse, x[tr], y[tr], 32), lambda p, k: mse(p, jnp.asarray(x[te]), jnp.asarray(y[te])))
    return _task(problem, "diabetes-linreg", steps)


def digits_deep_tanh(steps: int) -> Any:
    xtr, ytr, xte, yte = _data.digits_data()
    sizes = (64, 128, 128, 10)

    def init(key: jax.Array) -> Any:
        ks = jax.random.split(key, len(sizes) - 1)
        p = {f"w{i}": jax.random.normal(k, (a, b), F32) / math.sqrt(a) for i, (k, a, b) in enumerate(zip(ks, sizes, sizes[1:]))}
        return p | {f"b{i}": jnp.zeros((b,), F32) for i, b in enumerate(sizes[1:])}

    def logits(p: Any, x: Any) -> Any:
        for i in range(len(sizes) - 1):
            x = x @ p[f"w{i}"] + p[f"b{i}"]
            x = jnp.tanh(x) if i < len(sizes) - 2 else x
        return x

    def loss(p: Any, xb: Any, yb: Any) -> Any:
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb).mean()

    problem = _tasks._Problem(init, _minibatch(loss, xtr, ytr, 64), lambda p, k: loss(p, jnp.asarray(xte), jnp.asarray(yte)))
    return _task(problem, "digits-deep-tanh", steps)


def ngram_mlp_lm(steps: int, context: int = 4, emb: int = 12, hidden: int = 64) -> Any:
    train, heldout = _data.lm_data()
    v = len(_data.VOCAB)
    starts = np.arange(0, len(heldout) - context - 1, 7)[:800]
    ev_x, ev_y = np.stack([heldout[i : i + context] for i in starts]), heldout[starts + context]

    def init(key: jax.Array) -> Any:
        k1, k2, k3 = jax.random.split(key, 3)
        return {"emb": jax.random.normal(k1, (v, emb), F32),
                "w1": jax.random.normal(k2, (context * emb, hidden), F32) / math.sqrt(context * emb),
                "b1": jnp.zeros(hidden, F32), "w2": jax.random.normal(k3, (hidden, v), F32) / math.sqrt(hidden),
                "b2": jnp.zeros(v, F32)}  # fmt: skip

    def nll(p: Any, xs: Any, ys: Any) -> Any:
        h = jax.nn.relu(p["emb"][xs].reshape(xs.shape[0], -1) @ p["w1"] + p["b1"])
        return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], ys).mean()

    def grad_step(p: Any, key: jax.Array) -> Any:
        ids = jnp.asarray(train)
        st = jax.random.randint(key, (32,), 0, ids.shape[0] - context - 1)
        v_, g = jax.value_and_grad(nll)(p, ids[st[:, None] + jnp.arange(context)], ids[st + context])
        return v_, g, {}

    problem = _tasks._Problem(init, grad_step, lambda p, k: nll(p, jnp.asarray(ev_x), jnp.asarray(ev_y)))
    return _task(problem, "ngram-mlp-lm", steps)


TASKS = {"quadratic": quadratic, "wine-softmax": wine_softmax, "diabetes-linreg": diabetes_linreg,
         "digits-deep-tanh": digits_deep_tanh, "ngram-mlp-lm": ngram_mlp_lm}  # fmt: skip


def _ours(name: str, make: Any, horizon: bool) -> _methods.Method:
    def build(lr: Any, task: Any, steps: int) -> Any:
        return adaptive_sched.optax.inject_hyperparams(optax.adam, make(lr, steps if horizon else None))(b1=0.9)

    return _methods.Method(name, "ours", True, name, build, uses_horizon=horizon)


def before_search(lr: Any, total_steps: Any) -> adaptive_sched.Config:
    """The recommended configuration before the lr search: the slope test with its x2 growth phase."""
    return adaptive_sched.Config(base_lr=lr, min_lr=lr / 100, max_lr=lr * 10, anneal_rule="slope",
                                 lr_rule="grad_norm", grad_norm_power=0.5)  # fmt: skip


def run(names: tuple[str, ...], steps: int = 400, seeds: int = 5) -> dict[str, Any]:
    """``before``, ``ours``, ``ours-horizon`` and the peers on each task; the rows of :func:`_summary.method_rows`."""
    out: dict[str, Any] = {}
    for name in names:
        task = TASKS[name](steps)
        methods = [_ours("before", before_search, False),
                   _ours("ours", lambda lr, t: adaptive_sched.recommended(lr), False),
                   _ours("ours-horizon", lambda lr, t: adaptive_sched.recommended(lr, total_steps=t), True)]  # fmt: skip
        methods += [m for m in _methods._peers()]
        res = _runner.run_task(task, methods, GRID, seeds)
        summary = _summary.summarize(res, {"before", "ours", "ours-horizon"})
        rows = _summary.method_rows(summary, [m.name for m in methods], task.higher_is_better)
        out[name] = rows
        print(f"\n## {name} (held-out loss, base lr {BASE_LR:g}; best tuned baseline: {summary['best_baseline_tuned']})")
        print("| method | @base | untuned gap % | tuned (x) | worst | window |")
        print("|---|---|---|---|---|---|")
        for n, r in rows.items():
            print(f"| {n} | {r['base']:.4f} | {r['gap_pct']:+.1f} | {r['tuned']:.4f} (x{r['tuned_multiplier']:g}) "
                  f"| {r['worst']:.4f} | {r['window']:.2f} |")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: " + ", ".join(TASKS))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    return run(tuple(args.tasks.split(",")), args.steps, args.seeds)


if __name__ == "__main__":
    main()
