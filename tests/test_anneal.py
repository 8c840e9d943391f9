"""The ``anneal_rule="slope"`` stationarity-test rule and :func:`adaptive_sched.recommended`.

Formula checks call the rule's function directly in float64 (NumPy), so the
running sums can be compared with textbook least squares to 1e-9; behaviour
checks run the whole controller. jit/eager/NumPy/torch host and device
agreement and the hostile-stream properties come from the registry-derived
matrix in ``tests/streams.py`` (every rule, this one included).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, NamedTuple

import numpy as np
import pytest

import adaptive_sched as A
from adaptive_sched import _rules

RULE = _rules.RULES["anneal.slope"]
DEFAULTS = A.Config(anneal_rule="slope")


class _Obs(NamedTuple):
    ok: Any
    x: Any


def run_rule(stream: list[float], planned: Any = False, **knobs: float) -> tuple[dict[str, Any], list[float]]:
    """The rule's function alone, in float64, over ``stream``: (final slots, increments); ``planned``: ``ctx.planned``."""
    cfg = DEFAULTS.replace(**{f"anneal_{k}": v for k, v in knobs.items()})
    values = [np.float64(getattr(cfg, k.name)) for k in RULE.knobs.values()]
    with np.errstate(divide="ignore", invalid="ignore"):  # knobs that are 0 have no log (none is taken)
        kn = RULE.knobs_type(*values, *(np.log(v) for v in values))
    slots = {s.name: np.float64(s.init) for s in RULE.slots}
    incs = []
    for t, y in enumerate(stream, 1):
        ok = np.isfinite(y)
        obs = _Obs(ok=ok, x=np.float64(y) if ok else np.float64(0.0))
        inc, slots = RULE.fn(np, obs, kn, _rules.RuleContext(cfg, np.float64(t), slots, planned=planned))
        incs.append(float(inc))
    return slots, incs


def test_unweighted_statistic_is_the_ols_t_statistic() -> None:
    """window_power=0: T is the textbook OLS slope / standard error (hand computation by scipy)."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    y = 2.0 - 0.01 * np.arange(1, 13) + 0.05 * rng.standard_normal(12)
    slots, _incs = run_rule(y.tolist(), window_power=0.0, min_samples=12.0, test_every=1.0, grow=0.0, z_drop=0.0)
    fit = stats.linregress(np.arange(1, 13), y)
    assert fit.slope / fit.stderr < 0  # the test below must take the "progress" branch
    assert float(slots["tstat"]) == pytest.approx(fit.slope / fit.stderr, rel=1e-9)


def test_weighted_sums_are_weighted_least_squares() -> None:
    """window_power=c: the running sums give the WLS slope with weights (i/n)^c, and Kish's n_e."""
    rng = np.random.default_rng(1)
    n, c = 40, 1.5
    y = 1.0 - 0.02 * np.arange(1, n + 1) + 0.1 * rng.standard_normal(n)
    slots, _ = run_rule(y.tolist(), window_power=c, min_samples=1e9)
    t = np.arange(1, n + 1, dtype=float)
    w = (t / n) ** c
    tm, ym = np.average(t, weights=w), np.average(y, weights=w)
    slope = np.sum(w * (t - tm) * (y - ym)) / np.sum(w * (t - tm) ** 2)
    assert float(slots["cty"] / slots["ctt"]) == pytest.approx(slope, rel=1e-9)
    assert float(slots["w"]) == pytest.approx(w.sum(), rel=1e-9)
    assert float(slots["w2"]) == pytest.approx((w**2).sum(), rel=1e-9)
    assert float(slots["cyy"]) == pytest.approx(np.sum(w * (y - ym) ** 2), rel=1e-9)


def test_noisy_constant_loss_is_cut_at_the_first_test_with_the_promised_confidence() -> None:
    """A stationary stream: no test before n_min, and the first test cuts with probability ~Phi(z_drop)."""
    n_min, z = int(DEFAULTS.anneal_min_samples), float(DEFAULTS.anneal_z_drop)
    cut_first = 0
    for seed in range(200):
        rng = random.Random(seed)
        _, incs = run_rule([3.0 + 0.2 * rng.gauss(0, 1) for _ in range(n_min)])
        assert all(v == 0.0 for v in incs[:-1])
        assert incs[-1] in (0.0, pytest.approx(math.log(DEFAULTS.anneal_drop)),
                            pytest.approx(math.log(DEFAULTS.anneal_drop_flat)), pytest.approx(math.log(DEFAULTS.anneal_up)))
        cut_first += incs[-1] < 0
    promised = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # Phi(z_drop): 0.84 at z = 1
    assert cut_first / 200 >= promised - 0.07


