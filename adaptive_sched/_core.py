"""The pure controller: ``init(config) -> State`` and ``update(state, signals) -> (State, Hparams)``.

Written once against an array namespace ``xp``: ``jax.numpy`` (jit/vmap/scan),
NumPy or torch (through array-api-compat), or ``adaptive_sched._scalar`` (plain
Python floats, the torch adapter's host mode). The namespace is read off the
state's leaves, so the same function serves every front door.

Conventions (all rules):

* Every signal is smoothed by a bias-corrected EMA (Kingma & Ba, 2015, Sec. 3):
  ``m_t = b*m_{t-1} + (1-b)*x_t``, ``x^_t = m_t / (1 - b^n_t)`` where ``n_t`` counts
  the observations so far, and ``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``,
  ``v^_t = v_t / (1 - b^n_t)``. With ``b = 0`` the smoothed value is the raw one.
  Deviations ``|x_t - x^_t| <= 1e-6 * |x^_t|`` count as 0 (rounding noise).
* A signal that is ``None``, NaN or +-inf is not observed this step: its EMA and
  every rule that reads it hold; a non-finite value also increments
  ``State.skipped``. Finite values are clipped to ``+-SIGNAL_LIMIT``.
* The lr is ``lr_t = clip(base_lr * exp(a_t + s_t), min_lr, max_lr)`` where
  ``s_t`` is the sum of the stateless rules' log-factors and ``a_t`` the
  accumulated log-factor of the stateful (multiplicative) rules. ``a_t`` is
  clipped to ``[log(min_lr/base_lr) - s_t, log(max_lr/base_lr) - s_t]`` so it
  never winds up while the lr sits on a bound.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from adaptive_sched import _scalar
from adaptive_sched._config import Config

__all__ = ["EmaState", "Hparams", "SIGNAL_LIMIT", "Signals", "State", "init", "update"]

SIGNAL_LIMIT = 1e15
"""Finite signals are clipped to ``[-SIGNAL_LIMIT, SIGNAL_LIMIT]`` (keeps squares finite in float32)."""

_TINY = 1e-30  # floor for values that are divided by or logged
_REL_EPS = 1e-12  # floor of |reference| in relative comparisons
_NOISE_FLOOR = 1e-6  # relative deviation treated as rounding noise in the variance EMA
_MIN_SCALING = 1e-6  # "about 0" of the reward scaling rule, as a factor of base_lr


class Signals(NamedTuple):
    """What training observed this step. ``None`` (or NaN/inf) means not observed.

    Attributes:
      loss: training loss (any sign; lower is better).
      reward: RL reward (any sign; higher is better).
      grad_norm: global gradient norm (>= 0).
      kl: KL divergence of the policy to its reference.
    """

    loss: Any = None
    reward: Any = None
    grad_norm: Any = None
    kl: Any = None


class Hparams(NamedTuple):
    """What the controller sets. Always finite and inside the configured bounds.

    Attributes:
      lr: learning rate, in ``[min_lr, max_lr]``.
      momentum: momentum (SGD ``momentum`` / Adam ``b1``), in
        ``[min_momentum, max_momentum]``; ``base_momentum`` when the momentum
        rule is ``"none"`` (front doors then leave the optimizer's momentum alone).
      lr_scale: ``lr / base_lr``, for front doors that scale updates or keep
        per-group base lrs.
    """

    lr: Any
    momentum: Any
    lr_scale: Any


class EmaState(NamedTuple):
    """Bias-corrected EMA of one signal.

    Attributes:
      mean: uncorrected EMA ``m_t``.
      var: uncorrected EMA of squared deviations ``v_t``.
      decay_pow: ``b^n_t``; 1 until the first observation (and after a cyclical restart).
      ref: the first smoothed value ever observed (scale reference); 0 before it.
    """

    mean: Any
    var: Any
    decay_pow: Any
    ref: Any


class State(NamedTuple):
    """Controller state: fixed-dtype scalars (float32, int32), plus the config.

    Attributes:
      config: the :class:`Config` (numeric knobs as float32 leaves).
      step: number of ``update`` calls so far.
      skipped: number of signals dropped because they were NaN or infinite.
      log_scale: accumulated log lr-factor of the stateful rules (``a_t``).
      current_momentum: the momentum last set (not named ``momentum`` so that
        ``optax.tree.get(state, "momentum")`` finds only the optimizer's).
      loss, reward, grad_norm, kl: EMA state of each signal.
    """

    config: Config
    step: Any
    skipped: Any
    log_scale: Any
    current_momentum: Any
    loss: EmaState
    reward: EmaState
    grad_norm: EmaState
    kl: EmaState


def namespace_of(x: Any) -> Any:
    """The array namespace of ``x``; Python scalars map to :mod:`adaptive_sched._scalar`."""
    if isinstance(x, (int, float)):
        return _scalar
    import array_api_compat

    return array_api_compat.array_namespace(x)


def _caster(xp: Any, like: Any) -> Any:
    """A function converting a value to a float32 scalar of ``xp`` (on ``like``'s device for torch)."""
    if getattr(xp, "IS_SCALAR", False):
        return float
    import array_api_compat

    if array_api_compat.is_torch_namespace(xp):
        dev = like.device

        def f32_torch(v: Any) -> Any:
            return xp.astype(xp.asarray(v, device=dev), xp.float32)

        return f32_torch

    def f32(v: Any) -> Any:
        return xp.astype(xp.asarray(v), xp.float32)

    return f32


def _preclip(v: Any) -> Any:
    """Clip a concrete float64 signal to +-SIGNAL_LIMIT on the host, before any float32 cast.

    A finite float64 beyond float32's range would otherwise become inf in the
    cast and be dropped; clipped first, it is observed like any other large
    value. NaN and +-inf pass through (they are "not observed"). Arrays that are
    already float32 or narrower, tensors and JAX tracers pass through unchanged
    (they cannot exceed float32's range).
    """
    if isinstance(v, float):  # Python floats and numpy.float64 scalars
        return min(max(v, -SIGNAL_LIMIT), SIGNAL_LIMIT) if math.isfinite(v) else v
    if isinstance(v, np.ndarray) and v.dtype == np.float64:
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(v), np.clip(v, -SIGNAL_LIMIT, SIGNAL_LIMIT), v)
    return v


def init(config: Config, xp: Any = None, device: Any = None) -> State:
    """A fresh controller state for ``config``.

    Args:
      config: the controller's :class:`Config`.
      xp: array namespace for the state (``numpy``, ``jax.numpy``, a torch
        namespace from array-api-compat, or ``adaptive_sched._scalar`` for plain
        Python floats). Default: the namespace of ``config``'s numeric leaves if
        they are arrays (so ``jax.vmap(init)`` over stacked configs works), else
        NumPy.
      device: device for the state's arrays (torch), passed to ``xp.asarray``.

    Returns:
      The initial :class:`State`. Its hparams would be ``lr = base_lr`` and
      ``momentum = clip(base_momentum, min_momentum, max_momentum)``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"init(config=...) expects an adaptive_sched.Config, got {type(config).__name__}")
    if xp is None:
        leaf = config.base_lr
        if isinstance(leaf, (int, float)):
            import numpy

            xp = numpy
        else:
            xp = namespace_of(leaf)
    if xp is not _scalar:
        import array_api_compat

        if not array_api_compat.is_array_api_obj(xp.asarray(0.0)):
            raise TypeError(f"init(xp=...) must be an array namespace, got {xp!r}")
        xp = array_api_compat.array_namespace(xp.asarray(0.0))

    def f32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.float32, device=device) if xp is not _scalar else _scalar.float32(v)

    def i32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=device) if xp is not _scalar else int(v)

    # Every leaf is its own array (never one object shared by several leaves):
    # JAX refuses to donate a buffer twice (jax.jit(..., donate_argnums=...)).
    cfg = config._map(f32)

    def ema() -> EmaState:
        return EmaState(mean=f32(0.0), var=f32(0.0), decay_pow=f32(1.0), ref=f32(0.0))

    momentum = xp.clip(cfg.base_momentum, cfg.min_momentum, cfg.max_momentum)  # a new array
    return State(
        config=cfg,
        step=i32(0),
        skipped=i32(0),
        log_scale=f32(0.0),
        current_momentum=f32(momentum),
        loss=ema(),
        reward=ema(),
        grad_norm=ema(),
        kl=ema(),
    )


class _Obs(NamedTuple):
    """One step's view of a signal after its EMA update (internal)."""

    ok: Any  # observed this step (finite)
    has_prev: Any  # there was a previous smoothed value to compare against
    hat: Any  # smoothed value after this step (held if not ok)
    prev_hat: Any  # smoothed value before this step
    var_hat: Any  # bias-corrected variance after this step
    ema: EmaState


def _observe(xp: Any, ema: EmaState, x: Any, beta: Any, track_var: bool) -> _Obs:
    """EMA update of one (float32 or Python float) signal value.

    ``track_var`` (static) says whether a rule reads this signal's variance;
    if not, ``var`` stays as it is (0), which saves work on every step.
    """
    ok = xp.isfinite(x)
    xs = xp.where(ok, xp.clip(x, -SIGNAL_LIMIT, SIGNAL_LIMIT), 0.0)
    has_prev = ema.decay_pow < 1.0
    one_m_pow = 1.0 - ema.decay_pow
    prev_hat = ema.mean / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    new_pow = ema.decay_pow * beta
    new_mean = beta * ema.mean + (1.0 - beta) * xs
    # 1 - b^n >= 1 - b > 0 once observed, because b < 1 is validated.
    den = 1.0 - new_pow
    hat = new_mean / den
    new_ref = xp.where(has_prev, ema.ref, hat)
    mean = xp.where(ok, new_mean, ema.mean)
    var = xp.where(ok, _variance_step(xp, ema.var, xs, hat, beta), ema.var) if track_var else ema.var
    pow_ = xp.where(ok, new_pow, ema.decay_pow)
    ref = xp.where(ok, new_ref, ema.ref)
    hat = xp.where(ok, hat, prev_hat)
    var_hat = var / xp.where(pow_ < 1.0, 1.0 - pow_, 1.0 - pow_ + 1.0)
    return _Obs(
        ok=ok,
        has_prev=has_prev,
        hat=hat,
        prev_hat=prev_hat,
        var_hat=var_hat,
        ema=EmaState(mean=mean, var=var, decay_pow=pow_, ref=ref),
    )


def _variance_step(xp: Any, var: Any, xs: Any, hat: Any, beta: Any) -> Any:
    """``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``."""
    dev = xs - hat
    # Deviations below a millionth of the signal's magnitude are rounding noise
    # of the bias correction (float32 resolves ~6e-8 relative): count them as 0,
    # so a constant signal has variance 0 in every precision.
    dev = xp.where(xp.abs(dev) > _NOISE_FLOOR * xp.abs(hat), dev, 0.0)
    return beta * var + (1.0 - beta) * dev * dev


def _log_knob(xp: Any, v: Any) -> Any:
    """``log`` of a config knob: on the host when the knob is a Python number.

    Front doors that hold concrete knobs (the optax front door, the torch
    adapter's host and device modes) then share one value, ``log`` in float64
    rounded once to float32, instead of each backend's own float32 ``log``
    (XLA, torch and libm differ by an ulp on some inputs, and these constants
    accumulate in ``log_scale``). Traced knobs (a ``vmap`` over configs) use ``xp.log``.
    """
    if isinstance(v, (int, float)):
        return _scalar.log(_scalar.float32(v))
    return xp.log(v)


def _held(xp: Any, ema: EmaState) -> _Obs:
    """The view of a signal that was not supplied this step."""
    has_prev = ema.decay_pow < 1.0
    one_m_pow = 1.0 - ema.decay_pow
    hat = ema.mean / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    var_hat = ema.var / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    # Python False lets the host-path compiler prune every rule that reads this
    # signal; array namespaces need an array (torch's where rejects a bool).
    never = False if getattr(xp, "IS_SCALAR", False) else xp.logical_and(has_prev, xp.logical_not(has_prev))
    return _Obs(ok=never, has_prev=has_prev, hat=hat, prev_hat=hat, var_hat=var_hat, ema=ema)


# --------------------------------------------------------------------------- rules
# Each rule returns a log-factor (0 = leaves the lr alone). "Stateful" rules
# return an increment to the accumulated log_scale; "stateless" ones a factor
# recomputed from the smoothed signals every step.


def trend_step(xp: Any, obs: _Obs, up: Any, down: Any, threshold: Any, maximize: bool) -> Any:
    """Trend rule (stateful): ``eta <- eta * up`` if the smoothed signal improved, else ``eta * down``.

    Improvement is relative to the magnitude of the previous smoothed value, so
    it is correct for negative losses and rewards (unlike ``best * (1 - thr)``):
    minimising, ``improved = x^_t < x^_{t-1} - thr * |x^_{t-1}|``; maximising,
    ``improved = x^_t > x^_{t-1} + thr * |x^_{t-1}|``. Nothing moves on the first
    observation or when the signal is not observed.
    """
    margin = threshold * xp.abs(obs.prev_hat)
    if maximize:
        improved = obs.hat > obs.prev_hat + margin
    else:
        improved = obs.hat < obs.prev_hat - margin
    active = xp.logical_and(obs.ok, obs.has_prev)
    step = xp.where(improved, _log_knob(xp, up), _log_knob(xp, down))
    return xp.where(active, step, 0.0)


def loss_decay_step(xp: Any, obs: _Obs, k: Any) -> Any:
    """Loss decay (stateful): ``eta_{t+1} = eta_t / (1 + k * max(l^_t, 0))``.

    A negative smoothed loss counts as zero (no decay).
    """
    inc = -xp.log1p(k * xp.clip(obs.hat, 0.0, SIGNAL_LIMIT))
    return xp.where(obs.ok, inc, 0.0)


def kl_target_step(xp: Any, obs: _Obs, target: Any, gain: Any, clip: Any) -> Any:
    """KL target (stateful): ``eta <- eta * exp(-gain * clip(KL^/target - 1, -c, c))``.

    The proportional controller of Ziegler et al. (2019), "Fine-Tuning Language
    Models from Human Preferences", Sec. 2.2, applied to the lr instead of the
    KL coefficient: lr down while the smoothed KL overshoots ``target``, up
    while it is below.
    """
    err = xp.clip(obs.hat / target - 1.0, -clip, clip)
    inc = -gain * err
    return xp.where(obs.ok, inc, 0.0)


def variance_factor(xp: Any, obs: _Obs, k: Any, scale: Any) -> Any:
    """Variance rule (stateless): ``eta = base / (1 + k * sqrt(v^_t) / scale)``.

    For the loss ``scale = |l^_t|`` (coefficient of variation, scale free); for
    the reward ``scale = reward_span``. Returns the log-factor.
    """
    std = xp.sqrt(xp.clip(obs.var_hat, 0.0, SIGNAL_LIMIT * SIGNAL_LIMIT))
    return -xp.log1p(k * xp.clip(std / xp.clip(scale, _REL_EPS, SIGNAL_LIMIT), 0.0, 1e30))


def grad_norm_factor(xp: Any, obs: _Obs, power: Any) -> Any:
    """Grad-norm rule (stateless): ``eta = base * (g_ref / g^_t)^p``.

    ``g_ref`` is the first smoothed gradient norm observed, so the rule is scale
    free: the lr falls when gradients grow (explosions) and rises as they
    shrink, as in normalised gradient descent.
    """
    lg = xp.log(xp.clip(obs.hat, _TINY, SIGNAL_LIMIT))
    lref = xp.log(xp.clip(obs.ema.ref, _TINY, SIGNAL_LIMIT))
    out = power * (lref - lg)
    return xp.where(obs.ema.decay_pow < 1.0, out, 0.0)


def scaling_factor(xp: Any, obs: _Obs, center: Any, span: Any) -> Any:
    """Reward scaling (stateless): ``eta = base * max(1 + (R^_t - center) / span, 1e-6)``.

    Maps ``center - span`` to about 0 (then ``min_lr``), ``center`` to
    ``base_lr`` and ``center + span`` to ``2 * base_lr``.
    """
    f = xp.clip(1.0 + (obs.hat - center) / span, _MIN_SCALING, 1e30)
    out = xp.log(f)
    return xp.where(obs.ema.decay_pow < 1.0, out, 0.0)


def cyclical_lr(xp: Any, t: Any, cfg: Config) -> tuple[Any, Any]:
    """Cyclical rule (SGDR, Loshchilov & Hutter, 2017): cosine from ``max_lr`` to ``min_lr``.

    ``eta_t = min_lr + (max_lr - min_lr) * (1 + cos(pi * p_t)) / 2`` with the
    phase ``p_t = ((t - 1) mod T) / T``, ``T = cycle_length``. Every signal's
    smoothing restarts at the start of each cycle. Returns the log-factor
    ``log(eta_t / base_lr)`` and whether step ``t`` starts a new cycle.
    """
    tm1 = t - 1.0
    cycles = xp.floor(tm1 / cfg.cycle_length)
    pos = tm1 - cycles * cfg.cycle_length
    phase = pos / cfg.cycle_length
    lr = cfg.min_lr + (cfg.max_lr - cfg.min_lr) * 0.5 * (1.0 + xp.cos(math.pi * phase))
    lr = xp.clip(lr, cfg.min_lr, cfg.max_lr)
    restart = xp.logical_and(pos < 1.0, t > 1.0)
    return xp.log(lr) - _log_knob(xp, cfg.base_lr), restart


def momentum_value(xp: Any, rule: str, obs: _Obs, cfg: Config) -> Any:
    """Momentum rules, from the smoothed loss ``l^_t`` (result clipped to the bounds later).

    * ``inverse``: ``mu = 1 - 1 / (1 + max(l^_t, 0))``
    * ``exp``: ``mu = 1 - exp(-a * max(l^_t, 0))``
    * ``relative``: ``mu = base_momentum - gain * r_t`` with the relative change
      ``r_t = clip((l^_t - l^_{t-1}) / |l^_{t-1}|, -1, 1)`` (sign-correct for
      negative losses): momentum rises while the loss falls.
    * ``normalized``: ``mu = n / (1 + n)``, ``n = max(l^_t, 0) / |l_ref|``, the loss
      in units of its first smoothed value (scale free).
    """
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    if rule == "inverse":
        return 1.0 - 1.0 / (1.0 + pos)
    if rule == "exp":
        return 1.0 - xp.exp(-xp.clip(cfg.momentum_a * pos, 0.0, 80.0))
    if rule == "relative":
        denom = xp.clip(xp.abs(obs.prev_hat), _REL_EPS, SIGNAL_LIMIT)
        r = xp.clip((obs.hat - obs.prev_hat) / denom, -1.0, 1.0)
        r = xp.where(obs.has_prev, r, 0.0)
        return cfg.base_momentum - cfg.momentum_gain * r
    if rule == "normalized":
        n = pos / xp.clip(xp.abs(obs.ema.ref), _REL_EPS, SIGNAL_LIMIT)
        return n / (1.0 + n)
    raise AssertionError(rule)  # unreachable: validated in Config


_LOSS_LR_RULES = ("loss_decay", "trend", "variance")
_STATEFUL_LR_RULES = ("loss_decay", "trend")


def update(state: State, signals: Signals) -> tuple[State, Hparams]:
    """One controller step: fold in this step's signals, return the new state and hparams.

    Pure and namespace-generic: the namespace is read off the state (Python
    numbers, NumPy, ``jax.numpy`` including tracers, torch). Under ``jax.jit``
    it traces once per config structure (rule names) and per pattern of
    supplied (non-``None``) signals, whatever their values. To mark a signal as
    missing without changing the structure, pass NaN.

    Args:
      state: the current :class:`State`.
      signals: this step's :class:`Signals`.

    Returns:
      ``(new_state, hparams)``.
    """
    xp = _scalar if isinstance(state.step, int) else namespace_of(state.step)
    return update_with(xp, state, signals)


def update_with(xp: Any, state: State, signals: Signals) -> tuple[State, Hparams]:
    """:func:`update` with an explicit namespace (the host-path compiler traces it this way)."""
    cfg = state.config
    lr_rule, momentum_rule, reward_rule, kl_rule = cfg.rules
    scalar = getattr(xp, "IS_SCALAR", False)

    to_f32 = _caster(xp, state.step)

    def f32_signal(v: Any) -> Any:
        # Finite float64 values beyond float32's range are clipped before the cast (not dropped).
        return xp.asarray(_preclip(v), dtype=xp.float32) if scalar else to_f32(_preclip(v))

    t_int = state.step + 1
    t = xp.astype(t_int, xp.float32)

    loss_ema, reward_ema, gn_ema, kl_ema = state.loss, state.reward, state.grad_norm, state.kl
    log_stateless: Any = 0.0
    if lr_rule == "cyclical":
        log_cyc, restart = cyclical_lr(xp, t, cfg)
        log_stateless = log_stateless + log_cyc

        def reset(e: EmaState) -> EmaState:
            return EmaState(
                mean=xp.where(restart, 0.0, e.mean),
                var=xp.where(restart, 0.0, e.var),
                decay_pow=xp.where(restart, 1.0, e.decay_pow),
                ref=e.ref,
            )

        loss_ema, reward_ema, gn_ema, kl_ema = (reset(e) for e in (loss_ema, reward_ema, gn_ema, kl_ema))

    skipped = state.skipped
    uses = (
        lr_rule in _LOSS_LR_RULES or momentum_rule != "none",
        reward_rule != "none",
        lr_rule == "grad_norm",
        kl_rule != "none",
    )
    track_var = (lr_rule == "variance", reward_rule == "variance", False, False)
    emas = (loss_ema, reward_ema, gn_ema, kl_ema)
    betas = (cfg.ema_beta, cfg.ema_reward_beta, cfg.ema_beta, cfg.ema_kl_beta)
    views: list[_Obs | None] = []
    for name, value, ema, beta, used, var in zip(Signals._fields, signals, emas, betas, uses, track_var):
        if getattr(value, "ndim", 0) != 0:
            raise ValueError(
                f"Signals.{name} must be a scalar (shape ()), got shape {tuple(value.shape)}; "
                "reduce it first (e.g. the batch mean)."
            )
        if value is None:
            views.append(_held(xp, ema) if used else None)
            continue
        x = f32_signal(value)
        if used:
            obs = _observe(xp, ema, x, beta, var)
            views.append(obs)
            ok = obs.ok
        else:  # counted, not smoothed: no rule reads it
            views.append(None)
            ok = xp.isfinite(x)
        skipped = skipped + xp.astype(xp.logical_not(ok), xp.int32)
    loss_obs, reward_obs, gn_obs, kl_obs = views

    # ---- lr: stateful increments and stateless log-factors
    inc: Any = 0.0
    if lr_rule == "trend":
        inc = inc + trend_step(xp, loss_obs, cfg.trend_up, cfg.trend_down, cfg.trend_threshold, False)
    elif lr_rule == "loss_decay":
        inc = inc + loss_decay_step(xp, loss_obs, cfg.decay_k)
    elif lr_rule == "variance":
        log_stateless = log_stateless + variance_factor(xp, loss_obs, cfg.variance_k, xp.abs(loss_obs.hat))
    elif lr_rule == "grad_norm":
        log_stateless = log_stateless + grad_norm_factor(xp, gn_obs, cfg.grad_norm_power)
    if reward_rule == "trend":
        inc = inc + trend_step(xp, reward_obs, cfg.reward_up, cfg.reward_down, cfg.reward_threshold, True)
    elif reward_rule == "scaling":
        log_stateless = log_stateless + scaling_factor(xp, reward_obs, cfg.reward_center, cfg.reward_span)
    elif reward_rule == "variance":
        log_stateless = log_stateless + variance_factor(
            xp, reward_obs, cfg.reward_variance_k, cfg.reward_span
        )
    if kl_rule == "target":
        inc = inc + kl_target_step(xp, kl_obs, cfg.kl_target, cfg.kl_gain, cfg.kl_clip)
    w = cfg.warmup_steps
    warm = xp.where(w > 0.0, xp.clip(t / xp.where(w > 0.0, w, w + 1.0), 0.0, 1.0), 1.0)
    # log(1) == 0 exactly, so the identity config stays bit exact.
    log_stateless = log_stateless + xp.log(xp.clip(warm, _TINY, 1.0))

    log_lo = _log_knob(xp, cfg.min_lr) - _log_knob(xp, cfg.base_lr)
    log_hi = _log_knob(xp, cfg.max_lr) - _log_knob(xp, cfg.base_lr)
    log_stateless = xp.clip(log_stateless, log_lo - 1.0, log_hi + 1.0)  # finite, bounded
    if lr_rule in _STATEFUL_LR_RULES or reward_rule == "trend" or kl_rule == "target":
        log_scale = xp.clip(state.log_scale + inc, log_lo - log_stateless, log_hi - log_stateless)
        log_factor = log_scale + log_stateless
    else:  # no stateful rule: log_scale stays at its initial 0 (static, so it folds away)
        log_scale, log_factor = state.log_scale, log_stateless
    lr = xp.clip(cfg.base_lr * xp.exp(log_factor), cfg.min_lr, cfg.max_lr)

    # ---- momentum
    momentum = state.current_momentum  # set within bounds by init
    if momentum_rule != "none":
        mu = momentum_value(xp, momentum_rule, loss_obs, cfg)
        momentum = xp.clip(xp.where(loss_obs.ok, mu, momentum), cfg.min_momentum, cfg.max_momentum)

    ema_out = [v.ema if v is not None else e for v, e in zip(views, emas)]
    new_state = State(
        config=cfg,
        step=t_int,
        skipped=skipped,
        log_scale=log_scale if scalar else to_f32(log_scale),
        current_momentum=momentum if scalar else to_f32(momentum),
        loss=ema_out[0],
        reward=ema_out[1],
        grad_norm=ema_out[2],
        kl=ema_out[3],
    )
    lr_scale = lr / cfg.base_lr
    if not scalar:
        new_state = _cast_floats(xp, new_state, to_f32)
        lr, lr_scale = to_f32(lr), to_f32(lr_scale)
    hp = Hparams(lr=lr, momentum=new_state.current_momentum, lr_scale=lr_scale)
    return new_state, hp


def _cast_floats(xp: Any, state: State, f32: Any) -> State:
    def ema(e: EmaState) -> EmaState:
        return EmaState(*(f32(v) for v in e))

    return state._replace(
        step=xp.astype(state.step, xp.int32),
        skipped=xp.astype(state.skipped, xp.int32),
        loss=ema(state.loss),
        reward=ema(state.reward),
        grad_norm=ema(state.grad_norm),
        kl=ema(state.kl),
    )

