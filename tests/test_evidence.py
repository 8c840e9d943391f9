"""The evidence rule (``recommended()``) and its signal ``grad_cos``: by hand, through every door, no harm."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_sched as A

SQRT_HALF = math.sqrt(0.5)


def _diag_value(opt_state: Any, name: str) -> float:
    return float(A.optax.diagnostics(opt_state)[name])


# ----------------------------------------------------------------------------- the signal, by hand


def test_grad_cos_on_a_two_step_toy_is_the_hand_computation_optax() -> None:
    cfg = A.recommended(0.1)
    tx = A.optax.inject_hyperparams(optax.sgd, cfg)()
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.array([1.0, 0.0])}, state, params, value=1.0)
    assert _diag_value(state, "lr.evidence/cos_samples") == 0.0  # no previous step: undefined, held
    _, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params, value=0.9)
    # the previous update went along -[1, 0]; cos([1, 1], [1, 0]) = 1/sqrt(2), whatever the lr
    assert _diag_value(state, "lr.evidence/cos_samples") == 1.0
    assert _diag_value(state, "lr.evidence/mean_cos") == pytest.approx(SQRT_HALF, rel=1e-6)


def test_scale_by_controller_sees_no_gradients_so_it_says_it_computes_no_grad_cos() -> None:
    tx = optax.chain(optax.sgd(0.1), A.optax.scale_by_controller(A.recommended(0.1)))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    with pytest.warns(UserWarning, match=r"cannot compute grad_cos.*inject_hyperparams, or pass grad_cos="):
        _, state = tx.update({"w": jnp.array([1.0, 0.0])}, state, params, value=1.0)
    _, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params, value=1.0)
    assert _diag_value(state, "lr.evidence/cos_samples") == 0.0
    _, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params, value=1.0, grad_cos=0.5)  # fed by hand
    assert _diag_value(state, "lr.evidence/mean_cos") == pytest.approx(0.5)


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_grad_cos_on_a_two_step_toy_is_the_hand_computation_torch(device_mode: bool) -> None:
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=torch.tensor(0.1) if device_mode else 0.1)
    sched = A.AdaptiveScheduler(opt, A.recommended(0.1), device_mode=device_mode)
    for g, loss in (([1.0, 0.0], 1.0), ([1.0, 1.0], 0.9)):
        p.grad = torch.tensor(g)
        opt.step()
        sched.observe(loss=loss)
    d = sched.diagnostics()
    assert float(d["lr.evidence/cos_samples"]) == 1.0
    assert float(d["lr.evidence/mean_cos"]) == pytest.approx(SQRT_HALF, rel=1e-6)


@pytest.mark.parametrize(
    ("opt_name", "kwargs"),
    [("AdamW", {"weight_decay": 0.1}), ("Adam", {}), ("Adam", {"amsgrad": True}), ("SGD", {"momentum": 0.9}),
     ("SGD", {})],
)  # fmt: skip
def test_the_direction_read_from_the_optimizer_state_equals_an_explicit_copy(opt_name: str, kwargs: Any) -> None:
    torch = pytest.importorskip("torch")
    from adaptive_sched.adapters.torch import direction

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = getattr(torch.optim, opt_name)(model.parameters(), lr=1e-2, **kwargs)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    previous: dict[Any, Any] = {}
    applied = None
    for _ in range(6):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        cos, norm = direction(opt, previous)
        g = torch.cat([q.grad.flatten() for q in model.parameters()])
        assert float(norm) == pytest.approx(float(g.norm()), rel=1e-5)
        if applied is None:
            assert cos is None  # no previous step: not observed (and not counted as a skipped signal)
        else:  # the update the optimizer applied last step, copied explicitly
            assert float(cos) == pytest.approx(float(g @ -applied / (g.norm() * applied.norm())), abs=1e-5)
        before = [q.detach().clone() for q in model.parameters()]
        opt.step()
        applied = torch.cat([(q.detach() - b).flatten() for q, b in zip(model.parameters(), before)])


def test_zero_and_nan_gradients_hold_or_cut_and_never_leave_the_bounds() -> None:
    cfg = A.recommended(0.1)
    tx = A.optax.inject_hyperparams(optax.sgd, cfg)()
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    step = jax.jit(lambda s, g: tx.update({"w": g}, s, params, value=1.0)[1])
    for _ in range(30):
        state = step(state, jnp.zeros(3))  # cos undefined: nothing but the warm start moves the lr
    assert _diag_value(state, "lr.evidence/cos_samples") == 0.0
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(0.1, rel=1e-6)
    lrs = []
    for _ in range(5):
        state = step(state, jnp.array([jnp.nan, 1.0, 1.0]))  # not finite: x0.5 each time, down to min_lr
        lrs.append(float(optax.tree.get(state, "learning_rate")))
    assert lrs == pytest.approx([0.05, 0.025, 0.0125, 0.00625, 0.003125], rel=1e-5)
    assert int(A.optax.diagnostics(state)["lr.evidence/event"]) == 1 + A.rules.evidence.EVENTS.index("cut_not_finite")


def test_bf16_params_get_a_float32_lr_and_a_finite_direction() -> None:
    cfg = A.recommended(1e-2)
    tx = A.optax.inject_hyperparams(optax.adam, cfg)()
    params = {"w": jnp.ones(4, jnp.bfloat16)}
    state = tx.init(params)
    for k in range(4):
        grads = {"w": jnp.asarray([1.0, -0.5, 0.25, 1.0 + k], jnp.bfloat16)}
        updates, state = tx.update(grads, state, params, value=1.0)
        params = optax.apply_updates(params, updates)
    assert params["w"].dtype == jnp.bfloat16
    lr = optax.tree.get(state, "learning_rate")
    assert lr.dtype == jnp.float32 and math.isfinite(float(lr))
    assert _diag_value(state, "lr.evidence/cos_samples") == 3.0


# ----------------------------------------------------------------------------- the rule


def _run(stream: list[A.Signals], cfg: A.Config) -> list[float]:
    state, out = A.init(cfg, xp=A.host), []
    for sig in stream:
        state, hp = A.update(state, sig)
        out.append(float(hp.lr))
    return out


def test_warm_start_then_growth_at_the_promised_rate_while_the_steps_agree() -> None:
    # the docstring: base/4 first, base after 10 more updates, then at most 5% per update: 10x in about 46
    base = 1e-3
    lrs = _run([A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.5) for t in range(120)], A.recommended(base))
    assert lrs[0] == pytest.approx(base * 0.25, rel=1e-5) and lrs[10] == pytest.approx(base, rel=1e-5)
    ten = next(t for t, lr in enumerate(lrs) if lr >= 10 * base)
    assert 10 + 40 <= ten <= 10 + 52
    assert all(b >= a for a, b in itertools.pairwise(lrs))


def test_a_user_warmup_replaces_the_warm_start() -> None:
    flat = [A.Signals(loss=1.0, grad_norm=1.0, grad_cos=0.0)] * 60
    # with warmup_steps the lr is the warmup's linear ramp, t / warmup_steps, not that times the warm start
    lrs = _run(flat, A.recommended(1e-3, warmup_steps=20))
    assert lrs[0] == pytest.approx(1e-3 / 20, rel=1e-5) and lrs[9] == pytest.approx(1e-3 / 2, rel=1e-5)
    assert lrs[19] == pytest.approx(1e-3, rel=1e-5)
    lrs = _run(flat, A.recommended(1e-3))  # without: base/4, then base after 10 more updates
    assert lrs[0] == pytest.approx(1e-3 / 4, rel=1e-5) and lrs[10] == pytest.approx(1e-3, rel=1e-5)


def test_a_stalled_loss_never_moves_the_lr() -> None:
    # the absence of progress is no evidence: a flat, noisy loss with an undecided direction keeps base_lr
    rng = np.random.default_rng(0)
    stream = [A.Signals(loss=1.0 + 0.01 * rng.normal(), grad_norm=1.0, grad_cos=0.05 * rng.normal()) for _ in range(400)]
    lrs = _run(stream, A.recommended(1e-3))
    assert lrs[-1] == pytest.approx(1e-3, rel=1e-6) and min(lrs[10:]) == pytest.approx(1e-3, rel=1e-6)


def test_reversal_cuts_and_a_warmup_is_respected() -> None:
    lrs = _run([A.Signals(loss=1.0, grad_norm=1.0, grad_cos=-0.5)] * 40, A.recommended(1e-3))
    assert lrs[-1] < 1e-3 * 0.7**3  # several reversal cuts, each after min_samples fresh readings
    warm = A.recommended(1e-3, warmup_steps=50)
    lrs = _run([A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.6) for t in range(80)], warm)
    assert max(lrs[:50]) <= 1e-3 * (1 + 1e-6)  # no growth through the warmup
    assert lrs[-1] > 1e-3  # growth after it


def test_in_rl_only_non_finite_values_cut_and_nothing_grows() -> None:
    stream = [A.Signals(loss=-0.1 * t, reward=0.1 * t, kl=0.01, grad_norm=1.0, grad_cos=c) for t, c in
              zip(range(60), [0.8] * 30 + [-0.8] * 30)]  # fmt: skip
    lrs = _run(stream, A.recommended(1e-3))
    assert lrs == pytest.approx([1e-3] * 60, rel=1e-6)  # no warm start either: nothing judges the lr there


def test_in_rl_the_horizons_cooldown_waits_but_one_started_by_hand_does_not() -> None:
    # The bench's RL tasks ended worse than constant lr with the horizon's decay (rl-length x0.1: -13.8%).
    rl = [A.Signals(loss=-0.01 * t, reward=0.01 * t, grad_norm=1.0, grad_cos=0.0) for t in range(40)]
    assert _run(rl, A.recommended(1e-3, total_steps=40)) == pytest.approx([1e-3] * 40, rel=1e-6)
    state = A.init(A.recommended(1e-3), xp=A.host)
    lrs = []
    for t, sig in enumerate(rl):
        if t == 20:
            state = A.start_cooldown(state, 10)
        state, hp = A.update(state, sig)
        lrs.append(float(hp.lr))
    assert lrs[19] == pytest.approx(1e-3) and lrs[29] == pytest.approx(1e-5) and lrs[24] < 1e-3
    # supervised: the horizon's decay runs as before
    sup = [A.Signals(loss=1.0 + 0.01 * (-1) ** t, grad_norm=1.0, grad_cos=0.0) for t in range(40)]
    assert _run(sup, A.recommended(1e-3, total_steps=40))[-1] == pytest.approx(1e-5, rel=1e-5)


def test_the_diagnostics_name_a_run_far_above_its_base_and_one_at_min_lr_while_improving() -> None:
    events = A.rules.evidence.EVENTS
    state = A.init(A.recommended(1e-3), xp=A.host)
    for t in range(80):
        state, _ = A.update(state, A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.9))
    assert A.diagnostics(state)["lr.evidence/event"] == 1 + events.index("far_above_base_lr")
    state = A.init(A.recommended(1e-3, min_lr=2e-4), xp=A.host)
    for t in range(60):
        state, _ = A.update(state, A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=-0.9))
    assert A.diagnostics(state)["lr.evidence/event"] == 1 + events.index("min_lr_while_improving")


# ----------------------------------------------------------------------------- no harm: the linear regression


def _linreg(lr: float, cfg: A.Config | None, shuffle: bool, epochs: int = 20) -> float:
    """8 features, raw targets (variance 8), AdamW(wd 1e-4), zero init, batch 32 of 512 rows; held-out MSE."""
    rs = np.random.RandomState(0)
    x = rs.randn(640, 8).astype(np.float32)
    w = rs.randn(8)
    y = (x @ (w * np.sqrt(8 / (w @ w)))).astype(np.float32)
    order = np.stack([rs.permutation(512) if shuffle else np.arange(512) for _ in range(epochs)]).reshape(-1, 32)
    if cfg is None:
        tx = optax.adamw(lr, weight_decay=1e-4)
    else:
        tx = A.optax.inject_hyperparams(optax.adamw, cfg)(weight_decay=1e-4)

    def loss(p: Any, xb: Any, yb: Any) -> Any:
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def step(carry: Any, idx: Any) -> Any:
        p, s = carry
        v, g = jax.value_and_grad(loss)(p, xj[idx], yj[idx])
        u, s = tx.update(g, s, p, value=v)
        return (optax.apply_updates(p, u), s), None

    p0 = {"w": jnp.zeros(8), "b": jnp.zeros(())}
    (p, _), _ = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), jnp.asarray(order)))(p0, tx.init(p0))
    return float(loss(p, x[512:], y[512:]))


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("lr", [3e-3, 3e-2, 1.0])
def test_the_linear_regression_ends_no_worse_than_constant_adamw(lr: float, shuffle: bool) -> None:
    # Failing first: the range test + slope test ended at 6.3 (shuffled, 3e-3) against constant's 1.55.
    constant = _linreg(lr, None, shuffle)
    for total in (None, 320):
        ours = _linreg(lr, A.recommended(lr, total_steps=total), shuffle)
        assert ours <= max(constant * 1.02, constant + 0.01), (total, ours, constant)


def test_the_linear_regression_through_the_torch_adapter_ends_no_worse_than_constant() -> None:
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(0)
    x = torch.tensor(rs.randn(640, 8), dtype=torch.float32)
    w = rs.randn(8)
    y = x @ torch.tensor(w * np.sqrt(8 / (w @ w)), dtype=torch.float32)
    results = {}
    for name in ("constant", "recommended"):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = A.AdaptiveScheduler(opt, A.recommended(3e-3)) if name == "recommended" else None
        gen = torch.Generator().manual_seed(1)
        for _ in range(20):
            for idx in torch.randperm(512, generator=gen).reshape(-1, 32):
                loss = torch.nn.functional.mse_loss(model(x[idx]).squeeze(-1), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.observe(loss=loss)
        with torch.no_grad():
            results[name] = float(torch.nn.functional.mse_loss(model(x[512:]).squeeze(-1), y[512:]))
    assert results["recommended"] <= max(results["constant"] * 1.02, results["constant"] + 0.01), results


def test_the_torch_adapter_warns_once_when_the_lr_ends_far_above_its_base() -> None:
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1e-3)
    sched = A.AdaptiveScheduler(opt, A.recommended(1e-3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(80):
            p.grad = torch.ones(2)  # the same direction every step: the steps agree
            opt.step()
            sched.observe(loss=1.0 / (t + 1))
    texts = [str(w.message) for w in caught if "far_above_base_lr" in str(w.message)]
    assert len(texts) == 1 and "base_lr was likely far too low" in texts[0]
    assert sched.get_last_lr()[0] > 10 * 1e-3


def test_large_tensors_estimate_the_direction_on_a_sample_close_to_the_exact_one(monkeypatch: Any) -> None:
    torch = pytest.importorskip("torch")
    import adaptive_sched.adapters.torch as adapter

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Tanh(), torch.nn.Linear(512, 4))  # 131k weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    x, y = torch.randn(64, 256), torch.randn(64, 4)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        sampled, norm = adapter.direction(opt, {})
        monkeypatch.setattr(adapter, "_SAMPLE", 1 << 40)
        exact, exact_norm = adapter.direction(opt, {})
        monkeypatch.setattr(adapter, "_SAMPLE", 1 << 15)
        assert float(norm) == float(exact_norm)  # the norm is never sampled
        if exact is not None:
            assert float(sampled) == pytest.approx(float(exact), abs=0.02)  # well inside the rule's 0.1 dead zone
        opt.step()


def test_growth_is_given_back_on_a_noise_floor_but_never_below_base() -> None:
    # Grown on agreeing steps, then a flat noisy loss with steps that lean back: the excess goes, base_lr stays.
    rng = np.random.default_rng(0)
    grow = [A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.8) for t in range(60)]
    floor = [A.Signals(loss=0.02 + 0.001 * float(rng.normal()), grad_norm=1.0, grad_cos=-0.05) for _ in range(200)]
    lrs = _run(grow + floor, A.recommended(1e-3))
    assert lrs[59] > 5e-3  # grew
    assert min(lrs[60:]) >= 1e-3 * (1 - 1e-6) and lrs[-1] == pytest.approx(1e-3, rel=1e-5)  # back to base_lr, not below
    # a loss still falling keeps the growth, and so do steps that still agree
    falling = [A.Signals(loss=0.02 * 0.99**t, grad_norm=1.0, grad_cos=-0.05) for t in range(100)]
    got = _run(grow + falling, A.recommended(1e-3))
    assert min(got[60:]) >= lrs[59] * (1 - 1e-6)
    agreeing = [A.Signals(loss=0.02 + 0.001 * float(rng.normal()), grad_norm=1.0, grad_cos=0.05) for _ in range(100)]
    got = _run(grow + agreeing, A.recommended(1e-3))
    assert min(got[60:]) >= lrs[59] * (1 - 1e-6)


def test_the_smoothed_loss_follows_a_fast_fall_to_a_flat_floor() -> None:
    # Reported by a new user: after a fast fall the winsorised loss EMA stopped following (4.5 against a loss of
    # 1e-5), because its clip bound shrank with the noise while the level still lagged. A lasting shift is not a spike.
    for head in ([9.0 * 0.7**t for t in range(30)], [9.0 + 0.01 * (-1) ** t for t in range(20)]):
        state = A.init(A.recommended(1e-3), xp=A.host)
        for x in head + [1e-4] * 100:
            state, _ = A.update(state, A.Signals(loss=x, grad_norm=1.0, grad_cos=0.0))
        d = A.diagnostics(state)
        assert float(d["lr.evidence/smoothed_loss"]) < 2e-4 and float(d["lr.evidence/slow_loss"]) < 0.1
    # a single spike is still winsorised: it does not make the loss "rise"
    state = A.init(A.recommended(1e-3), xp=A.host)
    spiky = [1.0 + 0.01 * (-1) ** t for t in range(40)]
    spiky[30] = 50.0
    lrs = []
    for x in spiky:
        state, hp = A.update(state, A.Signals(loss=x, grad_norm=1.0, grad_cos=0.0))
        lrs.append(float(hp.lr))
    assert float(A.diagnostics(state)["lr.evidence/smoothed_loss"]) < 1.1
    assert min(lrs[30:]) == pytest.approx(1e-3, rel=1e-5)  # no cut
