"""The ``search_rule="range"`` lr search (an lr range test inside the run), and how it works with the other rules.

Formula checks drive the core with only the search active (the lr is then
``base_lr * exp(s)`` with ``s`` the search's own log-scale) and compare with
the docstring's formulas computed by hand. Behaviour checks run plain
gradient descent on a quadratic whose best lr is known. jit/eager/NumPy/torch
agreement and the hostile-stream properties come from the registry-derived
matrix in ``tests/streams.py`` (every rule, this one included) plus one
differential check of ``recommended()`` here.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A
from adaptive_sched import host
from adaptive_sched._recommended import RANGE_TEST_RULES

BASE = 1e-3
G, TAU, START, LAG, BACKOFF = 1.12, 40.0, 0.5, 0.8 / 0.2, 2.0


def range_test(base_lr: float, **overrides: Any) -> A.Config:
    """The lr range test + slope test configuration (``recommended()`` before ``lr_rule="evidence"``)."""
    kwargs: dict[str, Any] = {"min_lr": base_lr / 100, "max_lr": base_lr * 100, **RANGE_TEST_RULES, **overrides}
    return A.Config(base_lr=base_lr, **kwargs)


def search_only(**knobs: Any) -> A.Config:
    return A.Config(search_rule="range", base_lr=BASE, min_lr=BASE / 1e4, max_lr=BASE * 1e4, **knobs)


def drive(cfg: A.Config, losses: list[Any], **signals: Any) -> tuple[list[float], list[dict[str, float]]]:
    """The lr after each update and the search's slots, on Python floats (host semantics)."""
    state = A.init(cfg, xp=host)
    lrs, slots = [], []
    for y in losses:
        state, hp = A.update(state, A.Signals(loss=y, **signals))
        lrs.append(float(hp.lr))
        slots.append({k.split(".")[-1]: float(v) for k, v in state.rule_state.items() if k.startswith("search.")})
    return lrs, slots


def growth(n: int) -> float:
    """The docstring's growth of the ``n``-th observation (``n`` observations before it): ``g^(1/(1 + n/tau))``."""
    return G ** (1.0 / (1.0 + n / TAU))


def test_growth_from_the_warm_start_is_the_hand_computation() -> None:
    falling = [1.0 - 0.01 * n for n in range(20)]
    lrs, slots = drive(search_only(), falling)
    want = BASE * START
    for n, lr in enumerate(lrs):
        want *= growth(n)
        assert lr == pytest.approx(want, rel=1e-5)
    # the loss responds (falls 3 standard errors below its start level) at the first test, observation 8
    assert [s["phase"] for s in slots[:8]] == [0.0] * 7 + [1.0]


def test_a_rise_lands_at_the_lr_of_the_best_loss_lag_corrected_and_halved() -> None:
    falling = [1.0 - 0.01 * n for n in range(20)]
    losses = falling + [1.0] * 8  # a rise many noise sds (0.007) above the smoothed loss, but no blow-up
    lrs, slots = drive(search_only(), losses)
    landed_at = next(i for i, s in enumerate(slots) if s["phase"] == 3.0)
    assert landed_at > 20
    # the best smoothed loss was observed at update 20 (index 19), under the lr set by update 19 (index 18)
    s_best = math.log(lrs[18] / BASE)
    assert slots[landed_at]["s_best"] == pytest.approx(s_best, rel=1e-5)
    lg = math.log(G) / (1.0 + landed_at / TAU)  # landed_at observations before the landing one
    assert lrs[landed_at] == pytest.approx(BASE * math.exp(s_best - LAG * lg) / BACKOFF, rel=1e-5)
    assert lrs[landed_at + 1 :] == [lrs[landed_at]] * (len(lrs) - landed_at - 1)  # then it holds


def test_a_plateau_lands_once_the_lr_grew_60pct_without_a_new_best() -> None:
    rng = np.random.default_rng(0)
    losses = [1.0 - 0.02 * n + 0.01 * rng.normal() for n in range(15)] + [0.72 + 0.01 * rng.normal() for _ in range(40)]
    lrs, slots = drive(search_only(), losses)
    landed_at = next(i for i, s in enumerate(slots) if s["phase"] == 3.0)
    before = slots[landed_at - 1]
    grew = math.log(lrs[landed_at - 1] / BASE) - before["s_best"]
    assert before["since"] >= 3 and grew >= math.log(1.6) - math.log(growth(landed_at - 1))
    assert lrs[landed_at] < lrs[landed_at - 1] / 2  # landed below the lr of the best loss


