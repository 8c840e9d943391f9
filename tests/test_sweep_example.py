"""examples/sweep_example.py runs at a small size and finds what its grid encodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streams import load_example

pytest.importorskip("jax")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")


def test_sweep_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = load_example("sweep_example")

    result = module.main(steps=30, seeds=2, out=str(tmp_path))
    assert [g.rules[0] for g in result.groups] == ["trend", "variance"]
    assert result.output("final_loss").shape == (8, 2)
    assert np.isfinite(result.output("final_loss")).all()
    # base_lr is swept: min_lr/max_lr were re-derived from it (the base left them at their defaults).
    assert [c.max_lr for c in result.configs[:4]] == [b * 10.0 for b in (3e-3, 1e-2, 3e-2, 1e-1)]
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 8 * 2
    assert "final_loss_mean" in capsys.readouterr().out


def test_bench_sweep_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    module = load_example("bench_sweep")

    threads = torch.get_num_threads()
    grid = {"trend_up": [1.01, 1.1], "ema_beta": [0.5, 0.9]}
    out = module.main(steps=12, seeds=2, size="tiny", grid=grid, torch_runs=2, sweep_repeats=1)
    assert torch.get_num_threads() == threads  # restored
    assert out["n_runs"] == 8 and out["sequential_jax"]["timed"] == 8
    # The sequential JAX runs reproduce the sweep (accuracy on 450 images: one image = 0.0022).
    assert out["sequential_jax"]["max_abs_diff"] <= 2 / 450
    assert out["sequential_jax"]["within_one_image"] >= 7
    for figures in (out["sweep"], out["sequential_jax"]):
        assert figures["compile"] > 0 and figures["run"] > 0 and figures["total"] >= figures["run"]
    torch_row = out["sequential_torch"]
    assert torch_row["timed"] == 2 and torch_row["total"] > 0 and torch_row["threads"] == 1
    assert 0.1 < torch_row["torch_acc_mean"] <= 1.0  # it trained (chance is 0.1)
    report = capsys.readouterr().out
    assert "sequential torch (2 timed, extrapolated)" in report and "slower than sweep" in report