def test_the_cut_is_scaled_by_the_evidence() -> None:
    """T >= 0 (flat or rising): x drop_flat; -t_q < T < 0 (leaning down within noise): x drop; T <= -t_q: hold."""
    stats = pytest.importorskip("scipy.stats")
    t = np.arange(1, 13)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(12)
    knobs = {"window_power": 0.0, "min_samples": 12.0, "test_every": 1.0, "grow": 0.0}
    seen = set()
    for slope in (0.02, -0.005, -0.2):  # T = 4.9, -0.47, -42 with this noise
        y = 1.0 + slope * t + 0.05 * noise
        fit = stats.linregress(t, y)
        big_t = fit.slope / fit.stderr
        tq = 1.0 * (1.0 + (1.0 + 1.0) / (4.0 * 10))  # Cornish-Fisher t quantile, z_drop = 1, n_e - 2 = 10 dof
        _, incs = run_rule(y.tolist(), **knobs)
        if big_t >= 0:
            expected, case = math.log(DEFAULTS.anneal_drop_flat), "flat"
        elif big_t > -tq:
            expected, case = math.log(DEFAULTS.anneal_drop), "leaning"
        else:
            expected, case = 0.0, "progress"
        seen.add(case)
        assert incs[-1] == pytest.approx(expected)
    assert seen == {"flat", "leaning", "progress"}  # the streams cover all three cases


def test_a_planned_cooldown_replaces_the_gentle_cut_and_keeps_the_stall_cut() -> None:
    """With ctx.planned (a cooldown scheduled), -t_q < T < 0 gives x drop_planned (1: none) and T >= 0 still x drop_flat."""
    t = np.arange(1, 13)
    noise = np.random.default_rng(2).standard_normal(12)
    knobs = {"window_power": 0.0, "min_samples": 12.0, "test_every": 1.0, "grow": 0.0}
    leaning = (1.0 - 0.005 * t + 0.05 * noise).tolist()  # T = -0.47: within noise (the test above)
    flat = (1.0 + 0.02 * t + 0.05 * noise).tolist()  # T = 4.9
    assert run_rule(leaning, **knobs)[1][-1] == pytest.approx(math.log(0.9))
    for planned in (True, np.bool_(True)):  # Python and array booleans (jit gives the latter)
        assert run_rule(leaning, planned=planned, **knobs)[1][-1] == 0.0
        assert run_rule(leaning, planned=planned, drop_planned=0.8, **knobs)[1][-1] == pytest.approx(math.log(0.8))
        assert run_rule(flat, planned=planned, **knobs)[1][-1] == pytest.approx(math.log(0.6))
    assert run_rule(leaning, planned=np.bool_(False), **knobs)[1][-1] == pytest.approx(math.log(0.9))


def _leaning_stream(n: int, seed: int = 0) -> list[A.Signals]:
    rng = np.random.default_rng(seed)
    return [A.Signals(loss=1.0 - 2e-4 * i + 0.05 * float(rng.standard_normal())) for i in range(n)]


def _lrs(cfg: A.Config, stream: list[A.Signals], state: Any = None) -> list[float]:
    state = A.init(cfg, xp=np) if state is None else state
    out = []
    for sig in stream:
        state, hp = A.update(state, sig)
        out.append(float(hp.lr))
    return out


