"""Quickstart: the seed README's PyTorch loop, on a tiny classifier and generated data.

``AdaptiveScheduler`` wraps a plain ``torch.optim.AdamW``. After every
``optimizer.step()`` the loop hands the scheduler a reward (here the batch
accuracy, a stand-in for an RL reward such as a classifier score) with
``sched.observe(loss=None, R=reward, model=None)``; the ``reward_rule="trend"``
rule raises the lr while the smoothed reward improves and lowers it when it
stalls, always inside ``[min_lr, max_lr]``. The scheduler's state is saved with
the model's, as any LRScheduler's would be.

Run: ``python examples/torch_quickstart.py``
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import torch
from torch.optim import AdamW

from adaptive_sched import AdaptiveScheduler


def dataloader(steps: int, batch: int = 64, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Two noisy Gaussian blobs in 8 dimensions, label = which blob."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(8, generator=g)
    for _ in range(steps):
        y = torch.randint(0, 2, (batch,), generator=g)
        x = torch.randn(batch, 8, generator=g) + (2 * y[:, None] - 1) * centre * 0.5
        yield x, y


def main(steps: int = 300, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optimizer = AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)

    # build adaptive scheduler (the seed's call, verbatim)
    sched = AdaptiveScheduler(
        optimizer,
        lr_rule="trend",  # or "loss_decay", "variance", "grad_norm", "cyclical"
        momentum_rule="none",  # e.g. "relative" if using SGD
        reward_rule="trend",  # "scaling" | "trend" | "variance"
        ema_reward_beta=0.9,  # smooth noisy rewards
        min_lr=1e-6,
        max_lr=5e-4,
    )

    history: dict[str, list[float]] = {"loss": [], "reward": [], "lr": []}
    for step, (x, y) in enumerate(dataloader(steps, seed=seed)):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()

        # handshake with scheduler
        reward = (logits.argmax(dim=1) == y).float().mean().item()  # optional
        sched.observe(loss=None, R=reward, model=None)

        optimizer.zero_grad()
        history["loss"].append(loss.item())
        history["reward"].append(reward)
        history["lr"].append(sched.get_last_lr()[0])
        if step % max(1, steps // 6) == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  reward {reward:.2f}  lr {history['lr'][-1]:.2e}")

    # Checkpoint like any LRScheduler: plain values only, loadable with weights_only=True.
    buf = io.BytesIO()
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "sched": sched.state_dict()}
    torch.save(checkpoint, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    sched.load_state_dict(ckpt["sched"])
    print(f"lr {history['lr'][0]:.2e} -> {history['lr'][-1]:.2e} (bounds 1e-6 .. 5e-4); checkpoint reloaded")
    return history


if __name__ == "__main__":
    main()
