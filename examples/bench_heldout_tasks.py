"""Small tasks outside the bench, at Adam's default lr, where the best lr is 10-100x higher; and the linear regression a new user tried.

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

And the linear regression a new user tried with the optax door ("do no
harm"), as it was set up there: 8 standard-normal features, 640 rows drawn once
with ``np.random.RandomState(0)``, true weights rescaled to ``||w||^2 = 8`` (target
variance about 8), noise-free targets, 512 rows to train on and 128 held out;
``optax.adamw(lr, weight_decay=1e-4)`` from zero weights and bias, batch 32, 20
epochs = 320 steps, the loss passed as ``value=``; metric: held-out MSE. Its base
lr is the user's 3e-3, so the grid (3e-4..0.3) holds both lrs of that report,
3e-3 (x1) and 3e-2 (x10). The peers there are AdamW with the same weight decay
(``constant``, ``cosine``), and ours run on AdamW too:

* ``linreg-order``: the same 16 batches, in the same order, every epoch (every
  seed is the same run: zero init, no sampling).
* ``linreg-shuffled``: a fresh permutation of the 512 rows every epoch (per seed).

For these two the script also prints the no-harm target: ``recommended(lr)`` and
``recommended(lr, total_steps=320)`` at 3e-3 and 3e-2 against constant AdamW at
the same lr, no worse than ``max(1.02 x constant, constant + 0.01)``.

Run: ``python examples/bench_heldout_tasks.py`` (a few minutes), or
``--tasks quadratic,linreg-order --steps 40 --seeds 1`` (quick).
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


LINREG_STEPS = 320
"""20 epochs of 16 batches of 32 rows: that user's run."""
LINREG_LR = 3e-3
"""The base lr of the linear regression: that user's (the no-harm target also names 3e-2, x10 here)."""
ADAMW_DECAY = 1e-4


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


def _linreg_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The data: 640 x 8 standard normal, ``y = X w`` with ``||w||^2 = 8``; 512 train, 128 held out."""
    rng = np.random.RandomState(seed)
    x = rng.randn(640, 8).astype(np.float32)
    w = rng.randn(8)
    w = w / np.linalg.norm(w) * math.sqrt(8.0)
    y = (x @ w).astype(np.float32)
    return x[:512], y[:512], x[512:], y[512:]


def _key_bits(k: jax.Array) -> jax.Array:
    return jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k


def linreg(steps: int, shuffle: bool) -> Any:
    """The linear regression as a bench task (module docstring); ``shuffle``: a fresh permutation per epoch.

    Epochs need the step's position, which the bench's training loop does not hand to a task
    (``_tasks._train`` gives each step a key split from the run's data key). So each run's
    ``grad_step`` finds its step by its key among those keys (``split(split(key, 3)[1], steps)``,
    as ``_tasks._train`` draws them); should that ever stop matching, the loss is NaN and every run
    shows as diverged instead of silently training on one batch.
    """
    xtr, ytr, xte, yte = (jnp.asarray(a) for a in _linreg_data())
    n, batch = xtr.shape[0], 32
    per_epoch = n // batch

    def mse(p: Any, xb: Any, yb: Any) -> Any:
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    def init(key: jax.Array) -> Any:
        return {"w": jnp.zeros(8, F32), "b": jnp.zeros((), F32)}

    def train(tx: Any, key: jax.Array, n_steps: int) -> dict[str, jax.Array]:
        k_data = jax.random.split(key, 3)[1]
        bits = _key_bits(jax.random.split(k_data, n_steps)).reshape(n_steps, -1)

        def grad_step(p: Any, k: jax.Array) -> Any:
            hit = jnp.all(bits == _key_bits(k).reshape(-1), axis=-1)
            t = jnp.argmax(hit)
            order = jax.random.permutation(jax.random.fold_in(k_data, t // per_epoch), n) if shuffle else jnp.arange(n)
            idx = jax.lax.dynamic_slice(order, ((t % per_epoch) * batch,), (batch,))
            v, g = jax.value_and_grad(mse)(p, xtr[idx], ytr[idx])
            return jnp.where(jnp.any(hit), v, jnp.nan), g, {}

        problem = _tasks._Problem(init, grad_step, lambda p, k: mse(p, xte, yte))
        return _tasks._train(problem, tx, key, n_steps)

    name = "linreg-shuffled" if shuffle else "linreg-order"
    return _tasks.Task(name=name, metric_name="heldout_mse", higher_is_better=False, steps=steps, size="default",
                       base_lr=LINREG_LR, description=name, _train=train)  # fmt: skip


TASKS = {"quadratic": quadratic, "wine-softmax": wine_softmax, "diabetes-linreg": diabetes_linreg,
         "digits-deep-tanh": digits_deep_tanh, "ngram-mlp-lm": ngram_mlp_lm,
         "linreg-order": lambda steps: linreg(steps, False),
         "linreg-shuffled": lambda steps: linreg(steps, True)}  # fmt: skip
STEPS: dict[str, int] = {"linreg-order": LINREG_STEPS, "linreg-shuffled": LINREG_STEPS}
"""Each task's default steps when ``--steps`` is not given (400 for those not listed)."""
OPTIMIZERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "linreg-order": (optax.adamw, {"weight_decay": ADAMW_DECAY}),
    "linreg-shuffled": (optax.adamw, {"weight_decay": ADAMW_DECAY}),
}
"""The optimizer ours wrap on each task, with its arguments (Adam, b1 0.9, for those not listed)."""
ISSUE_LRS: tuple[float, ...] = (3e-3, 3e-2)
"""The lrs at which the no-harm target holds recommended() against constant AdamW."""


