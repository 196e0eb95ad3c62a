"""SimCLR (Chen et al., ICML 2020) as SCAN's pretext task, clustered by k-means.

ResNet-18 (CIFAR stem on small images; on STL-10 SCAN's own stem, ``stem=stl``: the 3x3
stride-1 conv of ``models/resnet_stl.py`` followed by a 2x2 stride-2 max-pool, so 96 px
images give 49-25-13-7 feature maps where the ImageNet stem gave 24-12-6-3), MLP head
512-512-ReLU-128 (L2-normalised), NT-Xent with temperature 0.1 over both views; SGD lr 0.4,
momentum 0.9, weight decay 1e-4, batch 512, 500 epochs, cosine decay to lr * 1e-3 (SCAN's
configs), set once per epoch as SCAN's ``adjust_learning_rate`` (``schedule_per_epoch``).
Augmentation: SimCLR's weak pipeline. Protocol: trains on the train split and reports the
test split, as SCAN does (STL-10 trains on train+unlabelled). Evaluation: k-means on the
backbone embedding.

    python recipes/simclr.py --dataset digits --out runs/simclr-digits
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster_ssl.augment.pipelines import TwoViews
from cluster_ssl.config import non_negative, positive
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.engine.recipe import FolderUse, Recipe
from cluster_ssl.engine.trainer import Stage
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.models.heads import ProjectionHead
from cluster_ssl.runtime.script import run_as_train_command
from recipes.contrastive_common import (
    BackboneConfig,
    embedding_method_args,
    make_pipeline,
)


@dataclass
class SimCLRConfig(BackboneConfig):
    split: str = "train"
    eval_split: str | None = "test"
    epochs: int = positive(500)
    batch_size: int = positive(512)
    head_hidden: int = positive(512)
    feature_dim: int = positive(128)
    temperature: float = positive(0.1)
    optimizer: str = "sgd"
    lr: float = positive(0.4)
    weight_decay: float = non_negative(1e-4)
    schedule: str = "cosine"


def simclr_method(cfg: SimCLRConfig, dataset: ImageDataset, num_clusters: int) -> SimCLR:
    args = embedding_method_args(cfg, dataset, num_clusters)
    head = ProjectionHead(args["backbone"].feature_dim, cfg.head_hidden, cfg.feature_dim)
    views = TwoViews(make_pipeline("simclr", cfg, dataset))
    return SimCLR(**args, head=head, views=views, temperature=cfg.temperature)


def build(cfg: SimCLRConfig, dataset: ImageDataset, num_clusters: int) -> list[Stage]:
    method = simclr_method(cfg, dataset, num_clusters)
    return [Stage("simclr", method, cfg.epochs, cfg.batch_size, eval_every=cfg.eval_every)]


PAPER = {
    "epochs": 500,
    "batch_size": 512,
    "optimizer": "sgd",
    "lr": 0.4,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "schedule_per_epoch": True,
    "temperature": 0.1,
    "eval_every": 50,
}
CPU = {
    "batch_size": 256,
    "width": 0.25,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "temperature": 0.2,
    "schedule": "cosine",
}
PRESETS = {
    "cifar10": {**PAPER},
    "cifar100-20": {**PAPER},
    # SCAN's models/resnet_stl.py: 3x3 stride-1 conv + 2x2 stride-2 max-pool
    "stl10": {**PAPER, "split": "train+unlabeled", "stem": "stl"},
    "imagenet10": {**PAPER, "image_size": 224, "stem": "imagenet", "batch_size": 256},
    "imagenet-dogs": {**PAPER, "image_size": 224, "stem": "imagenet", "batch_size": 256},
    "tiny-imagenet": {**PAPER, "image_size": 64},
    # CPU presets: a quarter-width ResNet-18 and Adam
    # digits: no flips (a mirrored 2 is not a 2); 100 epochs (0.873 at 60, 0.896 at 100)
    "digits": {
        **CPU,
        "epochs": 100,
        "image_size": 16,
        "flip": False,
        "split": "train+test",
        "eval_split": None,
    },
    "fashion-mnist": {**CPU, "epochs": 30, "eval_every": 5},
}

RECIPE = Recipe(
    name="simclr",
    description="SimCLR instance contrast, clustered by k-means on the embedding",
    config=SimCLRConfig,
    build=build,
    method=SimCLR,
    estimator="SimCLRKMeans",
    pretext=True,
    folder=FolderUse(),
    presets=PRESETS,
    protocol="train split for training, test split reported (SCAN's protocol)",
)

if __name__ == "__main__":
    run_as_train_command(RECIPE.name)
