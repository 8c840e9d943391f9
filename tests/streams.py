"""Signal streams and rule combinations shared by the tests (random and hostile).

Everything here derives from the rule registry and from ``Signals``: the rule
combinations (one rule per family), the signal streams (one value per signal)
and the property checks the hostile-stream tests run for every combination,
so a newly registered rule or signal gets them without editing this file.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import adaptive_sched as A
from adaptive_sched._config import rule_fields


def all_combos() -> list[tuple[str, ...]]:
    """Every combination of one rule per family (``Config.rules`` order), from the registry."""
    return list(itertools.product(*rule_fields().values()))


ALL_COMBOS: list[tuple[str, ...]] = all_combos()


def pairwise_combos(shift: int = 0) -> list[tuple[str, ...]]:
    """Combinations of one rule per family that cover every pair of rules of two families at least once.

    A greedy covering array (Cohen et al., 1997, "The AETG System"): deterministic,
    and it grows with the largest families' sizes, not with their product, so a
    parametrized test over it stays small as families are registered. ``shift``
    rotates the candidate order, so two tests cover the pairs with different combinations.
    """
    fields = list(rule_fields().values())
    uncovered = {
        (i, a, j, b)
        for i in range(len(fields))
        for j in range(i + 1, len(fields))
        for a in fields[i]
        for b in fields[j]
    }
    out: list[tuple[str, ...]] = []
    candidates = ALL_COMBOS[shift % len(ALL_COMBOS):] + ALL_COMBOS[: shift % len(ALL_COMBOS)]
    def gain(c: tuple[str, ...], left: set[tuple[int, str, int, str]]) -> int:
        return sum((i, c[i], j, c[j]) in left for i in range(len(c)) for j in range(i + 1, len(c)))

    while uncovered:
        best = max(candidates, key=lambda c: gain(c, uncovered))
        out.append(best)
        uncovered -= {(i, best[i], j, best[j]) for i in range(len(best)) for j in range(i + 1, len(best))}
    return out


PAIRWISE_COMBOS: list[tuple[str, ...]] = pairwise_combos()

HOSTILE_VALUES: list[float | None] = [
    None,
    math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    1e-40,
    -1e-40,
    1e38,
    -1e38,
    3e38,
    1e15,
    -7.5,
    2.5,
    1.0,
]


def config_for(combo: tuple[str, ...], **overrides: Any) -> A.Config:
    kwargs: dict[str, Any] = dict(zip(rule_fields(), combo))
    kwargs.update(
        base_lr=1e-3,
        min_lr=1e-6,
        max_lr=1e-1,
        trend_up=1.2,
        trend_down=0.7,
        reward_up=1.3,
        reward_down=0.8,
        cycle_length=7.0,
        warmup_steps=3.0,
        decay_k=0.5,
        kl_gain=0.5,
    )
    kwargs.update(overrides)
    return A.Config(**kwargs)


# A typical value of each signal at step t; a signal not listed is positive noise.
_TYPICAL = {
    "loss": lambda rng, t: float(2.0 * math.exp(-t / 30) + 0.3 * rng.normal() - 1.0),
    "reward": lambda rng, t: float(math.tanh(t / 40) + 0.5 * rng.normal()),
    "grad_norm": lambda rng, t: float(abs(rng.normal()) * (1 + t % 5)),
    "kl": lambda rng, t: float(abs(0.1 + 0.05 * rng.normal())),
    "grad_cos": lambda rng, t: float(np.clip(0.3 * math.cos(t / 9) + 0.3 * rng.normal(), -1.0, 1.0)),
}


def _positive_noise(rng: np.random.Generator, t: int) -> float:
    return float(abs(1.0 + 0.3 * rng.normal()))


def random_stream(seed: int, n: int, hostile: float = 0.2) -> list[A.Signals]:
    """Noisy decaying loss, noisy rising reward, positive grad norm and KL, with hostile values mixed in."""
    rng = np.random.default_rng(seed)
    gens = [_TYPICAL.get(name, _positive_noise) for name in A.Signals._fields]
    out = []
    for t in range(n):
        vals: list[Any] = [gen(rng, t) for gen in gens]
        for i in range(len(vals)):
            if rng.random() < hostile:
                vals[i] = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
        out.append(A.Signals(*vals))
    return out


def as_float(x: Any) -> float:
    return float(np.asarray(x))


def run_core(cfg: A.Config, signals: list[A.Signals], xp: Any = np) -> tuple[np.ndarray, np.ndarray, A.State]:
    """The core on ``xp``, eagerly: the lr and momentum sequences and the final state."""
    state = A.init(cfg, xp=xp)
    lr, mom = [], []
    for sig in signals:
        state, hp = A.update(state, sig)
        lr.append(as_float(hp.lr))
        mom.append(as_float(hp.momentum))
    return np.array(lr), np.array(mom), state


def run_numpy(cfg: A.Config, signals: list[A.Signals]) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the core on NumPy, eagerly. Returns the lr and momentum sequences."""
    lr, mom, _ = run_core(cfg, signals)
    return lr, mom


