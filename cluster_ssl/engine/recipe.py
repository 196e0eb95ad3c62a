"""What a recipe is: a paper's pipeline, its hyperparameters and per-dataset presets, and
everything the commands need to know about it, declared once where the recipe is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cluster_ssl.config import RecipeConfig
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.base import Method


def no_folder_sizing(num_images: int, k: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The recipe's settings fit any folder as they are."""
    return {}


@dataclass(frozen=True)
class FolderUse:
    """How ``cluster-ssl cluster --method NAME`` runs a recipe on a folder of images.

    ``sizing(num_images, k, settings)`` returns the settings the paper sizes for 50,000+
    images, sized for the folder and k instead (``settings`` are those chosen so far:
    ``epochs``, ``pretext``...). ``image_size`` is the side the network needs, if fixed.
    """

    sizing: Callable[[int, int, dict[str, Any]], dict[str, Any]] = no_folder_sizing
    image_size: int | None = None


@dataclass(frozen=True)
class Recipe:
    """A named pipeline builder with what the commands derive from it.

    Args:
        name: what ``train NAME`` and ``--method NAME`` take.
        description: one sentence for ``cluster-ssl list``.
        config: the settings class (defaults sized for a CPU).
        build: ``build(config, dataset, num_clusters)`` returns the stages, in order.
        method: the class of the last stage's method; its ``clusters_by`` says whether
            clusters come from a head or parameters, or from k-means on the embedding.
        presets: dataset name -> the paper's settings for it.
        protocol: which split trains and which is scored.
        estimator: the scikit-learn estimator's class name (None: no estimator).
        input_kind: what the estimator's ``fit`` takes: ``images`` (N, C, H, W) or
            ``vectors`` (N, D).
        pretext: whether its first stage can be another recipe's pretext
            (``--set pretext=NAME`` of SCAN and simclr_dec).
        folder: how ``cluster`` sizes it (None: not offered for folders).
    """

    name: str
    description: str
    config: type[RecipeConfig]
    build: Callable[[Any, ImageDataset, int], list[Stage]]
    method: type[Method]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: str = "trains and evaluates on the same split"
    estimator: str | None = None
    input_kind: Literal["images", "vectors"] = "images"
    pretext: bool = False
    folder: FolderUse | None = None

    def preset(self, dataset: str) -> dict[str, Any]:
        return dict(self.presets.get(dataset, {}))

    @property
    def clusters_by_kmeans(self) -> bool:
        """Whether the run's clusters come from k-means on its embedding (so k can be
        chosen after training)."""
        return self.method.clusters_by == "kmeans"
