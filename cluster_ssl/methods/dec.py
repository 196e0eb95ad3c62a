"""DEC's clustering algorithm, over an autoencoder (DEC, IDEC, DCEC) or any encoder.

DEC (Xie et al., 2016) fine-tunes the encoder f and the centres mu by minimising
KL(P || Q) between the Student-t assignments Q and a sharpened target P. IDEC (Guo et al.,
2017) and DCEC (Guo et al., 2017) keep the decoder g and add its reconstruction error:

    L = L_r + gamma * KL(P || Q),   L_r = 1/(nD) sum_i ||x_i - g(f(x_i))||^2,   gamma = 0.1

(L_r averaged over the D pixels too, as the authors' Keras ``mse``.)

P is recomputed from a full pass over the dataset every ``update_interval`` steps, never
per mini-batch; training stops when fewer than ``tol`` of the argmax labels changed since
the previous refresh. :class:`KLSelfTraining` is that algorithm for any encoder; the kept
term L_r is whatever the subclass's :meth:`~KLSelfTraining.auxiliary_loss` returns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.cluster.student_t import target_distribution
from cluster_ssl.losses.dec import dec_clustering_loss
from cluster_ssl.methods.autoencoder import UNIT_RANGE, input_pixels, reconstruction_loss
from cluster_ssl.methods.base import Batch, Method, StageContext
from cluster_ssl.methods.optim import OptimizerSpec
from cluster_ssl.models.clustering_layer import ClusteringLayer


class KLSelfTraining(Method):
    """DEC's self-training of an encoder and a Student-t clustering layer.

    Subclasses give the encoder: :meth:`encode` (a batch's embedding, the space of the
    centres), :meth:`trainable` and, when ``gamma`` is set, :meth:`auxiliary_loss`, the
    term kept beside the KL (IDEC's reconstruction, or a pretext's own loss).

    Args:
        clustering: the layer holding the centres mu.
        gamma: weight of the KL term when an auxiliary term is kept; ``None`` trains the KL
            term alone (DEC).
        update_interval: steps between refreshes of P over the whole dataset.
        tol: stop when the fraction of changed labels between refreshes falls below this.
        kmeans_restarts: restarts of the k-means that initialises the centres.
    """

    #: the name the kept term is logged under
    auxiliary_name = "auxiliary"

    def __init__(
        self,
        clustering: ClusteringLayer,
        optimizer: OptimizerSpec,
        *,
        gamma: float | None,
        update_interval: int,
        tol: float,
        kmeans_restarts: int = 20,
    ) -> None:
        super().__init__()
        self.clustering = clustering
        self.optimizer_spec = optimizer
        self.gamma = gamma
        self.update_interval = update_interval
        self.tol = tol
        self.kmeans_restarts = kmeans_restarts
        self.target: torch.Tensor | None = None
        self.last_labels: torch.Tensor | None = None
        self.label_change: float | None = None
        self._stop: str | None = None

    @property
    def num_clusters(self) -> int:
        return self.clustering.centres.shape[0]

    def encode(self, batch: Batch) -> torch.Tensor:
        """The (B, d) embedding of a batch's un-augmented images."""
        raise NotImplementedError

    def auxiliary_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The term kept beside gamma * KL, and the batch's embedding if it computed it."""
        raise NotImplementedError

    def trainable(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer_spec.build(self.trainable())

    def on_fit_start(self, ctx: StageContext) -> None:
        """Centres from k-means (``kmeans_restarts`` restarts) on the starting embedding."""
        z = ctx.embed(self.encode)  # clustered on its device (a GPU's: torch backend)
        result = ctx.on_main(
            lambda: kmeans(z, self.num_clusters, n_init=self.kmeans_restarts, seed=ctx.seed)
        )
        self.clustering.set_centres(result.centroids)
        self.last_labels = torch.as_tensor(result.labels, device=ctx.device)

    def soft_assignments(self, ctx: StageContext) -> torch.Tensor:
        """Q over the whole dataset, (N, K), in dataset order."""
        return ctx.embed(lambda batch: self.clustering(self.encode(batch)))

    def on_step_start(self, ctx: StageContext) -> None:
        if ctx.step % self.update_interval != 0:
            return
        was_training = self.training
        self.eval()
        q = self.soft_assignments(ctx)
        self.train(was_training)
        self.target = target_distribution(q)
        labels = q.argmax(dim=1)
        self.last_labels = self.last_labels.to(labels.device)
        self.label_change = (labels != self.last_labels).float().mean().item()
        self.last_labels = labels
        if ctx.step > 0 and self.label_change < self.tol:
            self._stop = (
                f"{self.label_change:.4%} of labels changed since the last update, "
                f"below tol={self.tol}"
            )

    def stop_reason(self) -> str | None:
        return self._stop

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        device = batch["image"].device
        if self.target.device != device:  # once, after a resume loaded it on the CPU
            self.target = self.target.to(device)
        p = self.target[batch["index"]]
        if self.gamma is None:
            kl = dec_clustering_loss(self.clustering(self.encode(batch)), p)
            return {"loss": kl, "kl": kl}
        auxiliary, z = self.auxiliary_loss(batch)
        if z is None:
            z = self.encode(batch)
        kl = dec_clustering_loss(self.clustering(z), p)
        return {"loss": auxiliary + self.gamma * kl, "kl": kl, self.auxiliary_name: auxiliary}

    def on_epoch_end(self, ctx: StageContext) -> dict[str, float]:
        return {} if self.label_change is None else {"label_change": self.label_change}

    def predict(self, ctx: StageContext) -> Prediction:
        """argmax of Q, its value as the confidence, the embedding z and the centres."""

        def embed_and_assign(batch: Batch) -> torch.Tensor:
            z = self.encode(batch)
            return torch.cat([self.clustering(z), z], dim=1)

        out = ctx.embed(embed_and_assign)
        q, z = out[:, : self.num_clusters], out[:, self.num_clusters :]
        confidence, labels = q.max(dim=1)
        return Prediction(
            labels=labels.cpu().numpy(),
            num_clusters=self.num_clusters,
            confidence=confidence.cpu().numpy(),
            embedding=z.cpu().numpy(),
            centres=self.clustering.centres.detach().cpu().numpy(),
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "last_labels": self.last_labels,
            "label_change": self.label_change,
            "stop": self._stop,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.target = state["target"]
        self.last_labels = state["last_labels"]
        self.label_change = state["label_change"]
        self._stop = state["stop"]


class DEC(KLSelfTraining):
    """KL(P || Q) on a Student-t clustering layer over an autoencoder's encoder (DEC), plus
    the gamma-weighted reconstruction when the decoder is kept (IDEC, DCEC).

    Args:
        autoencoder: module with ``encode(x)`` and ``forward(x) -> (z, reconstruction)``.
        gamma: ``None`` drops the decoder (DEC); else L = L_r + gamma * KL.
        pixel_range: the range the pixels enter in (see
            :func:`~cluster_ssl.methods.autoencoder.input_pixels`).
        Others: see :class:`KLSelfTraining`.
    """

    auxiliary_name = "reconstruction"

    def __init__(
        self,
        autoencoder: nn.Module,
        *args: Any,
        pixel_range: tuple[float, float] = UNIT_RANGE,
        **settings: Any,
    ) -> None:
        super().__init__(*args, **settings)
        self.autoencoder = autoencoder
        self.pixel_range = pixel_range
        self.find_unused_parameters = self.gamma is None  # no gradient reaches the decoder

    def trainable(self) -> list[nn.Parameter]:
        """DEC trains encoder and centres only; IDEC / DCEC also the decoder."""
        encoder = self.autoencoder.encoder if self.gamma is None else self.autoencoder
        return [*encoder.parameters(), *self.clustering.parameters()]

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.autoencoder.encode(input_pixels(batch["image"], self.pixel_range))

    def auxiliary_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """IDEC's reconstruction error, with the embedding it computed on the way."""
        return reconstruction_loss(self.autoencoder, input_pixels(batch["image"], self.pixel_range))
