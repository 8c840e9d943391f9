"""Fixtures shared by the bench tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_policy() -> dict[str, Any]:
    """The RL tasks' pretrained char-lm at tiny size (pretrained once per session)."""
    pytest.importorskip("jax")
    from adaptive_sched.bench._tasks import pretrain_policy

    return pretrain_policy("tiny")
