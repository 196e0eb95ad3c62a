"""IDEC: Improved Deep Embedded Clustering with Local Structure Preservation (Guo et al. 2017).

DEC with the decoder kept: L = L_r + gamma * KL(P || Q), gamma = 0.1, so the embedding
keeps the local structure of the data. The authors' code (XifengGuo/IDEC) starts from DEC's
pretrained autoencoder, so on MNIST, Fashion-MNIST and USPS the presets pretrain as DEC's
do (the Keras DEC's settings, recipes/dec.py); digits has its own preset. Clustering
optimiser as in that code: Adam lr 0.001 on MNIST, SGD lr 0.1 momentum 0.99 on USPS and
Reuters; batch 256, update interval 140 (30 for USPS), tol 0.001. Fashion-MNIST, not in
the paper, takes MNIST's settings. Protocol: train+test merged.

    python recipes/idec.py --dataset digits --out runs/idec-digits
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster_ssl.config import below_one, non_negative, positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import FolderUse, Recipe
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.dec import DEC
from cluster_ssl.runtime.script import run_as_train_command
from recipes.autoencoder_family import (
    DIGITS_AUTOENCODER,
    KERAS_DEC_MNIST_PRETRAINING,
    KERAS_DEC_USPS_PRETRAINING,
    MLPAutoencoderConfig,
    autoencoder_stages,
    mlp_autoencoder,
)


@dataclass
class IDECConfig(MLPAutoencoderConfig):
    """IDEC keeps the decoder: L = L_r + gamma * KL(P || Q). Without a preset it pretrains
    200 epochs (the authors' IDEC default) and clusters with SGD lr 0.1, momentum 0.99."""

    gamma: float = non_negative(0.1)
    epochs: int = positive(200)
    lr: float = positive(0.1)
    momentum: float = below_one(0.99)


def build(cfg: IDECConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    return autoencoder_stages(cfg, mlp_autoencoder(cfg, dataset), num_clusters, gamma=cfg.gamma)


#: MNIST's clustering optimiser in the authors' code: Adam at Keras' default rate
ADAM_CLUSTERING = {"optimizer": "adam", "lr": 0.001}

PRESETS = {
    "mnist": {**KERAS_DEC_MNIST_PRETRAINING, "update_interval": 140, **ADAM_CLUSTERING},
    "fashion-mnist": {**KERAS_DEC_MNIST_PRETRAINING, "update_interval": 140, **ADAM_CLUSTERING},
    "usps": {**KERAS_DEC_USPS_PRETRAINING, "update_interval": 30},
    # digits: the narrower autoencoder of DEC's digits preset (recipes/dec.py)
    "digits": {"epochs": 150, "update_interval": 30, **DIGITS_AUTOENCODER},
}

RECIPE = Recipe(
    name="idec",
    description="IDEC: DEC plus the autoencoder's reconstruction, gamma=0.1 (Guo et al. 2017)",
    config=IDECConfig,
    build=build,
    method=DEC,
    estimator="IDEC",
    input_kind="vectors",
    folder=FolderUse(),
    presets=PRESETS,
    protocol="train+test merged, as the IDEC paper",
)

if __name__ == "__main__":
    run_as_train_command(RECIPE.name)