def test_none_and_one_nan_hold_three_nans_in_a_row_back_off() -> None:
    lrs_none, _ = drive(search_only(), [1.0, 0.99, None, 0.98])
    assert lrs_none[2] == lrs_none[1]  # not supplied: nothing happens
    # One NaN (a bad batch, an fp16 overflow) holds the search, which then goes on growing: it used to back off
    # at once and, the search over, leave the whole run below base_lr (new-user finding).
    lrs_one, slots = drive(search_only(), [1.0, 0.99, math.nan, 0.98, 0.97])
    assert lrs_one[2] == lrs_one[1] and slots[2]["phase"] == 0.0 and slots[2]["n_bad"] == 1.0
    assert lrs_one[3] == pytest.approx(lrs_one[2] * growth(2), rel=1e-5) and slots[3]["n_bad"] == 0.0
    # three in a row mean the lr is too high: back off
    lrs_nan, slots = drive(search_only(), [1.0, 0.99, math.nan, math.nan, math.nan])
    assert lrs_nan[3] == lrs_nan[1] and slots[3]["phase"] == 0.0
    assert lrs_nan[4] == pytest.approx(lrs_nan[1] / BACKOFF, rel=1e-5) and slots[4]["phase"] == 2.0


def test_while_responding_one_nan_holds_and_three_land() -> None:
    falling = [1.0 - 0.01 * n for n in range(12)]  # responds at observation 8
    lrs, slots = drive(search_only(), [*falling, math.nan, 0.88])
    assert slots[11]["phase"] == 1.0 and lrs[12] == lrs[11] and slots[12]["phase"] == 1.0
    assert lrs[13] == pytest.approx(lrs[12] * growth(12), rel=1e-5)
    lrs, slots = drive(search_only(), [*falling, math.nan, math.nan, math.nan, 0.88])
    assert slots[13]["phase"] == 1.0 and slots[14]["phase"] == 3.0
    s_best = slots[13]["s_best"]
    assert lrs[14] == pytest.approx(BASE * math.exp(s_best - LAG * math.log(growth(12))) / BACKOFF, rel=1e-5)
    assert lrs[15] == lrs[14]  # landed: it holds


def test_signal_less_updates_before_the_first_loss_leave_base_lr() -> None:
    # The HF callback and the torch adapter make signal-less updates before the first logged row. The search
    # starts at the first supplied loss; before it, the lr is base_lr (it used to jump to base_lr/2 at once).
    lrs, slots = drive(search_only(), [None, None, 1.0, 0.99])
    assert lrs[:2] == pytest.approx([BASE, BASE], rel=1e-6) and slots[1]["started"] == 0.0
    assert lrs[2] == pytest.approx(BASE * START * growth(0), rel=1e-5)  # as from the first update (growth test)
    assert lrs[3] == pytest.approx(lrs[2] * growth(1), rel=1e-5)


@pytest.mark.parametrize("logging_steps", [1, 2, 7])
def test_in_rl_the_lr_is_base_lr_whatever_the_logging_interval(logging_steps: int) -> None:
    # New-user finding: with TRL's logging_steps > 1 the signal-less updates between log rows started the search
    # (base_lr/2) and the first reward then ended it there, so an RL run's lr depended on logging_steps by 2x.
    cfg = range_test(1e-3)
    state = A.init(cfg, xp=host)
    lrs, factors = [], []
    for t in range(1, 30):  # before the slope test's first test (30 steps), which may cut this flat objective
        sig = A.Signals(loss=-0.5, reward=0.5, kl=0.01, grad_norm=1.0) if t % logging_steps == 0 else A.Signals()
        state, hp = A.update(state, sig)
        lrs.append(float(hp.lr))
        factors.append(float(A.diagnostics(state)["search.range/factor"]))
    assert lrs == pytest.approx([1e-3] * len(lrs), rel=1e-6) and factors == [1.0] * len(lrs)
    assert A.diagnostics(state)["search.range/event"] == 4  # "off"


