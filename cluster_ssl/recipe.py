"""What a recipe is: a paper's pipeline, its hyperparameters and per-dataset presets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster_ssl.config import RecipeConfig
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.trainer import Stage


@dataclass(frozen=True)
class Recipe:
    """A named pipeline builder.

    ``build(config, dataset, num_clusters)`` returns the stages to run, in order. Presets
    map a dataset name to the paper's settings for it; datasets without a preset run on
    the config's defaults (sized for a CPU).
    """

    name: str
    description: str
    config: type[RecipeConfig]
    build: Callable[[Any, ImageDataset, int], list[Stage]]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: str = "trains and evaluates on the same split"

    def preset(self, dataset: str) -> dict[str, Any]:
        return dict(self.presets.get(dataset, {}))
