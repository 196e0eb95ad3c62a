"""SimCLR (Chen et al., 2020): instance contrast between two augmented views."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.losses.contrastive import nt_xent
from cluster_ssl.methods.base import Batch
from cluster_ssl.methods.contrastive import EmbeddingMethod


class SimCLR(EmbeddingMethod):
    """NT-Xent on the projected, L2-normalised features of two views of each image.

    L = 1/2B sum_i -log( exp(s(z_i, z_i') / tau) / sum_{k != i} exp(s(z_i, z_k) / tau) )

    over the 2B views of a batch (negatives gathered from every rank). Clustering: k-means
    on the backbone embedding.

    Both views (and the head) go through the backbone in one forward pass by default, as
    SCAN's SimCLR pretext does (``simclr_train`` in ``utils/train_utils.py`` of
    Unsupervised-Classification interleaves them into one batch of 2B): BatchNorm normalises
    over the 2B views together. ``views_in_one_batch=False`` runs one view at a time.
    """

    original_views_in_one_batch: ClassVar[bool | None] = True

    def __init__(self, *args, head: nn.Module, views: TwoViews, temperature: float, **kw):
        super().__init__(*args, **kw)
        self.head = head
        self.views = views
        self.temperature = temperature

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        view_a, view_b = self.augment(self.views, batch["image"])

        z_a, z_b = self.encode_views(lambda x: self.head(self.backbone(x)), [view_a, view_b])
        return {"loss": nt_xent(z_a, z_b, self.temperature)}

    def projection(self, batch: Batch) -> torch.Tensor:
        """The head's L2-normalised features of the un-augmented images (SCAN mines
        neighbours on these)."""
        return self.head(self.backbone(self.augment(self.eval_transform, batch["image"])))
