"""DCEC: Deep Clustering with Convolutional Autoencoders (Guo et al., ICONIP 2017).

Convolutional autoencoder conv32(5x5 s2) - conv64(5x5 s2) - conv128(3x3 s2) - dense 10,
mirrored decoder; pretrain 200 epochs with Adam, batch 256; then clustering with the
reconstruction kept, L = L_r + gamma * KL(P || Q), gamma = 0.1, Adam, update interval 140,
tol 0.001. Pixels in [0, 1], USPS's in [-0.5, 0.5] as its loader gives them
(``pixel_range``). Protocol: train+test merged. Images must be square with a side that is a
multiple of 4 (28 and 32 as in the paper; 8x8 digits work too).

    python recipes/dcec.py --dataset digits --out runs/dcec-digits
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster_ssl.config import non_negative, positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import FolderUse, Recipe
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.dec import DEC
from cluster_ssl.models.autoencoders import ConvAutoencoder
from cluster_ssl.runtime.script import run_as_train_command
from recipes.autoencoder_family import AutoencoderClusteringConfig, autoencoder_stages


@dataclass
class DCECConfig(AutoencoderClusteringConfig):
    """DCEC: the convolutional autoencoder (filters ``channels``, then a dense embedding),
    Adam in both stages, L = L_r + gamma * KL(P || Q)."""

    channels: tuple[int, ...] = (32, 64, 128)
    gamma: float = non_negative(0.1)
    epochs: int = positive(200)
    optimizer: str = "adam"
    lr: float = positive(1e-3)


def build(cfg: DCECConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    autoencoder = ConvAutoencoder(dataset.image_shape, cfg.channels, cfg.embedding_dim)
    return autoencoder_stages(cfg, autoencoder, num_clusters, gamma=cfg.gamma)


PRESETS = {
    # The authors' DCEC.py refreshes P every 140 steps on every dataset, USPS included (the
    # 30 for USPS is DEC's and IDEC's code); 200 pretraining epochs (the class default).
    "mnist": {"update_interval": 140},
    "fashion-mnist": {"update_interval": 140},
    # USPS in [-0.5, 0.5], as its datasets.py halves the files' [-1, 1] values
    "usps": {"update_interval": 140, "pixel_range": (-0.5, 0.5)},
    # digits: 1,797 images, 8 batches an epoch; P every 30 steps (about 4 epochs).
    "digits": {"update_interval": 30},
}

RECIPE = Recipe(
    name="dcec",
    description="DCEC: convolutional autoencoder + clustering layer, gamma=0.1 (Guo et al. 2017)",
    config=DCECConfig,
    build=build,
    method=DEC,
    estimator="DCEC",
    folder=FolderUse(image_size=32),
    presets=PRESETS,
    protocol="train+test merged, as the DCEC paper",
)

if __name__ == "__main__":
    run_as_train_command(RECIPE.name)
