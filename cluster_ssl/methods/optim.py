"""Optimiser choice as data, so a recipe's hyperparameters stay in the recipe."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from cluster_ssl.runtime.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class OptimizerSpec:
    """``name`` is sgd, adam or adamw; ``momentum`` applies to SGD only."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.lr <= 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        raise UserError(f"unknown optimizer {self.name!r}; use one of {', '.join(OPTIMIZERS)}")


SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class ScheduleSpec:
    """Learning-rate schedule over a stage's steps, as a multiplier of the base rate.

    * ``constant``: 1 throughout.
    * ``cosine``: from 1 down to ``final`` along half a cosine (SimCLR: final = 1e-3).
    * ``step``: multiplied by ``gamma`` at each milestone, given as fractions of the stage
      (IDFD: steps at 600/950/1300/1650 of 2000 epochs -> 0.3, 0.475, 0.65, 0.825).

    ``warmup`` is a fraction of the stage with a linear ramp from 0 to 1. After it a cosine
    runs on the time since the warm-up ended, measured in whole stages, so it restarts from
    1 and ends above ``final`` by the warm-up's share (step milestones stay where they are):
    with w the warm-up and p the progress through the stage,

        factor = final + (1 - final) * 0.5 * (1 + cos(pi * (p - w)))

    as ProPos's ``cosine_annealing_LR`` (the only original here with a warm-up; its PCL
    run: w = 50 of 1000 epochs, final = 0.01). Without a warm-up it is the plain cosine.

    ``per_epoch`` holds each epoch at the rate of its first step, as originals that set
    the rate once an epoch do (SCAN's ``adjust_learning_rate``, IDFD's ``MultiStepLR``):
    the factor of epoch e of E is that of progress e / E. Otherwise it moves every step.
    """

    name: str = "constant"
    final: float = 1e-3
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup: float = 0.0
    per_epoch: bool = False

    def factor(self, step: int, total: int, steps_per_epoch: int = 1) -> float:
        if self.per_epoch:
            step -= step % max(steps_per_epoch, 1)
        progress = step / max(total, 1)
        if progress < self.warmup:
            return (step + 1) / max(self.warmup * total, 1)
        if self.name == "constant":
            return 1.0
        if self.name == "cosine":
            since_warmup = progress - self.warmup
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * since_warmup))
        if self.name == "step":
            return self.gamma ** sum(progress >= m for m in self.milestones)
        raise UserError(f"unknown schedule {self.name!r}; use one of {', '.join(SCHEDULES)}")

    def build(
        self, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int = 1
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        if self.name == "constant" and self.warmup == 0:
            return None
        self.factor(0, total_steps)  # validates the name before training starts
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.factor(step, total_steps, steps_per_epoch)
        )
