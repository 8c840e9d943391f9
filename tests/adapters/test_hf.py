"""AdaptiveSchedulerCallback in real ``transformers.Trainer`` and TRL ``GRPOTrainer`` runs (CPU, offline)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from _trainer_data import TinyRegressor, dataset  # noqa: E402

from adaptive_sched.adapters.hf import (  # noqa: E402
    AdaptiveSchedulerCallback,
    AdaptiveSetup,
    adaptive_trainer_setup,
    negated_objective,
)
from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402


def range_test(base_lr: float, **overrides: Any) -> Any:
    """The lr range test + slope test (``recommended()`` before ``lr_rule="evidence"``), for the notes about them."""
    import adaptive_sched
    from adaptive_sched._recommended import RANGE_TEST_RULES

    kwargs = {"min_lr": base_lr / 100, "max_lr": base_lr * 100, **RANGE_TEST_RULES, **overrides}
    return adaptive_sched.Config(base_lr=base_lr, **kwargs)


def test_the_hub_is_offline() -> None:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # set by tests/conftest.py before anything imported the hub


# ---------------------------------------------------------------------- plain Trainer on a tiny regressor


def train(
    out: Path,
    max_steps: int,
    *,
    logging_steps: int = 1,
    save_steps: int = 0,
    accum: int = 1,
    resume: bool = False,
    callback_kwargs: dict[str, Any] | None = None,
    extra_callbacks: tuple[Any, ...] = (),
) -> tuple[Any, AdaptiveSetup]:
    torch.manual_seed(0)
    model = TinyRegressor()
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=accum,
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    setup = adaptive_trainer_setup(
        model,
        args,
        lr_rule="trend",
        trend_up=1.1,
        trend_down=0.8,
        min_lr=1e-4,
        max_lr=1e-1,
        callback_kwargs=callback_kwargs,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset(96),
        optimizers=setup.optimizers,
        callbacks=[*setup.callbacks, *extra_callbacks],
    )
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train(resume_from_checkpoint=resume or None)
    return trainer, setup


def logged(trainer: Any, key: str) -> list[Any]:
    return [e[key] for e in trainer.state.log_history if key in e]


@pytest.mark.parametrize("logging_steps", [1, 3])
def test_one_controller_step_per_optimizer_step_whatever_logging_steps(tmp_path: Path, logging_steps: int) -> None:
    trainer, setup = train(tmp_path, max_steps=9, logging_steps=logging_steps)
    state = setup.scheduler.controller_state
    assert trainer.state.global_step == 9
    assert state.step == 9  # logging_steps 1 and 3: the same number of controller steps
    n_logs = len(logged(trainer, "loss"))
    assert n_logs == 9 // logging_steps
    assert setup.callback.consumed["loss"] == n_logs  # each logged loss consumed once
    assert setup.callback.consumed["grad_norm"] == n_logs
    assert state.loss.decay_pow == pytest.approx(0.9**n_logs)  # EMA saw exactly n_logs losses
    assert len(set(logged(trainer, "learning_rate"))) > 1


def test_gradient_accumulation_one_controller_step_per_optimizer_step(tmp_path: Path) -> None:
    class CountBatches(transformers.TrainerCallback):
        batches = 0

        def on_substep_end(self, *args: Any, **kwargs: Any) -> None:
            CountBatches.batches += 1

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            CountBatches.batches += 1

    trainer, setup = train(tmp_path, max_steps=4, accum=2, extra_callbacks=(CountBatches(),))
    assert CountBatches.batches == 8 and trainer.state.global_step == 4  # 8 micro-batches, 4 optimizer steps
    assert setup.scheduler.controller_state.step == 4
    assert setup.callback.consumed["loss"] == 4


def test_resume_is_exact_when_a_logging_window_spans_the_checkpoint(tmp_path: Path) -> None:
    # logging_steps=3, save_steps=5: Trainer does not checkpoint its running-loss window; the
    # callback flushes it at save steps, so the resumed controller continues exactly.
    full, sf = train(tmp_path / "full", 10, logging_steps=3, save_steps=5)
    train(tmp_path / "part", 5, logging_steps=3, save_steps=5)
    rest, sr = train(tmp_path / "part", 10, logging_steps=3, save_steps=5, resume=True)
    assert [e["step"] for e in full.state.log_history if "loss" in e] == [3, 5, 6, 9, 10]  # 5: the flush
    assert logged(rest, "loss") == logged(full, "loss")  # the resumed history includes the checkpoint's
    assert logged(rest, "learning_rate") == logged(full, "learning_rate")
    assert sr.scheduler.state_dict() == sf.scheduler.state_dict()
    assert sr.scheduler.get_last_lr() == sf.scheduler.get_last_lr()


def test_without_log_on_save_the_window_spanning_a_checkpoint_is_lost(tmp_path: Path) -> None:
    # The documented limitation of log_on_save=False (the behaviour of a hand-written callback).
    kw = {"callback_kwargs": {"log_on_save": False}, "logging_steps": 3, "save_steps": 5}
    full, sf = train(tmp_path / "full", 7, **kw)
    train(tmp_path / "part", 5, **kw)
    rest, sr = train(tmp_path / "part", 7, resume=True, **kw)
    assert [e["step"] for e in full.state.log_history if "loss" in e] == [3, 6]
    assert logged(rest, "loss")[-1] != logged(full, "loss")[-1]  # window 4..6 vs 6 only
    assert sr.scheduler.state_dict()["controller"] != sf.scheduler.state_dict()["controller"]


class LogTwice(transformers.TrainerCallback):
    """A user callback that logs its own row with a loss in step 2 (before the Trainer's own log)."""

    def __init__(self) -> None:
        self.trainer: Any = None

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 1:  # the second optimizer step has just run; Trainer's step() not yet
            self.trainer.log({"loss": 100.0})


def test_several_logs_in_one_optimizer_step_make_one_update(tmp_path: Path) -> None:
    extra = LogTwice()
    torch.manual_seed(0)
    model = TinyRegressor()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, learning_rate=1e-2, per_device_train_batch_size=8,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, remove_unused_columns=False,
        disable_tqdm=True, seed=0,
    )
    setup = adaptive_trainer_setup(model, args, lr_rule="trend", ema_beta=0.0, min_lr=1e-4, max_lr=1e-1)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=dataset(96), optimizers=setup.optimizers,
        callbacks=[extra, *setup.callbacks],
    )
    extra.trainer = trainer
    seen: list[dict[str, Any]] = []
    observe = setup.scheduler.observe
    setup.scheduler.observe = lambda **kw: (seen.append(kw), observe(**kw))[1]  # type: ignore[method-assign]
    trainer.train()
    losses = logged(trainer, "loss")
    assert len(losses) == 5 and losses[1] == 100.0  # step 2 logged twice
    assert setup.scheduler.controller_state.step == 4  # still one update per optimizer step
    assert setup.callback.consumed["loss"] == 5
    # The step-2 update was redone with the mean of both values (ema_beta=0: the EMA is the value).
    assert seen[2]["loss"] == pytest.approx((100.0 + losses[2]) / 2)
    assert setup.scheduler.controller_state.loss.mean == pytest.approx(losses[-1])


