"""``adaptive-sched sweep`` end to end on the tiny digits-mlp task, and its argument errors."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_sched import _sweep_cli
from adaptive_sched._cli import main

pytest.importorskip("jax")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """JAX's cache settings are process-wide: keep them off here (tests/bench/test_compile_cache.py checks them)."""
    monkeypatch.setenv("ADAPTIVE_SCHED_COMPILE_CACHE", "off")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="adaptive-sched sweep")
    _sweep_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_end_to_end_writes_best_table_csv_and_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "sweep", "--task", "digits-mlp", "--size", "tiny", "--steps", "15", "--seeds", "2", "--top", "3",
        "--grid", "trend_up=1.01,1.1", "--grid", "base_lr=0.001,0.01,0.03", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0  # the `adaptive-sched` console script's entry point
    out = capsys.readouterr().out
    assert "6 configs x 2 seeds = 12 runs in 1 compiled program(s)" in out
    assert "best 3 by test_accuracy (higher is better" in out
    assert "persistent compilation cache off" in out

    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert {"trend_up", "base_lr", "seed", "test_accuracy", "final_lr"} <= set(rows[0])
    # The printed winner is the config with the highest mean accuracy in the CSV.
    by_config: dict[str, list[float]] = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(float(r["test_accuracy"]))
    best = max(by_config, key=lambda c: (sum(by_config[c]) / 2, -int(c)))
    best_row = next(r for r in rows if r["config"] == best)
    table = out.split("seeds):\n", 1)[1].splitlines()
    assert table[0].split() == ["rank", "trend_up", "base_lr", "test_accuracy_mean", "test_accuracy_std"]
    assert table[1].split()[:3] == ["1", f"{float(best_row['trend_up']):g}", f"{float(best_row['base_lr']):g}"]
    # final lrs stay within each point's derived bounds [base_lr / 1000, 10 * base_lr].
    for r in rows:
        assert float(r["base_lr"]) / 1000 * 0.999 <= float(r["final_lr"]) <= 10 * float(r["base_lr"]) * 1.001

    png = tmp_path / "heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_one_knob_grid_writes_no_heatmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--task", "logreg", "--size", "tiny", "--steps", "5", "--seeds", "1",
            "--grid", "lr_rule=trend,variance", "--set", "ema_beta=0.5", "--out", str(tmp_path)]  # fmt: skip
    assert _sweep_cli.run(parse(argv)) == 0
    out = capsys.readouterr().out
    assert "2 configs x 1 seeds = 2 runs in 2 compiled program(s)" in out
    assert "heldout_loss (lower is better" in out and "no heatmap" in out
    assert (tmp_path / "sweep.csv").exists() and not (tmp_path / "heatmap.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "trend_upp=1.1"], "unknown knob 'trend_upp'"),
        (["--grid", "lr_rule=0.5"], "lr_rule is a rule name"),
        (["--grid", "trend_up=fast"], "trend_up is a numeric knob"),
        (["--grid", "ema_beta=1.5"], r"Config.ema_beta=1.5 is invalid"),
        (["--grid", "trend_up=1.1", "--grid", "trend_up=1.2"], "given twice"),
        (["--grid", "trend_up=1.1", "--set", "lr_rule=fast"], "Config.lr_rule='fast' is invalid"),
        (["--grid", "trend_up=1.1", "--set", "nope=1"], "unknown Config field 'nope' in --set"),
        (["--grid", "trend_up=1.1", "--seeds", "0"], "--seeds=0 is invalid"),
        ([], "at least one --grid"),
        (["--grid", "trend_up=1.1", "--size", "huge"], "size='huge' is invalid"),
    ],
)
def test_cli_errors(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep_cli.run(parse(["--task", "digits-mlp", "--out", str(tmp_path), *argv])) == 2
    err = capsys.readouterr().err
    assert err.startswith("adaptive-sched sweep: error:") and message in err
    assert not (tmp_path / "sweep.csv").exists()


def test_cli_bad_task_and_malformed_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep_cli.run(parse(["--task", "mnist", "--grid", "trend_up=1.1", "--out", str(tmp_path)])) == 2
    assert "task name='mnist' is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--task", "digits-mlp", "--grid", "trend_up"])
    assert "not of the form KNOB=V1,V2" in capsys.readouterr().err


def test_console_script_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "adaptive_sched", "sweep", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--grid KNOB=V1,V2,..." in proc.stdout, proc.stderr[-2000:]
    assert "--no-compile-cache" in proc.stdout


def test_cli_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, argparse; from adaptive_sched import _sweep_cli; "
        "_sweep_cli.add_arguments(argparse.ArgumentParser()); "
        "heavy = {'jax', 'optax', 'torch', 'matplotlib', 'sklearn'} & set(sys.modules); print(sorted(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr[-2000:]
