"""Contrastive Clustering (Li et al., AAAI 2021): instance- and cluster-level contrast."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.losses.cc import cluster_contrastive_loss, instance_contrastive_loss
from cluster_ssl.methods.base import Batch, StageContext, epoch_seed
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.runtime.distributed import all_reduce_mean


class CC(EmbeddingMethod):
    """L = L_ins + L_clu; the prediction is the argmax of the cluster head.

    L_ins is NT-Xent (tau_I) over the instance head's features of the two views; L_clu
    contrasts the K columns of the two views' (B, K) soft assignments (tau_C) and subtracts
    the entropy of each view's cluster-size distribution, which keeps every cluster in use.
    ``entropy_constant`` adds the public code's log K per view (a constant shift);
    ``entropy_weight`` scales the entropy term (1 in the paper).

    The two views go through the backbone in two forward passes by default, as the public
    code's ``Network.forward(x_i, x_j)`` (``modules/network.py``) does: each view has its
    own BatchNorm statistics. ``views_in_one_batch=True`` runs them as one batch.

    ``unlabelled_instance_only``: images without a label (-1, STL-10's unlabelled split)
    train the instance loss alone, as CC's ``train_STL10.py``, whose epochs are first a
    pass over the unlabelled images with L_ins, then one over train+test with L_ins +
    L_clu. Each epoch's order is the unlabelled images shuffled, then the labelled ones
    (seeded by seed and epoch); a batch holding any unlabelled image (on any rank) is an
    instance-only step, which leaves the cluster head without a gradient (Adam skips it,
    as when the original's graph never reaches it). Only the one batch where the two
    parts meet differs from the original's two loaders (its rows train L_ins alone).
    """

    #: the cluster head's argmax
    clusters_by: ClassVar[str] = "head"

    original_views_in_one_batch: ClassVar[bool | None] = False

    def __init__(
        self,
        *args,
        instance_head: nn.Module,
        cluster_head: nn.Module,
        views: TwoViews,
        instance_temperature: float,
        cluster_temperature: float,
        entropy_constant: bool = False,
        entropy_weight: float = 1.0,
        unlabelled_instance_only: bool = False,
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        self.instance_head = instance_head
        self.cluster_head = cluster_head
        self.views = views
        self.instance_temperature = instance_temperature
        self.cluster_temperature = cluster_temperature
        self.entropy_constant = entropy_constant
        self.entropy_weight = entropy_weight
        self.unlabelled_instance_only = unlabelled_instance_only
        #: instance-only steps leave the cluster head out of the graph
        self.find_unused_parameters = unlabelled_instance_only
        #: (N,) True for the training images without a label; None when all have one
        self.unlabelled: torch.Tensor | None = None

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        labels = ctx.dataset.labels
        self.unlabelled = None
        if self.unlabelled_instance_only and labels is not None:
            unlabelled = torch.as_tensor(labels) < 0
            if unlabelled.any():
                self.unlabelled = unlabelled
        return {}

    def sample_order(self, ctx: StageContext) -> torch.Tensor | None:
        """The unlabelled images first, then the labelled, each shuffled by (seed, epoch)."""
        if self.unlabelled is None:
            return None
        generator = torch.Generator().manual_seed(epoch_seed(ctx.seed, ctx.epoch))
        unlabelled = self.unlabelled.cpu()
        parts = [unlabelled.nonzero().flatten(), (~unlabelled).nonzero().flatten()]
        return torch.cat([part[torch.randperm(len(part), generator=generator)] for part in parts])

    def _instance_only(self, batch: Batch) -> bool:
        """Whether this step trains L_ins alone: some rank's batch holds an unlabelled image."""
        if self.unlabelled is None:
            return False
        index = batch["index"]
        if self.unlabelled.device != index.device:  # once: the mask follows the batches
            self.unlabelled = self.unlabelled.to(index.device)
        here = self.unlabelled[index].any().float().to(batch["image"].device)
        return float(all_reduce_mean(here)) > 0  # one scalar read a step, STL-10's preset only

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        view_a, view_b = self.augment(self.views, batch["image"])
        if self._instance_only(batch):  # the cluster head stays out of the graph
            z_a, z_b = self.encode_views(
                lambda x: self.instance_head(self.backbone(x)), [view_a, view_b]
            )
            instance = instance_contrastive_loss(z_a, z_b, self.instance_temperature)
            return {"loss": instance, "instance": instance}

        # both heads side by side, so that with views_in_one_batch they too run on the 2B
        # rows at once (the one-batch path as it was: same sums in the heads' gradients)
        def network(x: torch.Tensor) -> torch.Tensor:
            h = self.backbone(x)
            return torch.cat([self.instance_head(h), self.cluster_head(h)], dim=1)

        out_a, out_b = self.encode_views(network, [view_a, view_b])
        width = out_a.shape[1] - self.num_clusters
        z_a, p_a = out_a.split([width, self.num_clusters], dim=1)
        z_b, p_b = out_b.split([width, self.num_clusters], dim=1)
        instance = instance_contrastive_loss(z_a, z_b, self.instance_temperature)
        cluster, parts = cluster_contrastive_loss(
            p_a,
            p_b,
            self.cluster_temperature,
            entropy_constant=self.entropy_constant,
            entropy_weight=self.entropy_weight,
        )
        return {
            "loss": instance + cluster,
            "instance": instance,
            "cluster": cluster,
            "entropy": parts["entropy"],
        }

    def predict(self, ctx: StageContext) -> Prediction:
        return self.head_prediction(ctx, self.cluster_head)

    def collapse_hint(self) -> str:
        return (
            "the cluster head leaves clusters empty: raise the entropy weight "
            f"(--set entropy_weight=..., now {self.entropy_weight}) or the batch size, "
            "or train longer"
        )
