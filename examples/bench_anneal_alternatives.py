"""Two gradient-statistics alternatives to the slope test, run side by side with the recommended configuration.

Issue #8 named tests on gradient statistics as the alternative to the
loss-only slope test of ``anneal_rule="slope"``. This script measures two
horizon-free lr factors built from the gradient stream. Each multiplies the
updates of the recommended configuration (``adaptive_sched.recommended``,
driving Adam). Both are written as optax wrappers here rather than as core
rules, because neither earned a place (see the README's bench findings):

* **hypergradient** (Baydin et al., 2018, "Online Learning Rate Adaptation
  with Hypergradient Descent", ICLR; multiplicative and normalised form):
  ``log f_t = clip(log f_{t-1} - beta * cos(g_t, u_{t-1}), log 0.01, log 10)``,
  where ``u_{t-1}`` is the previous update (optax's sign: added to the
  parameters). ``g_t . u_{t-1} / eta`` is the derivative of the loss with
  respect to the last step's lr, so the lr rises while new gradients still
  point along the last step and falls when they turn against it. Memory:
  one copy of the parameters.
* **noise fraction** (McCandlish et al., 2018, "An Empirical Model of
  Large-Batch Training"): with bias-corrected EMAs ``m = EMA(g)`` and
  ``S = EMA(|g|^2)``, and Kish's effective count ``n_e`` of the EMA,
  ``tr(Sigma) = (S - |m|^2) / (1 - 1/n_e)``, ``|G|^2 = S - tr(Sigma)`` and
  ``rho = |G|^2 / S = 1 / (1 + B_noise/B)``, the model's optimal lr relative to
  the noiseless one. The factor is ``rho^p``, either absolute or relative to
  the running peak of ``rho``. Memory: one copy of the parameters.

Every method, the peers included, runs in one compiled program per task
through the bench's own runner and summary (5 seeds, grid x0.1..x10 at the
default size).

Run: ``python examples/bench_anneal_alternatives.py`` (digits-mlp, logreg,
char-lm at the default size), or
``python examples/bench_anneal_alternatives.py --tasks logreg --size tiny --seeds 1`` (quick).
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import adaptive_sched
from adaptive_sched.bench import _methods, _runner, _summary, _tasks

_LOG_LO, _LOG_HI = float(jnp.log(0.01)), float(jnp.log(10.0))


class HypergradientState(NamedTuple):
    prev: Any  # the previous update u_{t-1}
    log_f: jax.Array
    inner: Any


def hypergradient(inner: optax.GradientTransformationExtraArgs, beta: float) -> optax.GradientTransformationExtraArgs:
    """Scale ``inner``'s updates by ``f_t``, where ``log f_t -= beta * cos(g_t, u_{t-1})`` (clipped to [0.01, 10])."""

    def init_fn(params: Any) -> HypergradientState:
        return HypergradientState(jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32), inner.init(params))

    def update_fn(updates: Any, state: HypergradientState, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        norms = optax.tree.norm(updates) * optax.tree.norm(state.prev)
        cos = jnp.where(norms > 0, optax.tree.vdot(updates, state.prev) / jnp.maximum(norms, 1e-30), 0.0)
        log_f = jnp.clip(state.log_f - beta * cos, _LOG_LO, _LOG_HI)
        out, inner_state = inner.update(updates, state.inner, params, **extra)
        out = jax.tree.map(lambda u: u * jnp.exp(log_f).astype(u.dtype), out)
        return out, HypergradientState(out, log_f, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def noise_fraction(m_sq: jax.Array, s: jax.Array, w: jax.Array, w2: jax.Array) -> jax.Array:
    """``rho = |G|^2 / E|g|^2`` from EMA sums (McCandlish et al., 2018); 1 before two effective samples.

    Args:
      m_sq: ``|sum_i w_i g_i|^2``, the squared norm of the unnormalised gradient EMA.
      s: ``sum_i w_i |g_i|^2``.
      w, w2: ``sum_i w_i`` and ``sum_i w_i^2`` (Kish: ``n_e = w^2 / w2``).
    """
    w_safe = jnp.maximum(w, 1e-30)
    ne = w * w / jnp.maximum(w2, 1e-30)
    big_s = s / w_safe
    trace = jnp.maximum(big_s - m_sq / (w_safe * w_safe), 0.0) / jnp.maximum(1.0 - 1.0 / jnp.maximum(ne, 1.0), 1e-6)
    signal = jnp.maximum(big_s - trace, 0.0)
    return jnp.where(ne > 1.5, jnp.clip(signal / jnp.maximum(big_s, 1e-30), 0.0, 1.0), 1.0)


class NoiseFractionState(NamedTuple):
    m: Any
    s: jax.Array
    w: jax.Array
    w2: jax.Array
    peak: jax.Array
    inner: Any


def noise_fraction_factor(
    inner: optax.GradientTransformationExtraArgs, power: float, beta: float = 0.9, relative: bool = False
) -> optax.GradientTransformationExtraArgs:
    """Scale ``inner``'s updates by ``rho^power`` (or ``(rho / max rho)^power`` when ``relative``)."""

    def init_fn(params: Any) -> NoiseFractionState:
        z = jnp.zeros((), jnp.float32)
        return NoiseFractionState(jax.tree.map(jnp.zeros_like, params), z, z, z, z, inner.init(params))

    def update_fn(updates: Any, state: NoiseFractionState, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        m = jax.tree.map(lambda a, g: beta * a + g, state.m, updates)  # unnormalised: weights beta^(t-i)
        s = beta * state.s + optax.tree.vdot(updates, updates)
        w, w2 = beta * state.w + 1.0, beta * beta * state.w2 + 1.0
        rho = noise_fraction(optax.tree.vdot(m, m), s, w, w2)
        peak = jnp.where(w * w / w2 > 5.0, jnp.maximum(state.peak, rho), state.peak)
        ratio = jnp.where(peak > 0, rho / jnp.maximum(peak, 1e-30), 1.0) if relative else rho
        factor = jnp.maximum(ratio, 1e-4) ** power
        out, inner_state = inner.update(updates, state.inner, params, **extra)
        out = jax.tree.map(lambda u: u * factor.astype(u.dtype), out)
        return out, NoiseFractionState(m, s, w, w2, peak, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _recommended_adam(lr: Any) -> optax.GradientTransformationExtraArgs:
    return adaptive_sched.optax.inject_hyperparams(optax.adam, _methods.recommended_config(lr))(b1=0.9)


ALTERNATIVES: dict[str, Any] = {
    "hypergrad-0.01": lambda lr: hypergradient(_recommended_adam(lr), 0.01),
    "hypergrad-0.03": lambda lr: hypergradient(_recommended_adam(lr), 0.03),
    "hypergrad-0.1": lambda lr: hypergradient(_recommended_adam(lr), 0.1),
    "noise-frac-0.5": lambda lr: noise_fraction_factor(_recommended_adam(lr), 0.5),
    "noise-frac-rel-0.5": lambda lr: noise_fraction_factor(_recommended_adam(lr), 0.5, relative=True),
}
"""The alternatives measured: each one's factor times the recommended configuration's lr."""


def _method(name: str) -> _methods.Method:
    make = ALTERNATIVES[name]
    return _methods.Method(name, "ours: alternative", True, (make.__doc__ or name), lambda lr, task, steps: make(lr))


def run(task_names: tuple[str, ...], size: str = "default", seeds: int = 5) -> dict[str, dict[str, dict[str, Any]]]:
    """Run ``ours``, the alternatives and the peers; per task and method the headline numbers.

    Returns:
      ``{task: {method: {"base", "p_base", "tuned", "tuned_multiplier", "p_tuned",
      "gap_pct", "window"}}}``: the mean at the base lr and ``P`` of beating the
      best baseline there; the mean at the method's best grid lr and ``P`` of
      beating the best baseline at its own best; ``gap_pct`` of the base-lr mean
      to the best tuned baseline (:func:`adaptive_sched.bench._summary.relative_gap_pct`,
      positive = better); the lr window in decades.
    """
    tasks = _tasks.get_tasks(task_names, size)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in task_names:
        task = tasks[name]
        methods = list(_methods.get_methods(task, ["ours"])) + [_method(n) for n in ALTERNATIVES]
        methods += [m for m in _methods.get_methods(task) if not m.ours]
        res = _runner.run_task(task, methods, _methods.GRID, seeds)
        ours = {m.name for m in methods if m.ours}
        summary = _summary.summarize(res, ours)
        rows = _summary.method_rows(summary, [m.name for m in methods], task.higher_is_better)
        out[name] = rows
        print(f"\n## {name} ({task.metric_name}; best tuned baseline: {summary['best_baseline_tuned']})")
        print("| method | @base | P vs best @base | tuned (x) | P vs best tuned | untuned gap % | window |")
        print("|---|---|---|---|---|---|---|")
        for n, r in rows.items():
            print(
                f"| {n} | {r['base']:.4f} | {r['p_base']:.2f} | {r['tuned']:.4f} (x{r['tuned_multiplier']:g}) "
                f"| {r['p_tuned']:.2f} | {r['gap_pct']:+.1f} | {r['window']:.2f} |"
            )
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default="digits-mlp,logreg,char-lm", help="comma-separated bench tasks")
    parser.add_argument("--size", default="default", help="bench size (tiny, quick, default, full)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    return run(tuple(args.tasks.split(",")), args.size, args.seeds)


if __name__ == "__main__":
    main()
