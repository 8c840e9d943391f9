"""adaptive-sched: learning-rate and momentum control driven by what training is doing.

One pure controller (``init(config) -> state``, ``update(state, signals)
-> (state, hparams)``; the state carries its config) behind three front doors:
the core itself (jit/vmap-able, any Array API namespace), :mod:`adaptive_sched.optax`
(an ``optax.inject_hyperparams`` transformation) and
:class:`adaptive_sched.AdaptiveScheduler` (PyTorch; ``adaptive_sched.adapters.torch``).

Importing this package imports neither JAX, optax nor torch: those load on first
use of the front door that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from adaptive_sched import _config
from adaptive_sched import _host as host
from adaptive_sched import rules as _builtin_rules  # registers the built-in families and rules
from adaptive_sched._checkpoint import config_from_dict, state_from_dict, state_to_dict
from adaptive_sched._config import Config
from adaptive_sched._core import (
    EmaState,
    Hparams,
    Signals,
    State,
    diagnostics,
    format_diagnostics,
    init,
    set_slots,
    update,
)
from adaptive_sched._recommended import recommended
from adaptive_sched.rules.cooldown import start_cooldown

Config.__doc__ = _config.config_doc()  # once, for help(Config): the built-in fields
del _builtin_rules

if TYPE_CHECKING:
    from adaptive_sched._sweep import config_grid, sweep
    from adaptive_sched.adapters.torch import AdaptiveScheduler

__version__ = "0.1.0"

__all__ = [
    "ANNEAL_RULES",
    "AdaptiveScheduler",
    "COOLDOWN_RULES",
    "Config",
    "EmaState",
    "Hparams",
    "KL_RULES",
    "LR_RULES",
    "MOMENTUM_RULES",
    "REWARD_RULES",
    "SEARCH_RULES",
    "Signals",
    "State",
    "config_from_dict",
    "config_grid",
    "diagnostics",
    "format_diagnostics",
    "host",
    "init",
    "recommended",
    "set_slots",
    "start_cooldown",
    "state_from_dict",
    "state_to_dict",
    "sweep",
    "update",
]

_LAZY_SUBMODULES = ("optax",)
_LAZY_ATTRS = {"sweep": "adaptive_sched._sweep", "config_grid": "adaptive_sched._sweep"}


_RULE_LISTS = {
    "LR_RULES": "lr",
    "MOMENTUM_RULES": "momentum",
    "REWARD_RULES": "reward",
    "KL_RULES": "kl",
    "SEARCH_RULES": "search",
    "ANNEAL_RULES": "anneal",
    "COOLDOWN_RULES": "cooldown",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import adaptive_sched` never imports torch, JAX or optax.
    if name in _RULE_LISTS:  # the registry's names now (``"none"`` first)
        from adaptive_sched._rules import rule_names

        return rule_names(_RULE_LISTS[name])
    if name == "AdaptiveScheduler":
        from adaptive_sched.adapters.torch import AdaptiveScheduler

        return AdaptiveScheduler
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"adaptive_sched.{name}")
    raise AttributeError(f"module 'adaptive_sched' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_LAZY_SUBMODULES))
