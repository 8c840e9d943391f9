"""AdaptiveScheduler under torch.distributed: 2 gloo processes, different local signals, one lr.

The ranks (tests/adapters/_dist_worker.py) each feed their own losses and rewards,
with a NaN on one rank, a loss missing on one rank and a reward missing on both.
Every rank must set the same lr/momentum sequence, equal to one process fed the
mean signals; a checkpoint written on rank 0 and loaded on both continues exactly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from launch import run_ranks  # noqa: E402

from adaptive_sched._distributed import pack_rows, unpack_rows  # noqa: E402
from adaptive_sched._signals import SIGNAL_NAMES  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import _dist_worker as worker  # noqa: E402


def mean_signals(t: int) -> dict[str, Any]:
    """What one process should see at step ``t``: each signal's mean over the ranks that observed it."""
    out: dict[str, Any] = {}
    for key in ("loss", "R"):
        vals = [worker.local_signals(r, t)[key] for r in range(2)]
        finite = [v for v in vals if v is not None and math.isfinite(v)]
        if finite:
            out[key] = sum(finite) / len(finite)
        elif any(v is not None for v in vals):
            out[key] = math.nan
        else:
            out[key] = None
    return out


def one_process(device_mode: bool) -> list[list[float]]:
    opt, sched = worker.make(device_mode)
    out = []
    for t in range(worker.STEPS):
        p = opt.param_groups[0]["params"][0]
        p.grad = torch.full_like(p, 0.5)
        opt.step()
        sig = mean_signals(t)
        if device_mode:
            sig = {k: None if v is None else torch.tensor(v) for k, v in sig.items()}
        sched.observe(**sig)
        g = opt.param_groups[0]
        out.append([float(g["lr"]), float(g["momentum"])])
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("dist")
    run_ranks([str(HERE / "_dist_worker.py"), str(out)], world_size=2, timeout=180)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("mode", ["host", "device"])
def test_every_rank_sets_the_lr_of_one_process_fed_the_mean(ranks: list[dict[str, Any]], mode: str) -> None:
    r0, r1 = ranks[0][mode], ranks[1][mode]
    assert r0 == r1
    assert r0 == one_process(mode == "device")
    assert len({lr for lr, _ in r0}) > 3  # the lr actually moved


def test_a_custom_process_group_averages_too(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["group"] == ranks[1]["group"] == ranks[0]["host"]


def test_opting_out_keeps_local_signals(ranks: list[dict[str, Any]]) -> None:
    # Without averaging the ranks drift apart (what the averaging prevents).
    assert ranks[0]["opt_out"] != ranks[1]["opt_out"]


@pytest.mark.parametrize("mode", ["host", "device"])
def test_rank0_checkpoint_restores_every_rank(ranks: list[dict[str, Any]], mode: str) -> None:
    for r in range(2):
        assert ranks[r][f"resumed_{mode}"] == ranks[r][mode]


def test_packing_layout() -> None:
    n = len(SIGNAL_NAMES)
    a = pack_rows([1.0, math.nan, None, 2.0][:n] + [None] * (n - 4))
    b = pack_rows([3.0, math.nan, None, None][:n] + [None] * (n - 4))
    summed = [[x + y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
    out = unpack_rows(summed)
    assert out[0] == 2.0 and math.isnan(out[1]) and out[2] is None and out[3] == 2.0
    with pytest.raises(ValueError, match=f"expected {n} signal values"):
        pack_rows([1.0])


def test_single_process_is_untouched() -> None:
    # Not initialised: observe() does no collective and sees its local values.
    assert not torch.distributed.is_initialized()
    _, sched = worker.make(False)
    assert sched.signal_world_size == 1
    with pytest.raises(TypeError, match="sync_signals"):
        worker.make(False, sync_signals="yes")
