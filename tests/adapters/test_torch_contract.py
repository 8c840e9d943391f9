"""AdaptiveScheduler against torch's own conventions: momentum per optimizer, huge signals,
poisoned checkpoints, and the LRScheduler contract (composition, copies, param groups)."""

from __future__ import annotations

import copy
import io
import math
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A

torch = pytest.importorskip("torch")

from streams import f32_at_most, state_leaves  # noqa: E402

from adaptive_sched._core import SIGNAL_LIMIT  # noqa: E402
from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402

lr_scheduler = torch.optim.lr_scheduler


def params(n: int = 1) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(2)) for _ in range(n)]


def train_step(opt: torch.optim.Optimizer) -> None:
    """One optimizer step on a made-up gradient (LBFGS needs a closure)."""
    ps = [p for g in opt.param_groups for p in g["params"]]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum((p * p).sum() for p in ps)
        loss.backward()
        return loss

    if isinstance(opt, torch.optim.LBFGS):
        opt.step(closure)
    else:
        closure()
        opt.step()


def momentum_of(group: dict[str, Any]) -> float | None:
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


# ----------------------------------------------------------------------------- momentum policy

# (optimizer factory, driven by a momentum rule?)
OPTIMIZERS: dict[str, tuple[Callable[[list[Any]], torch.optim.Optimizer], bool]] = {
    "sgd-momentum": (lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9), True),
    "sgd-plain": (lambda p: torch.optim.SGD(p, lr=1e-2), False),
    "sgd-nesterov": (lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True), True),
    "rmsprop": (lambda p: torch.optim.RMSprop(p, lr=1e-3), False),
    "rmsprop-momentum": (lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5), True),
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-3), True),
    "adamw": (lambda p: torch.optim.AdamW(p, lr=1e-3), True),
    "adagrad": (lambda p: torch.optim.Adagrad(p, lr=1e-2), False),
    "lbfgs": (lambda p: torch.optim.LBFGS(p, lr=0.1, max_iter=2), False),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_momentum_rule_drives_only_groups_with_momentum_and_never_switches_it_off(name: str) -> None:
    make, driven = OPTIMIZERS[name]
    opt = make(params())
    keys = set(opt.param_groups[0])
    start = momentum_of(opt.param_groups[0])
    # base_momentum=0 and a zero loss ask for momentum 0; a loss of 3 for 0.75 ("inverse").
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sched = AdaptiveScheduler(opt, momentum_rule="inverse", base_momentum=0.0, ema_beta=0.0)
    undriven_warnings = [w for w in record if "momentum_rule='inverse'" in str(w.message)]
    assert len(undriven_warnings) == (0 if driven else 1), [str(w.message) for w in record]
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at construction, not per step
        for loss in (0.0, 3.0, 0.0, 3.0, 0.0):
            train_step(opt)  # RMSprop used to raise KeyError: 'momentum_buffer' here
            sched.observe(loss=loss)
            sched.step()
            seen.append(momentum_of(opt.param_groups[0]))
    assert set(opt.param_groups[0]) == keys | {"initial_lr"}  # no momentum key added
    if not driven:
        assert seen == [start] * len(seen)
        return
    assert max(seen) == pytest.approx(0.75)  # the rule moves it
    assert min(seen) > 0.0  # never switched off (nesterov / RMSprop's buffer need it on)
    if "momentum" in opt.param_groups[0]:
        hp = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "initial_lr")}
        type(opt)(params(), **hp)  # torch's constructor accepts the state the rule left


def test_momentum_policy_applies_per_group_and_to_added_groups() -> None:
    p1, p2, p3 = params(3)
    opt = torch.optim.SGD([{"params": [p1], "momentum": 0.9}, {"params": [p2]}], lr=1e-2)
    with pytest.warns(UserWarning, match=r"param_groups \[1\]"):
        sched = AdaptiveScheduler(opt, momentum_rule="inverse", ema_beta=0.0)
    opt.add_param_group({"params": [p3], "momentum": 0.5})
    sched.observe(loss=1.0)
    sched.optimizer.step()  # the controller advances once per optimizer step
    assert [g["momentum"] for g in opt.param_groups] == [pytest.approx(0.5), 0.0, pytest.approx(0.5)]
    sched.observe(loss=3.0)
    sched.optimizer.step()  # the controller advances once per optimizer step
    assert [g["momentum"] for g in opt.param_groups] == [pytest.approx(0.75), 0.0, pytest.approx(0.75)]