def test_none_missing_and_nan_values(tmp_path: Path) -> None:
    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, reward_rule="trend", ema_reward_beta=0.0)
    cb = AdaptiveSchedulerCallback(sched)
    for logs in ({"reward": 1.0}, {"reward": None}, {"reward": float("nan")}, {"other": 3.0}, {"reward": 2.0}):
        opt.step()
        sched.step()
        cb.on_log(None, None, None, logs=logs)  # type: ignore[arg-type]
    st = sched.controller_state
    assert st.step == 5
    assert st.skipped == 2  # None (TRL's all-NaN metric) and NaN: skipped and counted by the core
    assert cb.consumed["reward"] == 4 and cb.skipped["reward"] == 2
    assert st.reward.mean == 2.0
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * 1.01)  # one "improved" step: 1 -> 2


def test_logs_before_the_first_optimizer_step_join_the_first_update() -> None:
    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, reward_rule="scaling", ema_reward_beta=0.0)
    cb = AdaptiveSchedulerCallback(sched)
    cb.consume({"reward": 0.5})
    assert sched.controller_state.step == 0
    opt.step()
    sched.step()
    cb.consume({"reward": 0.1})
    assert sched.controller_state.step == 1
    assert sched.controller_state.reward.mean == pytest.approx(0.3)


