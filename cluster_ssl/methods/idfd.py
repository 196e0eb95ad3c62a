"""IDFD (Tao et al., ICLR 2021): instance discrimination and feature decorrelation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.losses.idfd import feature_decorrelation_loss, instance_discrimination_loss
from cluster_ssl.methods.base import Batch, StageContext
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.memory_bank import MemoryBank


class IDFD(EmbeddingMethod):
    """L = L_I + alpha * L_F over one augmented view per sample.

    L_I: full softmax over a memory bank of all N features, f . M^T / tau, against the
    sample's own index; the bank is then updated m <- normalise(0.5 m + 0.5 f).
    L_F: each feature dimension normalised over the batch, d x d similarity / tau2,
    cross-entropy with the identity. Clustering: k-means on the memory bank (``cluster_on
    = "bank"``, as the paper) or on the backbone embedding.

    One view per sample, one backbone pass per step, as the public code's training loop
    (``features = norm(net(inputs))`` in ``main.py``): ``views_in_one_batch`` does not apply.
    """

    #: the bank is a buffer kept identical on every rank by its own gather; DDP must not
    #: re-broadcast (N, d) floats every step
    broadcast_buffers = False

    def __init__(
        self,
        *args,
        head: nn.Module,
        view: nn.Module,
        bank: MemoryBank,
        temperature: float,
        decorrelation_temperature: float,
        decorrelation_weight: float,
        bank_momentum: float = 0.5,
        cluster_on: str = "bank",
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        if cluster_on not in ("bank", "embedding"):
            raise ValueError(f"cluster_on must be 'bank' or 'embedding', got {cluster_on!r}")
        self.head = head
        self.view = view
        self.bank = bank
        self.temperature = temperature
        self.decorrelation_temperature = decorrelation_temperature
        self.decorrelation_weight = decorrelation_weight
        self.bank_momentum = bank_momentum
        self.cluster_on = cluster_on

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        f = self.head(self.backbone(self.augment(self.view, batch["image"])))

        instance = instance_discrimination_loss(
            f, batch["index"], self.bank.memory, self.temperature
        )
        decorrelation = feature_decorrelation_loss(f, self.decorrelation_temperature)
        self.bank.update(batch["index"], f.detach(), momentum=self.bank_momentum)
        return {
            "loss": instance + self.decorrelation_weight * decorrelation,
            "instance": instance,
            "decorrelation": decorrelation,
        }

    def clustered_features(self, batch: Batch) -> torch.Tensor:
        """Head features (the bank's space) when clustering on the bank, else the backbone's."""
        if self.cluster_on == "bank":
            return self.head(self.backbone(self.augment(self.eval_transform, batch["image"])))
        return self.features(batch)

    def embedding(self, ctx: StageContext) -> torch.Tensor:
        """The bank when asked for and ``ctx.dataset`` is the training split it describes;
        the backbone embedding otherwise (e.g. scoring a held-out split)."""
        if self.cluster_on == "bank" and ctx.training_data:
            return F.normalize(self.bank.memory, dim=1)
        return ctx.embed(self.features)