# ----------------------------------------------------------------------------- huge values


def tensor_adam(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.Adam(params(), lr=torch.tensor(lr), betas=(torch.tensor(0.9), torch.tensor(0.999)))


HUGE = [
    ("float", lambda: 1e40),
    ("neg-float", lambda: -1e40),
    ("numpy-float64", lambda: np.float64(1e40)),
    ("float64-tensor", lambda: torch.tensor(1e40, dtype=torch.float64)),
    ("float64-tensor-1d", lambda: torch.tensor([-3e300], dtype=torch.float64)),
    ("float32-tensor", lambda: torch.tensor(3e38, dtype=torch.float32)),
    ("just-above-limit", lambda: SIGNAL_LIMIT + 3e7),  # above 1e15, below the next float32
]


@pytest.mark.parametrize("make", [m for _, m in HUGE], ids=[n for n, _ in HUGE])
def test_huge_finite_signals_are_clipped_and_observed_in_both_modes(make: Callable[[], Any]) -> None:
    outcomes = []
    for device_mode in (False, True):
        opt = tensor_adam() if device_mode else torch.optim.Adam(params(), lr=1e-3)
        sched = AdaptiveScheduler(opt, lr_rule="trend", reward_rule="scaling", ema_beta=0.0,
                                  device_mode=device_mode)
        sched.observe(loss=make(), R=make())
        st = sched.controller_state
        outcomes.append((int(st.skipped), float(st.loss.ref), float(st.reward.ref), float(st.loss.decay_pow),
                         state_leaves(st), float(sched.hparams.lr)))
    (skip_h, loss_h, rew_h, pow_h, *rest_h), (skip_d, loss_d, rew_d, pow_d, *rest_d) = outcomes
    assert skip_h == skip_d == 0  # observed, not dropped
    assert pow_h == pow_d == 0.0  # ema_beta=0: one observation
    # observed as the clipped limit, a float32 value, in both modes: same state and lr bit for bit
    assert abs(loss_h) == float(np.float32(SIGNAL_LIMIT)) and loss_d == loss_h
    assert rew_d == rew_h and rest_h == rest_d


def test_non_finite_signals_are_skipped_alike_in_both_modes() -> None:
    for device_mode in (False, True):
        opt = tensor_adam() if device_mode else torch.optim.Adam(params(), lr=1e-3)
        sched = AdaptiveScheduler(opt, lr_rule="trend", device_mode=device_mode)
        for v in (math.inf, -math.inf, math.nan, torch.tensor(math.inf, dtype=torch.float64), 10**400):
            sched.observe(loss=v)
            sched.optimizer.step()  # the controller advances once per optimizer step
        assert int(sched.controller_state.skipped) == 5, device_mode
        assert float(sched.controller_state.loss.decay_pow) == 1.0


def test_complex_signals_are_rejected_clearly_in_both_modes() -> None:
    for device_mode in (False, True):
        opt = tensor_adam() if device_mode else torch.optim.Adam(params(), lr=1e-3)
        sched = AdaptiveScheduler(opt, lr_rule="trend", device_mode=device_mode)
        with pytest.raises(TypeError, match=r"observe\(loss=...\).*complex"):
            sched.observe(loss=torch.tensor(1 + 2j))


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

_any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # every float64, huge and tiny included
    st.floats(min_value=3e38, max_value=1e308),  # above float32's range
    st.floats(max_value=-3e38, min_value=-1e308),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e15, 1e-45]),
)
_signal = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["py", "np64", "t64", "t32"]), _any_float),
)