def test_loss_key_can_be_the_negated_regularised_objective() -> None:
    # recommended() anneals on a loss that improves as RL training progresses; TRL logs the reward
    # and the KL, not -(reward - beta * KL), so the callback builds it from each log row.
    import adaptive_sched

    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, adaptive_sched.recommended(0.1, ema_beta=0.0))
    cb = AdaptiveSchedulerCallback(sched, loss_key=negated_objective(beta=0.5))
    rows = [{"reward": 1.0, "kl": 0.4, "loss": 9.0}, {"loss": 9.0}, {"reward": 2.0, "kl": None}]
    for logs in rows:
        opt.step()
        sched.step()
        cb.consume(logs)
    st = sched.controller_state
    assert cb.consumed["loss"] == 2 and cb.skipped["loss"] == 1  # row 2 has no reward: not observed
    assert st.loss.mean == pytest.approx(-(1.0 - 0.5 * 0.4))  # the logged surrogate "loss" is not fed
    assert st.skipped == 2  # KL logged as None with beta > 0: neither the KL nor the objective is observable
    assert negated_objective(beta=0.0)({"reward": 0.25}) == -0.25  # beta 0: TRL logs no KL, none needed
    assert negated_objective(beta=0.1, reward_key="r", kl_key="k")({"r": 1.0, "k": 2.0}) == pytest.approx(-0.8)
    with pytest.raises(ValueError, match=r"negated_objective\(beta=-1\.0\) is invalid: must be a finite number >= 0"):
        negated_objective(beta=-1.0)
    with pytest.raises(TypeError, match=r"loss_key=\.\.\.\) must be a log key \(str\) or None, got 3"):
        AdaptiveSchedulerCallback(sched, loss_key=3)  # type: ignore[arg-type]


def test_sparse_logging_warns_when_a_rule_reads_signals(tmp_path: Path) -> None:
    import warnings

    import adaptive_sched

    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)  # logging_steps=500
    rec = AdaptiveSchedulerCallback(AdaptiveScheduler(opt, adaptive_sched.recommended(0.1)))
    with pytest.warns(UserWarning, match=r"logging_steps=500 optimizer steps, and lr_rule='evidence' read logged"):
        rec.on_train_begin(args, None, None)  # type: ignore[arg-type]
    sched = AdaptiveScheduler(opt, range_test(0.1))
    cb = AdaptiveSchedulerCallback(sched)
    # The slope test's windows are optimizer steps (issue 19): the warning says how few values a window then holds.
    with pytest.warns(UserWarning, match=r"logging_steps=500.*anneal_rule='slope' tests 30 optimizer steps into a leg, "
                      r"on the ~1 values.*search_rule='range' grows the lr once per logged value \(500 steps apart\)"):
        cb.on_train_begin(args, None, None)  # type: ignore[arg-type]
    args.logging_steps = 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.on_train_begin(args, None, None)  # type: ignore[arg-type]
        # a clock-only config reads no signal: nothing to warn about at any logging_steps
        args.logging_steps = 500
        plain = AdaptiveSchedulerCallback(AdaptiveScheduler(opt, lr_rule="cyclical", cycle_length=10.0))
        plain.on_train_begin(args, None, None)  # type: ignore[arg-type]


def test_helper_builds_what_the_trainer_would(tmp_path: Path) -> None:
    model = TinyRegressor()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), learning_rate=3e-3, weight_decay=0.1, warmup_steps=4, report_to=[], use_cpu=True
    )
    opt, sched, cb = adaptive_trainer_setup(model, args, reward_rule="trend", callback_kwargs={"reward_key": "r"})
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no decay on the bias
    assert sched.config.base_lr == pytest.approx(3e-3) and float(sched.config.warmup_steps) == 4.0
    assert cb.keys["reward"] == "r" and cb.scheduler is sched
    args.warmup_steps = 0.1  # a ratio needs max_steps
    with pytest.raises(ValueError, match=r"warmup_steps=0\.1 is a ratio"):
        adaptive_trainer_setup(model, args)
    args.max_steps = 50
    assert float(adaptive_trainer_setup(model, args).scheduler.config.warmup_steps) == 5.0


