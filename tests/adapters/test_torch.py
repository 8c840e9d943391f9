"""The PyTorch front door: AdaptiveScheduler over the same core as the JAX and NumPy paths."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from streams import as_float, config_for, f32_at_most, random_stream, run_numpy

import adaptive_sched as A

torch = pytest.importorskip("torch")

from adaptive_sched.adapters.torch import FORMAT_VERSION, AdaptiveScheduler  # noqa: E402

QUICKSTART = dict(
    lr_rule="trend",
    momentum_rule="none",
    reward_rule="trend",
    ema_reward_beta=0.9,
    min_lr=1e-6,
    max_lr=5e-4,
)

# Every lr, momentum, reward and KL rule appears at least once.
DIFF_COMBOS = [
    ("none", "none", "none", "none"),
    ("loss_decay", "inverse", "scaling", "none"),
    ("trend", "exp", "trend", "target"),
    ("variance", "relative", "variance", "none"),
    ("grad_norm", "normalized", "none", "target"),
    ("cyclical", "relative", "trend", "target"),
]

# Host synchronisation points of a tensor that observe() must not touch in device mode.
SYNC_METHODS = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "tolist", "numpy", "__array__")


def one_param(value: float = 0.0) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.full((2,), value))


def tensor_opt(lr: float = 1e-3) -> torch.optim.Optimizer:
    """An optimizer device mode can drive: tensor lr and tensor betas[0]."""
    return torch.optim.Adam(
        [one_param()], lr=torch.tensor(lr), betas=(torch.tensor(0.9), torch.tensor(0.999))
    )


@contextmanager
def no_host_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every way of moving a tensor's value to the host raises inside this block."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("host synchronisation during observe()")

    with monkeypatch.context() as m:
        for name in SYNC_METHODS:
            m.setattr(torch.Tensor, name, boom)
        yield


def with_tensors(sig: A.Signals, every: int, t: int) -> A.Signals:
    """Pass some signals as 0-d tensors (every other step), the rest as Python numbers."""
    if t % every:
        return sig
    return A.Signals(*(None if v is None else torch.tensor(v, dtype=torch.float64) for v in sig))


# ----------------------------------------------------------------------------- construction


def test_seed_quickstart_call_works_and_moves_lr_with_reward() -> None:
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    sched = AdaptiveScheduler(optimizer, **QUICKSTART)
    assert sched.config.base_lr == 5e-5 and sched.config.max_lr == 5e-4
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    lrs = []
    for t in range(40):
        model(torch.ones(3, 4)).sum().backward()
        optimizer.step()
        sched.observe(loss=None, R=float(t), model=None)  # steadily improving reward
        optimizer.zero_grad()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == 5e-5 < lrs[1] < lrs[-1]  # the first reward has nothing to compare with
    assert all(1e-6 <= v <= 5e-4 for v in lrs)
    assert optimizer.param_groups[0]["lr"] == lrs[-1]
    assert optimizer.param_groups[0]["initial_lr"] == 5e-5  # torch's contract, a mirror
    assert sched.last_epoch == 40


def test_config_object_is_taken_as_is_and_sets_group_lrs_proportionally() -> None:
    p1, p2 = one_param(), one_param()
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.5}], lr=1.0)
    sched = AdaptiveScheduler(opt, A.Config(base_lr=1e-2))
    assert sched.base_lrs == [1e-2, 5e-3]
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 5e-3] == sched.get_last_lr()


def test_constructor_errors_are_clear() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3)
    with pytest.raises(TypeError, match="not both"):
        AdaptiveScheduler(opt, A.Config(), lr_rule="trend")
    with pytest.raises(TypeError, match=r"'lr_rul'.*valid Config fields are: lr_rule"):
        AdaptiveScheduler(opt, lr_rul="trend")
    with pytest.raises(ValueError, match="lr_rule='sideways'"):
        AdaptiveScheduler(opt, lr_rule="sideways")
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\]=0.001"):
        AdaptiveScheduler(opt, min_lr=1e-2)  # the optimizer's lr is below min_lr
    with pytest.raises(TypeError, match="Optimizer"):
        AdaptiveScheduler(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expects an adaptive_sched\.Config"):
        AdaptiveScheduler(opt, {"lr_rule": "trend"})  # type: ignore[arg-type]


def test_base_momentum_defaults_to_the_optimizers_momentum() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3, momentum=0.8)
    assert AdaptiveScheduler(opt, momentum_rule="relative").config.base_momentum == 0.8
    assert AdaptiveScheduler(opt, momentum_rule="relative", base_momentum=0.5).config.base_momentum == 0.5


# ----------------------------------------------------------------------------- one implementation


def reference_jax(cfg: A.Config, stream: list[A.Signals]) -> tuple[np.ndarray, np.ndarray]:
    jax = pytest.importorskip("jax")
    step = jax.jit(A.update)
    state = A.init(cfg, xp=jax.numpy)
    lr, mom = [], []
    for sig in stream:  # None -> NaN keeps one trace; both mean "not observed"
        state, hp = step(state, A.Signals(*(math.nan if v is None else v for v in sig)))
        lr.append(as_float(hp.lr))
        mom.append(as_float(hp.momentum))
    return np.array(lr), np.array(mom)


def through_adapter(cfg: A.Config, stream: list[A.Signals], device_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    if device_mode:
        opt = tensor_opt(float(cfg.base_lr))
    else:
        opt = torch.optim.SGD([one_param()], lr=float(cfg.base_lr), momentum=0.5)
    sched = AdaptiveScheduler(opt, cfg, device_mode=device_mode)
    group = opt.param_groups[0]
    lr, mom = [], []
    for t, sig in enumerate(stream):
        s = with_tensors(sig, 2, t)
        sched.observe(loss=s.loss, R=s.reward, grad_norm=s.grad_norm, kl=s.kl)
        sched.optimizer.step()  # the controller advances once per optimizer step
        lr.append(float(group["lr"]))
        assert float(sched.get_last_lr()[0]) == lr[-1]
        if cfg.momentum_rule == "none":
            mom.append(float(sched.hparams.momentum))
            untouched = group["betas"][0] if device_mode else group["momentum"]
            assert untouched == (torch.tensor(0.9) if device_mode else 0.5)
        else:
            mom.append(float(sched.hparams.momentum))
            written = float(group["betas"][0] if device_mode else group["momentum"])
            assert written == pytest.approx(max(mom[-1], 1e-6), rel=1e-6)  # never switched off in a driven group (momentum policy)
    return np.array(lr), np.array(mom)


@pytest.mark.parametrize("combo", DIFF_COMBOS, ids="-".join)
def test_jax_numpy_and_both_torch_modes_give_the_same_hparams(combo: tuple[str, str, str, str]) -> None:
    cfg = config_for(combo)
    # random_stream mixes NaN, +-inf, 3e38, 1e-40, 0, negatives and None into a noisy stream;
    # the constant and huge tails check the degenerate cases.
    stream = random_stream(3, 50, hostile=0.25)
    stream += [A.Signals(2.0, -1.0, 0.5, 0.1)] * 8 + [A.Signals(1e30, -1e30, 1e30, 1e-30)] * 4
    lr_j, mom_j = reference_jax(cfg, stream)
    lr_n, mom_n = run_numpy(cfg, stream)
    lr_d, mom_d = through_adapter(cfg, stream, device_mode=True)
    lr_h, mom_h = through_adapter(cfg, stream, device_mode=False)
    # float32 paths (JAX, NumPy, torch device) agree to float32 rounding ...
    for lr, mom in ((lr_n, mom_n), (lr_d, mom_d)):
        np.testing.assert_allclose(lr, lr_j, rtol=1e-5)
        np.testing.assert_allclose(mom, mom_j, rtol=1e-5, atol=1e-7)
    # ... and host mode computes in float32 too: the same numbers as device mode, bit for bit
    # (host mode writes Python floats holding the float32 values).
    np.testing.assert_allclose(lr_h, lr_j, rtol=2e-5)
    np.testing.assert_allclose(mom_h, mom_j, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(lr_h.astype(np.float32), lr_d.astype(np.float32))
    np.testing.assert_array_equal(mom_h.astype(np.float32), mom_d.astype(np.float32))
    lo, hi = np.float32(cfg.min_lr), np.float32(cfg.max_lr)  # the bounds as float32 values
    assert np.all(np.isfinite(lr_h)) and np.all(lr_h >= lo) and np.all(lr_h <= hi)


def test_all_none_rules_are_the_identity_bit_for_bit() -> None:
    opt = torch.optim.SGD([one_param()], lr=3e-4, momentum=0.7)
    sched = AdaptiveScheduler(opt)
    for t in range(5):
        sched.observe(loss=float(t), R=-float(t), grad_norm=1.0, kl=0.3)
        assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["momentum"] == 0.7


# ----------------------------------------------------------------------------- device mode


@pytest.mark.parametrize(
    "combo",
    [("trend", "exp", "trend", "target"), ("grad_norm", "relative", "scaling", "none"), ("cyclical", "none", "variance", "none")],
    ids="-".join,
)
def test_device_mode_observe_and_step_never_sync(monkeypatch: pytest.MonkeyPatch, combo: tuple[str, ...]) -> None:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(
        model.parameters(), lr=torch.tensor(1e-3), betas=(torch.tensor(0.9), torch.tensor(0.999))
    )
    sched = AdaptiveScheduler(opt, config_for(combo), device_mode=True)
    lr_tensor, beta_tensor = opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]
    x = torch.randn(8, 3)
    for t in range(12):
        loss = model(x).pow(2).mean()
        loss.backward()  # outside the block: autograd may do what it likes
        opt.step()
        with no_host_sync(monkeypatch):
            # tensor signals (with grad), Python numbers, None, NaN and a grad norm from the model
            sched.observe(loss=loss, R=float(t % 3), model=model, kl=torch.tensor(math.nan) if t % 4 == 0 else None)
            sched.step()  # no-op here, and must not sync either
        opt.zero_grad()
    assert opt.param_groups[0]["lr"] is lr_tensor  # updated in place
    assert opt.param_groups[0]["betas"][0] is beta_tensor
    assert float(lr_tensor) == float(sched.get_last_lr()[0]) == float(sched.hparams.lr)
    assert int(sched.controller_state.step) == 12
    with no_host_sync(monkeypatch):
        opt.step()
        sched.step()  # step()'s signal-less update: no sync either
    assert int(sched.controller_state.step) == 13


def test_the_sync_guard_catches_host_mode_item(monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard above is able to fail: host mode reads a tensor signal with .item().
    sched = AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), lr_rule="trend")
    with no_host_sync(monkeypatch), pytest.raises(AssertionError, match="host synchronisation"):
        sched.observe(loss=torch.tensor(1.0))


def test_device_mode_requires_tensor_hyperparameters_on_the_parameters_device() -> None:
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\]=0.001 is a Python number"):
        AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), device_mode=True)
    opt = torch.optim.SGD([one_param()], lr=torch.tensor(1e-3), momentum=0.9)
    AdaptiveScheduler(opt, device_mode=True)  # fine without a momentum rule
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['momentum'\] to be a tensor"):
        AdaptiveScheduler(opt, momentum_rule="inverse", device_mode=True)
    meta = torch.optim.SGD([one_param()], lr=torch.tensor(1e-3))
    meta.param_groups[0]["lr"] = torch.empty((), device="meta")  # torch's checks would read it
    with pytest.raises(ValueError, match="is on meta but the parameters are on cpu"):
        AdaptiveScheduler(meta, device_mode=True)


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_tensor_lr_of_a_fused_optimizer_is_updated_in_place(device_mode: bool) -> None:
    p = one_param(1.0)
    opt = torch.optim.Adam([p], lr=torch.tensor(1e-2), fused=True)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=1.0, device_mode=device_mode)
    lr = opt.param_groups[0]["lr"]
    for _ in range(3):
        p.grad = torch.ones_like(p)
        opt.step()
        sched.observe(loss=1.0)
    assert opt.param_groups[0]["lr"] is lr and isinstance(lr, torch.Tensor)
    assert float(lr) == pytest.approx(1e-2 / 8, rel=1e-6)  # eta / (1 + k*1) per observed loss of 1
    expected = [1e-2 / 8] if not device_mode else [torch.tensor(1e-2 / 8)]
    assert [float(v) for v in sched.get_last_lr()] == pytest.approx([float(v) for v in expected], rel=1e-6)


# ----------------------------------------------------------------------------- momentum


def test_momentum_written_for_sgd_and_adamw_betas0() -> None:
    sgd = torch.optim.SGD([one_param()], lr=1e-3, momentum=0.9)
    adamw = torch.optim.AdamW([one_param()], lr=1e-3)
    s1 = AdaptiveScheduler(sgd, momentum_rule="inverse")
    s2 = AdaptiveScheduler(adamw, momentum_rule="inverse")
    for s in (s1, s2):
        s.observe(loss=1.0)  # inverse: 1 - 1/(1+1) = 0.5
    assert sgd.param_groups[0]["momentum"] == pytest.approx(0.5)
    betas = adamw.param_groups[0]["betas"]
    assert type(betas) is tuple and betas[0] == pytest.approx(0.5) and betas[1] == 0.999


def test_tensor_betas_are_updated_in_place_in_host_mode() -> None:
    opt = tensor_opt()
    b0 = opt.param_groups[0]["betas"][0]
    AdaptiveScheduler(opt, momentum_rule="exp", momentum_a=1.0).observe(loss=2.0)
    assert opt.param_groups[0]["betas"][0] is b0 and float(b0) == pytest.approx(1 - math.exp(-2.0), rel=1e-6)


def test_momentum_untouched_without_a_momentum_rule() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3, momentum=0.95)
    sched = AdaptiveScheduler(opt, lr_rule="trend")
    for t in range(5):
        sched.observe(loss=5.0 - t)
    assert opt.param_groups[0]["momentum"] == 0.95


@pytest.mark.parametrize("opt_cls", [torch.optim.Adagrad, torch.optim.Rprop])
def test_optimizer_without_momentum_warns_once_and_gets_no_new_key(opt_cls: type) -> None:
    opt = opt_cls([one_param()], lr=1e-2)
    keys = set(opt.param_groups[0])
    with pytest.warns(UserWarning, match="no 'momentum' or 'betas'") as record:
        sched = AdaptiveScheduler(opt, momentum_rule="inverse", lr_rule="trend")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warnings
        for t in range(5):
            sched.observe(loss=3.0 - t)
            sched.step()
    assert len(record) == 1
    assert set(opt.param_groups[0]) == keys | {"initial_lr"}  # torch's scheduler contract, no momentum key


# ----------------------------------------------------------------------------- param groups


def test_groups_stay_proportional_and_bounds_scale_with_them() -> None:
    p1, p2 = one_param(), one_param()
    opt = torch.optim.SGD([{"params": [p1], "lr": 1e-3}, {"params": [p2], "lr": 1e-4}])
    sched = AdaptiveScheduler(opt, lr_rule="trend", trend_up=2.0, max_lr=4e-3)
    for t in range(6):  # improving loss: lr doubles until it hits max_lr
        sched.observe(loss=10.0 - t)
        sched.optimizer.step()  # the controller advances once per optimizer step
        lr0, lr1 = (g["lr"] for g in opt.param_groups)
        assert lr1 / lr0 == pytest.approx(0.1, rel=1e-6)  # group 0: the float32 lr; others: base * scale
    assert lr0 == f32_at_most(4e-3) and lr1 == pytest.approx(4e-4, rel=1e-6)  # max_lr as a float32 inside it
    assert sched.base_lrs == [1e-3, 1e-4]
    assert [g["initial_lr"] for g in opt.param_groups] == [1e-3, 1e-4]


def test_added_param_group_is_adopted_with_its_own_base_lr() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=1.0)
    sched.observe(loss=1.0)
    opt.add_param_group({"params": [one_param()], "lr": 1e-2})
    sched.observe(loss=1.0)
    assert sched.base_lrs == [1e-3, 1e-2]
    assert opt.param_groups[1]["lr"] / opt.param_groups[0]["lr"] == pytest.approx(10.0, rel=1e-6)


# ----------------------------------------------------------------------------- step() / observe()


def drive(order: str, stream: list[A.Signals], cfg: A.Config) -> tuple[list[float], AdaptiveScheduler]:
    p = one_param(1.0)
    opt = torch.optim.SGD([p], lr=float(cfg.base_lr))
    sched = AdaptiveScheduler(opt, cfg)
    lrs = []
    for sig in stream:
        p.grad = torch.ones_like(p)
        if order == "observe_before_optimizer":
            sched.observe(loss=sig.loss, R=sig.reward)
            lrs.append(opt.param_groups[0]["lr"])  # the lr this optimizer step uses
            opt.step()
            sched.step()
            continue
        else:
            opt.step()
            if order == "observe_then_step":
                sched.observe(loss=sig.loss, R=sig.reward)
                sched.step()
            elif order == "step_then_observe":
                sched.step()
                sched.observe(loss=sig.loss, R=sig.reward)
            elif order == "step_only":  # transformers.Trainer; accelerate may call step() once per process
                sched.step()
                sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs, sched


def core_run(cfg: A.Config, stream: list[A.Signals]) -> list[float]:
    state = A.init(cfg, xp=A.host)
    out = []
    for sig in stream:
        state, hp = A.update(state, sig)
        out.append(hp.lr)
    return out


def test_step_and_observe_advance_the_controller_once_per_optimizer_step() -> None:
    cfg = config_for(("cyclical", "none", "trend", "none"))
    stream = [A.Signals(loss=s.loss, reward=s.reward) for s in random_stream(1, 30, hostile=0.1)]
    expected = core_run(cfg, stream)
    for order in ("observe_then_step", "step_then_observe"):
        lrs, sched = drive(order, stream, cfg)
        assert lrs == expected, order
        assert sched.controller_state.step == len(stream)
    # Trainer-style: no observe at all, one signal-less update per optimizer step.
    lrs, sched = drive("step_only", stream, cfg)
    assert lrs == core_run(cfg, [A.Signals()] * len(stream))
    assert sched.controller_state.step == len(stream)
    # observe() before optimizer.step(): its update replaces the previous step()'s, so
    # optimizer step k uses the core's k-th lr; step() adds one update after the last one.
    lrs, sched = drive("observe_before_optimizer", stream, cfg)
    assert lrs == expected
    assert sched.controller_state.step == len(stream) + 1


def test_trainer_style_loop_logs_lr_and_step_epoch_is_the_closed_form() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = AdaptiveScheduler(opt, lr_rule="cyclical", cycle_length=4.0)
    logged = []
    for _ in range(8):  # what transformers.Trainer does per optimizer step
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        sched.step()
        model.zero_grad()
        last = sched.get_last_lr()[0]
        logged.append(last.item() if torch.is_tensor(last) else last)
    assert logged[:4] == logged[4:] and len(set(logged)) == 4  # one cycle per 4 optimizer steps
    assert sched.get_lr() == sched.get_last_lr()
    sched.get_last_lr().append(1.0)  # a copy: the scheduler is not affected
    assert len(sched.get_last_lr()) == 1
    step = sched.controller_state.step
    with pytest.warns(UserWarning, match=r"step\(epoch\) is deprecated"):
        sched.step(3)  # torch's deprecated form (old SequentialLR passes 0): no controller update
    assert sched.last_epoch == 3 and sched.controller_state.step == step


# ----------------------------------------------------------------------------- signals


def test_hostile_signals_never_corrupt_the_optimizer() -> None:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    sched = AdaptiveScheduler(opt, lr_rule="grad_norm", momentum_rule="relative", reward_rule="scaling",
                              kl_rule="target", min_lr=1e-5, max_lr=1e-1)
    hostile = [None, math.nan, math.inf, -math.inf, 1e300, -1e300, 10**400, 1e-300, -5.0, 0.0,
               torch.tensor(math.nan), torch.tensor(float("inf"))]
    for t in range(60):
        v = hostile[t % len(hostile)]
        model(torch.ones(4, 3)).sum().backward()
        opt.step()
        sched.observe(loss=v, R=hostile[(t * 7) % len(hostile)], grad_norm=hostile[(t * 5) % len(hostile)], kl=v)
        opt.zero_grad()
        g = opt.param_groups[0]
        assert math.isfinite(g["lr"]) and 1e-5 <= g["lr"] <= 1e-1
        assert math.isfinite(g["momentum"]) and 0.0 <= g["momentum"] <= np.float32(0.999)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sched.controller_state.skipped > 0


def test_bad_signal_types_raise_clear_errors() -> None:
    sched = AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), lr_rule="trend")
    with pytest.raises(TypeError, match=r"observe\(loss=...\) must be None, a number or a one-element tensor"):
        sched.observe(loss="0.5")
    with pytest.raises(ValueError, match=r"observe\(R=...\) must be a scalar, got a tensor of shape \(3,\)"):
        sched.observe(R=torch.ones(3))
    before = sched.state_dict()
    sched.observe(loss=torch.tensor([2.0], requires_grad=True))  # one element, with grad: fine
    assert sched.controller_state.step == before["controller"]["step"] + 1


def test_grad_norm_from_model_only_when_the_rule_reads_it() -> None:
    model = torch.nn.Linear(3, 2)
    model(torch.randn(5, 3)).pow(2).sum().backward()
    expected = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
    a = AdaptiveScheduler(torch.optim.SGD(model.parameters(), lr=1e-3), lr_rule="grad_norm", ema_beta=0.0)
    b = AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), lr_rule="grad_norm", ema_beta=0.0)
    a.observe(model=model)
    b.observe(grad_norm=expected)
    assert a.controller_state.grad_norm == b.controller_state.grad_norm
    assert a.controller_state.grad_norm.ref == pytest.approx(expected, rel=1e-6)

    class NoParams(torch.nn.Module):
        def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
            raise AssertionError("parameters() read although the lr rule does not use the grad norm")

    AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), lr_rule="trend").observe(loss=1.0, model=NoParams())


def test_model_without_gradients_warns_once_and_is_not_observed() -> None:
    model = torch.nn.Linear(2, 2)
    sched = AdaptiveScheduler(torch.optim.SGD(model.parameters(), lr=1e-3), lr_rule="grad_norm")
    with pytest.warns(UserWarning, match="before optimizer.zero_grad"):
        sched.observe(model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.observe(model=model)
    assert sched.controller_state.grad_norm.decay_pow == 1.0  # never observed
    assert sched.get_last_lr() == [1e-3]


# ----------------------------------------------------------------------------- checkpoints


def roundtrip(obj: Any) -> Any:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def make_run(device_mode: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer, AdaptiveScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    lr = torch.tensor(1e-2) if device_mode else 1e-2
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=device_mode or None)
    sched = AdaptiveScheduler(opt, lr_rule="trend", reward_rule="scaling", trend_up=1.05, trend_down=0.9,
                              min_lr=1e-4, max_lr=1e-1, device_mode=device_mode)
    return model, opt, sched


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: AdaptiveScheduler,
          steps: range, order: str) -> list[float]:
    lrs = []
    for t in steps:
        g = torch.Generator().manual_seed(t)
        x = torch.randn(16, 4, generator=g)
        y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(16, 1, generator=g)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if order == "step_then_observe":
            sched.step()
        sched.observe(loss=loss.detach(), R=math.sin(t / 5))
        if order == "observe_then_step":
            sched.step()
        opt.zero_grad()
        lrs.append(float(opt.param_groups[0]["lr"]))
    return lrs


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("order", ["observe_then_step", "step_then_observe"])
def test_resume_at_step_50_of_100_is_identical(device_mode: bool, order: str) -> None:
    model, opt, sched = make_run(device_mode)
    full = train(model, opt, sched, range(100), order)
    final = [p.detach().clone() for p in model.parameters()]

    model, opt, sched = make_run(device_mode)
    first = train(model, opt, sched, range(50), order)
    ckpt = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()})
    del model, opt, sched

    model, opt, sched = make_run(device_mode)  # fresh objects, then restore
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    rest = train(model, opt, sched, range(50, 100), order)
    assert first + rest == full
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), final))


def test_checkpoint_between_step_and_observe_resumes_exactly() -> None:
    def fresh() -> tuple[torch.optim.Optimizer, AdaptiveScheduler]:
        p = one_param(1.0)
        opt = torch.optim.SGD([p], lr=1e-2)
        return opt, AdaptiveScheduler(opt, lr_rule="trend", trend_up=1.5, trend_down=0.5)

    opt, sched = fresh()
    for t in range(5):
        opt.step()
        sched.step()
        sched.observe(loss=10.0 - t)
    opt.step()
    sched.step()  # provisional: a following observe() replaces it
    sd = roundtrip(sched.state_dict())
    assert sd["advanced_this_step"] and sd["provisional_from"] is not None
    opt2, sched2 = fresh()
    sched2.load_state_dict(sd)
    for s in (sched, sched2):
        s.observe(loss=1.0)
        s.step()  # already advanced: no-op
    assert sched2.state_dict()["controller"] == sched.state_dict()["controller"]
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 1.5**5, rel=1e-6)


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_state_dict_holds_only_plain_values_and_tensors(device_mode: bool) -> None:
    _, _opt, sched = make_run(device_mode)
    sched.observe(loss=1.0, R=0.2)

    def plain(x: Any) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str, torch.Tensor))

    sd = sched.state_dict()
    assert plain(sd) and sd["format_version"] == FORMAT_VERSION
    assert sd["mode"] == ("device" if device_mode else "host")
    loaded = roundtrip(sd)  # weights_only=True
    sched.load_state_dict(loaded)


def test_checkpoint_moves_between_host_and_device_mode() -> None:
    cfg = config_for(("trend", "exp", "trend", "target"))
    stream = random_stream(8, 40, hostile=0.1)
    host = AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3, momentum=0.5), cfg)
    for s in stream[:20]:
        host.observe(s.loss, s.reward, None, s.grad_norm, s.kl)
        host.optimizer.step()  # the controller advances once per optimizer step
    dev = AdaptiveScheduler(tensor_opt(), cfg, device_mode=True)
    dev.load_state_dict(roundtrip(host.state_dict()))
    assert float(dev.optimizer.param_groups[0]["lr"]) == pytest.approx(host.get_last_lr()[0], rel=1e-6)
    back = AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3, momentum=0.5), cfg)
    for s in stream[20:]:
        for sched in (host, dev):
            sched.observe(s.loss, s.reward, None, s.grad_norm, s.kl)
            sched.optimizer.step()  # the controller advances once per optimizer step
    back.load_state_dict(roundtrip(dev.state_dict()))
    for sched in (dev, back):
        assert float(sched.get_last_lr()[0]) == pytest.approx(host.get_last_lr()[0], rel=2e-5)
        assert float(sched.hparams.momentum) == pytest.approx(host.hparams.momentum, rel=2e-5)


def snapshot(opt: torch.optim.Optimizer, sched: AdaptiveScheduler) -> Any:
    return (
        repr(opt.state_dict()),
        repr(sched.state_dict()),
        sched.get_last_lr(),
        sched.base_lrs,
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda sd: sd["controller"].update({"config.lr_rule": "variance"}), "lr_rule: checkpoint 'variance'"),
        (lambda sd: sd["controller"].update({"config.trend_up": 1.5}), "trend_up: checkpoint 1.5"),
        (lambda sd: sd["controller"].update({"config.base_lr": 2e-2}), "build the scheduler before"),
        (lambda sd: sd.update({"base_lrs": [1e-2, 1e-3]}), "for 2 param groups but the optimizer has 1"),
        (lambda sd: sd.update({"format_version": FORMAT_VERSION + 1}), "written by a newer version"),
        (lambda sd: sd.pop("hparams"), r"missing \['hparams'\]"),
        (lambda sd: sd["controller"].pop("loss.mean"), "invalid controller entry"),
        (lambda sd: sd.update({"mode": "gpu"}), "mode='gpu' is invalid"),
    ],
    ids=["rule", "knob", "base_lr", "groups", "future", "missing", "controller", "mode"],
)
def test_failed_load_raises_and_changes_nothing(change: Callable[[dict[str, Any]], Any], match: str) -> None:
    model, opt, sched = make_run(False)
    train(model, opt, sched, range(3), "observe_then_step")
    sd = roundtrip(sched.state_dict())
    train(model, opt, sched, range(3, 5), "observe_then_step")
    before = snapshot(opt, sched)
    change(sd)
    with pytest.raises(ValueError, match=match):
        sched.load_state_dict(sd)
    assert snapshot(opt, sched) == before
    with pytest.raises(ValueError, match="not an AdaptiveScheduler state dict"):
        sched.load_state_dict({"last_epoch": 3, "base_lrs": [1e-3]})  # a torch LRScheduler's dict


# ----------------------------------------------------------------------------- packaging


def test_adapter_imports_and_runs_where_jax_cannot_be_imported() -> None:
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoJax(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("jax", "jaxlib", "optax"):
                    raise ImportError(f"{name} is blocked in this test")
                return None

        sys.meta_path.insert(0, NoJax())
        try:
            import jax
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker does not work")

        import torch
        import adaptive_sched.adapters.torch
        from adaptive_sched import AdaptiveScheduler

        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=torch.tensor(1e-2), momentum=0.0)
        for device_mode in (False, True):
            s = AdaptiveScheduler(opt, lr_rule="trend", reward_rule="trend", device_mode=device_mode)
            for t in range(3):
                p.grad = torch.ones(2)
                opt.step()
                s.step()
                s.observe(loss=1.0 / (t + 1), R=float(t))
            s.load_state_dict(s.state_dict())
        assert not any(m.split(".")[0] in ("jax", "jaxlib", "optax") for m in sys.modules), sorted(sys.modules)
        print("OK", float(s.get_last_lr()[0]) > 1e-2)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK True"


@pytest.mark.parametrize("device_mode", [False, True])
def test_first_optimizer_step_already_follows_warmup_and_cycles(device_mode: bool) -> None:
    # The first optimizer.step() runs before any observe(): it must not run at the
    # full base lr when warmup is configured (nor anywhere but max_lr for SGDR).
    p = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(1e-2) if device_mode else 1e-2
    sched = AdaptiveScheduler(torch.optim.SGD([p], lr=lr), warmup_steps=4.0, device_mode=device_mode)
    assert float(sched.get_last_lr()[0]) == pytest.approx(2.5e-3)
    assert int(sched.controller_state.step) == 0  # a peek, not an update
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    sched = AdaptiveScheduler(opt, lr_rule="cyclical", min_lr=1e-5, max_lr=1e-1, cycle_length=10.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-1)


def test_grad_norm_rule_without_its_signal_warns_once() -> None:
    import warnings

    import adaptive_sched
    from adaptive_sched._recommended import RANGE_TEST_RULES

    # lr_rule="grad_norm" (the range-test configuration's guard) reads the gradient norm as its signal
    grad_norm_config = adaptive_sched.Config(base_lr=0.1, **RANGE_TEST_RULES)

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, grad_norm_config)
    with pytest.warns(UserWarning, match=r"lr_rule='grad_norm' reads the gradient norm.*model=model"):
        sched.observe(loss=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.observe(loss=1.0)  # once per scheduler
        model(torch.ones(3)).sum().backward()
        other = AdaptiveScheduler(opt, grad_norm_config)
        other.observe(loss=1.0, model=model)
        other.observe(loss=1.0, grad_norm=2.0)
        AdaptiveScheduler(opt, lr_rule="trend").observe(loss=1.0)  # no rule reads it


def test_grad_norm_passed_as_none_is_a_choice_not_a_missing_signal() -> None:
    """``grad_norm=None`` (by keyword or position) says "not observed this step": no advice to pass model=."""
    import warnings

    import adaptive_sched
    from adaptive_sched._recommended import RANGE_TEST_RULES

    grad_norm_config = adaptive_sched.Config(base_lr=0.1, **RANGE_TEST_RULES)  # lr_rule="grad_norm"

    opt = torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdaptiveScheduler(opt, grad_norm_config).observe(loss=1.0, grad_norm=None)
        AdaptiveScheduler(opt, grad_norm_config).observe(1.0, None, None, None)
    sched = AdaptiveScheduler(opt, grad_norm_config)
    sched.observe(loss=1.0, grad_norm=None)
    with pytest.warns(UserWarning, match=r"neither grad_norm= nor model="):
        sched.observe(loss=1.0)  # the advice still comes when the signal is left out


def test_config_mismatch_hint_only_when_base_lr_came_from_the_optimizer() -> None:
    import adaptive_sched

    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1e-2)
    saved = AdaptiveScheduler(opt, adaptive_sched.recommended(1e-2)).state_dict()
    with pytest.raises(ValueError, match=r"base_lr: checkpoint 0\.01 vs scheduler 0\.02") as info:
        AdaptiveScheduler(opt, adaptive_sched.recommended(2e-2)).load_state_dict(saved)
    assert "build the scheduler before" not in str(info.value)  # base_lr was given: the hint would mislead


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_bool_signals_are_refused(device_mode: bool) -> None:
    lr = torch.tensor(0.1) if device_mode else 0.1
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr)
    sched = AdaptiveScheduler(opt, lr_rule="trend", base_lr=0.1, device_mode=device_mode)
    for bad in (True, torch.tensor(False)):
        with pytest.raises(TypeError, match=r"observe\(loss=\.\.\.\) must be"):
            sched.observe(loss=bad)
    assert sched.controller_state.step == 0  # refused before any update


def test_repr_is_a_few_readable_lines_and_the_readme_says_what_to_read() -> None:
    sched = AdaptiveScheduler(torch.optim.AdamW([one_param()], lr=5e-5), lr_rule="trend", reward_rule="trend",
                              min_lr=1e-6, max_lr=5e-4)  # fmt: skip
    text = repr(sched)
    assert text.count("\n") <= 6 and len(text) < 400, text
    assert "Config(lr_rule='trend', reward_rule='trend', base_lr=5e-05, min_lr=1e-06)" in text
    assert "AdamW" in text and "host" in text
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart: PyTorch", 1)[1].split("\n## ", 1)[0]
    for name in ("sched.hparams", "sched.controller_state", "sched.config", "sched.get_last_lr()"):
        assert name in section, name
    assert "optimizer lr" not in text
    # New-user finding: once something else changed the group's lr, repr still showed only the controller's lr
    sched.optimizer.param_groups[0]["lr"] = 2e-4
    sched.observe(loss=1.0)
    text = repr(sched)
    assert "optimizer lr (group 0): " in text and "changed by another scheduler or by hand" in text, text


# ----------------------------------------------------------------------------- one update per optimizer step


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_gradient_accumulation_micro_steps_fold_into_one_update_per_optimizer_step(device_mode: bool) -> None:
    # Found in a real loop: observe() on each of 4 micro-steps advanced the controller 12 times over 3 steps.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    lr = torch.tensor(1e-2) if device_mode else 1e-2
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(torch.tensor(0.9), torch.tensor(0.999)))
    cfg = A.Config(lr_rule="trend", reward_rule="trend", base_lr=1e-2, trend_up=1.2, trend_down=0.8)
    sched = AdaptiveScheduler(opt, cfg, device_mode=device_mode)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    per_step: list[list[float]] = []
    for _ in range(3):
        losses = []
        for k in range(4):  # micro-steps
            loss = torch.nn.functional.mse_loss(model(x[16 * k : 16 * (k + 1)]), y[16 * k : 16 * (k + 1)]) / 4
            loss.backward()
            losses.append(float(loss))
            sched.observe(loss=loss, R=math.nan if k == 1 else float(k))  # one reward is not finite
        per_step.append(losses)
        opt.step()
        opt.zero_grad()
    assert int(sched.controller_state.step) == 3 and sched.last_epoch == 3
    # the core, one update per optimizer step, fed each signal's mean over its finite micro-step values
    expected = A.init(cfg, xp=A.host)
    for losses in per_step:
        expected, hp = A.update(expected, A.Signals(loss=sum(losses) / 4, reward=(0.0 + 2.0 + 3.0) / 3))
    assert float(sched.hparams.lr) == pytest.approx(float(hp.lr), rel=1e-5)
    assert int(sched.controller_state.skipped) == int(expected.skipped) == 0  # the NaN was averaged away


def test_a_second_observe_in_one_step_joins_the_first_instead_of_advancing_again() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3)
    cfg = A.Config(lr_rule="trend", reward_rule="scaling", base_lr=1e-3)
    sched = AdaptiveScheduler(opt, cfg)
    sched.observe(loss=2.0)
    sched.observe(R=0.5)  # logged apart, same optimizer step
    assert int(sched.controller_state.step) == 1
    _, hp = A.update(A.init(cfg, xp=A.host), A.Signals(loss=2.0, reward=0.5))
    assert sched.hparams.lr == hp.lr
    opt.step()
    sched.observe(loss=1.0, R=0.25)
    assert int(sched.controller_state.step) == 2


def test_observe_without_optimizer_steps_warns_once_that_it_folds() -> None:
    opt = torch.optim.SGD([one_param()], lr=1e-3)
    sched = AdaptiveScheduler(opt, lr_rule="trend")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(100):
            sched.observe(loss=1.0 / (t + 1))
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and re.search(r"called 64 times since the last optimizer step.*fold into one update", texts[0])
    assert int(sched.controller_state.step) == 1


def test_device_mode_compiled_agrees_with_eager_and_dispatches_few_ops() -> None:
    from torch.profiler import profile

    with pytest.raises(ValueError, match=r"compile=True\) needs device_mode=True"):
        AdaptiveScheduler(torch.optim.SGD([one_param()], lr=1e-3), A.recommended(1e-3), compile=True)
    rng = np.random.default_rng(0)
    stream = [(float(2 - t / 40 + 0.05 * rng.normal()), float(0.2 + 0.3 * rng.normal())) for t in range(40)]
    lrs, ops = {}, {}
    for compiled in (False, True):
        opt = torch.optim.SGD([one_param()], lr=torch.tensor(1e-3))
        sched = AdaptiveScheduler(opt, A.recommended(1e-3), device_mode=True, compile=compiled)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for loss, cos in stream:
                opt.step()
                sched.observe(loss=torch.tensor(loss), grad_norm=torch.tensor(1.0), grad_cos=torch.tensor(cos))
        assert not [str(w.message) for w in caught if "Dynamo" in str(w.message)]  # nothing the compiler objects to
        lrs[compiled] = float(sched.get_last_lr()[0])
        signals = {k: torch.tensor(v) for k, v in (("loss", 1.0), ("grad_norm", 1.0), ("grad_cos", 0.1))}
        opt.step()
        with profile() as prof:
            sched._advance([signals["loss"], None, signals["grad_norm"], None, signals["grad_cos"]], "observe")
        ops[compiled] = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    assert lrs[True] == pytest.approx(lrs[False], rel=1e-5)
    assert ops[False] > 300 and ops[True] <= 50, ops  # the core's update alone: one compiled kernel