def _as_signal(spec: Any) -> Any:
    if spec is None:
        return None
    kind, v = spec
    if kind == "py":
        return v
    if kind == "np64":
        return np.float64(v)
    return torch.tensor(v, dtype=torch.float64 if kind == "t64" else torch.float32)


@hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    combo=st.tuples(st.sampled_from(A.LR_RULES), st.sampled_from(A.MOMENTUM_RULES),
                    st.sampled_from(A.REWARD_RULES), st.sampled_from(A.KL_RULES)),
    stream=st.lists(st.tuples(_signal, _signal, _signal, _signal), min_size=1, max_size=20),
)
def test_property_host_and_device_stay_in_bounds_never_raise_and_classify_alike(
    combo: tuple[str, str, str, str], stream: list[tuple[Any, ...]]
) -> None:
    cfg = A.Config(lr_rule=combo[0], momentum_rule=combo[1], reward_rule=combo[2], kl_rule=combo[3],
                   base_lr=1e-3, min_lr=1e-5, max_lr=1e-1, min_momentum=0.1, max_momentum=0.99,
                   base_momentum=0.9, cycle_length=5.0, trend_up=1.5, trend_down=0.5)
    scheds = [
        AdaptiveScheduler(torch.optim.SGD(params(), lr=1e-3, momentum=0.9), cfg),
        AdaptiveScheduler(torch.optim.SGD(params(), lr=torch.tensor(1e-3), momentum=torch.tensor(0.9)), cfg,
                          device_mode=True),
    ]
    lo, hi = float(np.float32(cfg.min_lr)) * (1 - 1e-6), float(np.float32(cfg.max_lr)) * (1 + 1e-6)
    for spec in stream:
        for s in scheds:
            loss, r, gn, kl = (_as_signal(x) for x in spec)
            s.observe(loss=loss, R=r, grad_norm=gn, kl=kl)
            s.optimizer.step()  # the controller advances once per optimizer step
            g = s.optimizer.param_groups[0]
            lr, mom = float(g["lr"]), float(g["momentum"])
            assert math.isfinite(lr) and lo <= lr <= hi, (s.device_mode, lr)
            assert math.isfinite(mom) and 0.1 * (1 - 1e-6) <= mom <= 0.99 * (1 + 1e-6), (s.device_mode, mom)
    host, dev = (s.controller_state for s in scheds)
    assert int(host.skipped) == int(dev.skipped)  # same input, same outcome: observed or not
    for name in ("loss", "reward", "grad_norm", "kl"):
        assert float(getattr(dev, name).decay_pow) == pytest.approx(float(getattr(host, name).decay_pow), rel=1e-5)


# ----------------------------------------------------------------------------- poisoned checkpoints


def roundtrip(obj: Any) -> Any:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def make_sched(device_mode: bool) -> tuple[torch.optim.Optimizer, AdaptiveScheduler]:
    if device_mode:
        opt = torch.optim.SGD(params(), lr=torch.tensor(1e-2), momentum=torch.tensor(0.9))
    else:
        opt = torch.optim.SGD(params(), lr=1e-2, momentum=0.9)
    sched = AdaptiveScheduler(opt, lr_rule="trend", momentum_rule="relative", min_lr=1e-4, max_lr=1e-1,
                              device_mode=device_mode)
    for t in range(4):
        train_step(opt)
        sched.observe(loss=5.0 - t)
    return opt, sched


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(sd: dict[str, Any]) -> None:
        *outer, last = path.split("/")
        d = sd
        for k in outer:
            d = d[k]
        d[last] = value(d[last]) if callable(value) else value

    return change


