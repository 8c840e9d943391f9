"""AdaptiveSchedulerCallback in real Lightning runs (CPU)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from adaptive_sched.adapters.lightning import AdaptiveSchedulerCallback  # noqa: E402
from adaptive_sched.adapters.torch import AdaptiveScheduler  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class Tiny(pl.LightningModule):
    """Linear regression; returns the loss and a made-up 'reward' (minus the loss) from training_step."""

    def __init__(self, interval: str = "step", **config: Any) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.config = config or {"lr_rule": "loss_decay", "decay_k": 0.5, "min_lr": 1e-4, "max_lr": 1.0}
        self.interval = interval
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.losses.append(loss.item())
        self.log("neg_loss", -loss, on_step=True)
        return {"loss": loss, "reward": -loss.detach()}

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        sched = AdaptiveScheduler(opt, **self.config)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}

    def train_dataloader(self) -> Any:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 4, generator=g)
        y = x.sum(dim=1)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # 4 batches


class RecordLR(pl.Callback):
    """Records the lr each optimizer step used (before the scheduler moved it)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])


def fit(
    root: Path,
    max_steps: int,
    *,
    ckpt_path: str | None = None,
    every: int | None = None,
    accumulate: int = 1,
    module: Any = None,
    cb: AdaptiveSchedulerCallback | None = None,
) -> tuple[Any, Any, AdaptiveSchedulerCallback, RecordLR]:
    module = module or Tiny()
    cb = cb or AdaptiveSchedulerCallback()
    rec = RecordLR()
    callbacks: list[Any] = [cb, rec]
    if every:
        callbacks.insert(0, pl.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=every, save_top_k=-1))
    trainer = pl.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=bool(every),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, ckpt_path=ckpt_path)
    return trainer, module, cb, rec


def test_lr_moves_with_the_loss(tmp_path: Path) -> None:
    trainer, module, cb, rec = fit(tmp_path, max_steps=6)
    sched = cb.scheduler
    assert isinstance(sched, AdaptiveScheduler)  # found among configure_optimizers' schedulers
    assert trainer.lr_scheduler_configs[0].scheduler is sched  # Lightning took it as is (no lr_scheduler_step)
    assert sched.controller_state.step == 6
    assert cb.consumed["loss"] == 6 and cb.consumed["reward"] == 6
    # loss_decay: lr_{t+1} = lr_t / (1 + k * loss^_t): replay the training losses through a fresh scheduler.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    ref = AdaptiveScheduler(opt, **module.config)
    want = []
    for loss in module.losses:
        want.append(ref.get_last_lr()[0])
        opt.step()
        ref.observe(loss=loss, R=-loss)
    assert rec.lrs == pytest.approx(want, rel=1e-6)
    assert all(b < a for a, b in zip(rec.lrs, rec.lrs[1:]))  # positive losses: the lr decays
    assert sched.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], rel=1e-6)


def test_grad_norm_rule_is_fed_the_pre_step_gradient_norm(tmp_path: Path) -> None:
    # lr_rule="grad_norm" (the range-test configuration's guard) needs the gradient norm; training_step returns
    # only the loss, so the callback measures it before each optimizer step (Lightning's pre-clipping hook).
    class Norms(pl.Callback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    import adaptive_sched
    from adaptive_sched._recommended import RANGE_TEST_RULES

    config = adaptive_sched.Config(base_lr=0.05, min_lr=0.05 / 100, max_lr=0.05 * 100, **RANGE_TEST_RULES)
    module = Tiny(**config.asdict())
    norms = Norms()
    cb = AdaptiveSchedulerCallback(reward_key=None)
    trainer = pl.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[norms, cb], accelerator="cpu", devices=1)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module)
    assert cb.consumed["grad_norm"] == 6
    # Replay: the same losses and gradient norms through a fresh scheduler give the same lr. The
    # callback scheduled the cooldown over the last half of the trainer's 6 steps (issue 16): so does the replay.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    ref = AdaptiveScheduler(opt, config)
    ref.cooldown(3, start=3)
    for loss, gn in zip(module.losses, norms.norms):
        opt.step()
        ref.observe(loss=loss, grad_norm=gn)
    assert cb.scheduler.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], rel=1e-6)
    assert cb.scheduler.get_last_lr()[0] != pytest.approx(0.05)  # the guard moved the lr


def test_gradient_accumulation_one_update_per_optimizer_step(tmp_path: Path) -> None:
    trainer, module, cb, _ = fit(tmp_path, max_steps=3, accumulate=2)
    assert trainer.global_step == 3 and len(module.losses) == 6
    st = cb.scheduler.controller_state
    assert st.step == 3
    assert cb.consumed["loss"] == 6  # every micro-batch's loss, merged into its optimizer step
    # The controller saw the mean of each step's two micro-batch losses (Lightning's 1/2 undone).
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    ref = AdaptiveScheduler(opt, **module.config)
    for a, b in zip(module.losses[::2], module.losses[1::2]):
        opt.step()
        ref.observe(loss=(a + b) / 2, R=-(a + b) / 2)
    assert cb.scheduler.get_last_lr()[0] == pytest.approx(ref.get_last_lr()[0], rel=1e-6)


