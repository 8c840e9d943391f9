"""Shared fixtures.

``x64`` runs a test with JAX's 64-bit mode off and on (the controller must give
float32 state and hyperparameters, and trace once, in both). The Hugging Face hub
is offline for the whole session (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# Nothing in the tests may download: huggingface_hub reads this once, when it is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest


@pytest.fixture(params=[False, True], ids=["x64off", "x64on"])
def x64(request: pytest.FixtureRequest) -> Iterator[bool]:
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param)
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", previous)