POISON = {
    "lr-nan": (_set("hparams/lr", math.nan), r"hparams\['lr'\]"),
    "lr-above-max": (_set("hparams/lr", 0.5), r"hparams\['lr'\]=0.5"),
    "lr-below-min": (_set("hparams/lr", 1e-6), r"hparams\['lr'\]"),
    "lr-str": (_set("hparams/lr", "0.01"), r"hparams\['lr'\]"),
    "momentum-5": (_set("hparams/momentum", 5.0), r"hparams\['momentum'\]=5.0"),
    "lr-scale-inf": (_set("hparams/lr_scale", math.inf), r"hparams\['lr_scale'\]"),
    "lr-scale-inconsistent": (_set("hparams/lr_scale", lambda v: v * 0.5), r"disagree"),
    "base-lr-nan": (_set("base_lrs", [math.nan]), r"base_lrs\[0\]"),
    "base-lr-str": (_set("base_lrs", ["0.01"]), r"base_lrs\[0\]"),
    "log-scale-nan": (_set("controller/log_scale", math.nan), "log_scale"),
    "log-scale-huge": (_set("controller/log_scale", 1e6), "log_scale"),
    "controller-momentum-5": (_set("controller/current_momentum", 5.0), "current_momentum"),
    "step-negative": (_set("controller/step", -3), "'step'"),
    "step-float": (_set("controller/step", 2.5), "'step'"),
    "skipped-bool": (_set("controller/skipped", True), "'skipped'"),
    "ema-mean-inf": (_set("controller/loss.mean", math.inf), r"loss\.mean"),
    "ema-var-negative": (_set("controller/loss.var", -1.0), r"loss\.var"),
    "ema-pow-2": (_set("controller/loss.decay_pow", 2.0), r"loss\.decay_pow"),
    "ema-ref-complex": (_set("controller/loss.ref", 1 + 1j), r"loss\.ref"),
    "no-provisional-ok": (_set("provisional_from", None), None),  # a valid change: loads
}


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("name", list(POISON))
def test_poisoned_state_dict_is_refused_naming_the_entry_and_changes_nothing(name: str, device_mode: bool) -> None:
    change, match = POISON[name]
    opt, sched = make_sched(device_mode)
    sd = roundtrip(sched.state_dict())
    train_step(opt)
    sched.observe(loss=7.0)
    before = (repr(opt.state_dict()), repr(sched.state_dict()), [float(v) for v in sched.get_last_lr()])
    change(sd)
    if match is None:
        sched.load_state_dict(sd)
        return
    with pytest.raises(ValueError, match=match):
        sched.load_state_dict(sd)
    assert (repr(opt.state_dict()), repr(sched.state_dict()), [float(v) for v in sched.get_last_lr()]) == before


def test_poisoned_tensor_entries_are_refused_too() -> None:
    _, sched = make_sched(True)
    sd = sched.state_dict()
    sd["controller"]["log_scale"] = torch.tensor(math.nan)
    with pytest.raises(ValueError, match="log_scale"):
        sched.load_state_dict(sd)
    sd = sched.state_dict()
    sd["controller"]["step"] = torch.tensor(3.0)  # a float tensor where an int32 counter belongs
    with pytest.raises(ValueError, match="'step'"):
        sched.load_state_dict(sd)
    sd = sched.state_dict()
    sd["hparams"]["lr"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"hparams\['lr'\]"):
        sched.load_state_dict(sd)


def test_state_dict_still_loads_with_weights_only_and_keeps_its_version() -> None:
    _, sched = make_sched(False)
    sd = roundtrip(sched.state_dict())
    assert sd["format_version"] == 2 and sd["last_epoch"] == sched.last_epoch == 4
    opt2 = torch.optim.SGD(params(), lr=1e-2, momentum=0.9)
    sched2 = AdaptiveScheduler(opt2, sched.config)
    sched2.load_state_dict(sd)
    assert sched2.last_epoch == 4 and sched2.get_last_lr() == sched.get_last_lr()
    v1 = {k: v for k, v in sd.items() if k not in ("last_epoch", "step_count")} | {"format_version": 1}
    sched3 = AdaptiveScheduler(torch.optim.SGD(params(), lr=1e-2, momentum=0.9), sched.config)
    sched3.load_state_dict(v1)  # a format-1 checkpoint still loads
    assert sched3.last_epoch == 4 and sched3.get_last_lr() == sched.get_last_lr()


