"""What the framework callbacks (:mod:`.hf`, :mod:`.lightning`) share: reading a logged value, merging a step's values.

Imports torch only (never transformers or Lightning).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["as_float", "mean_of_finite", "signal_keys"]


def as_float(label: str, value: Any) -> float:
    """A logged value as a float; ``None`` (TRL's all-NaN metric) becomes NaN ("not observed", counted).

    Args:
      label: how an error names the value (e.g. ``"logged 'loss'"``).
      value: a Python number, a one-element tensor or None.

    Raises:
      ValueError: a tensor with more than one element.
      TypeError: anything else that is not a real number.
    """
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{label} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().item())
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{label} must be a number or None, got {type(value).__name__}: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{label} must be a number or None, got {type(value).__name__}: {value!r}") from None


def mean_of_finite(values: list[float]) -> float:
    """Several values of one signal within one optimizer step: the mean of the finite ones (NaN if none)."""
    if len(values) == 1:
        return values[0]
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def signal_keys(*, functions: bool = False, **keys: Any) -> dict[str, Any]:
    """The callbacks' ``<signal>_key=`` arguments as ``{signal: key}``, without the ones set to None (not fed).

    Args:
      functions: also accept a callable ``logs -> value or None`` as a key (the HF callback does).
      **keys: ``<signal>=key``.

    Raises:
      TypeError: a key that is neither a str nor None (nor, with ``functions``, a callable); the message
        names the argument.
    """
    for name, key in keys.items():
        if key is not None and not isinstance(key, str) and not (functions and callable(key)):
            also = "; a function of the log row (logs -> number or None) is accepted too" if functions else ""
            raise TypeError(
                f"AdaptiveSchedulerCallback({name}_key=...) must be a log key (str) or None, got {key!r}{also}"
            )
    return {name: key for name, key in keys.items() if key is not None}
