"""The built-in rules: one module per family, each registering its family and its rules on import.

===========================  ======================================================
module                       rules
===========================  ======================================================
:mod:`.lr`                   ``loss_decay``, ``trend``, ``variance``, ``grad_norm``, ``cyclical``
:mod:`.evidence`             ``evidence`` (in the ``lr`` family: the recommended rule)
:mod:`.momentum`             ``inverse``, ``exp``, ``relative``, ``normalized``
:mod:`.reward`               ``scaling``, ``trend``, ``variance``
:mod:`.kl`                   ``target``
:mod:`.search`               ``range``
:mod:`.anneal`               ``slope``
:mod:`.cooldown`             ``linear``, ``sqrt``, ``cosine``
===========================  ======================================================

``import adaptive_sched`` imports this package, so the built-ins are always
registered. A new family is a new module here (or anywhere: a rule module
outside the package registers the same way, see :mod:`adaptive_sched._rules`)
that calls :func:`~adaptive_sched._rules.register_family` and
:func:`~adaptive_sched._rules.register`; add it to :data:`BUILTIN` so that it
loads with the package. The order of :data:`BUILTIN` is the families' order in ``Config.rules`` and
the README's rule table.

The math the built-ins share is re-exported for rule authors:
:func:`log_knob`, :func:`trend_step`, :func:`variance_factor`, :func:`either`,
:func:`ever_seen`, :func:`warmup_factor` and the floors
:data:`TINY`, :data:`REL_EPS`, :data:`SIGNAL_LIMIT`.
"""

from __future__ import annotations

import importlib

from adaptive_sched.rules._math import (
    REL_EPS,
    SIGNAL_LIMIT,
    TINY,
    either,
    ever_seen,
    log_knob,
    trend_step,
    variance_factor,
    warmup_factor,
)

__all__ = [
    "BUILTIN", "REL_EPS", "SIGNAL_LIMIT", "TINY", "either", "ever_seen", "log_knob", "trend_step", "variance_factor",
    "warmup_factor",
]

BUILTIN: tuple[str, ...] = ("lr", "evidence", "momentum", "reward", "kl", "search", "anneal", "cooldown")
"""The built-in rule modules, in family order (``Config.rules``, the README table); ``evidence`` adds to ``lr``."""

for _name in BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")
