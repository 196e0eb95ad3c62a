"""Where a training step's time goes, for ``tools/benchmark.py``.

The trainer and the methods mark their parts with ``with timed("augment"): ...``. Outside a
:class:`StepTimer` that costs one global lookup; inside one, each section is timed after
synchronising the device (so CUDA's asynchronous kernels are charged to the section that
launched them). Sections nest: a section's *own* time excludes the sections inside it, so
``forward_backward`` does not count the augmentation a method runs within its forward pass.
A section marked ``part=True`` is a breakdown instead: its own time (without the sections
inside it) stays in the enclosing section's own time and is also recorded under
``"<enclosing>/<name>"`` in ``parts`` (how much of a refresh is the pass over the dataset, say).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType

import torch

_active: StepTimer | None = None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(slots=True)
class _OpenSection:
    """A section being timed: its name, its start and the time of the sections inside it."""

    name: str
    start: float
    children: float = 0.0


class StepTimer:
    """Collects the own time and the call count of every named section while active.

    Use as a context manager around the code to measure; ``own_seconds[name]`` and
    ``calls[name]`` hold the results; ``parts["outer/name"]`` the own time of each ``part=True``
    section inside the section ``outer`` (a part of the own time of ``outer``).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.own_seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.parts: dict[str, float] = defaultdict(float)
        self._stack: list[_OpenSection] = []

    def __enter__(self) -> StepTimer:
        global _active
        if _active is not None:
            raise RuntimeError("a StepTimer is already active")
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = None

    def _open(self, name: str) -> None:
        _synchronize(self.device)
        self._stack.append(_OpenSection(name, time.perf_counter()))

    def _close(self, part: bool) -> None:
        _synchronize(self.device)
        section = self._stack.pop()
        elapsed = time.perf_counter() - section.start
        enclosing = self._stack[-1] if self._stack else None
        if part:  # the enclosing section keeps this time; sections inside stay theirs
            own = elapsed - section.children
            self.parts[f"{enclosing.name if enclosing else ''}/{section.name}"] += own
            if enclosing:
                enclosing.children += section.children
            return
        self.own_seconds[section.name] += elapsed - section.children
        self.calls[section.name] += 1
        if enclosing:
            enclosing.children += elapsed


class timed:  # noqa: N801 - used like a function: ``with timed("data"):``
    """Time the enclosed block as section ``name`` of the active :class:`StepTimer`, if any
    (``part=True``: as a breakdown of the enclosing section, see the module docstring)."""

    __slots__ = ("name", "part", "timer")

    def __init__(self, name: str, *, part: bool = False) -> None:
        self.name = name
        self.part = part
        self.timer = _active

    def __enter__(self) -> None:
        if self.timer is not None:
            self.timer._open(self.name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.timer is not None:
            self.timer._close(self.part)
