"""Register our dataclasses with JAX's pytree registry without importing JAX.

``import adaptive_sched`` must not import JAX (a PyTorch user may not have it,
or may not want to pay for it). Yet :class:`~adaptive_sched.Config` has to be a
JAX pytree (numeric knobs as leaves, rule names as static metadata) as soon as
JAX is in use. So registration is deferred: it runs immediately when JAX is
already imported, and otherwise from a one-shot post-import hook that fires
right after ``import jax`` completes, whichever order the user imports in.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from typing import Any

_pending: list[Callable[[], None]] = []
_lock = threading.Lock()


def _run_pending() -> None:
    with _lock:
        todo = list(_pending)
        _pending.clear()
    for fn in todo:
        fn()


class _LoaderProxy(importlib.abc.Loader):
    """Delegates to JAX's real loader, then runs the pending registrations."""

    def __init__(self, inner: Any, finder: _JaxImportHook) -> None:
        self._inner = inner
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        self._finder.remove()
        _run_pending()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _JaxImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "jax":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _LoaderProxy(spec.loader, self)
                return spec
        return None

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


_hook: _JaxImportHook | None = None


def when_jax_imported(fn: Callable[[], None]) -> None:
    """Run ``fn`` now if JAX is importable-and-imported, else right after ``import jax``."""
    global _hook
    if "jax.tree_util" in sys.modules:
        fn()
        return
    with _lock:
        _pending.append(fn)
        if _hook is None:
            _hook = _JaxImportHook()
            sys.meta_path.insert(0, _hook)
