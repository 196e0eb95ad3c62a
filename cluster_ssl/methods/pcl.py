"""PCL: Prototypical Contrastive Learning of Unsupervised Representations (Li, Zhou, Xiong,
Hoi, ICLR 2021)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.cluster.prototypes import ESTEP_KMEANS, Prototypes, estimate_prototypes
from cluster_ssl.losses.pcl import (
    NEGATIVE_SAMPLING,
    info_nce_with_queue,
    proto_nce,
    sample_negative_prototypes,
)
from cluster_ssl.methods.base import Batch, StageContext
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.momentum import KeyQueue, MomentumEncoder

#: the embeddings PCL's clusters can be read from (see :class:`PCL`)
SCORE_EMBEDDINGS = ("backbone", "key_projection")


class PCL(EmbeddingMethod):
    """MoCo with prototypes, trained by expectation-maximisation.

        L = L_InfoNCE + w * (1/M) sum_{m=1}^{M} L_proto^m,   w = 1 in the paper

    M-step (every training step): the query encoder (backbone + projection head) embeds one
    view, the momentum encoder (an EMA copy, updated first) the other; L_InfoNCE contrasts
    each query with its key against the queue of earlier keys
    (:func:`~cluster_ssl.losses.pcl.info_nce_with_queue`), and each of the M clusterings
    adds its ProtoNCE term (:func:`~cluster_ssl.losses.pcl.proto_nce`) over the sample's
    prototype and r sampled negative prototypes. The keys then enter the queue.

    Symmetric (ProPos's PCL, ``symmetric: true``): L is also computed with the views'
    roles swapped and the two are summed,

        L_sym = L(q(x1), k(x2)) + L(q(x2), k(x1)),

    both against the queue as the step found it; then both halves' keys enter it (first
    the keys of x2, then those of x1, as ``PCLWrapper.forward`` concatenates them).

    E-step (:meth:`on_epoch_start`, every epoch from ``warmup_epochs`` on; before that the
    loss is L_InfoNCE alone): momentum-encoder embeddings of the un-augmented training
    images, k-means at each granularity on rank 0, prototypes and concentrations shared with
    every rank (:func:`~cluster_ssl.cluster.prototypes.estimate_prototypes`). They are
    extra state, saved with the weights.

    BatchNorm: MoCo's shuffling BN, within one process. The query views go through the
    encoder in ``bn_groups`` groups of the batch, the key views in as many groups of a random
    permutation of it, so a query and its key are normalised with different batch
    statistics; sharing them would let the network tell its key from the queue's by the
    statistics alone (MoCo's shuffling BN; its CIFAR demo's split BatchNorm does the same).
    Under DDP on CUDA the trainer's SyncBatchNorm pools each group over the ranks. The two
    views never share a pass (two networks, as ``encoder_q`` and ``encoder_k`` of PCL's
    ``pcl/builder.py``), so ``views_in_one_batch`` does not apply.

    Clustering: k-means with K = ``num_clusters`` on the L2-normalised backbone embedding of
    the query encoder (``score_embedding="backbone"``), or on the momentum encoder's
    L2-normalised projection (``"key_projection"``: the space of the E-step, where ProPos's
    reproduction clusters and scores PCL).

    Args:
        head: projection head on the backbone's features (MoCo v2's MLP, or v1's Linear),
            L2-normalised output.
        views: the two augmented views (query, key).
        queue: the key queue (its size and the head's output size).
        encoder_momentum: m of the momentum encoder.
        temperature: tau of L_InfoNCE and the mean of each clustering's phi.
        num_prototypes: k of each of the M clusterings.
        warmup_epochs: epochs of L_InfoNCE alone before the first E-step.
        negative_prototypes: r, negative prototypes per sample (capped at those available).
        negative_sampling: ``per_sample`` (the paper) or ``batch`` (the public code), see
            :func:`~cluster_ssl.losses.pcl.sample_negative_prototypes`.
        prototype_weight: w.
        estep_kmeans: the E-step's k-means, one of
            :data:`~cluster_ssl.cluster.prototypes.ESTEP_KMEANS`: PCL's own (``"pcl"``) or
            ProPos's cosine k-means with plain-mean prototypes (``"propos"``).
        estep_restarts, estep_iterations: k-means restarts and Lloyd iterations of PCL's
            E-step (5 and 20 in PCL).
        concentration_alpha: alpha of the concentration estimate (10 in PCL).
        bn_groups: groups of the shuffling BN (8, as MoCo's 8 GPUs; 1 turns it off); at
            most half the batch, so every group holds two samples.
        symmetric: also swap the views' roles and sum the two losses (ProPos's PCL).
        score_embedding: the embedding k-means clusters, one of :data:`SCORE_EMBEDDINGS`.
    """

    #: the queue is a buffer kept identical on every rank by its own gather and replaced
    #: every step; DDP must not re-broadcast it
    broadcast_buffers = False

    def __init__(
        self,
        *args,
        head: nn.Module,
        views: TwoViews,
        queue: KeyQueue,
        encoder_momentum: float,
        temperature: float,
        num_prototypes: Sequence[int],
        warmup_epochs: int,
        negative_prototypes: int,
        negative_sampling: str = "per_sample",
        prototype_weight: float = 1.0,
        estep_kmeans: str = "pcl",
        estep_restarts: int = 5,
        estep_iterations: int = 20,
        concentration_alpha: float = 10.0,
        bn_groups: int = 8,
        symmetric: bool = False,
        score_embedding: str = "backbone",
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        if negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(
                f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLING)}, "
                f"got {negative_sampling!r}"
            )
        if estep_kmeans not in ESTEP_KMEANS:
            raise ValueError(
                f"estep_kmeans must be one of {', '.join(ESTEP_KMEANS)}, got {estep_kmeans!r}"
            )
        if score_embedding not in SCORE_EMBEDDINGS:
            raise ValueError(
                f"score_embedding must be one of {', '.join(SCORE_EMBEDDINGS)}, "
                f"got {score_embedding!r}"
            )
        if not num_prototypes or min(num_prototypes) < 2:
            raise ValueError(
                f"num_prototypes must list at least one k >= 2, got {tuple(num_prototypes)}"
            )
        if not 0.0 <= encoder_momentum < 1.0:
            raise ValueError(f"encoder_momentum must be in [0, 1), got {encoder_momentum}")
        if warmup_epochs < 0 or negative_prototypes < 1 or prototype_weight < 0 or bn_groups < 1:
            raise ValueError(
                "need warmup_epochs >= 0, negative_prototypes >= 1, prototype_weight >= 0 and "
                f"bn_groups >= 1, got {warmup_epochs}, {negative_prototypes}, "
                f"{prototype_weight} and {bn_groups}"
            )
        self.head = head
        self.views = views
        self.queue = queue
        self.key_encoder = MomentumEncoder(self.backbone, head, momentum=encoder_momentum)
        self.temperature = temperature
        self.num_prototypes = tuple(num_prototypes)
        self.warmup_epochs = warmup_epochs
        self.negative_prototypes = negative_prototypes
        self.negative_sampling = negative_sampling
        self.prototype_weight = prototype_weight
        self.estep_kmeans = estep_kmeans
        self.estep_restarts = estep_restarts
        self.estep_iterations = estep_iterations
        self.concentration_alpha = concentration_alpha
        self.bn_groups = bn_groups
        self.symmetric = symmetric
        self.score_embedding = score_embedding
        # the latest E-step, one entry per clustering (empty during the warm-up)
        self.assignments: list[torch.Tensor] = []
        self.prototypes: list[torch.Tensor] = []
        self.concentrations: list[torch.Tensor] = []

    def on_network_loaded(self) -> None:
        """The key encoder restarts as a copy of the loaded query encoder (MoCo's start)."""
        self.key_encoder.reset(self.backbone, self.head)

    def key_features(self, batch: Batch) -> torch.Tensor:
        """The momentum encoder's L2-normalised embedding of the un-augmented images."""
        images = self.augment(self.eval_transform, batch["image"])
        return F.normalize(self.key_encoder(images), dim=1)

    def features(self, batch: Batch) -> torch.Tensor:
        """The embedding clustered and scored: ``score_embedding``'s."""
        if self.score_embedding == "key_projection":
            return self.key_features(batch)
        return super().features(batch)

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        """The E-step, from epoch ``warmup_epochs`` on; logs how many prototypes of each
        clustering have members."""
        if ctx.epoch < self.warmup_epochs:
            return {}
        features = ctx.embed(self.key_features)
        clusterings: list[Prototypes] = ctx.on_main(
            lambda: estimate_prototypes(
                features,
                self.num_prototypes,
                self.temperature,
                seed=ctx.seed,
                restarts=self.estep_restarts,
                iterations=self.estep_iterations,
                alpha=self.concentration_alpha,
                kmeans_style=self.estep_kmeans,
            )
        )
        device = ctx.device
        self.assignments = [torch.as_tensor(c.assignments, device=device) for c in clusterings]
        self.prototypes = [torch.as_tensor(c.centroids, device=device) for c in clusterings]
        self.concentrations = [torch.as_tensor(c.concentration, device=device) for c in clusterings]
        return {
            f"prototypes_used_{c.num_prototypes}": float(len(np.unique(c.assignments)))
            for c in clusterings
        }

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        view_1, view_2 = self.augment(self.views, batch["image"])
        self.key_encoder.update(self.backbone, self.head)
        pairs = [(view_1, view_2), (view_2, view_1)] if self.symmetric else [(view_1, view_2)]
        queries, keys = [], []
        for view_q, view_k in pairs:
            queries.append(self.in_groups(lambda x: self.head(self.backbone(x)), view_q))
            keys.append(self.shuffled_keys(view_k))
        instance = sum(
            info_nce_with_queue(q, k, self.queue.keys, self.temperature)
            for q, k in zip(queries, keys, strict=True)
        )
        self.queue.enqueue(torch.cat(keys))
        if not self.assignments:
            return {"loss": instance, "instance": instance}
        prototype = sum(self.prototype_loss(q, batch["index"]) for q in queries)
        return {
            "loss": instance + self.prototype_weight * prototype,
            "instance": instance,
            "prototype": prototype,
        }

    def shuffled_keys(self, view_k: torch.Tensor) -> torch.Tensor:
        """The momentum encoder's keys of ``view_k``, its BatchNorm groups drawn from a
        random permutation of the batch (the shuffling BN), returned in the batch's order."""
        order = torch.randperm(view_k.shape[0], device=view_k.device)
        shuffled = self.in_groups(self.key_encoder, view_k[order])
        return torch.empty_like(shuffled).index_copy_(0, order, shuffled)  # k[order] = shuffled

    def in_groups(
        self, encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """``encoder`` over ``bn_groups`` consecutive groups of the batch (the shuffling BN)."""
        groups = max(1, min(self.bn_groups, x.shape[0] // 2))
        return torch.cat([encoder(part) for part in x.chunk(groups)])

    def prototype_loss(self, q: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(1/M) sum_m L_proto^m for the batch's queries and dataset indices."""
        if self.prototypes[0].device != q.device:  # once, after a resume loaded them on the CPU
            self._move_clusterings(q.device)
        terms = []
        for assignments, prototypes, concentration in zip(
            self.assignments, self.prototypes, self.concentrations, strict=True
        ):
            positive = assignments[index.to(assignments.device)]
            negatives = sample_negative_prototypes(
                positive,
                prototypes.shape[0],
                self.negative_prototypes,
                sampling=self.negative_sampling,
            )
            terms.append(proto_nce(q, positive, negatives, prototypes, concentration))
        return torch.stack(terms).mean()

    def _move_clusterings(self, device: torch.device) -> None:
        self.assignments = [a.to(device) for a in self.assignments]
        self.prototypes = [p.to(device) for p in self.prototypes]
        self.concentrations = [c.to(device) for c in self.concentrations]

    def collapse_hint(self) -> str:
        return (
            "train longer, lower the learning rate (--set lr=...) or give the instance "
            "contrast longer alone before the prototypes start (--set warmup_epochs=...)"
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "assignments": self.assignments,
            "prototypes": self.prototypes,
            "concentrations": self.concentrations,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.assignments = list(state["assignments"])
        self.prototypes = list(state["prototypes"])
        self.concentrations = list(state["concentrations"])