def _adamw_peers() -> list[_methods.Method]:
    """The peers of the linear regression: constant and cosine AdamW (weight decay 1e-4), as the user ran it."""

    def adamw(lr: Any) -> Any:
        inject = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)
        return inject(learning_rate=lr, weight_decay=ADAMW_DECAY)

    return [
        _methods.Method("constant", "time-based", False, f"optax.adamw(lr, weight_decay={ADAMW_DECAY:g})",
                        lambda lr, task, steps: adamw(lr)),
        _methods.Method("cosine", "time-based", False, "optax.adamw(cosine_decay_schedule(lr, steps))",
                        lambda lr, task, steps: adamw(optax.cosine_decay_schedule(lr, steps)), uses_horizon=True),
    ]  # fmt: skip


def no_worse(ours: float, constant: float) -> bool:
    """The no-harm tolerance: ``ours <= max(1.02 * constant, constant + 0.01)`` (a NaN is worse)."""
    return bool(np.isfinite(ours) and ours <= max(1.02 * constant, constant + 0.01))


def issue_target(res: Any) -> dict[str, list[dict[str, Any]]]:
    """``ours`` and ``ours-horizon`` against ``constant`` at each of :data:`ISSUE_LRS` on the grid (seed means).

    Returns:
      ``{method: [{"lr", "mean", "constant", "ratio", "ok"}]}`` (``ok``: :func:`no_worse`).
    """
    final = res.arrays["metric"].astype(np.float64)
    ic = res.methods.index("constant")
    lrs = [g * res.task.base_lr for g in res.grid]
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ("ours", "ours-horizon"):
        i = res.methods.index(name)
        out[name] = []
        for lr in ISSUE_LRS:
            j = int(np.argmin(np.abs(np.log(np.asarray(lrs) / lr))))
            if not math.isclose(lrs[j], lr, rel_tol=1e-6):
                continue
            m, c = float(np.mean(final[i, j])), float(np.mean(final[ic, j]))
            out[name].append({"lr": lr, "mean": m, "constant": c, "ratio": m / c if c else float("nan"),
                              "ok": no_worse(m, c)})  # fmt: skip
    return out


