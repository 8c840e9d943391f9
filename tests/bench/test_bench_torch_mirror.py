"""The torch mirror: the same model and reward as the JAX tasks, and real runs of the adapter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
pytest.importorskip("adaptive_sched.adapters.torch")

from adaptive_sched.bench import _data, _tasks, _torch_mirror  # noqa: E402


def test_torch_policy_is_the_jax_policy(tiny_policy: Any) -> None:
    toks = np.random.default_rng(0).integers(0, len(_data.VOCAB), size=(3, 11))
    h0 = jnp.zeros((3, tiny_policy["wh"].shape[0]), jnp.float32)
    want, _ = _tasks.gru_logits({k: jnp.asarray(v) for k, v in tiny_policy.items()}, h0, jnp.asarray(toks))
    got, _ = _torch_mirror._Policy(tiny_policy).logits(torch.as_tensor(toks))
    np.testing.assert_allclose(got.detach().numpy(), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_torch_reward_is_the_jax_reward() -> None:
    toks = np.random.default_rng(1).integers(0, len(_data.VOCAB), size=(16, 12))
    w = _data.sentiment_weights()
    mask_j = _tasks.end_mask(jnp.asarray(toks))
    want = _tasks.sentiment_reward(jnp.asarray(toks), mask_j, jnp.asarray(w))
    mask_t = _torch_mirror._end_mask(torch.as_tensor(toks))
    np.testing.assert_array_equal(mask_t.numpy(), np.asarray(mask_j))
    got = _torch_mirror.rl_sentiment_reward(torch.as_tensor(toks), mask_t, torch.as_tensor(w))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_mirror_runs_and_our_adapter_drives_the_lr(tiny_policy: Any, tmp_path: Any) -> None:
    result = _torch_mirror.run_mirror(["digits-mlp", "rl-sentiment"], "tiny", seeds=1, policy=tiny_policy)
    digits = result["digits-mlp"]
    assert digits["methods"][-4:] == list(_torch_mirror.TORCH_PEERS)
    for m in digits["methods"]:
        (run,) = digits["runs"][m]
        assert 0.0 <= run["metric"] <= 1.0 and len(run["lr"]) == _data.DIGITS_SIZES["tiny"]["steps"]
    ours_lr = np.array(digits["runs"]["ours"][0]["lr"])
    # The first step never runs above base_lr (the range test ran it at base_lr, the evidence controller's warm
    # start below it), never below min_lr = base_lr / 100; then the controller moves the lr.
    assert digits["base_lr"] / 100 * (1 - 1e-6) <= ours_lr[0] <= digits["base_lr"] * (1 + 1e-6)
    assert len(set(ours_lr.round(12))) > 1
    cos = np.array(digits["runs"]["cosine"][0]["lr"])
    assert np.all(np.diff(cos) <= 0)
    one = digits["runs"]["onecycle"][0]
    assert max(one["lr"]) == pytest.approx(digits["base_lr"], rel=1e-3) and min(one["momentum"]) < 0.9
    rl = result["rl-sentiment"]
    (run,) = rl["runs"]["ours-kl"]
    assert len(run["kl"]) == _data.RL_SIZES["tiny"]["steps"] and run["kl"][0] < 1e-4
    assert np.isfinite(run["metric"])
    summary, lines = _torch_mirror.describe(result, {"digits-mlp": True, "rl-sentiment": True})
    assert summary["digits-mlp"]["best_baseline"] in _torch_mirror.TORCH_PEERS
    assert any("**rl-sentiment**" in line for line in lines)
    assert _torch_mirror.plot(result, tmp_path) == ["torch-digits-mlp.png", "torch-rl-sentiment.png"]
    with pytest.raises(ValueError, match="torch mirror runs"):
        _torch_mirror.run_mirror(["logreg"], "tiny", seeds=1)
