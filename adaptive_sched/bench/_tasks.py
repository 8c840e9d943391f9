"""The benchmark's tasks: small, offline, CPU-sized training problems with a pure ``run``.

Every task closes over NumPy data built once (scikit-learn's bundled datasets,
docstrings of Python's standard library) and exposes

``Task.run(tx, key, steps=None) -> dict[str, jax.Array]``

which trains from an initialisation drawn from ``key`` with the optax
transformation ``tx``. ``run`` is pure and traceable: it can be ``jax.jit``-ed
and ``jax.vmap``-ed over keys and over a ``tx`` built inside the vmapped function
from traced hyperparameters (a traced :class:`adaptive_sched.Config`, a traced
base lr of an optax schedule). Every ``tx.update`` receives the loss as
``value=`` (the optax convention) and, for the RL tasks, the batch mean reward as
``reward=`` and the batch mean KL to the frozen reference policy as ``kl=``.

Tasks:

* ``digits-mlp``: scikit-learn's digits (8x8 images, 10 classes), a one-hidden-
  layer MLP, cross-entropy on minibatches; metric: held-out accuracy.
* ``logreg``: L2-regularised logistic regression on scikit-learn's breast-cancer
  data (convex); metric: held-out log-loss.
* ``char-lm``: a character-level GRU language model (Cho et al., 2014) on
  docstrings of Python's standard library; metric: held-out next-character
  loss (nats per character).
* ``rl-sentiment``: policy-gradient fine-tuning of the pretrained char-lm so
  that its continuations of a prompt score high under a fixed bigram
  "sentiment" classifier built from a small word lexicon; RLOO advantages
  (Kool et al., 2019; Ahmadian et al., 2024) with an exact per-token KL penalty
  to the frozen pretrained policy; metric: mean reward of the final policy.
* ``rl-length``: the same policy and algorithm; the reward is a length penalty
  ``-|len - target| / target`` where ``len`` is the number of characters before
  the first ``"."`` (the end of the "summary"); metric: mean reward.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptive_sched.bench import _data

__all__ = [
    "SIZES",
    "TASK_NAMES",
    "Task",
    "eval_params",
    "get_task",
    "get_tasks",
    "event_names",
    "read_events",
    "read_hparams",
]

TASK_NAMES: tuple[str, ...] = ("digits-mlp", "logreg", "char-lm", "rl-sentiment", "rl-length")
SIZES: tuple[str, ...] = ("tiny", "quick", "default", "full")
RL_TASKS: tuple[str, ...] = ("rl-sentiment", "rl-length")

_F32 = jnp.float32
_N_POINTS = 20  # evaluations of the metric along a run (plus the final one)


# --------------------------------------------------------------------------- the Task


@dataclasses.dataclass(frozen=True)
class Task:
    """One benchmark problem at one size.

    Attributes:
      name: ``"digits-mlp"``, ``"logreg"``, ``"char-lm"``, ``"rl-sentiment"`` or ``"rl-length"``.
      metric_name: what ``run(...)["metric"]`` measures (``"test_accuracy"``,
        ``"heldout_loss"``, ``"mean_reward"``).
      higher_is_better: direction of the metric.
      steps: default number of training steps at this size.
      size: ``"tiny"``, ``"quick"``, ``"default"`` or ``"full"``.
      base_lr: the Adam learning rate the benchmark's lr grid is centred on.
      is_rl: whether ``run`` returns ``reward``/``reward_std``/``kl`` curves.
      description: one line for reports.
      reward_range: for RL tasks, the ``(low, high)`` range of the reward.
      details: the task's sizes and constants (for reports).
    """

    name: str
    metric_name: str
    higher_is_better: bool
    steps: int
    size: str = "default"
    base_lr: float = 1e-3
    is_rl: bool = False
    description: str = ""
    reward_range: tuple[float, float] | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    _train: Callable[[Any, jax.Array, int], dict[str, jax.Array]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def run(
        self,
        tx: optax.GradientTransformation,
        key: jax.Array,
        steps: int | None = None,
    ) -> dict[str, jax.Array]:
        """Train once with ``tx`` from an initialisation drawn from ``key``.

        Pure and jit/vmap-able. Plain optax transformations are wrapped with
        :func:`optax.with_extra_args_support`; every ``tx.update`` gets
        ``value=loss`` and, for RL tasks, ``reward=`` and ``kl=``.

        Args:
          tx: the optimizer (any optax transformation).
          key: a JAX PRNG key; the same key gives the same initialisation and
            the same data order whatever ``tx`` is (common random numbers).
          steps: number of training steps (static); default ``self.steps``.

        Returns:
          A dict of arrays: ``loss`` (steps,) the training loss (for RL tasks
          the negated KL-regularised objective ``-(R - beta * KL)``),
          ``metric`` () the task's metric after training, ``metric_init`` ()
          before training, ``metric_curve`` (n,) at the steps ``eval_steps``
          (n,), ``lr`` (steps,) the lr used at each step and ``momentum``
          (steps,) the Adam ``b1`` / SGD momentum when readable from the
          optimizer state (NaN where not, see :func:`read_hparams`),
          ``events`` (steps,) int32 the controller events of each step
          (:func:`read_events`; 0 for other optimizers); RL tasks
          add ``reward``, ``reward_std`` and ``kl`` (steps,): the batch mean
          and standard deviation of the reward and the batch mean KL.

        Raises:
          ValueError: if ``steps`` is not a positive integer.
        """
        n = self.steps if steps is None else steps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"steps={steps!r} is invalid: must be a positive integer (or None).")
        assert self._train is not None
        return self._train(optax.with_extra_args_support(tx), key, int(n))


# --------------------------------------------------------------------------- reading the optimizer


def _hyperparam(state: Any, name: str) -> Any:
    """``name`` from the ``hyperparams`` dict of an injected-hyperparameter state, or None."""
    found = [
        hp[name]
        for _, hp in optax.tree.get_all_with_path(state, "hyperparams")
        if isinstance(hp, Mapping) and name in hp
    ]
    return found[0] if len(found) == 1 else None


def _field(state: Any, name: str, tuple_name: str) -> Any:
    """Field ``name`` of the NamedTuple ``tuple_name`` inside ``state``, or None."""

    def keep(path: Any, value: Any) -> bool:
        del value
        last = path[-1] if path else None
        return getattr(last, "tuple_name", None) == tuple_name

    found = optax.tree.get_all_with_path(state, name, filtering=keep)
    return found[0][1] if len(found) == 1 else None


def read_hparams(state: Any) -> tuple[jax.Array, jax.Array]:
    """The lr and momentum an optimizer state says were used in its last update.

    The lr is, in order: a top-level ``effective_lr`` field (the bench's method
    switch); the ``learning_rate`` hyperparameter of an
    ``optax.inject_hyperparams`` state (also how
    :func:`adaptive_sched.optax.inject_hyperparams` exposes the controller's lr);
    else a field or key named ``learning_rate`` or ``lr``. It is then multiplied
    by the ``scale`` of an ``optax.contrib.reduce_on_plateau`` state and by
    the distance estimate ``d`` of ``optax.contrib.prodigy`` when present, so
    it is the effective step size. The momentum is the injected ``b1`` (Adam
    family) or ``momentum`` (SGD family). What cannot be read is NaN.

    Args:
      state: an optax optimizer state.

    Returns:
      ``(lr, momentum)`` as float32 scalars.
    """
    nan = jnp.full((), jnp.nan, _F32)
    eff = getattr(state, "effective_lr", None)
    if eff is not None:
        return jnp.asarray(eff, _F32), jnp.asarray(getattr(state, "effective_momentum", nan), _F32)
    lr = _hyperparam(state, "learning_rate")
    for name in ("learning_rate", "lr"):
        if lr is None:
            try:
                lr = optax.tree.get(state, name)
            except KeyError:  # several matches: ambiguous
                lr = None
    lr = nan if lr is None else jnp.asarray(lr, _F32)
    scale = _field(state, "scale", "ReduceLROnPlateauState")
    if scale is not None:
        lr = lr * jnp.asarray(scale, _F32)
    d = _field(state, "estim_lr", "ProdigyState")
    if d is not None:
        lr = lr * jnp.asarray(d, _F32)
    mom = _hyperparam(state, "b1")
    if mom is None:
        mom = _hyperparam(state, "momentum")
    mom = nan if mom is None else jnp.asarray(mom, _F32)
    return lr, mom


def event_names() -> tuple[str, ...]:
    """Every event name of the registered rules (``"grew"``, ``"cut"``, ``"landed"``, ...), each once: bit ``i`` of :func:`read_events`."""
    from adaptive_sched import _rules

    names: list[str] = []
    for rule in _rules.RULES.values():
        names += [e for e in rule.events if e not in names]
    return tuple(names)


def read_events(state: Any) -> jax.Array:
    """The events the controllers in an optimizer state recorded at its last update, as an int32 bitmask.

    Bit ``i`` is set when a rule's last event (the core's record, see
    :func:`adaptive_sched.diagnostics`) is ``event_names()[i]`` and happened
    at the controller's current step; 0 for a state without a controller. A
    top-level ``effective_events`` field (the bench's method switch) is
    read as it is. Needs no config: the record's keys name their rules.
    """
    eff = getattr(state, "effective_events", None)
    if eff is not None:
        return jnp.asarray(eff, jnp.int32)
    from adaptive_sched import _rules
    from adaptive_sched._optax import AdaptiveHyperparamsState, ScaleByControllerState

    def ours(x: Any) -> bool:
        return isinstance(x, (AdaptiveHyperparamsState, ScaleByControllerState))

    names = event_names()
    bits = jnp.zeros((), jnp.int32)
    for node in (x for x in jax.tree.leaves(state, is_leaf=ours) if ours(x)):
        ctl = node.controller
        for key, code in ctl.rule_state.items():
            if not key.endswith("/event"):
                continue
            rule = _rules.RULES[key.removesuffix("/event")]
            table = jnp.asarray([0, *(1 << names.index(e) for e in rule.events)], jnp.int32)
            now = jnp.logical_and(ctl.rule_state[key + "_step"] == ctl.step, ctl.step > 0)
            bits = bits | jnp.where(now, table[jnp.clip(code, 0, len(rule.events))], 0)
    return bits


def eval_params(state: Any, params: Any) -> Any:
    """The parameters to evaluate: the averaged iterate for schedule-free optimizers, else ``params``.

    Schedule-free methods (Defazio et al., 2024) train at an interpolated point
    and evaluate at ``x_t``; :func:`optax.contrib.schedule_free_eval_params`
    recovers it from the state. A state with an ``eval_params(params)``
    method (the bench's method switch) is asked directly.
    """
    fn = getattr(state, "eval_params", None)
    if callable(fn):
        return fn(params)
    leaves = jax.tree.leaves(
        state, is_leaf=lambda x: type(x).__name__ == "ScheduleFreeState"
    )
    sf = [x for x in leaves if type(x).__name__ == "ScheduleFreeState"]
    if len(sf) == 1:
        return optax.contrib.schedule_free_eval_params(sf[0], params)
    return params


# --------------------------------------------------------------------------- the training loop


class _Problem(NamedTuple):
    """What a task plugs into the shared training loop (all pure functions)."""

    init: Callable[[jax.Array], Any]  # key -> params
    # (params, key) -> (value, grads, aux): value is passed as value=, aux holds reward/kl (RL)
    grad_step: Callable[[Any, jax.Array], tuple[jax.Array, Any, dict[str, jax.Array]]]
    evaluate: Callable[[Any, jax.Array], jax.Array]  # (params, key) -> metric
    n_points: int = _N_POINTS


def _train(problem: _Problem, tx: Any, key: jax.Array, steps: int) -> dict[str, jax.Array]:
    """Run ``steps`` optimizer steps; evaluate the metric ``n_points`` times along the way."""
    k_init, k_data, k_eval = jax.random.split(key, 3)
    params = problem.init(k_init)
    params = jax.tree.map(lambda p: jnp.asarray(p, _F32), params)
    opt_state = tx.init(params)
    metric_init = problem.evaluate(params, k_eval)

    def one(carry: Any, k: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        params, opt_state = carry
        value, grads, aux = problem.grad_step(params, k)
        signals = {name: aux[name] for name in ("reward", "kl") if name in aux}
        updates, opt_state = tx.update(grads, opt_state, params, value=value, **signals)
        new_params = optax.apply_updates(params, updates)
        new_params = jax.tree.map(lambda p, q: p.astype(q.dtype), new_params, params)
        lr, mom = read_hparams(opt_state)
        out = {"loss": jnp.asarray(value, _F32), "lr": lr, "momentum": mom, "events": read_events(opt_state)}
        out.update({k_: jnp.asarray(v, _F32) for k_, v in aux.items()})
        return (new_params, opt_state), out

    keys = jax.random.split(k_data, steps)
    chunk = max(1, steps // problem.n_points)
    n_chunks = steps // chunk
    main, rest = keys[: n_chunks * chunk], keys[n_chunks * chunk :]

    def chunked(carry: Any, ks: jax.Array) -> tuple[Any, tuple[dict[str, jax.Array], jax.Array]]:
        carry, out = jax.lax.scan(one, carry, ks)
        params, opt_state = carry
        return carry, (out, problem.evaluate(eval_params(opt_state, params), k_eval))

    carry, (out, curve) = jax.lax.scan(chunked, (params, opt_state), main.reshape((n_chunks, chunk, *main.shape[1:])))
    out = jax.tree.map(lambda x: x.reshape((n_chunks * chunk, *x.shape[2:])), out)
    if rest.shape[0]:
        carry, out_rest = jax.lax.scan(one, carry, rest)
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, out_rest)
    params, opt_state = carry
    out["metric"] = problem.evaluate(eval_params(opt_state, params), k_eval)
    out["metric_init"] = metric_init
    out["metric_curve"] = curve
    out["eval_steps"] = jnp.arange(1, n_chunks + 1, dtype=jnp.int32) * chunk
    return out


def _make_task(problem: _Problem, **fields: Any) -> Task:
    def train(tx: Any, key: jax.Array, steps: int) -> dict[str, jax.Array]:
        return _train(problem, tx, key, steps)

    return Task(_train=train, **fields)


def _normal(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    return jax.random.normal(key, shape, _F32) / math.sqrt(fan_in)


# --------------------------------------------------------------------------- digits-mlp


def _minibatch_grad_step(
    loss_fn: Callable[[Any, jax.Array, jax.Array], jax.Array], x_np: np.ndarray, y_np: np.ndarray, batch: int
) -> Callable[[Any, jax.Array], tuple[jax.Array, Any, dict[str, jax.Array]]]:
    """A supervised ``grad_step``: loss and gradients on a batch drawn with replacement by ``key``."""

    def grad_step(p: Any, key: jax.Array) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        x, y = jnp.asarray(x_np), jnp.asarray(y_np)
        idx = jax.random.randint(key, (batch,), 0, x.shape[0], dtype=jnp.int32)
        value, grads = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        return value, grads, {}

    return grad_step


def _digits_mlp(size: str) -> Task:
    s = _data.DIGITS_SIZES[size]
    xtr_np, ytr_np, xte_np, yte_np = _data.digits_data()
    hidden, batch = s["hidden"], s["batch"]
    n_in, n_out = xtr_np.shape[1], 10

    def init(key: jax.Array) -> dict[str, jax.Array]:
        k1, k2 = jax.random.split(key)
        return {
            "w1": _normal(k1, (n_in, hidden), n_in),
            "b1": jnp.zeros((hidden,), _F32),
            "w2": _normal(k2, (hidden, n_out), hidden),
            "b2": jnp.zeros((n_out,), _F32),
        }

    def logits(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        h = jax.nn.relu(x @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    def loss_fn(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()

    grad_step = _minibatch_grad_step(loss_fn, xtr_np, ytr_np, batch)

    def evaluate(p: Any, key: jax.Array) -> jax.Array:
        del key
        pred = jnp.argmax(logits(p, jnp.asarray(xte_np)), axis=-1)
        return jnp.mean((pred == jnp.asarray(yte_np)).astype(_F32))

    return _make_task(
        _Problem(init, grad_step, evaluate),
        name="digits-mlp",
        metric_name="test_accuracy",
        higher_is_better=True,
        steps=s["steps"],
        size=size,
        base_lr=1e-2,
        description=(
            f"sklearn digits, MLP 64-{hidden}-10 (ReLU), cross-entropy, batch {batch}; "
            f"held-out accuracy on {len(yte_np)} images"
        ),
        details=dict(s, n_train=len(ytr_np), n_test=len(yte_np)),
    )


# --------------------------------------------------------------------------- logreg

def _logreg(size: str) -> Task:
    s = _data.LOGREG_SIZES[size]
    xtr_np, ytr_np, xte_np, yte_np = _data.breast_cancer_data()
    batch = s["batch"]
    dim = xtr_np.shape[1]

    def init(key: jax.Array) -> dict[str, jax.Array]:
        return {"w": _normal(key, (dim,), dim), "b": jnp.zeros((), _F32)}

    def nll(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.sigmoid_binary_cross_entropy(x @ p["w"] + p["b"], y).mean()

    def loss_fn(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        return nll(p, x, y) + 0.5 * _data.LOGREG_L2 * jnp.sum(p["w"] ** 2)

    grad_step = _minibatch_grad_step(loss_fn, xtr_np, ytr_np, batch)

    def evaluate(p: Any, key: jax.Array) -> jax.Array:
        del key
        return nll(p, jnp.asarray(xte_np), jnp.asarray(yte_np))

    return _make_task(
        _Problem(init, grad_step, evaluate),
        name="logreg",
        metric_name="heldout_loss",
        higher_is_better=False,
        steps=s["steps"],
        size=size,
        base_lr=3e-2,
        description=(
            f"sklearn breast-cancer (standardised), logistic regression + L2 {_data.LOGREG_L2:g}, "
            f"batch {batch}; held-out log-loss on {len(yte_np)} samples"
        ),
        details=dict(s, n_train=len(ytr_np), n_test=len(yte_np), l2=_data.LOGREG_L2),
    )


# --------------------------------------------------------------------------- text and the GRU

def _gru_init(key: jax.Array, v: int, e: int, h: int) -> dict[str, jax.Array]:
    ks = jax.random.split(key, 4)
    return {
        "emb": jax.random.normal(ks[0], (v, e), _F32),
        "wx": _normal(ks[1], (e, 3 * h), e),
        "wh": _normal(ks[2], (h, 3 * h), h),
        "bx": jnp.zeros((3 * h,), _F32),
        "bh": jnp.zeros((3 * h,), _F32),
        "wo": _normal(ks[3], (h, v), h),
        "bo": jnp.zeros((v,), _F32),
    }


def _gru_cell(p: dict[str, jax.Array], h: jax.Array, gx: jax.Array) -> jax.Array:
    """One GRU step (PyTorch's formulation); ``gx = x @ wx + bx`` precomputed."""
    gh = h @ p["wh"] + p["bh"]
    xr, xz, xn = jnp.split(gx, 3, axis=-1)
    hr, hz, hn = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def gru_logits(p: dict[str, jax.Array], h0: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced GRU: logits after each of ``tokens`` and the final state.

    Args:
      p: GRU parameters.
      h0: initial state, shape (batch, hidden).
      tokens: int ids, shape (batch, time).

    Returns:
      ``(logits, h)``: logits (batch, time, vocab) where ``logits[:, t]``
      predicts ``tokens[:, t + 1]``, and the state after the last token.
    """
    gx = p["emb"][tokens] @ p["wx"] + p["bx"]  # (B, T, 3H)

    def step(h: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = _gru_cell(p, h, g)
        return h, h

    h, hs = jax.lax.scan(step, h0, jnp.swapaxes(gx, 0, 1))
    hs = jnp.swapaxes(hs, 0, 1)
    return hs @ p["wo"] + p["bo"], h


def _lm_problem(s: Mapping[str, int], train_ids: np.ndarray, eval_ids: np.ndarray) -> _Problem:
    v, e, hdim, seq, batch = len(_data.VOCAB), s["embed"], s["hidden"], s["seq"], s["batch"]
    n_win, win = _data.LM_EVAL["windows"], _data.LM_EVAL["length"]
    starts = np.linspace(0, len(eval_ids) - win - 1, n_win).astype(np.int64)
    eval_np = np.stack([eval_ids[i : i + win + 1] for i in starts])

    def init(key: jax.Array) -> dict[str, jax.Array]:
        return _gru_init(key, v, e, hdim)

    def nll(p: dict[str, jax.Array], windows: jax.Array) -> jax.Array:
        h0 = jnp.zeros((windows.shape[0], hdim), _F32)
        logits, _ = gru_logits(p, h0, windows[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()

    def grad_step(p: Any, key: jax.Array) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        ids = jnp.asarray(train_ids)
        start = jax.random.randint(key, (batch, 1), 0, ids.shape[0] - seq - 1, dtype=jnp.int32)
        windows = ids[start + jnp.arange(seq + 1, dtype=jnp.int32)]
        value, grads = jax.value_and_grad(nll)(p, windows)
        return value, grads, {}

    def evaluate(p: Any, key: jax.Array) -> jax.Array:
        del key
        return nll(p, jnp.asarray(eval_np))

    return _Problem(init, grad_step, evaluate, n_points=10)


def _char_lm(size: str) -> Task:
    s = _data.LM_SIZES[size]
    train_ids, eval_ids = _data.lm_data()
    return _make_task(
        _lm_problem(s, train_ids, eval_ids),
        name="char-lm",
        metric_name="heldout_loss",
        higher_is_better=False,
        steps=s["steps"],
        size=size,
        base_lr=1e-2,
        description=(
            f"char GRU (embed {s['embed']}, hidden {s['hidden']}, vocab {len(_data.VOCAB)}) on stdlib "
            f"docstrings, windows of {s['seq']}, batch {s['batch']}; held-out nats/char on "
            f"{_data.LM_EVAL['windows']} windows of {_data.LM_EVAL['length']}"
        ),
        details=dict(s, n_train_chars=len(train_ids), n_eval_chars=len(eval_ids)),
    )


# --------------------------------------------------------------------------- RL fine-tuning

def _rl_problem(
    s: Mapping[str, int],
    lm: Mapping[str, int],
    ref_params: Mapping[str, np.ndarray],
    prompt: str,
    reward_fn: Callable[[jax.Array, jax.Array], jax.Array],
) -> _Problem:
    """RLOO fine-tuning of the pretrained GRU with an exact KL penalty to it.

    Per step: sample ``batch`` continuations of ``gen`` characters after
    ``prompt``; a sample ends at its first ``"."`` (inclusive; later characters
    are masked). With rewards ``r_i``, the leave-one-out advantage is
    ``A_i = r_i - mean_{j != i} r_j`` and the surrogate loss is
    ``-mean_i(A_i * sum_t m_it log pi(x_it)) + beta * mean_i KL_i`` with the
    exact per-sequence KL ``KL_i = sum_t m_it KL(pi(.|x_<t) || pi_ref(.|x_<t))``.
    The value passed as ``value=`` is the negated regularised objective
    ``-(mean_i r_i - beta * mean_i KL_i)``.
    """
    batch, gen, eval_batch = s["batch"], s["gen"], s["eval_batch"]
    hdim = lm["hidden"]
    prompt_np = _data.encode(prompt)

    def init(key: jax.Array) -> dict[str, jax.Array]:
        del key  # the policy starts from the pretrained reference
        return {k: jnp.asarray(v, _F32) for k, v in ref_params.items()}

    def start(p: dict[str, jax.Array], n: int) -> tuple[jax.Array, jax.Array]:
        """State after the prompt but its last char, and that char, for ``n`` samples."""
        ids = jnp.broadcast_to(jnp.asarray(prompt_np), (n, len(prompt_np)))
        _, h = gru_logits(p, jnp.zeros((n, hdim), _F32), ids[:, :-1])
        return h, ids[:, -1:]

    def sample(p: dict[str, jax.Array], key: jax.Array, n: int) -> jax.Array:
        h, last = start(p, n)

        def step(carry: tuple[jax.Array, jax.Array], k: jax.Array) -> tuple[Any, jax.Array]:
            h, tok = carry
            gx = p["emb"][tok] @ p["wx"] + p["bx"]
            h = _gru_cell(p, h, gx)
            logits = h @ p["wo"] + p["bo"]
            nxt = jax.random.categorical(k, logits, axis=-1).astype(jnp.int32)
            return (h, nxt), nxt

        _, toks = jax.lax.scan(step, (h, last[:, 0]), jax.random.split(key, gen))
        return jnp.swapaxes(toks, 0, 1)  # (n, gen)

    def logprobs(p: dict[str, jax.Array], toks: jax.Array) -> jax.Array:
        h, last = start(p, toks.shape[0])
        inputs = jnp.concatenate([last, toks[:, :-1]], axis=1)
        logits, _ = gru_logits(p, h, inputs)
        return jax.nn.log_softmax(logits, axis=-1)  # (n, gen, V)

    ref = {k: jnp.asarray(v, _F32) for k, v in ref_params.items()}

    def grad_step(p: Any, key: jax.Array) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
        toks = sample(jax.lax.stop_gradient(p), key, batch)
        mask = end_mask(toks)
        r = reward_fn(toks, mask)
        ref_lp = jax.lax.stop_gradient(logprobs(ref, toks))
        adv = (r - r.mean()) * batch / (batch - 1)

        def surrogate(p: Any) -> tuple[jax.Array, jax.Array]:
            lp = logprobs(p, toks)
            tok_lp = jnp.take_along_axis(lp, toks[..., None], axis=-1)[..., 0]
            seq_lp = jnp.sum(tok_lp * mask, axis=1)
            kl_t = jnp.sum(jnp.exp(lp) * (lp - ref_lp), axis=-1)
            kl = jnp.sum(kl_t * mask, axis=1)
            loss = -jnp.mean(jax.lax.stop_gradient(adv) * seq_lp) + _data.KL_BETA * jnp.mean(kl)
            return loss, jnp.mean(kl)

        (_, kl), grads = jax.value_and_grad(surrogate, has_aux=True)(p)
        value = -(r.mean() - _data.KL_BETA * kl)
        return value, grads, {"reward": r.mean(), "reward_std": r.std(), "kl": kl}

    def evaluate(p: Any, key: jax.Array) -> jax.Array:
        toks = sample(p, jax.random.fold_in(key, 1), eval_batch)
        return reward_fn(toks, end_mask(toks)).mean()

    return _Problem(init, grad_step, evaluate, n_points=10)


def end_mask(tokens: jax.Array) -> jax.Array:
    """1.0 for the characters of a sample up to and including its first ``"."``, 0.0 after."""
    is_end = (tokens == _data.END).astype(jnp.int32)
    ended_before = jnp.cumsum(is_end, axis=1) - is_end
    return (ended_before == 0).astype(_F32)


def sentiment_reward(tokens: jax.Array, mask: jax.Array, weights: jax.Array) -> jax.Array:
    """``tanh(sum_t W[x_t, x_{t+1}] m_{t+1} / 2)`` per sample (see :func:`_data.sentiment_weights`)."""
    pair = weights[tokens[:, :-1], tokens[:, 1:]] * mask[:, 1:]
    return jnp.tanh(jnp.sum(pair, axis=1) / 2.0)


def length_reward(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """``-|len - target| / target`` per sample, ``len`` = characters before the first ``"."`` (all if none)."""
    del mask
    is_end = (tokens == _data.END).astype(jnp.int32)
    length = jnp.sum((jnp.cumsum(is_end, axis=1) == 0).astype(_F32), axis=1)
    target = float(_data.LENGTH_TARGET)
    return -jnp.abs(length - target) / target


def pretrain_policy(size: str = "default") -> dict[str, np.ndarray]:
    """The RL tasks' policy: the char-lm pretrained with Adam (lr 1e-2, fixed key 0).

    Deterministic; pass the result to :func:`get_task` / :func:`get_tasks` as
    ``policy=`` to share it between the RL tasks.
    """
    _check_size(size)
    s = _data.LM_SIZES[size]
    train_ids, eval_ids = _data.lm_data()
    problem = _lm_problem(s, train_ids, eval_ids)
    tx = optax.adam(optax.cosine_decay_schedule(_data.PRETRAIN_LR, _data.PRETRAIN_STEPS[size], 0.1))
    steps = _data.PRETRAIN_STEPS[size]

    @jax.jit
    def fit(key: jax.Array) -> Any:
        k_init, k_data = jax.random.split(key)
        params = problem.init(k_init)
        state = tx.init(params)

        def one(carry: Any, k: jax.Array) -> tuple[Any, None]:
            params, state = carry
            _, grads, _ = problem.grad_step(params, k)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(one, (params, state), jax.random.split(k_data, steps))
        return params

    params = fit(jax.random.key(0))
    return {k: np.asarray(v, np.float32) for k, v in params.items()}


def _rl_task(name: str, size: str, policy: Mapping[str, np.ndarray] | None) -> Task:
    s, lm = _data.RL_SIZES[size], _data.LM_SIZES[size]
    ref = dict(pretrain_policy(size) if policy is None else policy)
    reward_fn: Callable[[jax.Array, jax.Array], jax.Array]
    if name == "rl-sentiment":
        w_np = _data.sentiment_weights()

        def sentiment(toks: jax.Array, mask: jax.Array) -> jax.Array:
            return sentiment_reward(toks, mask, jnp.asarray(w_np))

        reward_fn = sentiment

        prompt, rng, desc = _data.PROMPTS[name], (-1.0, 1.0), (
            "fixed bigram sentiment classifier from a "
            f"{len(_data.POSITIVE_WORDS)}+{len(_data.NEGATIVE_WORDS)}-word lexicon, reward in [-1, 1]"
        )
    else:
        reward_fn = length_reward
        prompt, rng, desc = _data.PROMPTS[name], (-1.0, 0.0), (
            f"length penalty -|len - {_data.LENGTH_TARGET}|/{_data.LENGTH_TARGET}, len = chars before "
            "the first '.', reward in [-1, 0]"
        )
    return _make_task(
        _rl_problem(s, lm, ref, prompt, reward_fn),
        name=name,
        metric_name="mean_reward",
        higher_is_better=True,
        steps=s["steps"],
        size=size,
        base_lr=3e-2,
        is_rl=True,
        reward_range=rng,
        description=(
            f"RLOO on the pretrained char GRU, prompt {prompt!r}, {s['batch']} samples x "
            f"{s['gen']} chars per step, KL penalty beta={_data.KL_BETA}; {desc}; metric: mean reward "
            f"of {s['eval_batch']} samples"
        ),
        details=dict(
            s, prompt=prompt, kl_beta=_data.KL_BETA, kl_target=_data.KL_TARGET, pretrain_steps=_data.PRETRAIN_STEPS[size]
        ),
    )


# --------------------------------------------------------------------------- lookup


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size={size!r} is invalid: must be one of {', '.join(SIZES)}.")


def get_task(name: str, size: str = "default", *, policy: Mapping[str, np.ndarray] | None = None) -> Task:
    """Build task ``name`` at ``size`` (data loaded once, closed over by ``run``).

    Args:
      name: one of :data:`TASK_NAMES`.
      size: ``"tiny"`` (tests), ``"quick"``, ``"default"`` or ``"full"``.
      policy: RL tasks only: pretrained policy parameters from
        :func:`pretrain_policy` (computed here when None).

    Raises:
      ValueError: for an unknown name or size.
    """
    if name not in TASK_NAMES:
        raise ValueError(f"task name={name!r} is invalid: must be one of {', '.join(TASK_NAMES)}.")
    _check_size(size)
    if name == "digits-mlp":
        return _digits_mlp(size)
    if name == "logreg":
        return _logreg(size)
    if name == "char-lm":
        return _char_lm(size)
    return _rl_task(name, size, policy)


def get_tasks(names: Sequence[str], size: str = "default") -> dict[str, Task]:
    """Build several tasks; the RL tasks share one pretrained policy."""
    policy = pretrain_policy(size) if any(n in RL_TASKS for n in names) else None
    return {n: get_task(n, size, policy=policy) for n in names}
