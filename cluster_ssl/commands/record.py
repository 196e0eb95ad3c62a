"""The run record (``OUT/run.json``): what ``train`` was asked for, the defaults for the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_ssl.config import (
    DEFAULT_DATASET,
    DEFAULT_RECIPE,
)
from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.engine.speed_trial import SpeedTrial
from cluster_ssl.engine.trainer import Pace


@dataclass
class RunRequest:
    """Everything ``cluster-ssl train`` was asked to do.

    ``None`` means "not given": the default for a new run, the stored value on ``--resume``.
    """

    recipe: str | None = None
    dataset: str | None = None
    out: Path = Path("runs/run")
    data_root: str | None = None
    download: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "auto"
    precision: str | None = None
    accumulate: int | None = None
    #: a stage checkpoint or run directory whose network starts this run's
    init_from: str | None = None
    channels_last: bool = False
    compile_backend: str | None = None
    checkpoint_every: int = 1
    #: ``auto`` (measure the speed settings at the start) or ``off`` (today's defaults)
    speed: str | None = None
    #: speed settings chosen already (``cluster``'s restart at a ``--time-budget``'s length)
    speed_choice: dict[str, Any] | None = None
    #: times the speed settings' candidates (tests pass one on a fake clock)
    speed_trial: SpeedTrial | None = None
    wandb: str = "disabled"
    resume: bool = False
    progress: bool = True
    num_workers: int = 2
    #: extra arguments of the dataset builder (e.g. ``skip_unreadable`` for folders)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: times the steps and estimates the run's duration (``cluster`` passes its own)
    pace: Pace | None = None

    def given(self) -> dict[str, Any]:
        """The parts of the run record that were asked for explicitly."""
        asked = {
            "recipe": self.recipe,
            "dataset": self.dataset,
            "overrides": self.overrides or None,
            "seed": self.seed,
            "precision": self.precision,
            "accumulate": self.accumulate,
            "init_from": self.init_from,
            "speed": self.speed,
        }
        return {key: value for key, value in asked.items() if value is not None}

    def record(self) -> dict[str, Any]:
        """The record of a new run: what was given, defaults for the rest."""
        return {
            **RECORD_DEFAULTS,
            **self.given(),
            "data_root": self.data_root,
            "download": self.download,
            "dataset_options": self.dataset_options,
        }


RECORD_DEFAULTS: dict[str, Any] = {
    "recipe": DEFAULT_RECIPE,
    "dataset": DEFAULT_DATASET,
    "overrides": {},
    "seed": 0,
    "precision": "auto",
    "accumulate": 1,
    "speed": "auto",
}


#: a checkpoint's record of its training data (:class:`DataDescription`)
TRAINING_DATA = "training_data"


def get_recipe(name: str) -> Recipe:
    from recipes import RECIPES

    return RECIPES.get(name)
