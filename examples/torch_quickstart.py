"""Quickstart: AdaptiveScheduler with the recommended configuration, on a tiny classifier and generated data.

``AdaptiveScheduler`` wraps a plain ``torch.optim.AdamW``; its configuration is
``adaptive_sched.recommended(base_lr)`` (``lr_rule="evidence"``), which moves
the lr only on evidence: a warm start from ``base_lr / 4`` up to ``base_lr``,
growth while consecutive steps keep pointing the same way (``grad_cos``, read
from the optimizer by the scheduler), cuts when they reverse, the loss rises
significantly or a value is not finite, and, since the run's length is given
here, a cooldown over the last 20%. After every ``optimizer.step()`` the
loop hands the scheduler the loss; the gradient's direction and norm it reads
itself. The lr always stays inside ``[min_lr, max_lr]``. The scheduler's state
is saved with the model's, as any LRScheduler's would be, and loads with
``torch.load(weights_only=True)``.

Run: ``python examples/torch_quickstart.py``
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import torch
from torch.optim import AdamW

import adaptive_sched
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

    # The configuration to start from: the base lr and the run's length are the only choices.
    # min_lr/max_lr override its default bounds (base_lr/100 .. 100*base_lr).
    config = adaptive_sched.recommended(5e-5, total_steps=steps, min_lr=1e-6, max_lr=5e-4)
    sched = AdaptiveScheduler(optimizer, config=config)

    history: dict[str, list[float]] = {"loss": [], "reward": [], "lr": []}
    for step, (x, y) in enumerate(dataloader(steps, seed=seed)):
        lr = sched.get_last_lr()[0]  # the lr this step trains with
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        sched.observe(loss=loss)  # after optimizer.step(): grad_cos and the gradient norm come from the step
        optimizer.zero_grad()

        reward = (logits.argmax(dim=1) == y).float().mean().item()  # batch accuracy, for the printout
        history["loss"].append(loss.item())
        history["reward"].append(reward)
        history["lr"].append(lr)
        if step % max(1, steps // 6) == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  accuracy {reward:.2f}  lr {lr:.2e}")

    # Checkpoint like any LRScheduler: plain values only, loadable with weights_only=True.
    buf = io.BytesIO()
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "sched": sched.state_dict()}
    torch.save(checkpoint, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    sched.load_state_dict(ckpt["sched"])
    print(f"lr {history['lr'][0]:.2e} -> {history['lr'][-1]:.2e} (bounds 1e-6 .. 5e-4); checkpoint reloaded")
    print(sched)  # the optimizer, the rules, the lr and their last decisions
    return history


if __name__ == "__main__":
    main()
