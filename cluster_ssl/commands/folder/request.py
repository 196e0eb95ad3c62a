"""What ``cluster-ssl cluster`` was asked for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_ssl.engine.speed_trial import SpeedTrial


@dataclass
class FolderRequest:
    folder: Path
    k: int | None  # None: choose it (``--k auto``) in ``k_range``
    out: Path
    method: str | None = None
    k_range: tuple[int, int] | None = None  # None: 2 to min(20, number of images - 1)
    backbone: str | None = None
    weights: str | None = None
    epochs: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "auto"
    resume: bool = False
    progress: bool = True
    num_workers: int = 2
    speed: str | None = None  # --speed: auto (None) or off
    time_budget: float | None = None  # seconds of training to size the run for
    clock: Callable[[], float] = time.perf_counter  # times the first steps (tests: fake)
    speed_trial: SpeedTrial | None = None  # times the speed settings (tests: a fake clock)
