"""Where a training step's time goes, for ``tools/benchmark.py``.

The trainer and the methods mark their parts with ``with timed("augment"): ...``. Outside a
:class:`StepTimer` that costs one global lookup; inside one, each section is timed after
synchronising the device (so CUDA's asynchronous kernels are charged to the section that
launched them). Sections nest: a section's *own* time excludes the sections inside it, so
``forward_backward`` does not count the augmentation a method runs within its forward pass.
"""

from __future__ import annotations

import time
from collections import defaultdict
from types import TracebackType

import torch

_active: StepTimer | None = None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Collects the own time and the call count of every named section while active.

    Use as a context manager around the code to measure; ``own_seconds[name]`` and
    ``calls[name]`` hold the results.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.own_seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open section: [start, time of children]

    def __enter__(self) -> StepTimer:
        global _active
        if _active is not None:
            raise RuntimeError("a StepTimer is already active")
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = None

    def _open(self) -> None:
        _synchronize(self.device)
        self._stack.append([time.perf_counter(), 0.0])

    def _close(self, name: str) -> None:
        _synchronize(self.device)
        start, children = self._stack.pop()
        elapsed = time.perf_counter() - start
        self.own_seconds[name] += elapsed - children
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][1] += elapsed


class timed:  # noqa: N801 - used like a function: ``with timed("data"):``
    """Time the enclosed block as section ``name`` of the active :class:`StepTimer`, if any."""

    __slots__ = ("name", "timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self.timer = _active

    def __enter__(self) -> None:
        if self.timer is not None:
            self.timer._open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.timer is not None:
            self.timer._close(self.name)
