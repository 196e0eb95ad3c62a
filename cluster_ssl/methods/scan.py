"""SCAN's clustering step (Van Gansbeke et al., ECCV 2020): neighbours agree, clusters fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from cluster_ssl.cluster.neighbours import mine_neighbours, neighbour_accuracy
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.losses.scan import mean_assignment_entropy, scan_loss
from cluster_ssl.methods.base import Batch, StageContext, epoch_seed
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.heads import MultiClusterHead
from cluster_ssl.runtime.errors import UserError

#: the entropy weight of the held-out loss that picks the head (SCAN's evaluation)
SELECTION_ENTROPY_WEIGHT = 1.0


class SCAN(EmbeddingMethod):
    """Trains several linear clustering heads so that each image and a mined neighbour get
    the same cluster, while the clusters stay balanced (see
    :func:`~cluster_ssl.losses.scan.scan_loss`).

    At the start: the top-``num_neighbours`` neighbours of every training image are mined
    with faiss on the pretext features of the un-augmented images, and, when the run has a
    held-out split, of every held-out image too. Both lists are kept in the checkpoint, so a
    resumed run reuses them. Each step draws one neighbour per anchor uniformly from its
    list; anchors and neighbours are augmented independently (``augmentation``, SCAN's
    strong pipeline) and go through the backbone in one pass. The heads' losses are summed.

    After every epoch the head with the lowest SCAN loss (entropy weight 1, all k
    neighbours) on the held-out split is kept for prediction; without a held-out split the
    training data is used. ``update_heads_only`` freezes the backbone (SCAN's option).

    Args:
        pretext_features: L2-normalised features of a batch's un-augmented images, from the
            pretext model (SimCLR's projection head in SCAN), used only for mining.
        heads: the clustering heads over the backbone features.
        augmentation: pipeline applied to anchors and neighbours.
        num_neighbours: k (20 on CIFAR / STL-10, 50 on ImageNet).
        entropy_weight: lambda (5 in every paper config).
    """

    #: the kept head's argmax
    clusters_by: ClassVar[str] = "head"

    def __init__(
        self,
        *args,
        pretext_features: Callable[[Batch], torch.Tensor],
        heads: MultiClusterHead,
        augmentation: nn.Module,
        num_neighbours: int,
        entropy_weight: float,
        update_heads_only: bool = False,
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        self.pretext_features = pretext_features
        self.heads = heads
        self.augmentation = augmentation
        self.num_neighbours = num_neighbours
        self.entropy_weight = entropy_weight
        self.update_heads_only = update_heads_only
        self.find_unused_parameters = update_heads_only  # the backbone gets no gradient

        self.neighbours: torch.Tensor | None = None
        self.epoch_neighbour: torch.Tensor | None = None
        self.heldout_neighbours: torch.Tensor | None = None
        self.best_head = 0
        self.heldout_losses: list[float] = []
        self.mining_accuracy: float | None = None

    def configure_optimizer(self) -> torch.optim.Optimizer:
        module = self.heads if self.update_heads_only else self
        return self.optimizer_spec.build(p for p in module.parameters() if p.requires_grad)

    def on_fit_start(self, ctx: StageContext) -> None:
        self.neighbours = self._mine(ctx, None)
        self.mining_accuracy = neighbour_accuracy(self.neighbours, ctx.dataset.labels)
        if ctx.heldout is not None:
            self.heldout_neighbours = self._mine(ctx, ctx.heldout)

    def _mine(self, ctx: StageContext, dataset) -> torch.Tensor:
        data = ctx.dataset if dataset is None else dataset
        if self.num_neighbours >= len(data):
            raise UserError(
                f"num_neighbours={self.num_neighbours} needs more than that many images, but "
                f"{data.name} has {len(data)}; lower it (--set scan.num_neighbours=...)"
            )
        features = ctx.embed(self.pretext_features, dataset)
        return ctx.on_main(lambda: mine_neighbours(features, self.num_neighbours))

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        """Draws this epoch's neighbour of every anchor, from (seed, epoch) alone: the same
        pairs on any number of processes, and again when a resumed run replays the epoch."""
        generator = torch.Generator().manual_seed(epoch_seed(ctx.seed, ctx.epoch))
        picks = torch.randint(self.num_neighbours, (len(self.neighbours), 1), generator=generator)
        self.epoch_neighbour = self.neighbours.gather(1, picks.to(self.neighbours.device))[:, 0]
        return {}

    def prepare_batch(self, batch: Batch, ctx: StageContext) -> Batch:
        """Adds ``neighbour_image``: each anchor's neighbour drawn for this epoch."""
        index = batch["index"]
        if self.epoch_neighbour.device != index.device:  # moved once an epoch, kept there
            self.epoch_neighbour = self.epoch_neighbour.to(index.device)
        return {**batch, "neighbour_image": ctx.images_at(self.epoch_neighbour[index])}

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = torch.cat([batch["image"], batch["neighbour_image"]])
        features = self.backbone(self.augment(self.augmentation, images))
        if self.update_heads_only:
            features = features.detach()
        total = consistency = entropy = 0.0
        for logits in self.heads(features):
            anchors, neighbours = logits.chunk(2)
            loss, parts = scan_loss(anchors, neighbours, self.entropy_weight)
            total = total + loss
            consistency = consistency + parts["consistency"].detach()
            entropy = entropy + parts["entropy"].detach()
        heads = len(self.heads.heads)
        return {"loss": total, "consistency": consistency / heads, "entropy": entropy / heads}

    def head_logits(self, batch: Batch) -> torch.Tensor:
        """(B, heads * K) logits of every head on the un-augmented images (heads in fp32)."""
        h = self.backbone(self.augment(self.eval_transform, batch["image"]))
        return self.in_fp32(lambda x: torch.cat(self.heads(x), dim=1), h)

    def on_epoch_end(self, ctx: StageContext) -> dict[str, float]:
        was_training = self.training
        self.eval()
        with torch.no_grad():
            self._select_head(ctx)
        self.train(was_training)
        logs = {"best_head": self.best_head, "heldout_loss": self.heldout_losses[self.best_head]}
        if self.mining_accuracy is not None:
            logs["neighbour_acc"] = self.mining_accuracy
        return logs

    def _select_head(self, ctx: StageContext) -> None:
        """SCAN's head selection: for each head, over the held-out images X and all k of
        their mined neighbours N_X,

            L = -1/(|D| k) sum_X sum_{j in N_X} log <Phi(X), Phi(j)>  -  H(mean_X Phi(X))
        """
        heldout = ctx.heldout is not None and self.heldout_neighbours is not None
        dataset = ctx.heldout if heldout else ctx.dataset
        neighbours = self.heldout_neighbours if heldout else self.neighbours
        logits = ctx.embed(self.head_logits, dataset)
        k = self.heads.heads[0].out_features
        losses = []
        for probs in logits.split(k, dim=1):
            probs = probs.softmax(dim=1)
            agreement = (probs.unsqueeze(1) * probs[neighbours.to(probs.device)]).sum(dim=2)
            consistency = -agreement.clamp_min(1e-8).log().mean()
            entropy = mean_assignment_entropy(probs)
            losses.append(float(consistency - SELECTION_ENTROPY_WEIGHT * entropy))
        self.heldout_losses = losses
        self.best_head = min(range(len(losses)), key=losses.__getitem__)

    def best_head_module(self) -> nn.Linear:
        """The kept head (self-labelling starts from it)."""
        return self.heads.heads[self.best_head]

    def predict(self, ctx: StageContext) -> Prediction:
        head = self.best_head_module()
        return self.head_prediction(ctx, lambda h: head(h).softmax(dim=1))

    def collapse_hint(self) -> str:
        return (
            "SCAN's heads leave clusters empty: raise the entropy weight "
            f"(--set scan.entropy_weight=..., now {self.entropy_weight}), or check the mined "
            "neighbours' accuracy (neighbour_acc in metrics.jsonl)"
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "neighbours": self.neighbours,
            "heldout_neighbours": self.heldout_neighbours,
            "best_head": self.best_head,
            "heldout_losses": self.heldout_losses,
            "mining_accuracy": self.mining_accuracy,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.neighbours = state["neighbours"]
        self.heldout_neighbours = state["heldout_neighbours"]
        self.best_head = state["best_head"]
        self.heldout_losses = state["heldout_losses"]
        self.mining_accuracy = state["mining_accuracy"]
