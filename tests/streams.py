"""Signal streams and rule combinations shared by the tests (random and hostile)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import adaptive_sched as A

ALL_COMBOS: list[tuple[str, str, str, str]] = list(
    itertools.product(A.LR_RULES, A.MOMENTUM_RULES, A.REWARD_RULES, A.KL_RULES)
)

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


def config_for(combo: tuple[str, str, str, str], **overrides: Any) -> A.Config:
    lr, mom, rew, kl = combo
    kwargs: dict[str, Any] = dict(
        lr_rule=lr,
        momentum_rule=mom,
        reward_rule=rew,
        kl_rule=kl,
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


def random_stream(seed: int, n: int, hostile: float = 0.2) -> list[A.Signals]:
    """Noisy decaying loss, noisy rising reward, positive grad norm and KL, with hostile values mixed in."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        vals: list[Any] = [
            float(2.0 * math.exp(-t / 30) + 0.3 * rng.normal() - 1.0),
            float(math.tanh(t / 40) + 0.5 * rng.normal()),
            float(abs(rng.normal()) * (1 + t % 5)),
            float(abs(0.1 + 0.05 * rng.normal())),
        ]
        for i in range(4):
            if rng.random() < hostile:
                vals[i] = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
        out.append(A.Signals(*vals))
    return out


def as_float(x: Any) -> float:
    return float(np.asarray(x))


def run_numpy(cfg: A.Config, signals: list[A.Signals]) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the core on NumPy, eagerly. Returns the lr and momentum sequences."""
    state = A.init(cfg, xp=np)
    lr, mom = [], []
    for sig in signals:
        state, hp = A.update(state, sig)
        lr.append(as_float(hp.lr))
        mom.append(as_float(hp.momentum))
    return np.array(lr), np.array(mom)


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
