"""What the transformers.Trainer tests share: a tiny regressor and its dataset (imports torch only)."""

from __future__ import annotations

from typing import Any

import torch


class TinyRegressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
        pred = self.linear(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(pred, labels), "logits": pred}


def dataset(n: int) -> list[dict[str, Any]]:
    """``n`` rows of ``y = sum(x) + 0.1 noise``, ``x`` 4-dimensional (seeded)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1) + 0.1 * torch.randn(n, generator=g)
    return [{"x": x[i], "labels": y[i]} for i in range(n)]