def float_leaves(state: A.State) -> list[float]:
    """Every float32 scalar of the state (the counters and the config aside)."""
    out = [as_float(state.log_scale), as_float(state.current_momentum)]
    for sig in A.Signals._fields:
        out.extend(as_float(v) for v in getattr(state, sig))
    out.extend(as_float(v) for v in state.rule_state.values())
    return out


def check_bounds_and_finiteness(cfg: A.Config, stream: list[A.Signals], xp: Any) -> None:
    """The hostile-stream properties: hparams finite and in bounds, state finite, every bad value counted."""
    lr, mom, state = run_core(cfg, stream, xp)
    lo, hi = np.float32(cfg.min_lr), np.float32(cfg.max_lr)
    assert np.all(np.isfinite(lr)) and np.all(lr >= lo * (1 - 1e-6)) and np.all(lr <= hi * (1 + 1e-6))
    assert np.all(np.isfinite(mom))
    assert np.all(mom >= np.float32(cfg.min_momentum)) and np.all(mom <= np.float32(cfg.max_momentum) * (1 + 1e-7))
    assert all(math.isfinite(v) for v in float_leaves(state))
    bad = sum(
        1 for s in stream for v in s if v is not None and not math.isfinite(float(v))
    )
    assert int(state.skipped) == bad


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def state_leaves(state: A.State) -> list[float]:
    """Every scalar of the state as a Python float, in State order (the config aside)."""
    out = [as_float(state.step), as_float(state.skipped), as_float(state.log_scale), as_float(state.current_momentum)]
    for sig in A.Signals._fields:
        out.extend(as_float(v) for v in getattr(state, sig))
    out.extend(as_float(v) for v in state.rule_state.values())
    return out


def check_host_equals_device(cfg: A.Config, stream: list[A.Signals]) -> None:
    """The core on the host namespace (NumPy float32 scalars) and on torch 0-d tensors: the same numbers, bit for bit."""
    import pytest

    torch = pytest.importorskip("torch")
    host, dev = A.init(cfg, xp=A.host), A.init(cfg, xp=torch)
    for sig in stream:
        host, hp = A.update(host, sig)
        dev, hd = A.update(dev, sig)
        assert [float(v) for v in hp] == [float(v) for v in hd]
        assert all(_same(a, b) for a, b in zip(state_leaves(host), state_leaves(dev)))


def load_example(name: str) -> Any:
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def f32_at_most(x: float) -> float:
    """The largest float32 value <= ``x``: where the controller's lr sits at ``max_lr=x`` (bounds are rounded inward)."""
    f = np.float32(x)
    return float(np.nextafter(f, np.float32(-np.inf)) if float(f) > x else f)