def test_the_controller_plans_by_horizon_or_by_a_cooldown_started_by_hand() -> None:
    """Through the whole controller: a horizon and a cooldown started by hand (both far ahead) give the same
    lrs, with only x0.6 cuts; without either the gentle x0.9 cuts come; anneal_drop_planned=0.9 restores them."""
    from streams import check_host_equals_device

    base = A.Config(anneal_rule="slope", cooldown_rule="linear", base_lr=1e-2, min_lr=1e-5, max_lr=1.0)
    stream = _leaning_stream(300)
    free = _lrs(base, stream)
    horizon = base.replace(cooldown_total_steps=100_000.0)
    by_horizon = _lrs(horizon, stream)
    by_hand = _lrs(base, stream, A.start_cooldown(A.init(base, xp=np), 50_000, start=50_000))
    assert by_horizon == by_hand
    ratios = {round(b / a, 4) for a, b in itertools.pairwise(by_horizon) if b != a}
    assert ratios == {0.6}, ratios
    free_ratios = {round(b / a, 4) for a, b in itertools.pairwise(free) if b != a}
    assert 0.9 in free_ratios, free_ratios  # the stream does lean down within noise
    assert _lrs(horizon.replace(anneal_drop_planned=0.9), stream) == free
    check_host_equals_device(horizon, stream[:120])  # host and device namespaces agree bit for bit


def test_steadily_falling_loss_is_never_cut() -> None:
    rng = random.Random(0)
    stream = [5.0 - 0.01 * i + 0.05 * rng.gauss(0, 1) for i in range(400)]
    _, incs = run_rule(stream, grow=0.0)
    assert min(incs) == 0.0 and max(incs) == 0.0


def test_growth_raises_by_up_while_progress_steepens_and_never_cuts_a_clean_descent() -> None:
    stream = [5.0 - 0.01 * i + 0.001 * ((-1) ** i) for i in range(200)]
    _, incs = run_rule(stream)
    ups = [v for v in incs if v > 0]
    assert ups and all(v == pytest.approx(math.log(DEFAULTS.anneal_up)) for v in ups)
    assert min(incs) >= 0.0


def test_cuts_come_at_most_once_per_min_samples() -> None:
    rng = random.Random(3)
    _, incs = run_rule([rng.gauss(0, 1) for _ in range(600)])
    cuts = [i for i, v in enumerate(incs) if v < 0]
    assert len(cuts) >= 10
    assert min(np.diff(cuts)) >= DEFAULTS.anneal_min_samples


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_is_not_observed(bad: float) -> None:
    rng = random.Random(4)
    stream = [1.0 + 0.1 * rng.gauss(0, 1) for _ in range(17)]
    before, _ = run_rule(stream)
    after, incs = run_rule([*stream, bad])
    assert incs[-1] == 0.0
    assert {k: float(v) for k, v in after.items()} == {k: float(v) for k, v in before.items()}


def test_controller_cuts_a_plateau_within_the_promised_steps_and_holds_a_descent() -> None:
    """Through the whole controller (host namespace): the lr falls on a plateau, holds on a clean descent."""
    rng = random.Random(7)
    cfg = A.Config(anneal_rule="slope", anneal_grow=0.0, base_lr=1e-2, min_lr=1e-5)
    state = A.init(cfg)
    for _ in range(int(cfg.anneal_min_samples)):
        state, hp = A.update(state, A.Signals(loss=2.0 + 0.1 * rng.gauss(0, 1)))
    plateau_lr = float(hp.lr)
    state = A.init(cfg)
    for i in range(300):
        state, hp = A.update(state, A.Signals(loss=5.0 - 0.01 * i + 0.01 * rng.gauss(0, 1)))
    assert float(hp.lr) == pytest.approx(1e-2)
    # one cut at step n_min with probability ~Phi(z_drop); this seed's stream is cut
    assert plateau_lr in (pytest.approx(1e-2 * cfg.anneal_drop, rel=1e-5), pytest.approx(1e-2 * cfg.anneal_drop_flat, rel=1e-5))


def test_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match=r"anneal_drop=1\.5 is invalid: must be a number in \(0, 1\]"):
        A.Config(anneal_rule="slope", anneal_drop=1.5)
    with pytest.raises(ValueError, match=r"anneal_grow=0\.5 is invalid: must be 0 or 1"):
        A.Config(anneal_rule="slope", anneal_grow=0.5)
    with pytest.raises(ValueError, match=r"anneal_rule='sasa' is invalid: must be one of none, slope"):
        A.Config(anneal_rule="sasa")


