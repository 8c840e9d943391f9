"""The compiled host path is the core's update, bit for bit, and much cheaper."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import (
    ALL_COMBOS,
    HOSTILE_VALUES,
    PAIRWISE_COMBOS,
    check_compiled_equals_generic,
    config_for,
    pairwise_combos,
    random_stream,
)

import adaptive_sched as A
from adaptive_sched import _scalar
from adaptive_sched._hostpath import (
    STATE_FIELDS,
    HostController,
    Sym,
    compile_update,
    flatten_state,
)

value = st.one_of(st.sampled_from(HOSTILE_VALUES), st.floats(allow_nan=True, allow_infinity=True))
signals = st.builds(A.Signals, *[value] * len(A.Signals._fields))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(combo=st.sampled_from(ALL_COMBOS), stream=st.lists(signals, min_size=1, max_size=30))
def test_compiled_equals_generic_bit_for_bit(combo, stream) -> None:  # type: ignore[no-untyped-def]
    check_compiled_equals_generic(config_for(combo), stream)


# Every pair of rules of two families at least once (ALL_COMBOS[::7] before: the product grew with every family).
@pytest.mark.parametrize("combo", PAIRWISE_COMBOS, ids=lambda c: "-".join(c))
def test_random_streams_every_pattern(combo: tuple[str, str, str, str]) -> None:
    cfg = config_for(combo)
    host = HostController(cfg)
    state = A.init(cfg, xp=_scalar)
    for sig in random_stream(1, 80, hostile=0.3):
        state, hp = A.update(state, sig)
        assert host.update(*sig) == (hp.lr, hp.momentum, hp.lr_scale)


def test_state_property_round_trips() -> None:
    cfg = config_for(("trend", "relative", "trend", "target"))
    a = HostController(cfg)
    for sig in random_stream(4, 30):
        a.update(*sig)
    b = HostController(cfg, state=a.state)
    rest = random_stream(5, 30)
    assert [a.update(*s) for s in rest] == [b.update(*s) for s in rest]


def test_non_float_signals_are_converted_to_python_floats() -> None:
    np = pytest.importorskip("numpy")
    cfg = A.Config(lr_rule="trend", ema_beta=0.5)
    a, b = HostController(cfg), HostController(cfg)
    for x in (3.0, 2.0, 2.5):
        assert a.update(loss=np.float32(x)) == b.update(loss=float(np.float32(x)))
    assert all(type(v) in (int, float) for v in a.flat)


def test_dead_rules_are_pruned_from_the_generated_code() -> None:
    cfg = A.Config(lr_rule="trend", reward_rule="trend")
    _, src = compile_update(cfg, (False, True, False, False, False))  # reward only
    assert "x_loss" not in src.split(":", 1)[1]  # the loss branch is gone
    assert "_log(" not in src  # log(up), log(down) folded into constants
    _, identity = compile_update(A.Config(), (True, True, True, True, True))
    assert "_exp" not in identity  # every rule none: no lr arithmetic at all
    assert len(STATE_FIELDS) == 24


def test_symbolic_values_refuse_python_branches() -> None:
    from adaptive_sched._hostpath import _Graph

    with pytest.raises(TypeError, match=r"xp\.where"):
        bool(Sym(_Graph(), "s0") < 1.0)


@pytest.mark.parametrize("combo", pairwise_combos(shift=1777), ids=lambda c: "-".join(c))
def test_torch_target_matches_the_core_on_torch(combo: tuple[str, str, str, str]) -> None:
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    cfg = config_for(combo)
    state = A.init(cfg, xp=xpt, device="cpu")
    flat, fns = flatten_state(state), {}
    for sig in random_stream(8, 50, hostile=0.3):
        state, hp = A.update(state, sig)
        key = tuple(v is not None for v in sig)
        if key not in fns:
            fns[key] = compile_update(cfg, key, target="torch")[0]
        args = [None if v is None else torch.tensor(v, dtype=torch.float32) for v in sig]
        got = fns[key](flat, *args)
        # float32 tolerance: the generic core on torch takes exp/log/cos in torch's float32; the
        # trace computes them in float64 and rounds (as host mode does, see test_numeric_semantics)
        for a, b in zip(got, (hp.lr, hp.momentum, hp.lr_scale)):
            assert float(a) == pytest.approx(float(b), rel=2e-5, abs=1e-7)
    assert [x.dtype for x in flat[:3]] == [torch.int32, torch.int32, torch.float32]
    assert all(isinstance(x, torch.Tensor) and x.ndim == 0 for x in flat)


def test_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match=r"compile_update\(target='jax'\) is invalid: must be 'python' or 'torch'"):
        compile_update(A.Config(), (True, False, False, False, False), target="jax")


def test_every_unary_row_is_rounded_as_it_says_in_host_and_device_mode() -> None:
    # _scalar.UNARY is the one table of elementwise functions: each row's rounding column
    # decides what the scalar namespace, the host path's constant folding, the generated
    # Python and the torch target compute. They must give the same float32 values.
    torch = pytest.importorskip("torch")
    from adaptive_sched._hostpath import _FOLD, _PY_TEMPLATES, _SYM, _TORCH_TEMPLATES

    for name, row in _scalar.UNARY.items():
        assert row.rounding in ("float64", "float32", "exact") and row.result in ("float", "int", "bool", "input")
        assert callable(getattr(_SYM, name)) and name in _PY_TEMPLATES and name in _TORCH_TEMPLATES
        assert ("double()" in _TORCH_TEMPLATES[name]) == (row.rounding == "float64")
        for x in (0.3, 1.7, 2.5e-3, 12.0, 88.5, 1e-30):
            x32 = _scalar.float32(x)
            host = getattr(_scalar, name)(x32)
            raw = row.fn(float(x32))
            if row.rounding == "exact":
                assert host == raw
            else:
                assert type(host) is _scalar.F32 and host == _scalar.round_f32(raw)
            assert _FOLD[name](x32) == host
            dev = eval(_TORCH_TEMPLATES[name].format("t"), {"torch": torch, "t": torch.tensor(float(x32))})  # noqa: S307
            assert float(dev) == float(host), (name, x)


def test_large_step_counts_become_float32_as_arrays_convert_them() -> None:
    # t = float(step + 1) is rounded to float32 above 2**24, in the generic scalar path and
    # in the generated code alike (and so in device mode).
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    cfg = config_for(("cyclical", "none", "none", "none"), warmup_steps=0.0)
    state = A.init(cfg, xp=_scalar)._replace(step=2**24 + 1)
    host = HostController(cfg, state=state)
    dev_state = A.init(cfg, xp=xpt)._replace(step=torch.tensor(2**24 + 1, dtype=torch.int32))
    dev = HostController(cfg, dev_state, target="torch")
    for _ in range(4):
        state, hp = A.update(state, A.Signals())
        assert host.update() == (hp.lr, hp.momentum, hp.lr_scale)
        assert tuple(float(v) for v in dev.update()) == (hp.lr, hp.momentum, hp.lr_scale)


@settings(max_examples=2000, deadline=None)
@given(x=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([v for v in HOSTILE_VALUES if isinstance(v, float)])))
def test_round_f32_is_numpys_float32_conversion(x: float) -> None:
    """The host path's rounding (a store into a one-slot ``'f'`` buffer) is IEEE round to nearest, overflow to inf."""
    import numpy as np

    with np.errstate(over="ignore"):
        want = float(np.asarray(x, dtype=np.float64).astype(np.float32))
    got = _scalar.round_f32(x)
    assert type(got) is float
    assert same(got, want) and math.copysign(1.0, got) == math.copysign(1.0, want)