def test_a_reward_first_seen_after_the_search_started_undoes_it() -> None:
    cfg = search_only()
    state = A.init(cfg, xp=host)
    for n in range(10):  # loss-only rows: the search starts and grows
        state, hp = A.update(state, A.Signals(loss=1.0 - 0.01 * n))
    assert float(hp.lr) != pytest.approx(BASE, rel=1e-3)
    state, hp = A.update(state, A.Signals(loss=0.9, reward=0.3))
    assert float(hp.lr) == pytest.approx(BASE, rel=1e-6) and state.rule_state["search.range.phase"] == 3.0
    assert A.diagnostics(state)["search.range/event"] == 4  # "off", not "landed"
    state, hp = A.update(state, A.Signals(loss=0.5, reward=0.3))
    assert float(hp.lr) == pytest.approx(BASE, rel=1e-6)


def test_in_rl_the_search_does_not_run_and_the_default_config_never_grows() -> None:
    # Issue 19: GRPO with recommended() (then the range test + slope test) grew the lr while the reward saturated,
    # and the KL jumped. A run that reports a reward or a KL gets no search, and the slope rule has no growth phase.
    rng = np.random.default_rng(0)
    cfg = range_test(1e-2)
    state = A.init(cfg, xp=host)
    lrs = []
    for t in range(120):
        reward = min(1.0, t / 25) + 0.02 * rng.normal()  # saturates at 1.0 by step 25
        kl = 0.5 + 0.1 * t  # rising: it would spike with a higher lr
        state, hp = A.update(state, A.Signals(loss=-(reward - 0.04 * kl), reward=reward, kl=kl, grad_norm=1.0))
        lrs.append(float(hp.lr))
    assert max(lrs) <= 1e-2 * (1 + 1e-6)  # never above the base lr: no growth at all
    assert state.rule_state["search.range.phase"] == 3.0 and state.rule_state["search.range.started"] == 0.0
    # the same objective without reward/KL (a supervised loss): the search does run
    state = A.init(cfg, xp=host)
    for t in range(10):
        state, hp = A.update(state, A.Signals(loss=1.0 - 0.05 * t, grad_norm=1.0))
    assert float(hp.lr) > 1e-2 * START


def test_the_slope_test_starts_its_leg_when_the_search_ends() -> None:
    cfg = range_test(BASE)
    state = A.init(cfg, xp=host)
    losses = [1.0 - 0.01 * n for n in range(20)] + [1.0] * 12  # falls, then rises: the search lands
    ended = None
    for t, y in enumerate(losses, 1):
        state, _ = A.update(state, A.Signals(loss=y, grad_norm=1.0))
        rs = state.rule_state
        if ended is None and rs["search.range.phase"] == 3.0:
            ended = t
        if ended is None:
            assert rs["anneal.slope.n"] == 0.0 and rs["anneal.slope.t0"] == float(t)  # waits
    # the landing step is the search's last: the leg's first loss is the first one seen at the landed lr
    assert ended is not None and state.rule_state["anneal.slope.t0"] == float(ended)
    assert state.rule_state["anneal.slope.n"] == float(len(losses) - ended)


# ----------------------------------------------------------------------------- a quadratic with a known best lr

LAM = np.logspace(-2, 0, 20)  # curvatures; gradient descent is stable for lr < 2