def test_recommended_is_a_config_with_bounds_from_the_base_lr() -> None:
    cfg = A.recommended(3e-4)
    assert isinstance(cfg, A.Config)
    assert cfg.lr_rule == "evidence" and cfg.cooldown_rule == "linear"
    assert cfg.search_rule == "none" and cfg.anneal_rule == "none"  # the range test + slope test: RANGE_TEST_RULES
    assert cfg.base_lr == 3e-4
    # base/100 .. 100*base: room for the evidence rule to grow (it was 10*base before issue 16)
    assert cfg.min_lr == pytest.approx(3e-6) and cfg.max_lr == pytest.approx(3e-2)
    assert cfg.cooldown_total_steps == 0.0  # horizon-free unless total_steps is given
    assert A.recommended(3e-4, total_steps=1000).cooldown_total_steps == 1000.0
    assert A.recommended(3e-4, max_lr=1e-3).max_lr == 1e-3
    assert A.recommended(1e-3, evidence_max_growth=0.0).evidence_max_growth == 0.0
    with pytest.raises(ValueError, match=r"recommended\(base_lr=-1\) is invalid"):
        A.recommended(-1)
    with pytest.raises(ValueError, match=r"recommended\(base_lr=True\) is invalid"):
        A.recommended(True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"recommended\(total_steps=0\) is invalid"):
        A.recommended(1e-3, total_steps=0)
    with pytest.raises(ValueError, match="evidence_drop_rise"):
        A.recommended(1e-3, evidence_drop_rise=2.0)
    # The base lr is the one choice: no silent default (an AdamW(lr=3e-4) user would get 1e-3).
    with pytest.raises(TypeError, match="base_lr"):
        A.recommended()  # type: ignore[call-arg]


def test_recommended_is_accepted_by_every_front_door() -> None:
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp

    cfg = A.recommended(1e-2)
    # the evidence rule's warm start: base * start, rising geometrically to base over `ramp` updates
    first = 1e-2 * cfg.evidence_start  # the first update runs at base_lr * start

    state, hp = A.update(A.init(cfg, xp=np), A.Signals(loss=1.0, grad_norm=1.0))  # the core
    assert float(hp.lr) == pytest.approx(first, rel=1e-6)

    tx = A.optax.inject_hyperparams(optax.adam, cfg)()
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(1.0))
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(first, rel=1e-6)
    _, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(1.0))
    assert float(A.optax.diagnostics(state)["lr.evidence/cos_samples"]) == 1.0  # the door computed grad_cos

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=1e-2)
    sched = A.AdaptiveScheduler(opt, cfg)
    assert sched.get_last_lr() == [pytest.approx(first, rel=1e-6)]  # the first step runs at a signal-less update's lr
    p.grad = torch.ones(3)
    opt.step()
    sched.observe(loss=1.0)
    assert sched.get_last_lr() == [pytest.approx(first, rel=1e-6)]  # the first step's update, redone with its loss
    opt.step()
    sched.observe(loss=1.0)
    assert sched.diagnostics()["lr.evidence/cos_samples"] == 1.0  # grad_cos from the optimizer's pre-step hook
    vmapped = jax.vmap(lambda lr: (A.init(cfg := A.recommended(lr), xp=jnp), cfg.max_lr)[1])(jnp.array([1e-3, 1e-2]))
    np.testing.assert_allclose(np.asarray(vmapped), [1e-1, 1.0], rtol=1e-6)


def test_the_windows_count_optimizer_steps_whatever_the_observation_interval() -> None:
    # Issue 19: through the HF callback with logging_steps=7, nothing had been decided after 80 steps (the
    # first test came after 30 *observations*, near step 210). The windows are steps: with a loss logged
    # every 7th step, the first test is at the first observation 30 steps into the leg (step 35).
    cfg = A.Config(anneal_rule="slope", anneal_grow=0.0)
    state = A.init(cfg, xp=np)
    cut_at = None
    for t in range(1, 120):
        loss = 1.0 + 0.01 * t if t % 7 == 0 else None  # rising: a cut at the first test
        state, hp = A.update(state, A.Signals(loss=loss))
        if cut_at is None and float(hp.lr) < float(cfg.base_lr):
            cut_at = t
    assert cut_at == 35
    # logged every step, the same rule tests at step 30 as before (observations = steps)
    state = A.init(cfg, xp=np)
    for t in range(1, 31):
        state, hp = A.update(state, A.Signals(loss=1.0 + 0.01 * t))
    assert float(hp.lr) == pytest.approx(float(cfg.base_lr) * 0.6)