# ----------------------------------------------------------------------------- LRScheduler contract


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_constructor_sets_initial_lr_last_epoch_and_step_count(tensor_lr: bool) -> None:
    lr = torch.tensor(0.1) if tensor_lr else 0.1
    opt = torch.optim.SGD([{"params": params()}, {"params": params(), "lr": 0.01}], lr=lr)
    sched = AdaptiveScheduler(opt, lr_rule="trend")
    assert [float(g["initial_lr"]) for g in opt.param_groups] == pytest.approx([0.1, 0.01])
    assert sched.last_epoch == 0 and sched._step_count == 1
    for t in range(3):
        train_step(opt)
        sched.step()
        assert sched.last_epoch == t + 1
    train_step(opt)
    sched.observe(loss=1.0)
    sched.step()  # already advanced by observe(): one controller update, one count
    assert sched.last_epoch == 4 == int(sched.controller_state.step)
    sched._step_count += 1  # what accelerate's AcceleratedScheduler does under gradient accumulation


LINEAR = {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 3}


def run_sequential(order: str, steps: int = 7, **cfg: Any) -> list[float]:
    opt = torch.optim.SGD(params(), lr=0.1)
    if order == "linear-first":
        warm = lr_scheduler.LinearLR(opt, **LINEAR)
        sched = AdaptiveScheduler(opt, **cfg)
    else:
        sched = AdaptiveScheduler(opt, **cfg)
        warm = lr_scheduler.LinearLR(opt, **LINEAR)
    seq = lr_scheduler.SequentialLR(opt, [warm, sched], milestones=[3])
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        train_step(opt)
        seq.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert seq.get_last_lr() == [lrs[-1]]
    return lrs


@pytest.mark.parametrize("order", ["linear-first", "adaptive-first"])
def test_sequential_lr_starts_the_adaptive_phase_from_the_base_lr(order: str) -> None:
    lrs = run_sequential(order)
    assert lrs == pytest.approx([0.01, 0.04, 0.07, 0.1, 0.1, 0.1, 0.1, 0.1], rel=1e-12)
    # warmup then the clock-driven cyclical rule, which starts its cycle at max_lr
    lrs = run_sequential(order, lr_rule="cyclical", cycle_length=100.0, min_lr=1e-3, max_lr=0.2)
    assert lrs[:3] == pytest.approx([0.01, 0.04, 0.07], rel=1e-12)
    # step 1 of the cycle: max_lr, as the float32 value the controller computes in (rounded inward)
    assert lrs[3] == lrs[4] == f32_at_most(0.2) and lrs[4] > lrs[5] > lrs[6]


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_chained_scheduler_with_the_identity_leaves_the_other_untouched(device_mode: bool) -> None:
    opt = torch.optim.SGD(params(), lr=torch.tensor(0.1) if device_mode else 0.1)
    chain = lr_scheduler.ChainedScheduler(
        [lr_scheduler.ExponentialLR(opt, 0.9), AdaptiveScheduler(opt, device_mode=device_mode)]
    )
    lrs = []
    for _ in range(4):
        train_step(opt)
        chain.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
    assert lrs == pytest.approx([0.1 * 0.9**k for k in range(1, 5)], rel=1e-6 if device_mode else 1e-12)