def gradient_descent(lr_of: Any, steps: int, seed: int, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """GD on ``0.5 * sum(lam * x^2)`` with gradient noise 0.01; ``lr_of(t, loss) -> lr``. Returns (losses, lrs)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=LAM.size).astype(dtype)
    losses, lrs = [], []
    for t in range(steps):
        loss = 0.5 * float(np.sum(LAM * x.astype(np.float64) ** 2))
        lr = lr_of(t, loss)
        g = (LAM * x + 0.01 * rng.normal(size=LAM.size)).astype(dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            x = (x - dtype(lr) * g).astype(dtype)
        assert np.all(np.isfinite(x)), f"non-finite parameter at step {t} (lr {lr})"
        losses.append(loss)
        lrs.append(lr)
    return np.array(losses), np.array(lrs)


def best_constant_lr(steps: int = 300) -> float:
    grid = np.logspace(-2, np.log10(1.9), 40)
    finals = [np.mean([gradient_descent(lambda t, y, lr=lr: lr, steps, s)[0][-20:].mean() for s in range(2)]) for lr in grid]
    return float(grid[int(np.argmin(finals))])


def controlled(cfg: A.Config) -> Any:
    box = [A.init(cfg, xp=host)]

    def lr_of(t: int, loss: float) -> float:
        box[0], hp = A.update(box[0], A.Signals(loss=loss, grad_norm=1.0))
        return float(hp.lr)

    return lr_of, box


@pytest.fixture(scope="module")
def best_lr() -> float:
    return best_constant_lr()


def test_from_30x_too_low_it_reaches_within_2x_of_the_best_lr_in_the_promised_steps(best_lr: float) -> None:
    # The docstring's promise: growth of 30x (from the start base/2 to 15x base = best/2) within
    # n = tau * (exp(ln(30) / (tau * ln g)) - 1) observations, about 45.
    promised = math.ceil(TAU * (math.exp(math.log(30.0) / (TAU * math.log(G))) - 1.0)) + 1
    assert promised <= 46
    base = best_lr / 30
    for seed in range(3):
        lr_of, box = controlled(range_test(base, max_lr=base * 1000))  # the cap is not what stops it
        _, lrs = gradient_descent(lr_of, 300, seed=10 + seed)
        reached = int(np.argmax(lrs >= best_lr / 2))
        assert lrs[reached] >= best_lr / 2 and reached <= promised
        phase = box[0].rule_state["search.range.phase"]
        assert phase == 3.0  # the search ended (a rise past the stability edge at lr 2)
        landed = float(np.exp(box[0].rule_state["search.range.landed"])) * base
        assert best_lr / 2 <= landed <= 3 * best_lr  # about 2x: half the lr of its best loss, below the edge (3.3x)


def test_from_30x_too_high_it_backs_off_without_a_non_finite_parameter(best_lr: float) -> None:
    base = best_lr * 30  # lr 18: gradient descent multiplies the stiff coordinate by 17 per step
    lr_of, box = controlled(range_test(base))
    losses, lrs = gradient_descent(lr_of, 100, seed=3, dtype=np.float32)  # asserts finite float32 parameters
    assert lrs[20] < 2.0  # below the stability edge within 20 steps
    assert losses[-1] < losses[0]
    assert box[0].rule_state["search.range.phase"] == 3.0


# ----------------------------------------------------------------------------- one implementation


def test_recommended_gives_the_same_lrs_through_jit_eager_numpy_and_both_torch_modes() -> None:
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    stream = [A.Signals(loss=float(2.0 * math.exp(-t / 20) + 0.05 * rng.normal()), grad_norm=float(1.0 + 0.1 * rng.normal()))
              for t in range(90)]  # fmt: skip
    stream[30] = A.Signals(loss=math.nan, grad_norm=1.0)
    cfg = A.recommended(1e-2, total_steps=90)
    ref = [float(hp.lr) for hp in _run(cfg, stream, np)]
    eager = [float(hp.lr) for hp in _run(cfg, stream, jax.numpy)]
    step = jax.jit(A.update)
    state, jitted = A.init(cfg, xp=jax.numpy), []
    for sig in stream:
        state, hp = step(state, sig)
        jitted.append(float(hp.lr))
    np.testing.assert_allclose(eager, ref, rtol=1e-5)
    np.testing.assert_allclose(jitted, ref, rtol=1e-5)
    for device_mode in (False, True):
        p = torch.nn.Parameter(torch.zeros(2))
        lr0 = torch.tensor(1e-2) if device_mode else 1e-2
        opt = torch.optim.Adam([p], lr=lr0, betas=(torch.tensor(0.9), torch.tensor(0.999)) if device_mode else (0.9, 0.999))
        sched = A.AdaptiveScheduler(opt, cfg, device_mode=device_mode)
        got = []
        for sig in stream:
            opt.step()
            sched.observe(loss=sig.loss, grad_norm=sig.grad_norm)
            got.append(float(opt.param_groups[0]["lr"]))
        np.testing.assert_allclose(got, ref, rtol=2e-5)


def _run(cfg: A.Config, stream: list[A.Signals], xp: Any) -> list[A.Hparams]:
    state, out = A.init(cfg, xp=xp), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sig in stream:
            state, hp = A.update(state, sig)
            out.append(hp)
    return out


def test_knobs_are_validated_with_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"search_growth=0\.5 is invalid: must be a finite number >= 1"):
        A.Config(search_rule="range", search_growth=0.5)
    with pytest.raises(ValueError, match=r"search_start=0\.0 is invalid: must be a finite number > 0"):
        A.Config(search_rule="range", search_start=0.0)
    with pytest.raises(ValueError, match=r"search_rule='fast' is invalid: must be one of none, range"):
        A.Config(search_rule="fast")
