"""One stage of a recipe, built as ``cluster-ssl train`` builds it, trained a few steps at a
time: what ``benchmark.py METHOD --reference lightly`` and ``--contention`` time in rounds.

Unlike :func:`tools.step_profile.profile_stage` (one measurement, section by section) it
keeps the stage between calls, so rounds of it can alternate with another measurement in
one process.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from cluster_ssl.commands.prepare import Prepared, prepare
from cluster_ssl.commands.record import RECORD_DEFAULTS
from cluster_ssl.commands.speed_settings import apply_threads, measure_stage
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.speed import SpeedChoice
from cluster_ssl.engine.speed_trial import SpeedTrial
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings
from cluster_ssl.methods.base import StageContext
from cluster_ssl.runtime.device import resolve_device, resolve_precision
from cluster_ssl.runtime.distributed import DistInfo
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.timing import StepTimer
from tools.step_profile import STEP_SECTIONS, pick_stage


class RecipeStep:
    """A recipe's stage on one process; ``run(steps)`` trains that many steps and returns
    the seconds a step took in its step sections (data, augmentation, forward + backward, optimiser,
    per-step refreshes: what ``benchmark.py METHOD`` calls the full step; the stage's
    set-up and checkpoints are left out)."""

    def __init__(
        self,
        recipe: str,
        dataset: str,
        *,
        overrides: dict[str, Any],
        stage_name: str | None = None,
        batch_size: int | None = None,
        data_root: str | None = None,
        device_spec: str = "auto",
        precision_spec: str = "auto",
        num_workers: int = 0,
        channels_last: bool = False,
        compile_backend: str | None = None,
        speed: str = "off",
    ) -> None:
        record = {
            **RECORD_DEFAULTS,
            "recipe": recipe,
            "dataset": dataset,
            "data_root": data_root,
            "overrides": dict(overrides),
        }
        if batch_size is not None:
            record["overrides"].setdefault("batch_size", str(batch_size))
        self.device = resolve_device(device_spec)
        self.prepared: Prepared = prepare(record)
        self.stage: Stage = pick_stage(self.prepared.stages, stage_name)
        if batch_size is not None:
            self.stage.batch_size = batch_size
        self.steps_per_epoch = len(self.prepared.dataset) // self.stage.batch_size
        if self.steps_per_epoch == 0:
            raise SystemExit(
                f"--batch {self.stage.batch_size} is larger than the "
                f"{len(self.prepared.dataset)} images; choose a smaller batch"
            )
        self.ctx = StageContext(
            self.prepared.dataset, self.device, 0, DistInfo(), num_workers=num_workers
        )
        precision = resolve_precision(precision_spec, self.device)
        #: what the steps are timed with: ``train``'s line for ``--speed auto``'s choice
        self.speed_line = f"speed off: channels_last {'on' if channels_last else 'off'}"
        if speed == "auto":  # applied as train applies it
            choice = self._speed_trial(precision, num_workers, channels_last, compile_backend)
            channels_last = choice.channels_last
            compile_backend = compile_backend or choice.compile_backend
            apply_threads(choice)
            if choice.workers is not None:
                self.ctx.num_workers = choice.workers
            self.speed_line = choice.describe(self.device)
        self.trainer = Trainer(
            TrainSettings(
                precision=precision,
                progress=False,
                log_every=10**9,
                channels_last=channels_last,
                compile_backend=compile_backend,
            ),
            RunLogger(Path(tempfile.gettempdir()), enabled=False),
        )
        self._scratch = tempfile.TemporaryDirectory()

    def _speed_trial(
        self,
        precision: torch.dtype | None,
        num_workers: int,
        channels_last: bool,
        compile_backend: str | None,
    ) -> SpeedChoice:
        """``train --speed auto``'s trial on this stage, as for a run of at least the
        trial's shortest (a benchmark's few steps would not pay for one; a user's run
        does)."""
        trial = SpeedTrial()
        return measure_stage(
            self.prepared,
            self.stage,
            self.device,
            precision,
            micro_batch=self.stage.batch_size,
            total_steps=max(trial.min_run_steps, self.steps_per_epoch * self.stage.epochs),
            num_workers=num_workers,
            channels_last=channels_last,
            compile_backend=compile_backend,
            trial=trial,
        )

    @property
    def batch_size(self) -> int:
        return self.stage.batch_size

    def run(self, steps: int) -> float:
        """Train ``steps`` steps (from a fresh optimiser, the network as it is) and return the
        seconds a step of them took (their step sections over the steps trained, fewer
        where the method stopped early, as DEC does once few labels change)."""
        self.ctx.step = 0
        self.stage.epochs = math.ceil(steps / self.steps_per_epoch)
        self.stage.max_steps = steps
        self.stage.eval_every = 0
        with StepTimer(self.device) as timer:
            self.trainer.fit(
                self.stage,
                self.ctx,
                Path(self._scratch.name) / "stage.pt",
                stage_index=0,
                resume=None,
                run_config={},
            )
        trained = timer.calls["optimizer"]
        if trained == 0:
            raise UserError(
                f"stage {self.stage.name!r} stopped before its first step; let it train "
                "(DEC, IDEC, DCEC: --set tol=0)"
            )
        return sum(timer.own_seconds.get(section, 0.0) for section in STEP_SECTIONS) / trained

    def close(self) -> None:
        self._scratch.cleanup()

    def __enter__(self) -> RecipeStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
