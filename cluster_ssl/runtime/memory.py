"""Recognising an allocation that failed, on the CPU or a GPU, so it becomes one clear line."""

from __future__ import annotations

import torch

#: what torch's CPU allocator and CUDA's say when an allocation fails
_MESSAGES = ("can't allocate memory", "out of memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation (torch's CPU or CUDA allocator, Python's)."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _MESSAGES)
