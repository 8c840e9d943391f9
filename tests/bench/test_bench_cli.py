"""`adaptive-sched bench`: help, argument checks, light imports, and a quick end-to-end run."""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys

import pytest

from adaptive_sched import _cli
from adaptive_sched.bench import _cli as bench_cli


def _help() -> str:
    parser = argparse.ArgumentParser(prog="bench")
    bench_cli.add_arguments(parser)
    return parser.format_help()


def test_help_documents_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside task names
    text = _help()
    for opt in ("--out", "--tasks", "--seeds", "--quick", "--full", "--no-torch", "--no-compile-cache"):
        assert opt in text
    for name in bench_cli._TASK_NAMES:
        assert name in text


def test_help_says_what_full_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from adaptive_sched.bench import _data

    monkeypatch.setenv("COLUMNS", "400")
    text = " ".join(_help().split())
    assert f"{_data.DIGITS_SIZES['full']['steps']} steps on digits-mlp" in text
    assert f"{_data.LM_SIZES['full']['steps']} on char-lm" in text
    assert "10 seeds" in text and "minutes" in text


def test_cli_task_names_match_the_tasks() -> None:
    pytest.importorskip("jax")
    from adaptive_sched.bench._tasks import TASK_NAMES

    assert bench_cli._TASK_NAMES == TASK_NAMES


def test_importing_the_cli_is_light() -> None:
    code = (
        "import sys, adaptive_sched._cli as c; c.build_parser(); "
        "heavy = [m for m in ('jax', 'optax', 'torch', 'matplotlib', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "digits-mlp,nope"], "unknown task(s) nope"),
        (["--tasks", ","], "at least one task"),
        (["--seeds", "0"], "must be >= 1"),
        (["--seeds", "two"], "not an integer"),
        (["--quick", "--full"], "not allowed with"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli.main(["bench", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_end_to_end(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    # In this process the cache stays off (JAX's cache settings are process-wide); test_compile_cache
    # checks it in fresh processes.
    monkeypatch.setenv("ADAPTIVE_SCHED_COMPILE_CACHE", "off")
    out = tmp_path / "bench"
    code = _cli.main(["bench", "--quick", "--seeds", "2", "--tasks", "digits-mlp", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert str(out / "report.md") in stdout
    assert re.search(r"wall time [\d.]+ s: compile [\d.]+ s, run [\d.]+ s", stdout)
    assert "persistent compilation cache off" in stdout

    report = (out / "report.md").read_text()
    # A user reads the verdict first: plain words, computed from the run, before any table.
    lines = report.splitlines()
    assert lines[0] == "# adaptive-sched bench: what to use when" and lines[4] == "## Verdict"
    assert lines[6].startswith("**Know the run's length and have no budget to tune the lr?** `recommended(")
    assert "**Don't know the run's length?** `recommended(base_lr)` (`ours` here)" in report
    assert re.search(r"^- \*\*digits-mlp\*\* \(test_accuracy ↑\): untuned at the base lr, `ours-horizon` ", report, re.M)
    assert report.index("## Verdict") < report.index("## Headline") < report.index("## Appendix: thresholds")
    assert "issue" not in report.lower()
    for heading in ("## Headline", "## Where each preset wins and loses", "### digits-mlp", "## lr sensitivity",
                    "## Torch mirror", "## Timing"):  # fmt: skip
        assert heading in report
    # The methods text comes from the configs: recommended() keeps its own bounds, the other presets the bench's.
    assert "ours and ours-horizon: min_lr = lr x 0.01, max_lr = lr x 100" in report
    assert "min_lr = lr x 0.01, max_lr = lr x 10)" in report
    assert re.search(r"^\| \*\*ours\*\* +\|", report, re.M)
    assert re.search(r"^\| \*\*ours-horizon\*\* +\|", report, re.M)
    for heading in ("## Appendix: thresholds", "### Horizon known: untuned against tuned", "### Horizon-free",
                    "### Robustness: the worst grid point", "### lr window"):  # fmt: skip
        assert heading in report
    assert "vs cosine tuned" in report and "P tuned vs schedule-free" in report
    assert "*Not the default run*" in report
    assert "Compilation cache: persistent compilation cache off." in report

    doc = json.loads((out / "results.json").read_text())
    task = doc["tasks"]["digits-mlp"]
    heads = task["summary"]["headline"]
    assert heads["horizon_known"]["method"] == "ours-horizon" and heads["horizon_free"]["method"] == "ours"
    for head in heads.values():
        assert set(head["untuned_vs_tuned"]) == set(head["tuned_vs_tuned"]) == {
            "constant", "cosine", "onecycle", "plateau", "prodigy", "schedule-free",
        }  # fmt: skip
        assert set(head["lr_window"]) == set(task["methods"])
    assert set(task["summary"]["robustness"]) == {m for m in task["methods"] if m.startswith("ours")}
    assert {t["id"] for t in doc["targets"]} >= {"horizon-known/tuned", "horizon-free/never-loses", "wall-time"}
    assert doc["targets"][-1]["per_task"]["run"]["value"] == pytest.approx(doc["meta"]["wall_s_before_report"])
    assert doc["meta"]["default_run"] is False
    assert task["seeds"] == 2 and task["grid"] == [0.1, 0.3, 1.0, 3.0, 10.0]
    run = task["runs"]["ours"]["x1"]
    assert len(run["metric"]) == 2 and len(run["loss"]) == 2 and len(run["loss"][0]) == task["steps"]
    assert set(task["runs"]) == set(task["methods"])
    assert task["summary"]["best_baseline"] in task["methods"]

    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} >= {"digits-mlp-curves.png", "digits-mlp-hparams.png", "lr-sensitivity.png"}
    import matplotlib.image

    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    try:
        import torch  # noqa: F401

        from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: F401
    except ImportError:
        assert "Skipped:" in report
    else:
        assert "torch-digits-mlp.png" in {p.name for p in pngs}
        assert doc["torch"]["summary"]["digits-mlp"]["best_baseline"] in ("constant", "cosine", "onecycle", "plateau")


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_out_that_is_an_existing_file_exits_with_one_line(
    command: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "report.md"
    existing.write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        _cli.main([command, "--out", str(existing)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--out={str(existing)!r} exists and is not a directory" in err
    assert "Traceback" not in err
    assert existing.read_text() == "not a directory"