def test_helper_says_when_the_config_overrides_the_trainers_learning_rate(tmp_path: Path) -> None:
    import warnings

    import adaptive_sched

    model = TinyRegressor()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-3, report_to=[], use_cpu=True)
    with pytest.warns(UserWarning, match=r"base_lr=0\.001 .*args\.learning_rate=0\.003.*scheduler sets"):
        setup = adaptive_trainer_setup(model, args, adaptive_sched.recommended(1e-3))
    # the config's base_lr is what runs: recommended()'s warm start from it (base * start, one ramp step up)
    cfg = setup.scheduler.config
    first = 1e-3 * cfg.evidence_start
    assert setup.optimizer.param_groups[0]["lr"] == pytest.approx(first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adaptive_trainer_setup(model, args, adaptive_sched.recommended(args.learning_rate))
        adaptive_trainer_setup(model, args, reward_rule="trend")  # base_lr defaults to args.learning_rate


def test_bad_arguments_are_named() -> None:
    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    with pytest.raises(TypeError, match="expects an adaptive_sched AdaptiveScheduler, got StepLR"):
        AdaptiveSchedulerCallback(torch.optim.lr_scheduler.StepLR(opt, 1))
    sched = AdaptiveScheduler(opt)
    with pytest.raises(TypeError, match=r"reward_key=\.\.\.\) must be a log key \(str\) or None, got 3"):
        AdaptiveSchedulerCallback(sched, reward_key=3)  # type: ignore[arg-type]
    cb = AdaptiveSchedulerCallback(sched)
    with pytest.raises(TypeError, match="logged 'loss' must be a number or None, got str"):
        cb.consume({"loss": "high"})
    other = torch.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(ValueError, match="lr_scheduler is StepLR, not this callback's AdaptiveScheduler"):
        cb.on_train_begin(None, None, None, lr_scheduler=other)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- TRL GRPO on the example's tiny LM


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted 6-step GRPO run and the same run split at its step-3 checkpoint.

    logging_steps=2, save_steps=3: the step-3 checkpoint falls inside a logging
    window (flushed by the callback). The reward function returns None for
    every completion at step 3, so TRL logs ``reward: None`` there.
    """
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    from streams import load_example

    ex = load_example("train_with_rewards")
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    tmp = tmp_path_factory.mktemp("grpo")
    model_dir = ex.build_tiny_lm(tmp / "tiny-lm")
    holder: dict[str, Any] = {}

    def reward(completions: list[str], **kw: Any) -> list[Any]:
        if holder["trainer"].state.global_step == 2:  # generating for step 3
            return [None] * len(completions)
        return ex.reward_a(completions)

    def run(out: Path, max_steps: int, resume: bool = False) -> tuple[Any, AdaptiveSetup, list[dict[str, Any]]]:
        model = transformers.LlamaForCausalLM.from_pretrained(model_dir)
        args = GRPOConfig(
            output_dir=str(out), max_steps=max_steps, learning_rate=1e-2, per_device_train_batch_size=4,
            num_generations=4, max_completion_length=8, beta=0.04, logging_steps=2, save_steps=3,
            use_cpu=True, report_to=[], disable_tqdm=True, seed=0,
        )
        setup = adaptive_trainer_setup(
            model, args, reward_rule="trend", reward_up=1.2, reward_down=0.9, ema_reward_beta=0.5,
            kl_rule="target", kl_target=0.03, kl_gain=0.1, kl_clip=1.0, min_lr=1e-4, max_lr=5e-2,
        )
        seen: list[dict[str, Any]] = []
        observe = setup.scheduler.observe
        setup.scheduler.observe = lambda **kw: (seen.append(kw), observe(**kw))[1]  # type: ignore[method-assign]
        trainer = GRPOTrainer(
            model=model, reward_funcs=reward, args=args,
            train_dataset=datasets.Dataset.from_dict({"prompt": ex.PROMPTS * 4}),
            processing_class=ex.build_tokenizer(), optimizers=setup.optimizers,
        )
        setup.attach(trainer)
        trainer.remove_callback(transformers.PrinterCallback)
        holder["trainer"] = trainer
        trainer.train(resume_from_checkpoint=resume or None)
        return trainer, setup, seen

    full = run(tmp / "full", 6)
    first = run(tmp / "part", 3)
    rest = run(tmp / "part", 6, resume=True)
    return {"full": full, "first": first, "rest": rest}


def test_grpo_each_logged_reward_is_consumed_once(grpo_runs: dict[str, Any]) -> None:
    trainer, setup, seen = grpo_runs["full"]
    rows = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["step"] for e in rows] == [2, 3, 4, 6]  # 3: the flush before the checkpoint
    rewards = [e["reward"] for e in rows]
    assert rewards[1] is None  # all-None rewards: TRL logs None
    got = [kw["reward"] for kw in seen]  # observe(reward=...), the Signals name
    assert len(got) == len(rows)  # one observe per logged row, nothing else
    assert [None if math.isnan(r) else r for r in got] == rewards
    assert [kw["kl"] for kw in seen] == [e["kl"] for e in rows]  # beta > 0: kl logged and fed
    assert setup.callback.consumed["reward"] == 4 and setup.callback.skipped["reward"] == 1
    st = setup.scheduler.controller_state
    assert st.step == 6  # one controller step per optimizer step
    assert st.skipped == 1  # the None reward, counted


def test_grpo_lr_follows_the_reward_and_kl_rules(grpo_runs: dict[str, Any]) -> None:
    trainer, setup, _ = grpo_runs["full"]
    rows = {e["step"]: e for e in trainer.state.log_history if "reward" in e}
    lrs = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    # Replay: a fresh scheduler fed the logged values at the logged steps, step() elsewhere.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    ref = AdaptiveScheduler(opt, setup.scheduler.config)
    want = []
    for t in range(1, 7):
        want.append(ref.get_last_lr()[0])  # the lr step t used
        opt.step()
        if t in rows:
            r = rows[t]["reward"]
            ref.observe(R=math.nan if r is None else r, kl=rows[t]["kl"], loss=rows[t]["loss"],
                        grad_norm=rows[t]["grad_norm"])
        else:
            ref.step()
    assert [lrs[t] for t in sorted(lrs)] == [want[t - 1] for t in sorted(lrs)]
    assert ref.state_dict()["controller"] == setup.scheduler.state_dict()["controller"]
    # And by hand: signals at steps 2 (first reward: no trend yet), 3 (reward None), 4; none at 5.
    # So lr_6 = lr_4 * exp(reward trend step at 4 + KL target step at 4), within the bounds.
    cfg = setup.scheduler.config
    r2, r4 = rows[2]["reward"], rows[4]["reward"]
    hat2, hat4 = r2, (0.25 * r2 + 0.5 * r4) / 0.75  # bias-corrected EMA, ema_reward_beta 0.5
    up = hat4 > hat2 + 1e-4 * abs(hat2)
    inc_reward = math.log(float(cfg.reward_up) if up else float(cfg.reward_down))
    k2, k3, k4 = rows[2]["kl"], rows[3]["kl"], rows[4]["kl"]
    kl_hat = (0.081 * k2 + 0.09 * k3 + 0.1 * k4) / (1 - 0.9**3)  # ema_kl_beta 0.9, three observations
    inc_kl = -0.1 * min(max(kl_hat / 0.03 - 1.0, -1.0), 1.0)
    assert lrs[6] == pytest.approx(lrs[4] * math.exp(inc_reward + inc_kl), rel=1e-5)
    assert lrs[6] != lrs[4]


def test_grpo_resume_from_checkpoint_continues_exactly(grpo_runs: dict[str, Any]) -> None:
    full, sf, _ = grpo_runs["full"]
    rest, sr, _ = grpo_runs["rest"]
    assert rest.state.global_step == 6
    for key in ("reward", "kl", "learning_rate", "loss"):
        assert logged(rest, key) == logged(full, key)
    assert sr.scheduler.state_dict() == sf.scheduler.state_dict()
    assert sr.scheduler.get_last_lr() == sf.scheduler.get_last_lr()


def test_a_run_that_ends_before_the_first_slope_test_says_so() -> None:
    # Issue 19: a 20-step GRPO run never annealed (the slope test first tests 30 steps in) and nothing said so.
    import warnings
    from types import SimpleNamespace

    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, range_test(0.1))
    cb = AdaptiveSchedulerCallback(sched)
    for _ in range(20):
        opt.step()
        sched.observe(loss=1.0, grad_norm=1.0)
    with pytest.warns(UserWarning, match=r"training ended after 20 optimizer steps and the slope test never ran.*total_steps"):
        cb.on_train_end(None, None, None)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.on_train_end(None, None, None)  # type: ignore[arg-type]  # once
        # with the horizon (the Trainer's max_steps, scheduled at on_train_begin) the cooldown anneals: no note
        opt2 = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
        sched2 = AdaptiveScheduler(opt2, range_test(0.1))
        cb2 = AdaptiveSchedulerCallback(sched2)
        cb2.on_train_begin(SimpleNamespace(logging_steps=1, logging_strategy="steps"), SimpleNamespace(max_steps=20), None)  # type: ignore[arg-type]
        cb2.on_train_end(None, None, None)  # type: ignore[arg-type]


def test_a_log_row_without_the_grad_norm_gives_no_observe_advice_and_a_missing_key_is_named() -> None:
    # New-user finding: TRL's last, partial logging window has no grad_norm; the torch adapter's warning then
    # told a Trainer user to pass observe(model=...), a call the user never makes. (lr_rule="grad_norm", whose
    # signal the gradient norm is: the range-test configuration's guard.)
    import warnings

    opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched = AdaptiveScheduler(opt, range_test(0.1, cooldown_total_steps=8.0))
    cb = AdaptiveSchedulerCallback(sched)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in range(1, 9):
            opt.step()
            sched.step()
            cb.consume({"loss": 1.0 - 0.01 * t, "grad_norm": 1.0} if t < 8 else {"loss": 0.9})  # the last row lacks it
        cb.on_train_end(None, None, None)  # type: ignore[arg-type]
    # a grad_norm_key that never appears in the logs: the guard held all run, and the end of training says so
    opt2 = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
    sched2 = AdaptiveScheduler(opt2, range_test(0.1, cooldown_total_steps=8.0))
    cb2 = AdaptiveSchedulerCallback(sched2, grad_norm_key="gradient_norm")
    for t in range(1, 9):
        opt2.step()
        sched2.step()
        cb2.consume({"loss": 1.0 - 0.01 * t, "grad_norm": 1.0})
    with pytest.warns(UserWarning, match=r"grad_norm_key='gradient_norm' never appeared in the logs, so lr_rule='grad_norm'"):
        cb2.on_train_end(None, None, None)  # type: ignore[arg-type]


def test_the_never_annealed_note_names_a_missing_cooldown() -> None:
    # New-user finding: with max_steps given but cooldown_rule="none", the note advised giving the horizon.
    # recommended()'s evidence rule never decays the lr by itself: only the cooldown anneals it.
    import warnings
    from types import SimpleNamespace

    import adaptive_sched

    def run(config: Any, max_steps: int | None) -> Any:
        """20 steps through the callback, ``on_train_begin`` told ``max_steps`` (None: not called); its on_train_end."""
        opt = torch.optim.SGD(TinyRegressor().parameters(), lr=0.1)
        sched = AdaptiveScheduler(opt, config)
        cb = AdaptiveSchedulerCallback(sched)
        if max_steps is not None:
            args = SimpleNamespace(logging_steps=1, logging_strategy="steps")
            cb.on_train_begin(args, SimpleNamespace(max_steps=max_steps), None)  # type: ignore[arg-type]
        for _ in range(20):
            opt.step()
            sched.observe(loss=1.0, grad_norm=1.0)
        return lambda: cb.on_train_end(None, None, None)  # type: ignore[arg-type]

    end = run(adaptive_sched.recommended(0.1, cooldown_rule="none"), 20)
    with pytest.warns(UserWarning, match=r"after 20 optimizer steps and no cooldown ran \(lr_rule='evidence' never "
                      r"decays the lr by itself.*no cooldown \(cooldown_rule='none'\)"):
        end()
    end = run(adaptive_sched.recommended(0.1), None)  # no horizon reached the callback: no cooldown scheduled
    with pytest.warns(UserWarning, match=r"no cooldown ran .*Give the horizon \(recommended\(base_lr, total_steps="):
        end()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        end()  # once
        run(adaptive_sched.recommended(0.1), 20)()  # the Trainer's max_steps: the cooldown annealed
        run(adaptive_sched.recommended(0.1, total_steps=20), None)()
        run(adaptive_sched.Config(base_lr=0.1), None)()  # no rule moves the lr: a constant lr, chosen
