"""What DEC, IDEC and DCEC share: a pretraining stage and a clustering stage."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from cluster_ssl.config import RecipeConfig, Settings, below_one, group, non_negative, positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.autoencoder import UNIT_RANGE, AutoencoderPretraining
from cluster_ssl.methods.dec import DEC
from cluster_ssl.methods.optim import OptimizerSpec
from cluster_ssl.models.autoencoders import MLP_WEIGHT_INITS, MLPAutoencoder
from cluster_ssl.models.clustering_layer import ClusteringLayer
from cluster_ssl.runtime.errors import UserError

#: DEC's and IDEC's autoencoder on the 8 x 8 digits: 64-256-256-512-5
DIGITS_AUTOENCODER = {"hidden_dims": (256, 256, 512), "embedding_dim": 5}

#: how the Keras DEC reimplementation pretrains on MNIST and Fashion-MNIST: 300 epochs of SGD
#: lr 1, momentum 0.9, from U(+-1/sqrt(fan_in)) weights (the MLP's default initialisation)
KERAS_DEC_MNIST_PRETRAINING = {
    "epochs": 300,
    "pretrain.optimizer": "sgd",
    "pretrain.lr": 1.0,
    "pretrain.momentum": 0.9,
}

#: ... and on USPS: 50 epochs of Adam lr 0.001 from Glorot-uniform weights, on the files'
#: [-1, 1] pixel values halved (its datasets.py; DCEC's loader halves them too)
KERAS_DEC_USPS_PRETRAINING = {
    "epochs": 50,
    "weight_init": "glorot_uniform",
    "pixel_range": (-0.5, 0.5),
}


@dataclass
class PretrainSettings(Settings):
    """Autoencoder pretraining, the first stage (its length is the recipe's ``epochs``).

    ``dropout`` > 0 pretrains a denoising autoencoder (the DEC paper uses 0.2 in its
    layer-wise pretraining).
    """

    optimizer: str = "adam"
    lr: float = positive(1e-3)
    momentum: float = below_one(0.9)
    dropout: float = below_one(0.0)


@dataclass
class AutoencoderClusteringConfig(RecipeConfig):
    """Settings of the two stages: ``epochs`` and ``pretrain.*`` for autoencoder
    pretraining, the rest for clustering, which runs until fewer than ``tol`` of the labels
    change between two refreshes of P (every ``update_interval`` steps), or for ``maxiter``
    steps. ``pixel_range`` (low, high) is where the pixels 0..255 are mapped before the
    autoencoder sees them (both stages).
    """

    renamed: ClassVar[dict[str, str]] = {
        f"pretrain_{key}": f"pretrain.{key}" for key in ("optimizer", "lr", "momentum", "dropout")
    }

    split: str = "train+test"
    epochs: int = positive(300)
    batch_size: int = positive(256)
    embedding_dim: int = positive(10)
    pretrain: PretrainSettings = group(PretrainSettings)
    optimizer: str = "sgd"
    lr: float = positive(0.01)
    momentum: float = below_one(0.9)
    update_interval: int = positive(140)
    tol: float = non_negative(0.001)
    maxiter: int = positive(20000)
    kmeans_restarts: int = positive(20)
    alpha: float = positive(1.0)
    pixel_range: tuple[float, float] = UNIT_RANGE

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.pixel_range) != 2 or not self.pixel_range[0] < self.pixel_range[1]:
            shown = ",".join(map(str, self.pixel_range))
            raise UserError(
                f"--set pixel_range={shown}: need two numbers, low below high "
                "(e.g. --set pixel_range=-0.5,0.5)"
            )


@dataclass
class MLPAutoencoderConfig(AutoencoderClusteringConfig):
    """DEC's and IDEC's fully connected autoencoder: d-500-500-2000-10 and its mirror."""

    hidden_dims: tuple[int, ...] = (500, 500, 2000)
    weight_init: str = "fan_in_uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
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
        OptimizerSpec(cfg.pretrain.optimizer, cfg.pretrain.lr, momentum=cfg.pretrain.momentum),
        num_clusters,
        kmeans_restarts=cfg.kmeans_restarts,
        dropout=cfg.pretrain.dropout,
        pixel_range=cfg.pixel_range,
    )
    cluster = DEC(
        autoencoder,
        ClusteringLayer(num_clusters, cfg.embedding_dim, alpha=cfg.alpha),
        OptimizerSpec(cfg.optimizer, cfg.lr, momentum=cfg.momentum),
        gamma=gamma,
        update_interval=cfg.update_interval,
        tol=cfg.tol,
        kmeans_restarts=cfg.kmeans_restarts,
        pixel_range=cfg.pixel_range,
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
