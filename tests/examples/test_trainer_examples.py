"""The trainer-integration examples run at small size and do what they say."""

from __future__ import annotations

from pathlib import Path

import pytest
from streams import load_example

torch = pytest.importorskip("torch")


def test_reinforce_torch_learns_and_the_reward_drives_the_lr() -> None:
    out = load_example("reinforce_torch").main(steps=80, verbose=False)
    reward, lr = out["reward"], out["lr"]
    assert len(reward) == len(lr) == 80
    assert sum(reward[-20:]) / 20 > sum(reward[:20]) / 20 + 0.3  # the policy learned
    assert all(3e-4 <= v <= 3e-2 for v in lr)
    assert max(lr) > lr[0]  # rose while the reward improved
    assert out["scheduler"].controller_state.step == 80


def test_train_with_rewards_runs_small(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    out = load_example("train_with_rewards").main(steps=3, out_dir=tmp_path, verbose=False)  # offline: conftest
    assert out["step"] == [1, 2, 3]
    assert all(r is not None and 0.0 <= r <= 1.0 for r in out["reward"])
    assert all(k is not None for k in out["kl"])  # beta > 0: the offline reference model works
    assert out["lr"][0] == 1e-2 and all(1e-3 <= v <= 5e-2 for v in out["lr"])
    assert out["scheduler"].controller_state.step == 3
    assert out["callback"].consumed["reward"] == 3 and out["callback"].consumed["kl"] == 3
    assert (tmp_path / "tiny-lm" / "config.json").exists()