def test_chained_scheduler_multiplies() -> None:
    # with a rule, the two factors multiply: loss_decay with k=1 and a loss of 1 halves the lr
    opt = torch.optim.SGD(params(), lr=0.1)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=1.0, min_lr=1e-6)
    chain = lr_scheduler.ChainedScheduler([lr_scheduler.ExponentialLR(opt, 0.9), sched])
    for k in range(1, 4):
        train_step(opt)
        chain.step()
        sched.observe(loss=1.0)  # replaces step()'s signal-less update for this optimizer step
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9**k * 0.5**k, rel=1e-9)
        assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def test_user_change_of_the_lr_is_kept_as_a_factor() -> None:
    opt = torch.optim.SGD(params(), lr=0.1)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=1.0, min_lr=1e-6)
    sched.observe(loss=1.0)
    sched.optimizer.step()  # the controller advances once per optimizer step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    opt.param_groups[0]["lr"] = 0.01  # e.g. a manual lr drop
    sched.observe(loss=1.0)
    sched.optimizer.step()  # the controller advances once per optimizer step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005, rel=1e-12)


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_deepcopy_and_pickle_give_independent_working_schedulers(device_mode: bool) -> None:
    lr = torch.tensor(0.1) if device_mode else 0.1
    opt = torch.optim.Adam(params(), lr=lr, betas=(torch.tensor(0.9), torch.tensor(0.999)) if device_mode else (0.9, 0.999))
    sched = AdaptiveScheduler(opt, lr_rule="trend", momentum_rule="relative", device_mode=device_mode)
    for t in range(3):
        train_step(opt)
        sched.step()
        sched.observe(loss=3.0 - t)
    copies = [copy.deepcopy(sched), pickle.loads(pickle.dumps(sched))]
    for c in copies:
        assert c.optimizer is not opt
        assert repr(c.state_dict()) == repr(sched.state_dict())
    for s in [sched, *copies]:
        for t in range(3):
            train_step(s.optimizer)
            s.step()  # one update per optimizer step: needs the step hook on *its* optimizer
            s.step()
            s.observe(loss=float(t))
    for c in copies:
        assert repr(c.state_dict()) == repr(sched.state_dict())
        assert int(c.controller_state.step) == 6 == c.last_epoch
        assert float(c.optimizer.param_groups[0]["lr"]) == float(opt.param_groups[0]["lr"])


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_get_last_lr_has_one_entry_per_group_of_the_groups_own_type(device_mode: bool) -> None:
    opt = torch.optim.SGD(params(), lr=torch.tensor(0.1))
    sched = AdaptiveScheduler(opt, lr_rule="trend", device_mode=device_mode)
    last = sched.get_last_lr()
    assert len(last) == 1 and isinstance(last[0], torch.Tensor) and float(last[0]) == pytest.approx(0.1)
    assert last[0] is not opt.param_groups[0]["lr"]
    opt.add_param_group({"params": params(), "lr": torch.tensor(0.01)})
    last = sched.get_last_lr()
    assert len(last) == 2 and all(isinstance(v, torch.Tensor) for v in last)
    assert [float(v) for v in last] == pytest.approx([0.1, 0.01])
    if not device_mode:
        opt2 = torch.optim.SGD(params(), lr=0.1)
        s2 = AdaptiveScheduler(opt2)
        opt2.add_param_group({"params": params(), "lr": 0.01})
        assert s2.get_last_lr() == [0.1, 0.01] and all(type(v) is float for v in s2.get_last_lr())


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_float32_tensor_lr_at_max_lr_constructs(device_mode: bool) -> None:
    opt = torch.optim.Adam(params(), lr=torch.tensor(1e-3))
    sched = AdaptiveScheduler(opt, lr_rule="trend", max_lr=1e-3, device_mode=device_mode)
    assert sched.config.base_lr == 1e-3 and sched.base_lrs == [1e-3]
    assert float(opt.param_groups[0]["lr"]) == f32_at_most(1e-3)  # base_lr == max_lr: the float32 inside max_lr
    opt = torch.optim.Adam(params(), lr=torch.tensor(1e-5))
    AdaptiveScheduler(opt, min_lr=1e-5, device_mode=device_mode)


def test_step_with_a_metric_points_to_observe() -> None:
    sched = AdaptiveScheduler(torch.optim.SGD(params(), lr=0.1), lr_rule="trend")
    for metric in (0.53, torch.tensor(0.53), True):
        with pytest.raises(ValueError, match=r"takes no metric.*observe\(loss="):
            sched.step(metric)  # type: ignore[arg-type]
    assert sched.last_epoch == 0 and sched._step_count == 1


