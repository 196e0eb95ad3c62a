"""Optimiser choice as data, so a recipe's hyperparameters stay in the recipe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from cluster_ssl.errors import UserError

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
