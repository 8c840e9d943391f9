"""Diagnostics through the torch adapter, a real transformers.Trainer (TensorBoard) and Lightning (CSVLogger)."""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import adaptive_sched as A  # noqa: E402
from adaptive_sched import _rules  # noqa: E402
from adaptive_sched._recommended import RANGE_TEST_RULES  # noqa: E402
from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402

SYNC_METHODS = ("item", "__float__", "__int__", "__bool__", "__index__", "cpu", "tolist", "numpy", "__array__")


@contextmanager
def no_host_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every way of moving a tensor's value to the host raises inside this block (as in test_torch.py)."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("host synchronisation")

    with monkeypatch.context() as m:
        for name in SYNC_METHODS:
            m.setattr(torch.Tensor, name, boom)
        yield


def quadratic_run(sched: AdaptiveScheduler, opt: Any, steps: int, *, tensors: bool = False) -> None:
    """Gradient descent on ``50 w^2`` (unstable above lr 0.02) at the scheduler's lr, its loss fed every step.

    The same stream for host and device mode as long as their lrs are equal (computed in Python floats).
    """
    w = 1.0
    for t in range(steps):
        loss = 50 * w * w + 0.01 * (1 + 0.1 * math.sin(7 * t))
        opt.step()
        sched.observe(loss=torch.tensor(loss, dtype=torch.float32) if tensors else loss)
        w -= float(sched.get_last_lr()[0]) * 100 * w


def range_test(base_lr: float, **overrides: Any) -> A.Config:
    """The lr range test + slope test (``recommended()`` before ``lr_rule="evidence"``): rules with many decisions."""
    kwargs = {"min_lr": base_lr / 100, "max_lr": base_lr * 100, **RANGE_TEST_RULES, **overrides}
    return A.Config(base_lr=base_lr, **kwargs)


def make(device_mode: bool, **kw: Any) -> tuple[AdaptiveScheduler, Any]:
    p = torch.nn.Parameter(torch.zeros(4))
    lr = torch.tensor(1e-3) if device_mode else 1e-3
    opt = torch.optim.SGD([p], lr=lr)
    config = range_test(1e-3, cooldown_total_steps=120.0, lr_rule="none", **kw)
    return AdaptiveScheduler(opt, config, device_mode=device_mode), opt


def test_torch_diagnostics_are_the_cores_as_floats_and_device_mode_tensors_equal_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, opt_h = make(False)
    dev, opt_d = make(True)
    quadratic_run(host, opt_h, 100)
    quadratic_run(dev, opt_d, 100, tensors=True)
    d = host.diagnostics()
    assert all(type(v) in (int, float) for v in d.values())
    core = A.diagnostics(host.controller_state)
    assert d == {k: (int(v) if isinstance(v, int) else float(v)) for k, v in core.items()}
    assert d["lr"] == host.get_last_lr()[0] and d["step"] == 100
    with no_host_sync(monkeypatch):  # device mode: tensors on the device, computed without a host sync
        t = dev.diagnostics()
        dev.observe(loss=torch.tensor(1.0))
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in t.values())
    assert list(t) == list(d)


def test_device_and_host_diagnostics_agree_bit_for_bit() -> None:
    host, opt_h = make(False)
    dev, opt_d = make(True)
    quadratic_run(host, opt_h, 80)
    quadratic_run(dev, opt_d, 80)
    a, b = host.diagnostics(), dev.diagnostics()
    assert [float(v) for v in b.values()] == [float(v) for v in a.values()]


def test_repr_names_the_decisions_and_stays_short() -> None:
    sched, opt = make(False)
    assert "decisions" not in repr(sched)  # nothing decided yet
    quadratic_run(sched, opt, 110)
    text = repr(sched)
    assert "decisions: search.range landed at step" in text and "cooldown.linear cooldown at step 61" in text
    assert text.count("\n") <= 6, text
    print(text)


def test_diagnostics_cost_is_off_the_hot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # observe()/step() never compute them: the core's diagnostics refuse to run here.
    import adaptive_sched.adapters.torch as adapter

    sched, opt = make(False)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("diagnostics computed in the hot path")

    with monkeypatch.context() as m:
        m.setattr(A._core, "diagnostics", refuse)
        m.setattr(adapter, "diagnostics", refuse)
        quadratic_run(sched, opt, 30)
        sched.step()
    # asked for, they are the core's on the scheduler's state
    d = sched.diagnostics()
    assert d["lr"] == sched.hparams.lr and d["step"] == int(A.diagnostics(sched.controller_state)["step"])


def test_format_diagnostics_of_the_adapters_values() -> None:
    sched, opt = make(False)
    quadratic_run(sched, opt, 90)
    text = A.format_diagnostics(sched.config, sched.diagnostics())
    assert text.splitlines()[0].startswith("step 90: lr ")
    assert "search.range: landed at step" in text


# ---------------------------------------------------------------------- transformers.Trainer + TensorBoard


def _trainer(tmp_path: Path, report_to: list[str], attach: bool = True, **callback_kwargs: Any) -> tuple[Any, Any]:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from _trainer_data import TinyRegressor, dataset

    from adaptive_sched.adapters.hf import adaptive_trainer_setup

    torch.manual_seed(0)
    model = TinyRegressor()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=60,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        logging_steps=5,
        save_strategy="no",
        report_to=report_to,
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    setup = adaptive_trainer_setup(model, args, range_test(1e-2), callback_kwargs=callback_kwargs)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset(96), optimizers=setup.optimizers)
    if attach:
        assert setup.attach(trainer) is trainer
    else:
        trainer.add_callback(setup.callback)  # after the reporting callbacks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    trainer.caught = [str(w.message) for w in caught]  # type: ignore[attr-defined]
    return trainer, setup