def test_sequential_lr_state_dict_round_trip_resumes_exactly() -> None:
    def build() -> tuple[torch.optim.Optimizer, AdaptiveScheduler, Any]:
        opt = torch.optim.SGD(params(), lr=0.1)
        warm = lr_scheduler.LinearLR(opt, **LINEAR)
        sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=0.5, min_lr=1e-6)
        return opt, sched, lr_scheduler.SequentialLR(opt, [warm, sched], milestones=[3])

    def run(opt: Any, sched: AdaptiveScheduler, seq: Any, steps: range) -> list[float]:
        out = []
        for t in steps:
            train_step(opt)
            seq.step()
            if t >= 3:
                sched.observe(loss=1.0 / (t + 1))
            out.append(opt.param_groups[0]["lr"])
        return out

    opt, sched, seq = build()
    full = run(opt, sched, seq, range(8))
    opt, sched, seq = build()
    first = run(opt, sched, seq, range(5))
    ckpt = roundtrip({"opt": opt.state_dict(), "seq": seq.state_dict()})
    opt, sched, seq = build()
    opt.load_state_dict(ckpt["opt"])
    seq.load_state_dict(ckpt["seq"])
    assert first + run(opt, sched, seq, range(5, 8)) == full


def test_a_frozen_group_with_lr_0_stays_at_0_and_its_checkpoint_loads() -> None:
    opt = torch.optim.SGD([{"params": params()}, {"params": params(), "lr": 0.0}], lr=0.1)
    sched = AdaptiveScheduler(opt, lr_rule="trend")
    for t in range(3):
        sched.observe(loss=3.0 - t)
        sched.optimizer.step()  # the controller advances once per optimizer step
    assert opt.param_groups[1]["lr"] == 0.0 and opt.param_groups[0]["lr"] > 0.1
    sd = roundtrip(sched.state_dict())
    sched2 = AdaptiveScheduler(torch.optim.SGD([{"params": params()}, {"params": params(), "lr": 0.0}], lr=0.1),
                               lr_rule="trend")
    sched2.load_state_dict(sd)  # used to fail: "base_lrs=[0.1, 0.0] must be finite numbers > 0"
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_scheduler_built_after_optimizer_load_state_dict_reads_initial_lr_and_resumes() -> None:
    def fresh() -> torch.optim.Optimizer:
        torch.manual_seed(0)
        return torch.optim.SGD(params(), lr=0.1)

    def run(opt: Any, sched: AdaptiveScheduler, steps: range) -> list[float]:
        out = []
        for t in steps:
            train_step(opt)
            sched.observe(loss=1.0 / (t + 1))
            out.append(opt.param_groups[0]["lr"])
        return out

    opt = fresh()
    sched = AdaptiveScheduler(opt, lr_rule="trend", trend_up=1.5)
    full = run(opt, sched, range(6))
    opt = fresh()
    sched = AdaptiveScheduler(opt, lr_rule="trend", trend_up=1.5)
    first = run(opt, sched, range(3))
    ckpt = roundtrip({"opt": opt.state_dict(), "sched": sched.state_dict()})
    opt = fresh()
    opt.load_state_dict(ckpt["opt"])  # lr is now the moved one; initial_lr the base
    sched = AdaptiveScheduler(opt, lr_rule="trend", trend_up=1.5)  # base_lr from initial_lr, so configs match
    assert sched.config.base_lr == 0.1
    sched.load_state_dict(ckpt["sched"])
    assert first + run(opt, sched, range(3, 6)) == full


def test_load_state_dict_right_after_add_param_group() -> None:
    opt = torch.optim.SGD([{"params": params()}, {"params": params(), "lr": 0.01}], lr=0.1)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay", decay_k=1.0, min_lr=1e-6)
    sched.observe(loss=1.0)
    sd = sched.state_dict()
    opt2 = torch.optim.SGD(params(), lr=0.1)
    sched2 = AdaptiveScheduler(opt2, lr_rule="loss_decay", decay_k=1.0, min_lr=1e-6)
    opt2.add_param_group({"params": params(), "lr": 0.01})
    sched2.load_state_dict(sd)
    # group 0: the controller's float32 lr; group 1: its base lr times lr_scale (0.5 exactly)
    assert sched2.get_last_lr() == sched.get_last_lr() == [float(np.float32(0.05)), 0.005]
