"""Start a few local processes for the multi-process tests, with a free port and a hard timeout.

A hang (a rank waiting on a collective that never comes) must not block CI: every
process is killed after ``timeout`` seconds and the test fails with its output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["free_port", "run_ranks", "run_script"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_ranks(args: Sequence[str], world_size: int = 2, timeout: float = 120.0) -> list[str]:
    """Run ``python args...`` as ``world_size`` torch.distributed ranks (env:// rendezvous); return their outputs.

    Raises AssertionError (with every rank's output) if a rank fails or the timeout passes. If the
    free port was taken between finding it and binding it, the run is retried once on another one.
    """
    try:
        return _run_ranks(args, world_size, timeout)
    except AssertionError as err:
        if "address already in use" not in str(err).lower():
            raise
        return _run_ranks(args, world_size, timeout)


def _run_ranks(args: Sequence[str], world_size: int, timeout: float) -> list[str]:
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = _env(
            {
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_WORLD_SIZE": str(world_size),
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    return _collect(procs, timeout)


def run_script(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run one ``python args...`` process with a timeout; return its output."""
    proc = subprocess.Popen(
        [sys.executable, *args], env=_env(env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return _collect([proc], timeout)[0]


def _collect(procs: list[subprocess.Popen[str]], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    outs: list[str] = []
    timed_out = False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            for q in procs:
                q.kill()
            out, _ = p.communicate()
        outs.append(out)
    failed = timed_out or any(p.returncode != 0 for p in procs)
    if failed:
        report = "\n".join(f"--- process {i} (rc={p.returncode}) ---\n{o}" for i, (p, o) in enumerate(zip(procs, outs)))
        raise AssertionError((f"timed out after {timeout:.0f}s\n" if timed_out else "") + report)
    return outs
