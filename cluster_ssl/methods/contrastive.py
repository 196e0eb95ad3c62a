"""What the contrastive methods share: a backbone, an eval transform, an optimiser with a
schedule, and clustering by k-means on the L2-normalised embedding."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.cluster.kmeans import assign, kmeans
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.methods.base import Batch, Method, StageContext
from cluster_ssl.methods.optim import OptimizerSpec, ScheduleSpec
from cluster_ssl.runtime.timing import timed


def centre_similarity(z: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``z`` to the centre of its cluster."""
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-12)
    rows = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    return (rows * unit[labels]).sum(axis=1)


class EmbeddingMethod(Method):
    """Base of SimCLR, CC and IDFD.

    Args:
        backbone: maps normalised images to (B, feature_dim) features.
        eval_transform: the un-augmented view (uint8 -> normalised float), used for every
            whole-dataset pass (prediction, monitoring, k-means).
        optimizer, schedule: the recipe's optimiser and learning-rate schedule.
        num_clusters: K.
        kmeans_restarts: restarts of the k-means that clusters the embedding.
        views_in_one_batch: whether :meth:`encode_views` runs the augmented views of a
            step through a network as one concatenated batch (BatchNorm normalises over
            all views together, one running-stat update) or view by view (each view its
            own batch statistics and running-stat update). None: the original's choice,
            the class's :attr:`original_views_in_one_batch`. Methods that encode no two
            views through one network (None there) accept only None.
    """

    #: k-means on the embedding, unless a subclass has a cluster head
    clusters_by: ClassVar[str] = "kmeans"

    #: how the method's original code runs the views of a step through the backbone: True
    #: one concatenated batch, False one forward pass per view; None where the method
    #: encodes no two views through one network (so the setting does not apply)
    original_views_in_one_batch: ClassVar[bool | None] = None

    def __init__(
        self,
        backbone: nn.Module,
        eval_transform: nn.Module,
        optimizer: OptimizerSpec,
        schedule: ScheduleSpec,
        num_clusters: int,
        kmeans_restarts: int = 10,
        views_in_one_batch: bool | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.eval_transform = eval_transform
        self.optimizer_spec = optimizer
        self.schedule = schedule
        self.num_clusters = num_clusters
        self.kmeans_restarts = kmeans_restarts
        original = self.original_views_in_one_batch
        if original is None and views_in_one_batch is not None:
            raise ValueError(
                f"{type(self).__name__} encodes no two views through one network; "
                f"views_in_one_batch must be None, got {views_in_one_batch}"
            )
        #: plain attribute, not state: a resume rebuilds it from the settings
        self.views_in_one_batch = original if views_in_one_batch is None else views_in_one_batch

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer_spec.build(p for p in self.parameters() if p.requires_grad)

    def configure_scheduler(self, optimizer, total_steps, steps_per_epoch):
        return self.schedule.build(optimizer, total_steps, steps_per_epoch)

    @staticmethod
    def augment(pipeline: nn.Module, images: torch.Tensor) -> Any:
        """Run an augmentation pipeline in fp32, whatever autocast surrounds the step."""
        # timed as a step section only in training passes; the views of whole-dataset
        # passes (no_grad) count towards the refresh that makes them
        section = timed("augment") if torch.is_grad_enabled() else contextlib.nullcontext()
        with section, torch.autocast(images.device.type, enabled=False):
            return pipeline(images)

    @staticmethod
    def in_fp32(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """``head`` of the features ``h`` in fp32, whatever autocast surrounds the call."""
        with torch.autocast(h.device.type, enabled=False):
            return head(h.float())

    def encode_views(
        self, network: Callable[[torch.Tensor], torch.Tensor], views: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``network`` of each view, as one concatenated batch (``views_in_one_batch``) or one
        forward pass per view, in order. Only BatchNorm (batch statistics, and one
        running-stat update per pass) tells the two apart; the outputs are the views'
        either way."""
        if not self.views_in_one_batch:
            return [network(view) for view in views]
        shapes = {tuple(view.shape[1:]) for view in views}
        if len(shapes) > 1:
            raise ValueError(
                f"views_in_one_batch needs views of one shape, got {sorted(shapes)}; "
                "set views_in_one_batch=false"
            )
        out = network(torch.cat(list(views)))
        return list(out.split([view.shape[0] for view in views]))

    def features(self, batch: Batch) -> torch.Tensor:
        """Backbone features of the un-augmented images, L2-normalised."""
        images = self.augment(self.eval_transform, batch["image"])
        return F.normalize(self.backbone(images), dim=1)

    def embedding(self, ctx: StageContext) -> torch.Tensor:
        """The clustered embedding of the whole dataset (N, d), in dataset order."""
        return ctx.embed(self.features)

    def predict(self, ctx: StageContext) -> Prediction:
        """k-means on the embedding; confidence is each sample's cosine similarity to its
        cluster's centre."""
        embedding = self.embedding(ctx)  # clustered on its device (a GPU's: torch backend)
        result = ctx.on_main(
            lambda: kmeans(embedding, self.num_clusters, n_init=self.kmeans_restarts, seed=ctx.seed)
        )
        z = embedding.cpu().numpy()
        confidence = centre_similarity(z, result.centroids, result.labels)
        return Prediction(
            result.labels,
            self.num_clusters,
            confidence=confidence,
            embedding=z,
            centres=result.centroids,
        )

    def predict_new(
        self, training: StageContext, new: StageContext, centres: np.ndarray | None = None
    ) -> Prediction:
        """k-means on the training embedding (the same clusters :meth:`predict` finds on
        it; skipped when ``centres`` gives them), then each new image joins the nearest
        centre (same confidence as :meth:`predict`). Methods with a cluster head predict
        directly."""
        if not self.predict_new_reads_training_data():  # a cluster head
            return self.predict(new)
        centroids = centres if centres is not None else self.training_centres(training)
        z = new.embed(self.clustered_features).cpu().numpy()
        labels = assign(z, centroids)
        confidence = centre_similarity(z, centroids, labels)
        return Prediction(
            labels, self.num_clusters, confidence=confidence, embedding=z, centres=centroids
        )

    def predict_new_reads_training_data(self) -> bool:
        return self.clusters_by == "kmeans"

    def training_centres(self, training: StageContext) -> np.ndarray:
        """The centres :meth:`predict` finds on the training data (its k-means, same seed)."""
        z = self.embedding(training)
        return training.on_main(
            lambda: (
                kmeans(
                    z, self.num_clusters, n_init=self.kmeans_restarts, seed=training.seed
                ).centroids
            )
        )

    def clustered_features(self, batch: Batch) -> torch.Tensor:
        """A batch's features in the space :meth:`embedding` clusters (the backbone's)."""
        return self.features(batch)

    def head_prediction(
        self, ctx: StageContext, probabilities: Callable[[torch.Tensor], torch.Tensor]
    ) -> Prediction:
        """Clusters as the argmax of a cluster head's (B, K) ``probabilities`` of the
        backbone features, with that maximum as the confidence and the L2-normalised
        features as the embedding (for the kNN monitor). The head runs in fp32 whatever
        autocast surrounds the pass: bf16 probabilities near 1 are 0.004 apart, too coarse
        for a confidence threshold such as SCAN's 0.99."""

        def assign(batch: Batch) -> torch.Tensor:
            h = self.backbone(self.augment(self.eval_transform, batch["image"])).float()
            return torch.cat([self.in_fp32(probabilities, h), F.normalize(h, dim=1)], dim=1)

        out = ctx.embed(assign)
        probs, z = out[:, : self.num_clusters], out[:, self.num_clusters :]
        confidence, labels = probs.max(dim=1)
        return Prediction(
            labels=labels.cpu().numpy(),
            num_clusters=self.num_clusters,
            confidence=confidence.cpu().numpy(),
            embedding=z.cpu().numpy(),
        )

    def collapse_hint(self) -> str:

        return "train longer or lower the learning rate (--set lr=...)"