def test_trainer_tensorboard_event_file_holds_the_adaptive_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, setup = _trainer(tmp_path, ["tensorboard"])
    files = list(tmp_path.rglob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    names = set(setup.scheduler.diagnostics())
    assert {f"train/adaptive/{n}" for n in names} <= tags  # the Trainer prefixes its training rows with train/
    steps = [e.step for e in acc.Scalars("train/adaptive/lr")]
    assert steps == list(range(5, 61, 5))  # every logging step
    logged_lr = [e.value for e in acc.Scalars("train/learning_rate")]
    lrs = [e.value for e in acc.Scalars("train/adaptive/lr")]
    assert len(lrs) == len(logged_lr)
    # the row's diagnostics describe the update that observed the row's loss: the lr the next step uses
    final = setup.scheduler.diagnostics()
    assert lrs[-1] == pytest.approx(final["lr"], rel=1e-6)
    search = [e.value for e in acc.Scalars("train/adaptive/search.range/factor")]
    assert search[-1] == pytest.approx(final["search.range/factor"], rel=1e-6)
    # and the same rows in the Trainer's own history
    rows = [r for r in trainer.state.log_history if "adaptive/lr" in r]
    assert len(rows) == 12 and rows[-1]["adaptive/step"] == 60


def test_attach_puts_the_callback_right_after_the_flow_callback_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    trainer, setup = _trainer(tmp_path, ["tensorboard"])
    from transformers.trainer_callback import DefaultFlowCallback

    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    at = names.index("DefaultFlowCallback")
    assert trainer.callback_handler.callbacks[at + 1] is setup.callback
    assert names.index("TensorBoardCallback") > at + 1
    assert not any("reporting callbacks" in m for m in trainer.caught)
    setup.attach(trainer)  # again: still there once
    assert sum(c is setup.callback for c in trainer.callback_handler.callbacks) == 1
    assert isinstance(trainer.callback_handler.callbacks[at], DefaultFlowCallback)
    with pytest.raises(TypeError, match=r"attach\(trainer=...\) expects a transformers.Trainer, got object"):
        setup.callback.attach(object())


def test_unattached_callback_warns_that_the_reporters_miss_the_diagnostics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    trainer, _ = _trainer(tmp_path, ["tensorboard"], attach=False)
    msgs = [m for m in trainer.caught if "reporting callbacks (tensorboard) run before" in m]
    assert len(msgs) == 1 and "setup.attach(trainer)" in msgs[0]
    assert any("adaptive/lr" in r for r in trainer.state.log_history)  # the history still gets them
    trainer, _ = _trainer(tmp_path / "b", [], attach=False)  # nothing reports: nothing to warn about
    assert not any("reporting callbacks" in m for m in trainer.caught)


def test_trainer_diagnostics_can_be_turned_off(tmp_path: Path) -> None:
    trainer, _ = _trainer(tmp_path, [], log_diagnostics=False)
    assert not any(k.startswith("adaptive/") for r in trainer.state.log_history for k in r)
    trainer, _ = _trainer(tmp_path / "b", [], diagnostics_prefix="sched/")
    assert any("sched/anneal.slope/factor" in r for r in trainer.state.log_history)


def test_trainer_computes_diagnostics_only_at_logging_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = AdaptiveScheduler.diagnostics

    def counted(self: AdaptiveScheduler) -> dict[str, Any]:
        calls.append(self.optimizer_steps)
        return real(self)

    monkeypatch.setattr(AdaptiveScheduler, "diagnostics", counted)
    _trainer(tmp_path, [])
    assert calls == list(range(5, 61, 5))


# ---------------------------------------------------------------------- Lightning + CSVLogger


def test_lightning_csv_logger_gets_the_diagnostics_at_logging_steps(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from adaptive_sched.adapters.lightning import AdaptiveSchedulerCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=1e-2)
            sched = AdaptiveScheduler(opt, A.recommended(1e-2))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def train_dataloader(self) -> Any:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(64, 4, generator=g)
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(dim=1)), batch_size=8)

    cb = AdaptiveSchedulerCallback()
    trainer = pl.Trainer(
        max_steps=40,
        logger=pl.loggers.CSVLogger(tmp_path, name="run"),
        log_every_n_steps=10,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
        accelerator="cpu",
        devices=1,
    )
    module = Tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module)
    sched = cb.scheduler
    assert sched is not None
    with open(next(tmp_path.rglob("metrics.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    names = set(sched.diagnostics())
    assert {f"adaptive/{n}" for n in names} <= set(rows[0])
    logged = [r for r in rows if r["adaptive/step"]]
    assert [int(float(r["adaptive/step"])) for r in logged] == [10, 20, 30, 40]
    assert float(logged[-1]["adaptive/lr"]) == pytest.approx(sched.diagnostics()["lr"], rel=1e-6)


def test_lightning_diagnostics_can_be_turned_off(tmp_path: Path) -> None:
    from adaptive_sched.adapters.lightning import AdaptiveSchedulerCallback

    with pytest.raises(TypeError, match="log_diagnostics"):
        AdaptiveSchedulerCallback(log_diagnostics="yes")  # type: ignore[arg-type]
    cb = AdaptiveSchedulerCallback(log_diagnostics=False)
    assert cb.log_diagnostics is False


def test_event_codes_name_the_registry_events() -> None:
    sched, opt = make(False)
    quadratic_run(sched, opt, 100)
    d = sched.diagnostics()
    for rule in _rules.active_rules(sched.config):
        if rule.events:
            code = d[f"{rule.key}/event"]
            assert 0 <= code <= len(rule.events) and isinstance(code, int)
    assert math.isfinite(d["anneal.slope/tstat"]) and np.isfinite(d["bounds/factor"])
