"""Autoencoder pretraining, the first stage of DEC, IDEC and DCEC."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.methods.base import Batch, Method, StageContext
from cluster_ssl.methods.optim import OptimizerSpec

#: the pixel range of every dataset's loader: uint8 0..255 -> [0, 1]
UNIT_RANGE = (0.0, 1.0)


def input_pixels(
    images: torch.Tensor, pixel_range: tuple[float, float] = UNIT_RANGE
) -> torch.Tensor:
    """uint8 images -> float, 0..255 mapped linearly onto ``pixel_range`` (low, high):

        x = low + (high - low) * u / 255

    The DEC family's originals scale their inputs per dataset (the Keras DEC's USPS in
    [-0.5, 0.5], IDEC's MNIST as pixels / 50, i.e. [0, 5.1]), and the pretraining's learning
    rate is tuned to that scale. Float feature vectors (the scikit-learn estimators'
    arrays) are used as given.
    """
    if images.is_floating_point():
        return images.float()
    x = images.float().div_(255.0)
    low, high = pixel_range
    if (low, high) == UNIT_RANGE:
        return x
    return x.mul_(high - low).add_(low)


def reconstruction_loss(
    autoencoder: nn.Module, x: torch.Tensor, corrupted: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error between ``x`` and its reconstruction; also returns the embedding.

    L_r = 1/n sum_i ||x_i - g(f(x~_i))||^2 / D  (the papers' MSE, averaged over pixels too),
    where x~ is ``corrupted`` (a denoising autoencoder) or ``x`` itself.
    """
    z, reconstruction = autoencoder(x if corrupted is None else corrupted)
    return F.mse_loss(reconstruction, x.reshape(reconstruction.shape)), z


def embed_and_cluster(
    encode: Callable[[torch.Tensor], torch.Tensor],
    ctx: StageContext,
    num_clusters: int,
    n_init: int,
    pixel_range: tuple[float, float] = UNIT_RANGE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embed the dataset with ``encode`` (its pixels in ``pixel_range``) and run k-means on
    it (on rank 0, shared to all).

    Returns (embedding, centroids, labels).
    """
    z = ctx.embed(lambda batch: encode(input_pixels(batch["image"], pixel_range)))
    # on the embedding's device: a GPU's features are clustered there (torch backend)
    result = ctx.on_main(lambda: kmeans(z, num_clusters, n_init=n_init, seed=ctx.seed))
    return z.cpu().numpy(), result.centroids, result.labels


class AutoencoderPretraining(Method):
    """Trains an autoencoder to reconstruct its input; clusters by k-means on the embedding.

    ``dropout`` > 0 makes it a denoising autoencoder: input pixels are dropped with that
    probability and the clean image is the target (the DEC paper pretrains with 0.2).
    ``pixel_range`` is the range the pixels enter in (:func:`input_pixels`).
    """

    #: k-means on the autoencoder's embedding
    clusters_by: ClassVar[str] = "kmeans"

    def __init__(
        self,
        autoencoder: nn.Module,
        optimizer: OptimizerSpec,
        num_clusters: int,
        kmeans_restarts: int = 20,
        dropout: float = 0.0,
        pixel_range: tuple[float, float] = UNIT_RANGE,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.pixel_range = pixel_range
        self.optimizer_spec = optimizer
        self.num_clusters = num_clusters
        self.kmeans_restarts = kmeans_restarts
        self.dropout = dropout

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = input_pixels(batch["image"], self.pixel_range)
        corrupted = F.dropout(x, self.dropout) if self.dropout > 0 else None
        loss, _ = reconstruction_loss(self.autoencoder, x, corrupted)
        return {"loss": loss}

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer_spec.build(self.parameters())

    def predict(self, ctx: StageContext) -> Prediction:
        z, centroids, labels = embed_and_cluster(
            self.autoencoder.encode, ctx, self.num_clusters, self.kmeans_restarts, self.pixel_range
        )
        return Prediction(labels, self.num_clusters, embedding=z, centres=centroids)
