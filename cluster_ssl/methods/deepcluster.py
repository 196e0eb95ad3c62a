"""DeepCluster (Caron et al., ECCV 2018): k-means pseudo-labels, re-computed every epoch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.cluster.pca import pca_whiten
from cluster_ssl.cluster.reseed import Reclustering, kmeans_without_empty_clusters
from cluster_ssl.eval.metrics import nmi
from cluster_ssl.methods.base import Batch, StageContext, epoch_seed
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.models.sobel import SobelFilter

#: standard deviation of the classifier head's weights at every re-initialisation
HEAD_INIT_STD = 0.01


def uniform_over_classes(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An epoch's order of len(labels) sample indices, uniform over the non-empty classes.

    Caron et al. (2018), Sec. 3.3: sampling images "based on a uniform distribution over the
    classes, or pseudo-labels" keeps large clusters from dominating. With N samples in m
    non-empty classes, N mod m classes (drawn at random) get N // m + 1 entries and the
    others N // m; a class of s members asked for c entries contributes every member
    c // s times plus c mod s members drawn without replacement (so a small class repeats
    its members, a large one is subsampled). The result is shuffled.
    """
    n = len(labels)
    sorted_labels, by_label = torch.sort(labels.cpu(), stable=True)
    sizes = torch.unique_consecutive(sorted_labels, return_counts=True)[1]
    m = len(sizes)
    counts = torch.full((m,), n // m, dtype=torch.long)
    counts[torch.randperm(m, generator=generator)[: n % m]] += 1
    parts = []
    for members, count in zip(by_label.split(sizes.tolist()), counts.tolist(), strict=True):
        repeats, rest = divmod(count, len(members))
        extra = members[torch.randperm(len(members), generator=generator)[:rest]]
        parts += [members.repeat(repeats), extra]
    order = torch.cat(parts)
    return order[torch.randperm(n, generator=generator)]


class DeepCluster(EmbeddingMethod):
    """Cross-entropy against k-means pseudo-labels that are recomputed every epoch.

    Each epoch (Caron et al., 2018):

    1. features of the un-augmented images (eval mode), optionally behind the fixed Sobel
       layer, are PCA-whitened to ``pca_dim`` components and L2-normalised;
    2. k-means (faiss, ``kmeans_iterations`` Lloyd iterations, seeded by (seed, epoch))
       with k = ``num_pseudo_classes`` gives pseudo-labels y_i; empty clusters are re-seeded
       from a perturbed copy of a non-empty cluster that is then split (the paper's rule);
    3. the classifier head W is re-initialised, W ~ N(0, 0.01^2), b = 0, and its optimiser
       state (momentum buffers) is dropped: the previous epoch's classes mean nothing now.
       With SGD the head has its own parameter group with momentum ``head_momentum``
       (0: the public ``main.py`` creates ``optimizer_tl = SGD(top_layer, lr, weight_decay)``
       afresh each epoch, without momentum, while the rest uses SGD with momentum 0.9);
       plain SGD keeps no state, so one optimiser with two groups takes exactly those steps
       and its state_dict resumes them;
    4. training minimises  L = -1/B sum_i log softmax(W f(aug(x_i)) + b)_{y_i}  on batches
       sampled uniformly over the pseudo-classes.

    Logged per epoch: ``empty_clusters_reseeded`` and ``nmi_previous_epoch``, the NMI
    between this epoch's and the previous epoch's pseudo-labels (the paper's stability
    curve, Fig. 2b). Prediction: k-means with K = ``num_clusters`` on the L2-normalised
    backbone embedding (inherited from :class:`EmbeddingMethod`), not on the PCA-whitened
    one: whitening scales every kept direction, noise included, to unit variance, and on a
    trained digits model whitened features gave ACC 0.75 / 0.83 / 0.56 at 8 / 16 / 64
    components against a steady 0.80 without.

    Args:
        head: a Linear layer from the backbone's features to ``num_pseudo_classes`` logits.
        view: the training augmentation (RandomResizedCrop + flip in the paper).
        pca_dim: components kept by the PCA whitening (256 in the paper).
        sobel: put the fixed Sobel layer in front of the backbone (which must then take 2
            channels).
        kmeans_iterations: Lloyd iterations of each epoch's k-means (20 in the paper).
        head_momentum: SGD momentum of the head's parameter group (0 in the public code);
            None puts the head in the backbone's group (momentum included, its buffers
            dropped at every re-initialisation). Other optimisers ignore it.
    """

    def __init__(
        self,
        *args,
        head: nn.Linear,
        view: nn.Module,
        pca_dim: int,
        sobel: bool,
        kmeans_iterations: int = 20,
        head_momentum: float | None = 0.0,
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        self.head = head
        self.view = view
        self.input_layer: nn.Module = SobelFilter() if sobel else nn.Identity()
        self.pca_dim = pca_dim
        self.kmeans_iterations = kmeans_iterations
        self.head_momentum = head_momentum
        self.pseudo_labels: torch.Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def num_pseudo_classes(self) -> int:
        return self.head.out_features

    def configure_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser over every trainable parameter, kept so that the head's state can
        be dropped when the head is re-initialised. With SGD and ``head_momentum`` set, the
        head is a second parameter group (same lr and weight decay, that momentum)."""
        if self.head_momentum is None or self.optimizer_spec.name != "sgd":
            self._optimizer = super().configure_optimizer()
            return self._optimizer
        head = {id(p) for p in self.head.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in head]
        self._optimizer = self.optimizer_spec.build(rest)
        head_params = [p for p in self.head.parameters() if p.requires_grad]
        self._optimizer.add_param_group({"params": head_params, "momentum": self.head_momentum})
        return self._optimizer

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images -> backbone features (N, feature_dim), through Sobel if set."""
        return self.backbone(self.input_layer(images))

    def features(self, batch: Batch) -> torch.Tensor:
        """Backbone features of the un-augmented images, L2-normalised."""
        return F.normalize(self.raw_features(batch), dim=1)

    def raw_features(self, batch: Batch) -> torch.Tensor:
        """Backbone features of the un-augmented images, as k-means' preprocessing takes them."""
        return self.encode(self.augment(self.eval_transform, batch["image"]))

    def recluster(self, features: torch.Tensor, seed: int) -> Reclustering:
        """PCA-whitening, L2-normalisation and k-means without empty clusters."""
        whitened = pca_whiten(features, self.pca_dim)  # clustered on its device
        return kmeans_without_empty_clusters(
            whitened, self.num_pseudo_classes, seed=seed, n_iter=self.kmeans_iterations
        )

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        """New pseudo-labels from the current features; a fresh classifier head."""
        seed = epoch_seed(ctx.seed, ctx.epoch)
        features = ctx.embed(self.raw_features)
        result = ctx.on_main(lambda: self.recluster(features, seed))
        labels = torch.as_tensor(result.labels, device=ctx.device)
        logs = {"empty_clusters_reseeded": float(result.reseeded)}
        if self.pseudo_labels is not None:
            logs["nmi_previous_epoch"] = nmi(self.pseudo_labels.cpu(), result.labels)
        self.pseudo_labels = labels
        self.reset_head(seed)
        return logs

    def reset_head(self, seed: int) -> None:
        """W ~ N(0, 0.01^2), b = 0 (the same on every rank), and no optimiser state for them."""
        weight, bias = self.head.weight, self.head.bias
        generator = torch.Generator(device=weight.device).manual_seed(seed)
        with torch.no_grad():
            weight.normal_(0.0, HEAD_INIT_STD, generator=generator)
            bias.zero_()
        if self._optimizer is not None:
            for parameter in (weight, bias):
                self._optimizer.state.pop(parameter, None)

    def sample_order(self, ctx: StageContext) -> torch.Tensor | None:
        """Uniform over this epoch's pseudo-classes, seeded by (seed, epoch)."""
        if self.pseudo_labels is None:
            return None
        generator = torch.Generator().manual_seed(epoch_seed(ctx.seed, ctx.epoch))
        return uniform_over_classes(self.pseudo_labels, generator)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = self.augment(self.view, batch["image"])
        logits = self.head(self.encode(images))
        if self.pseudo_labels.device != logits.device:  # once, after a resume on the CPU
            self.pseudo_labels = self.pseudo_labels.to(logits.device)
        targets = self.pseudo_labels[batch["index"]]
        loss = F.cross_entropy(logits.float(), targets)
        agreement = (logits.argmax(dim=1) == targets).float().mean()
        return {"loss": loss, "pseudo_label_accuracy": agreement}

    def collapse_hint(self) -> str:
        return (
            "lower the learning rate (--set lr=...) or over-cluster more "
            "(--set num_pseudo_classes=...)"
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {"pseudo_labels": self.pseudo_labels}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.pseudo_labels = state["pseudo_labels"]