def test_checkpoint_resume_continues_exactly(tmp_path: Path) -> None:
    _, _, cb_full, rec_full = fit(tmp_path / "full", max_steps=10, every=4)
    _, _, _, rec_first = fit(tmp_path / "part", max_steps=4, every=4)
    ckpt = next((tmp_path / "part").glob("*step=4*.ckpt"))
    _, _, cb_rest, rec_rest = fit(tmp_path / "part2", max_steps=10, ckpt_path=str(ckpt))
    assert rec_first.lrs + rec_rest.lrs == rec_full.lrs
    assert cb_rest.scheduler.state_dict() == cb_full.scheduler.state_dict()
    assert cb_rest.consumed == cb_full.consumed  # the callback's state came back with the checkpoint
    saved = torch.load(ckpt, weights_only=True)
    controller = saved["lr_schedulers"][0]["controller"]
    assert controller["step"] == 4
    assert controller["loss.decay_pow"] == pytest.approx(0.9**4)  # step 4's loss is in the checkpoint
    assert any("AdaptiveSchedulerCallback" in k for k in saved["callbacks"])


def test_logged_keys_and_interval_checks(tmp_path: Path) -> None:
    cb = AdaptiveSchedulerCallback(reward_key=None, logged_keys={"reward": "neg_loss"})
    _, module, cb, _ = fit(tmp_path, max_steps=3, cb=cb, module=Tiny(reward_rule="trend", ema_reward_beta=0.0))
    assert cb.consumed["reward"] == 3
    assert cb.scheduler.controller_state.reward.mean == pytest.approx(-module.losses[-1], rel=1e-6)
    with pytest.raises(ValueError, match="interval='epoch', frequency=1; it needs interval='step'"):
        fit(tmp_path / "e", max_steps=2, module=Tiny(interval="epoch"))
    with pytest.raises(ValueError, match=r"unknown signals \['rewrd'\]"):
        AdaptiveSchedulerCallback(logged_keys={"rewrd": "r"})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="got StepLR"):
        AdaptiveSchedulerCallback(torch.optim.lr_scheduler.StepLR(opt, 1))  # type: ignore[arg-type]
    cb2 = AdaptiveSchedulerCallback()
    with pytest.raises(ValueError, match="not an AdaptiveSchedulerCallback state dict"):
        cb2.load_state_dict({"pending": {}})
    assert math.isfinite(cb.scheduler.get_last_lr()[0])


def test_signals_are_averaged_over_ranks() -> None:
    from types import SimpleNamespace

    from adaptive_sched.adapters import lightning as adapter

    assert adapter.SIGNALS == ("loss", "reward", "grad_norm", "kl", "grad_cos")
    # The other rank: loss 3, reward NaN (supplied, not finite), no grad_norm, no kl, no grad_cos; rows sum,
    # n_finite, n_present (adaptive_sched._distributed's layout, shared with the torch adapter).
    other = torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]],
                         dtype=torch.float64)  # fmt: skip

    class Strategy:
        def reduce(self, t: Any, reduce_op: str) -> Any:
            assert reduce_op == "sum"
            return t + other

    trainer = SimpleNamespace(strategy=Strategy())
    module = SimpleNamespace(device=torch.device("cpu"))
    assert adapter._mean_over_ranks(trainer, module, {"loss": 1.0, "reward": 2.0}) == {"loss": 2.0, "reward": 2.0}
    out = adapter._mean_over_ranks(trainer, module, {"loss": 1.0, "reward": math.nan})
    assert out["loss"] == 2.0 and math.isnan(out["reward"])  # supplied by both ranks, finite on none
    assert "kl" not in out and "grad_norm" not in out and "grad_cos" not in out  # no rank supplied them


def test_no_second_all_reduce_when_the_scheduler_averages_itself() -> None:
    """On torch.distributed the scheduler's observe() averages; the callback must not reduce too."""
    from types import SimpleNamespace

    from adaptive_sched.adapters.lightning import AdaptiveSchedulerCallback
    from adaptive_sched.adapters.torch import AdaptiveScheduler

    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = AdaptiveScheduler(opt, lr_rule="loss_decay")
    seen: list[list[Any]] = []

    class TwoRanks:  # stands in for the scheduler's torch.distributed averaging
        def world_size(self) -> int:
            return 2

        def __call__(self, values: list[Any]) -> list[Any]:
            seen.append(list(values))
            return values

    reduced: list[Any] = []
    strategy = SimpleNamespace(reduce=lambda t, reduce_op: reduced.append(t) or t)
    trainer = SimpleNamespace(world_size=2, accumulate_grad_batches=1, strategy=strategy, callback_metrics={})
    module = SimpleNamespace(automatic_optimization=True, device=torch.device("cpu"))
    cb = AdaptiveSchedulerCallback(sched)
    local = sched._sync  # torch.distributed not initialised: world size 1
    for own_average in (True, False):
        sched._sync = TwoRanks() if own_average else local
        p.grad = torch.ones(2)
        opt.step()
        cb.on_train_batch_end(trainer, module, torch.tensor(2.0), None, 0)  # type: ignore[arg-type]
    assert len(seen) == 1 and seen[0][0] == 2.0  # the scheduler averaged the first step...
    assert len(reduced) == 1  # ...and the callback reduced only the second one
