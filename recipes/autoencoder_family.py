"""What DEC, IDEC and DCEC share: a pretraining stage and a clustering stage."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from cluster_ssl.config import RecipeConfig
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.errors import UserError
from cluster_ssl.methods.autoencoder import AutoencoderPretraining
from cluster_ssl.methods.dec import DECClustering
from cluster_ssl.methods.optim import OptimizerSpec
from cluster_ssl.models.autoencoders import MLP_WEIGHT_INITS, MLPAutoencoder
from cluster_ssl.models.clustering_layer import ClusteringLayer

#: DEC's and IDEC's autoencoder on the 8 x 8 digits: 64-256-256-512-5
DIGITS_AUTOENCODER = {"hidden_dims": (256, 256, 512), "embedding_dim": 5}

#: how the Keras DEC reimplementation pretrains on MNIST and Fashion-MNIST: 300 epochs of SGD
#: lr 1, momentum 0.9, from U(+-1/sqrt(fan_in)) weights (the MLP's default initialisation)
KERAS_DEC_MNIST_PRETRAINING = {
    "epochs": 300,
    "pretrain_optimizer": "sgd",
    "pretrain_lr": 1.0,
    "pretrain_momentum": 0.9,
}

#: ... and on USPS: 50 epochs of Adam lr 0.001 from Glorot-uniform weights
KERAS_DEC_USPS_PRETRAINING = {"epochs": 50, "weight_init": "glorot_uniform"}


@dataclass
class AutoencoderClusteringConfig(RecipeConfig):
    """Settings of the two stages. ``epochs`` is the length of autoencoder pretraining.

    ``pretrain_dropout`` > 0 pretrains a denoising autoencoder (the DEC paper uses 0.2 in
    its layer-wise pretraining). The clustering stage runs until fewer than ``tol`` of the
    labels change between two refreshes of P (every ``update_interval`` steps), or for
    ``maxiter`` steps.
    """

    split: str = "train+test"
    epochs: int = 300
    batch_size: int = 256
    embedding_dim: int = 10
    pretrain_optimizer: str = "adam"
    pretrain_lr: float = 1e-3
    pretrain_momentum: float = 0.9
    pretrain_dropout: float = 0.0
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    update_interval: int = 140
    tol: float = 0.001
    maxiter: int = 20000
    kmeans_restarts: int = 20
    alpha: float = 1.0


@dataclass
class MLPAutoencoderConfig(AutoencoderClusteringConfig):
    """DEC's and IDEC's fully connected autoencoder: d-500-500-2000-10 and its mirror."""

    hidden_dims: tuple[int, ...] = (500, 500, 2000)
    weight_init: str = "fan_in_uniform"

    def __post_init__(self) -> None:
        if self.weight_init not in MLP_WEIGHT_INITS:
            raise UserError(
                f"--set weight_init={self.weight_init}: unknown; use one of "
                f"{', '.join(MLP_WEIGHT_INITS)}"
            )


def mlp_autoencoder(cfg: MLPAutoencoderConfig, dataset: ImageDataset) -> MLPAutoencoder:
    return MLPAutoencoder(
        math.prod(dataset.image_shape),
        cfg.hidden_dims,
        cfg.embedding_dim,
        weight_init=cfg.weight_init,
    )


def autoencoder_stages(
    cfg: AutoencoderClusteringConfig,
    autoencoder: nn.Module,
    num_clusters: int,
    gamma: float | None,
) -> list[Stage]:
    """Pretrain ``autoencoder``, then cluster with KL(P || Q) (+ gamma * recon unless None)."""
    pretrain = AutoencoderPretraining(
        autoencoder,
        OptimizerSpec(cfg.pretrain_optimizer, cfg.pretrain_lr, momentum=cfg.pretrain_momentum),
        num_clusters,
        kmeans_restarts=cfg.kmeans_restarts,
        dropout=cfg.pretrain_dropout,
    )
    cluster = DECClustering(
        autoencoder,
        ClusteringLayer(num_clusters, cfg.embedding_dim, alpha=cfg.alpha),
        OptimizerSpec(cfg.optimizer, cfg.lr, momentum=cfg.momentum),
        gamma=gamma,
        update_interval=cfg.update_interval,
        tol=cfg.tol,
        kmeans_restarts=cfg.kmeans_restarts,
    )
    return [
        Stage(
            "pretrain",
            pretrain,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            eval_every=cfg.eval_every,
        ),
        Stage(
            "cluster",
            cluster,
            epochs=cfg.maxiter,
            batch_size=cfg.batch_size,
            max_steps=cfg.maxiter,
            eval_every=cfg.eval_every,
            drop_last=False,
        ),
    ]