def _ours(name: str, make: Any, horizon: bool) -> _methods.Method:
    def build(lr: Any, task: Any, steps: int) -> Any:
        opt, kwargs = OPTIMIZERS.get(task.name, (optax.adam, {"b1": 0.9}))
        return adaptive_sched.optax.inject_hyperparams(opt, make(lr, steps if horizon else None))(**kwargs)

    return _methods.Method(name, "ours", True, name, build, uses_horizon=horizon)


def before_search(lr: Any, total_steps: Any) -> adaptive_sched.Config:
    """The recommended configuration before the lr search: the slope test with its x2 growth phase."""
    return adaptive_sched.Config(base_lr=lr, min_lr=lr / 100, max_lr=lr * 10, anneal_rule="slope",
                                 lr_rule="grad_norm", grad_norm_power=0.5)  # fmt: skip


def _num(x: float | None) -> str:
    """4 decimals, or 3 significant digits below 1e-3 (the noise-free linear regression reaches 1e-8)."""
    if x is None or not np.isfinite(x):
        return "nan"
    return f"{x:.4f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3g}"


def run(names: tuple[str, ...], steps: int | None = None, seeds: int = 5) -> dict[str, Any]:
    """``before``, ``ours``, ``ours-horizon`` and the peers on each task; the rows of :func:`_summary.method_rows`.

    ``steps``: every task's steps (None: :data:`STEPS`, else 400). On the linear regression the rows of
    ``ours`` and ``ours-horizon`` also hold ``"issue_target"`` (:func:`issue_target`).
    """
    out: dict[str, Any] = {}
    for name in names:
        task = TASKS[name](STEPS.get(name, 400) if steps is None else steps)
        methods = [_ours("before", before_search, False),
                   _ours("ours", lambda lr, t: adaptive_sched.recommended(lr), False),
                   _ours("ours-horizon", lambda lr, t: adaptive_sched.recommended(lr, total_steps=t), True)]  # fmt: skip
        methods += _adamw_peers() if name in OPTIMIZERS else _methods._peers()
        res = _runner.run_task(task, methods, GRID, seeds)
        summary = _summary.summarize(res, {"before", "ours", "ours-horizon"})
        rows = _summary.method_rows(summary, [m.name for m in methods], task.higher_is_better)
        out[name] = rows
        print(f"\n## {name} (held-out loss, base lr {task.base_lr:g}; best tuned baseline: {summary['best_baseline_tuned']})")
        print("| method | @base | untuned gap % | tuned (x) | worst | window |")
        print("|---|---|---|---|---|---|")
        for n, r in rows.items():
            print(f"| {n} | {_num(r['base'])} | {r['gap_pct']:+.1f} | {_num(r['tuned'])} (x{r['tuned_multiplier']:g}) "
                  f"| {_num(r['worst'])} | {r['window']:.2f} |")  # fmt: skip
        if name in OPTIMIZERS:
            target = issue_target(res)
            for n, checks in target.items():
                rows[n]["issue_target"] = checks
            print(f"\n{name}, the no-harm target: final held-out MSE against constant AdamW at the same lr "
                  f"(no worse: <= max(1.02 x constant, constant + 0.01); {res.steps} steps, {seeds} seed(s))")
            print("| lr | constant AdamW | recommended(lr) | ok | recommended(lr, total_steps) | ok |")
            print("|---|---|---|---|---|---|")
            for a, b in zip(target["ours"], target["ours-horizon"]):
                print(f"| {a['lr']:g} | {a['constant']:.4g} | {a['mean']:.4g} | {'yes' if a['ok'] else 'NO'} "
                      f"| {b['mean']:.4g} | {'yes' if b['ok'] else 'NO'} |")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: " + ", ".join(TASKS))
    parser.add_argument("--steps", type=int, default=None,
                        help="every task's steps (default: 320 on the linear regression, 400 on the others)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    return run(tuple(args.tasks.split(",")), args.steps, args.seeds)


if __name__ == "__main__":
    main()
