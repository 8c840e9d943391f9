"""JAX's persistent compilation cache for the ``bench`` and ``sweep`` commands.

A bench or sweep run spends a large share of its time compiling XLA programs
that are the same from one run to the next (same task, methods, grid and
seeds give the same program). JAX can keep compiled executables on disk and
load them instead of compiling again (``jax_compilation_cache_dir``; see
https://docs.jax.dev/en/latest/persistent_compilation_cache.html). The two
console commands switch it on; the library functions (``run_bench``,
``adaptive_sched.sweep``) never touch JAX's global configuration.

Where the cache lives, first match wins:

1. ``--no-compile-cache`` on the command line: no persistent cache.
2. ``ADAPTIVE_SCHED_COMPILE_CACHE``: a directory, or ``off`` (also ``0``,
   ``false``, ``no``, ``none``) to switch the cache off.
3. JAX's own ``jax_compilation_cache_dir`` (e.g. ``JAX_COMPILATION_CACHE_DIR``),
   if the user configured one: used as it is.
4. ``$XDG_CACHE_HOME/adaptive-sched/jax``, else ``~/.cache/adaptive-sched/jax``.

JAX writes an entry only for programs that took at least
``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile
and are at least ``jax_persistent_cache_min_entry_size_bytes`` large; we set
the first to :data:`MIN_COMPILE_TIME_S` (0: every program) and switch the
second off, so that the small CPU programs of a quick run or a short sweep are
kept too (a tiny-size sweep writes about 4 entries, 300 KB; ``bench --quick``
15 entries, 3 MB). Entries are not size-limited (JAX's
``jax_compilation_cache_max_size`` needs the ``filelock`` package and is left
alone); delete the directory to clear the cache. As JAX warns, a compilation
cache is trusted code: do not point it at a directory others can write to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any, cast

__all__ = ["ENV_VAR", "MIN_COMPILE_TIME_S", "CacheStats", "configure", "counting", "default_dir", "resolve_dir"]

ENV_VAR = "ADAPTIVE_SCHED_COMPILE_CACHE"
"""Environment variable: a cache directory, or ``off`` to disable the cache."""

MIN_COMPILE_TIME_S = 0.0
"""Programs that compile faster than this are not written to the cache (JAX's default is 1 s; 0 keeps all)."""

_OFF = frozenset({"0", "off", "false", "no", "none"})
_HIT = "/jax/compilation_cache/cache_hits"
_WRITE = "/jax/compilation_cache/cache_misses"  # JAX records this event when it writes an entry


def default_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """``$XDG_CACHE_HOME/adaptive-sched/jax``, or ``~/.cache/adaptive-sched/jax`` when it is unset or empty."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "adaptive-sched" / "jax"


def resolve_dir(
    enabled: bool = True, environ: Mapping[str, str] | None = None, jax_dir: str | None = None
) -> pathlib.Path | None:
    """The cache directory to use, or None for no persistent cache (precedence in the module docstring).

    Args:
      enabled: False for ``--no-compile-cache``.
      environ: the environment (default ``os.environ``).
      jax_dir: JAX's ``jax_compilation_cache_dir`` as already configured (None if unset).
    """
    env = os.environ if environ is None else environ
    if not enabled:
        return None
    override = env.get(ENV_VAR, "").strip()
    if override:
        if override.lower() in _OFF:
            return None
        return pathlib.Path(os.path.expanduser(override))
    if jax_dir:
        return pathlib.Path(jax_dir)
    return default_dir(env)


def configure(enabled: bool = True, environ: Mapping[str, str] | None = None) -> pathlib.Path | None:
    """Point JAX's persistent compilation cache at :func:`resolve_dir`'s directory (or switch it off).

    Call once per process, before anything is compiled (JAX initialises its
    cache on the first compilation); the console commands do, library code
    does not. Returns the directory in use, or None when the cache is off.
    """
    import jax

    # jax.config's options are dynamic attributes that type checkers cannot see.
    path = resolve_dir(enabled, environ, cast(Any, jax.config).jax_compilation_cache_dir)
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size threshold
    return path


@dataclasses.dataclass
class CacheStats:
    """What the persistent cache did while :func:`counting` was active.

    Attributes:
      directory: the cache directory, or None when the cache is off.
      hits: programs loaded from the cache instead of compiled.
      writes: programs compiled and written to it.
      saved_s: compile seconds the hits saved (as JAX records them: the
        original compile time minus the time to read the entry; negative when
        reading took longer, which :meth:`describe` shows as no saving).
    """

    directory: pathlib.Path | None
    hits: int = 0
    writes: int = 0
    saved_s: float = 0.0

    def describe(self) -> str:
        """One line for stdout and the report."""
        if self.directory is None:
            return "persistent compilation cache off"
        return (
            f"persistent compilation cache {self.directory}: {self.hits} program(s) loaded "
            f"(saving {max(self.saved_s, 0.0):.1f} s of compilation), {self.writes} written"
        )


@contextlib.contextmanager
def counting(directory: pathlib.Path | None) -> Iterator[CacheStats]:
    """Count cache hits and writes through ``jax.monitoring`` listeners while the block runs."""
    import jax.monitoring

    stats = CacheStats(directory)

    def on_event(event: str, **_: str | int) -> None:
        if event == _HIT:
            stats.hits += 1
        elif event == _WRITE:
            stats.writes += 1

    def on_duration(event: str, duration_secs: float, **_: str | int) -> None:
        if event == "/jax/compilation_cache/compile_time_saved_sec":
            stats.saved_s += duration_secs

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield stats
    finally:
        jax.monitoring.unregister_event_listener(on_event)
        jax.monitoring.unregister_event_duration_listener(on_duration)
