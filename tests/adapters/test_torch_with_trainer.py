"""AdaptiveScheduler inside a real ``transformers.Trainer`` (runs where the ``hf`` extra is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from _trainer_data import TinyRegressor, dataset  # noqa: E402

from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402


class ObserveLoggedLoss(transformers.TrainerCallback):
    """Feeds the logged training loss to the scheduler (after Trainer's own step())."""

    def __init__(self, sched: AdaptiveScheduler) -> None:
        self.sched = sched

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.sched.observe(loss=logs["loss"])


def run(out: Path, max_steps: int, resume: bool = False, save_steps: int = 5) -> tuple[Any, AdaptiveScheduler]:
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = AdaptiveScheduler(opt, lr_rule="trend", trend_up=1.1, trend_down=0.8, min_lr=1e-4, max_lr=1e-1)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_steps,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset(64),
        optimizers=(opt, sched),
        callbacks=[ObserveLoggedLoss(sched)],
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return trainer, sched


def test_trainer_steps_once_per_optimizer_step_and_resumes(tmp_path: Path) -> None:
    trainer, sched = run(tmp_path / "full", max_steps=10)
    assert trainer.state.global_step == 10
    # Trainer calls step() after each optimizer step and the callback observes the logged
    # loss afterwards: one controller update per optimizer step, driven by the loss.
    assert sched.controller_state.step == 10
    assert sched.controller_state.loss.decay_pow < 1.0  # the losses were observed
    lrs_full = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert len(set(lrs_full)) > 1

    # Resume from the step-5 checkpoint (Trainer loads scheduler.pt with weights_only=True).
    first, _ = run(tmp_path / "part", max_steps=5)
    trainer2, sched2 = run(tmp_path / "part", max_steps=10, resume=True)
    lrs_first = [e["learning_rate"] for e in first.state.log_history if "learning_rate" in e]
    lrs_rest = [e["learning_rate"] for e in trainer2.state.log_history if "learning_rate" in e][5:]
    assert lrs_first + lrs_rest == lrs_full
    assert sched2.controller_state.step == 10
    assert sched2.state_dict()["controller"] == sched.state_dict()["controller"]
    assert sched2.get_last_lr() == sched.get_last_lr()
