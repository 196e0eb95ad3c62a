"""DEC's clustering layer over a contrastively pretrained backbone.

The encoder is a trained pretext method's backbone (SimCLR, IDFD, PCL, ...): its
L2-normalised features of the un-augmented images, the space k-means clusters for those
methods, so the centres start where "pretext + k-means" ends. DEC then fine-tunes the
backbone and the centres with KL(P || Q); with ``gamma`` set, the pretext's own loss is
kept beside it, as IDEC keeps its reconstruction:

    L = L_pretext + gamma * KL(P || Q)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cluster_ssl.methods.base import Batch
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.methods.dec import KLSelfTraining


class PretextDEC(KLSelfTraining):
    """KL self-training of a pretext method's backbone and a Student-t clustering layer.

    Args:
        pretext: the trained method whose ``features`` (normalised backbone features of the
            un-augmented images) are embedded, and whose ``training_step`` loss is the kept
            term when ``gamma`` is set.
        gamma: ``None`` trains backbone and centres on the KL alone (DEC); else the pretext
            loss is kept and the KL weighted by gamma.
        Others: see :class:`~cluster_ssl.methods.dec.KLSelfTraining`.
    """

    auxiliary_name = "pretext_loss"

    def __init__(self, pretext: EmbeddingMethod, *args: Any, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.pretext = pretext
        # without the pretext loss its head gets no gradient
        self.find_unused_parameters = self.gamma is None or pretext.find_unused_parameters
        self.broadcast_buffers = pretext.broadcast_buffers

    def trainable(self) -> list[nn.Parameter]:
        """Backbone and centres; the pretext's head too when its loss is kept."""
        module = self.pretext.backbone if self.gamma is None else self.pretext
        return [
            *(p for p in module.parameters() if p.requires_grad),
            *self.clustering.parameters(),
        ]

    def network(self) -> nn.Module:
        return self.pretext.backbone

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.pretext.features(batch)

    def auxiliary_loss(self, batch: Batch) -> tuple[torch.Tensor, None]:
        return self.pretext.training_step(batch)["loss"], None
