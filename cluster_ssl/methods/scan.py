"""SCAN's clustering step (Van Gansbeke et al., ECCV 2020): neighbours agree, clusters fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from cluster_ssl.cluster.neighbours import mine_neighbours, neighbour_accuracy
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.losses.scan import mean_assignment_entropy, neighbour_consistency, scan_loss
from cluster_ssl.methods.base import Batch, StageContext, epoch_seed
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.heads import MultiClusterHead
from cluster_ssl.runtime.errors import UserError

#: the entropy weight of the held-out loss that picks the head (SCAN's evaluation)
SELECTION_ENTROPY_WEIGHT = 1.0
#: held-out neighbours per image for that loss: SCAN mines the validation split's top-5
#: (``simclr.py``) and reads 5 (``get_val_dataset``: ``NeighborsDataset(dataset, indices, 5)``)
HELDOUT_NEIGHBOURS = 5


class SCAN(EmbeddingMethod):
    """Trains several linear clustering heads so that each image and a mined neighbour get
    the same cluster, while the clusters stay balanced (see
    :func:`~cluster_ssl.losses.scan.scan_loss`).

    At the start: the top-``num_neighbours`` neighbours of every training image are mined
    with faiss on the pretext features of the un-augmented images, and, when the run has a
    held-out split, the top-``heldout_neighbours`` of every held-out image too. Both lists
    are kept in the checkpoint, so a resumed run reuses them. Each step draws one neighbour
    per anchor uniformly from its list plus, with ``include_anchor`` (the default), the
    anchor itself: SCAN mines top-(k+1) including the sample (``utils/memory.py``
    ``mine_nearest_neighbors``: "Sample itself is included") and ``NeighborsDataset`` draws
    from all k+1, so 1 draw in k+1 pairs an image with another view of itself. Anchors and
    neighbours are augmented independently (``augmentation``, SCAN's strong pipeline) and go
    through the backbone in one pass. The heads' losses are summed.

    After every epoch the SCAN loss (entropy weight 1, over all pairs of each image and its
    held-out neighbours, the image itself included as above) of every head on the held-out
    split is measured; without a held-out split the training data and its neighbours are
    used. When this epoch's lowest loss is the lowest so far, that head's index and a copy
    of the whole network (backbone and heads) are kept (SCAN's ``scan.py`` saves
    ``scan_model`` then); :meth:`restore_best` loads that copy back, and self-labelling
    starts from it. The copy is part of the method's state, so the stage checkpoint holds
    it and a resumed run keeps it. During training, predictions use this epoch's lowest-loss
    head on the current weights (SCAN's per-epoch evaluation). ``update_heads_only`` freezes
    the backbone (SCAN's option).

    Args:
        pretext_features: L2-normalised features of a batch's un-augmented images, from the
            pretext model (SimCLR's projection head in SCAN), used only for mining.
        heads: the clustering heads over the backbone features.
        augmentation: pipeline applied to anchors and neighbours.
        num_neighbours: k (20 on CIFAR / STL-10, 50 on ImageNet).
        entropy_weight: lambda (5 in every paper config).
        heldout_neighbours: neighbours per held-out image for the head choice (5 in SCAN).
        include_anchor: an anchor is among its own neighbour candidates (SCAN's code).
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
        heldout_neighbours: int = HELDOUT_NEIGHBOURS,
        include_anchor: bool = True,
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        self.pretext_features = pretext_features
        self.heads = heads
        self.augmentation = augmentation
        self.num_neighbours = num_neighbours
        self.entropy_weight = entropy_weight
        self.update_heads_only = update_heads_only
        self.num_heldout_neighbours = heldout_neighbours
        self.include_anchor = include_anchor
        self.find_unused_parameters = update_heads_only  # the backbone gets no gradient

        self.neighbours: torch.Tensor | None = None
        self.epoch_neighbour: torch.Tensor | None = None
        self.heldout_neighbours: torch.Tensor | None = None
        self.best_head = 0
        self.epoch_head = 0
        self.best_loss = float("inf")
        self.best_state: dict[str, dict[str, torch.Tensor]] | None = None
        self.heldout_losses: list[float] = []
        self.mining_accuracy: float | None = None
        #: the share of the true neighbours the search found (approximate above 20,000)
        self.mining_recall: float | None = None

    def configure_optimizer(self) -> torch.optim.Optimizer:
        module = self.heads if self.update_heads_only else self
        return self.optimizer_spec.build(p for p in module.parameters() if p.requires_grad)

    def on_fit_start(self, ctx: StageContext) -> None:
        self.neighbours = self._mine(ctx, None, self.num_neighbours)
        self.mining_accuracy = neighbour_accuracy(self.neighbours, ctx.dataset.labels)
        if ctx.heldout is not None:
            k = min(self.num_heldout_neighbours, len(ctx.heldout) - 1)
            self.heldout_neighbours = self._mine(ctx, ctx.heldout, k)

    def _mine(self, ctx: StageContext, dataset, k: int) -> torch.Tensor:
        data = ctx.dataset if dataset is None else dataset
        if k >= len(data) or k < 1:
            setting = "scan.num_neighbours" if dataset is None else "scan.heldout_neighbours"
            raise UserError(
                f"{setting}={k} needs more than that many images, but "
                f"{data.name} has {len(data)}; lower it (--set {setting}=...)"
            )
        features = ctx.embed(self.pretext_features, dataset)
        stats: dict[str, float] = {}
        mined = ctx.on_main(lambda: mine_neighbours(features, k, stats=stats))
        if dataset is None:
            self.mining_recall = stats.get("recall")
        return mined

    def candidates(self, neighbours: torch.Tensor) -> torch.Tensor:
        """(N, k + 1) each image's index then its k neighbours with ``include_anchor``
        (SCAN's top-(k+1) list), else the (N, k) neighbours."""
        if not self.include_anchor:
            return neighbours
        own = torch.arange(len(neighbours), device=neighbours.device).unsqueeze(1)
        return torch.cat([own, neighbours], dim=1)

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        """Draws this epoch's neighbour of every anchor, from (seed, epoch) alone: the same
        pairs on any number of processes, and again when a resumed run replays the epoch."""
        candidates = self.candidates(self.neighbours)
        generator = torch.Generator().manual_seed(epoch_seed(ctx.seed, ctx.epoch))
        picks = torch.randint(candidates.shape[1], (len(candidates), 1), generator=generator)
        self.epoch_neighbour = candidates.gather(1, picks.to(candidates.device))[:, 0]
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
        logs = {
            "best_head": self.best_head,
            "epoch_head": self.epoch_head,
            "heldout_loss": self.heldout_losses[self.epoch_head],
            "best_heldout_loss": self.best_loss,
        }
        if self.mining_accuracy is not None:
            logs["neighbour_acc"] = self.mining_accuracy
        if self.mining_recall is not None:  # measured when this invocation mined
            logs["mining_recall"] = self.mining_recall
        return logs

    def _select_head(self, ctx: StageContext) -> None:
        """SCAN's head selection (``scan_evaluate``): for each head, over the held-out
        images X and their candidates N_X (X itself and its mined neighbours),

            L = -1/(|D| |N_X|) sum_X sum_{j in N_X} log <Phi(X), Phi(j)>  -  H(mean_X Phi(X))

        with the log clamped at -100 as its BCE. Keeps the network when the lowest L is
        the lowest so far (strictly lower, as SCAN's ``lowest_loss < best_loss``).
        """
        heldout = ctx.heldout is not None and self.heldout_neighbours is not None
        dataset = ctx.heldout if heldout else ctx.dataset
        neighbours = self.heldout_neighbours if heldout else self.neighbours
        logits = ctx.embed(self.head_logits, dataset)
        k = self.heads.heads[0].out_features
        losses = []
        for probs in logits.split(k, dim=1):
            probs = probs.softmax(dim=1)
            pairs = self.candidates(neighbours.to(probs.device))
            agreement = (probs.unsqueeze(1) * probs[pairs]).sum(dim=2)
            consistency = neighbour_consistency(agreement)
            entropy = mean_assignment_entropy(probs)
            losses.append(float(consistency - SELECTION_ENTROPY_WEIGHT * entropy))
        self.heldout_losses = losses
        self.epoch_head = min(range(len(losses)), key=losses.__getitem__)
        if losses[self.epoch_head] < self.best_loss:
            self.best_loss = losses[self.epoch_head]
            self.best_head = self.epoch_head
            self.best_state = self.network_state()

    def network_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """A CPU copy of the backbone's and the heads' parameters and buffers."""
        return {
            name: {key: value.detach().to("cpu", copy=True) for key, value in sd.items()}
            for name, sd in (
                ("backbone", self.backbone.state_dict()),
                ("heads", self.heads.state_dict()),
            )
        }

    def restore_best(self) -> None:
        """Loads the kept epoch's network (backbone and heads) back, as SCAN's
        self-labelling loads ``scan_model``; nothing to do before any epoch ended."""
        if self.best_state is None:
            return
        self.backbone.load_state_dict(self.best_state["backbone"])
        self.heads.load_state_dict(self.best_state["heads"])
        self.epoch_head = self.best_head

    def best_head_module(self) -> nn.Linear:
        """The kept head (self-labelling starts from it, after :meth:`restore_best`)."""
        return self.heads.heads[self.best_head]

    def predict(self, ctx: StageContext) -> Prediction:
        head = self.heads.heads[self.epoch_head]
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
            "epoch_head": self.epoch_head,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "heldout_losses": self.heldout_losses,
            "mining_accuracy": self.mining_accuracy,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.neighbours = state["neighbours"]
        self.heldout_neighbours = state["heldout_neighbours"]
        self.best_head = state["best_head"]
        self.epoch_head = state.get("epoch_head", self.best_head)
        self.best_loss = state.get("best_loss", float("inf"))
        self.best_state = state.get("best_state")
        self.heldout_losses = state["heldout_losses"]
        self.mining_accuracy = state["mining_accuracy"]
