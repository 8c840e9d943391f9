"""AdaptiveScheduler prepared by Accelerate on 2 CPU processes: the lr advances exactly as in one process."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from launch import run_ranks  # noqa: E402

from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import _accelerate_worker as worker  # noqa: E402


def one_process() -> list[float]:
    """One process, stepped once per optimizer step, fed the ranks' mean signals."""
    model, _, _ = worker.model_and_batch(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = AdaptiveScheduler(opt, worker.CONFIG)
    lrs = []
    for t in range(worker.STEPS):
        opt.step()
        sched.step()
        mean = {}
        for key in ("loss", "R"):
            vals = [v for r in range(2) if math.isfinite(v := worker.local_signals(r, t)[key])]
            mean[key] = sum(vals) / len(vals)
        sched.observe(**mean)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("accelerate")
    run_ranks([str(HERE / "_accelerate_worker.py"), str(out)], world_size=2, timeout=240)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_lr_sequence_equals_one_process(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["num_processes"] == ranks[1]["num_processes"] == 2
    assert ranks[0]["lrs"] == ranks[1]["lrs"] == one_process()
    assert len(set(ranks[0]["lrs"])) == worker.STEPS  # warmup, then the loss rule: it moved every step


def test_prepare_wraps_the_scheduler_and_hides_observe(ranks: list[dict[str, Any]]) -> None:
    # Hence the recipe: keep your own reference and call sched.observe(...) on it.
    assert all(r["wrapped"] and r["observe_hidden"] for r in ranks)
