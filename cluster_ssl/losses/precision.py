"""Losses computed in fp32 even when the forward pass runs under autocast."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def full_precision(loss: F) -> F:
    """Decorator: upcast half-precision tensor arguments to fp32, disable autocast inside.

    Logits divided by a small temperature, and softmaxes over tens of thousands of memory
    bank entries, need fp32's resolution: bf16 has a step of 0.0625 near 10.

    Args:
        loss: the loss function to wrap.

    Returns:
        A function with the signature of ``loss`` that converts its float16 and bfloat16
        tensor arguments (positional and keyword) to float32 and calls ``loss`` with
        autocast disabled on the device of the first tensor argument (CPU when there is
        none).
    """

    @functools.wraps(loss)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        args = tuple(_fp32(a) for a in args)
        kwargs = {key: _fp32(value) for key, value in kwargs.items()}
        with torch.autocast(device_type=device_type, enabled=False):
            return loss(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    return value
