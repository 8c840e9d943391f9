"""Why did my lr change? Train a small regression with ``recommended()`` and print what the controller decided.

Every few steps it prints :func:`adaptive_sched.format_diagnostics` of
:meth:`AdaptiveScheduler.diagnostics`: the lr as the product of each rule's
factor, then each rule's last event (the evidence rule's growth past
``base_lr`` and its cuts, the cooldown's start) and its statistics (the mean
``grad_cos`` and its z, the smoothed loss). The same mapping is what the
HF/TRL and Lightning callbacks log under ``adaptive/``. Here ``base_lr`` is
too low for the problem: the steps keep agreeing, so the lr grows past it,
is cut when they start to reverse, and the cooldown takes it to ``min_lr``
over the last 20%.

Run: ``python examples/why_lr_changed.py``.
"""

from __future__ import annotations

from typing import Any

import torch

import adaptive_sched
from adaptive_sched import AdaptiveScheduler


def main(steps: int = 300, every: int = 100, seed: int = 0) -> dict[str, Any]:
    """Train ``steps`` steps; print the diagnostics every ``every`` steps. Returns the last diagnostics and the texts."""
    torch.manual_seed(seed)
    x = torch.randn(512, 20)
    y = x @ torch.randn(20, 1) + 0.3 * torch.randn(512, 1)
    model = torch.nn.Linear(20, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    sched = AdaptiveScheduler(optimizer, adaptive_sched.recommended(base_lr=1e-3, total_steps=steps))
    texts = []
    for step in range(1, steps + 1):
        batch = torch.randint(0, 512, (32,))
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        sched.observe(loss=loss)  # the adapter reads the gradient's direction and norm from the optimizer step
        optimizer.zero_grad()
        if step % every == 0:
            texts.append(adaptive_sched.format_diagnostics(sched.config, sched.diagnostics()))
            print(texts[-1])
    return {"diagnostics": sched.diagnostics(), "texts": texts, "repr": repr(sched)}


if __name__ == "__main__":
    main()
