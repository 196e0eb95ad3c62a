"""IDEC: Improved Deep Embedded Clustering with Local Structure Preservation (Guo et al. 2017).

DEC with the decoder kept: L = L_r + gamma * KL(P || Q), gamma = 0.1, so the embedding
keeps the local structure of the data. The paper trains with SGD lr 0.1, momentum 0.99
(lr 0.01 for USPS), batch 256, update interval 140 (30 for USPS), tol 0.001.
Protocol: train+test merged.

    python recipes/idec.py --dataset digits --out runs/idec-digits
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.models.autoencoders import MLPAutoencoder
from cluster_ssl.recipe import Recipe
from recipes.autoencoder_family import (
    DIGITS_AUTOENCODER,
    AutoencoderClusteringConfig,
    autoencoder_stages,
)


@dataclass
class IDECConfig(AutoencoderClusteringConfig):
    hidden_dims: tuple[int, ...] = (500, 500, 2000)
    gamma: float = 0.1
    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.99


def build(cfg: IDECConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    autoencoder = MLPAutoencoder(math.prod(dataset.image_shape), cfg.hidden_dims, cfg.embedding_dim)
    return autoencoder_stages(cfg, autoencoder, num_clusters, gamma=cfg.gamma)


PRESETS = {
    "mnist": {"epochs": 200, "update_interval": 140, "lr": 0.1},
    "fashion-mnist": {"epochs": 200, "update_interval": 140, "lr": 0.1},
    "usps": {"epochs": 200, "update_interval": 30, "lr": 0.01},
    # digits: the narrower autoencoder of DEC's digits preset (recipes/dec.py)
    "digits": {"epochs": 150, "update_interval": 30, **DIGITS_AUTOENCODER},
}

RECIPE = Recipe(
    name="idec",
    description="IDEC: DEC plus the autoencoder's reconstruction, gamma=0.1 (Guo et al. 2017)",
    config=IDECConfig,
    build=build,
    presets=PRESETS,
    protocol="train+test merged, as the IDEC paper",
)

if __name__ == "__main__":
    from cluster_ssl.cli import run_recipe_script

    raise SystemExit(run_recipe_script(RECIPE.name))
