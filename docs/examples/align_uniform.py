"""The smallest complete new recipe: a loss, a method using it, and a recipe (docs/EXTENDING.md).

Alignment and uniformity (Wang & Isola, ICML 2020) on the unit hypersphere:

    L_align   = mean_i || f(x_i) - f(x_i') ||^2
    L_uniform = log mean_{i != j} exp(-t || f(x_i) - f(x_j) ||^2),   t = 2
    L = L_align + L_uniform

trained on SimCLR's two views, clustered by k-means on the backbone embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.config import positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import FolderUse, Recipe
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.base import Batch
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.heads import ProjectionHead
from cluster_ssl.runtime.script import run_as_train_command
from recipes.contrastive_common import BackboneConfig, embedding_method_args, make_pipeline


def align_uniform_loss(z_a: torch.Tensor, z_b: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """L_align + L_uniform of two (B, d) views (normalised here), as in the docstring above."""
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    align = (z_a - z_b).pow(2).sum(dim=1).mean()
    both = torch.cat([z_a, z_b])
    uniform = torch.pdist(both).pow(2).mul(-t).exp().mean().log()
    return align + uniform


class AlignUniform(EmbeddingMethod):
    """The method: two views through backbone and head, the loss above."""

    def __init__(self, *args, head: nn.Module, views: TwoViews, **kw) -> None:
        super().__init__(*args, **kw)
        self.head = head
        self.views = views

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        view_a, view_b = self.augment(self.views, batch["image"])
        z_a, z_b = self.head(self.backbone(torch.cat([view_a, view_b]))).chunk(2)
        return {"loss": align_uniform_loss(z_a, z_b)}


@dataclass
class AlignUniformConfig(BackboneConfig):
    epochs: int = 100
    batch_size: int = 256
    feature_dim: int = positive(128)  # its range, checked on every --set


def build(cfg: AlignUniformConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    args = embedding_method_args(cfg, dataset, num_clusters)
    head = ProjectionHead(args["backbone"].feature_dim, 512, cfg.feature_dim)
    views = TwoViews(make_pipeline("simclr", cfg, dataset))
    method = AlignUniform(**args, head=head, views=views)
    return [Stage("align_uniform", method, cfg.epochs, cfg.batch_size, eval_every=cfg.eval_every)]


RECIPE = Recipe(
    name="align_uniform",
    description="alignment + uniformity on the hypersphere, then k-means",
    config=AlignUniformConfig,
    build=build,
    method=AlignUniform,  # clusters by k-means on its embedding (EmbeddingMethod's default)
    estimator="AlignUniform",  # a scikit-learn estimator: cluster_ssl.AlignUniform
    folder=FolderUse(),  # offered by cluster-ssl cluster --method align_uniform
    presets={"digits": {"width": 0.25, "image_size": 16, "flip": False}},
    protocol="the dataset's split, as configured",
)

if __name__ == "__main__":  # python recipes/align_uniform.py --dataset digits ...
    run_as_train_command(RECIPE.name)
