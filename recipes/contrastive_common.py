"""What the ResNet recipes share: backbone, optimiser and schedule settings, pipelines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from cluster_ssl.augment.pipelines import DEFAULT_CROP_SCALE, FLIPPING, Pipeline, build_pipeline
from cluster_ssl.augment.stats import dataset_stats
from cluster_ssl.config import (
    RecipeConfig,
    below_one,
    check_milestones,
    fraction,
    is_true,
    non_negative,
    positive,
)
from cluster_ssl.data.base import ImageDataset
from cluster_ssl.methods.optim import OptimizerSpec, ScheduleSpec
from cluster_ssl.models.backbones import Backbone, build_backbone, check_stem


@dataclass
class BackboneConfig(RecipeConfig):
    """A ResNet (or ``timm:NAME``) backbone and its optimiser.

    ``image_size`` (None: the dataset's own size) is the side the augmentations produce.
    ``width`` scales the ResNet's channels (0.25 trains on a CPU); ``stem`` is the ResNet's
    first layers: ``cifar`` (the 3x3 stride-1 convolution without max-pool that small images
    need), ``imagenet`` (torchvision's, the only one timm models take) or ``stl`` (SCAN's
    STL-10 ResNet). ``flip=False``
    turns off the horizontal flips of the augmentations (for digits, letters, and other
    images a mirror turns into something else). ``crop_scale`` is the smallest area fraction
    of the random crops (None: each paper's, 0.2 for SimCLR and IDFD, 0.08 for CC).
    ``views_in_one_batch`` runs a step's augmented views through the backbone as one
    concatenated batch (true: BatchNorm statistics over all views) or view by view (false);
    None: the original code's choice (SimCLR/SCAN one batch, CC one pass per view). IDFD
    (one view) and PCL (separate query and key encoders) take only None.
    ``schedule_per_epoch`` sets the learning rate once an epoch, as originals that step
    their schedule per epoch do, instead of every step.
    """

    backbone: str = "resnet18"
    width: float = positive(1.0)
    stem: str = "cifar"
    pretrained: str | None = None
    optimizer: str = "adam"
    lr: float = positive(1e-3)
    momentum: float = below_one(0.9)
    weight_decay: float = non_negative(0.0)
    schedule: str = "constant"
    final_lr_fraction: float = fraction(1e-3)
    milestones: tuple[float, ...] = ()
    warmup: float = non_negative(0.0)
    schedule_per_epoch: bool = False
    kmeans_restarts: int = positive(10)
    eval_every: int = non_negative(10)
    flip: bool = True
    crop_scale: float | None = fraction(None)
    views_in_one_batch: bool | None = None

    #: until 2026-12 the stem was a switch, ``cifar_stem`` (true: the CIFAR stem)
    replaced: ClassVar[dict[str, Callable[[Any], tuple[str, Any]]]] = {
        "cifar_stem": lambda value: ("stem", "cifar" if is_true(value) else "imagenet")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_milestones(self.milestones)
        check_stem(self.stem)


def make_backbone(cfg: BackboneConfig, dataset: ImageDataset) -> Backbone:
    return build_backbone(
        cfg.backbone,
        in_channels=dataset.image_shape[0],
        stem=cfg.stem,
        width=cfg.width,
        pretrained_path=cfg.pretrained,
        pretrained_ignore=("fc.",),
    )


def image_side(cfg: RecipeConfig, dataset: ImageDataset) -> int:
    return cfg.image_size or dataset.image_shape[-1]


#: the ImageNet subsets and Tiny-ImageNet are clustered on their train images alone
#: (13,000 / 19,500 / 100,000), as in CC's and IDFD's tables; CIFAR and STL-10 merge splits
IMAGENET_TRAIN_ONLY = {"split": "train"}


def make_pipeline(kind: str, cfg: BackboneConfig, dataset: ImageDataset, **options) -> Pipeline:
    mean, std = dataset_stats(dataset.name)
    channels = dataset.image_shape[0]
    if len(mean) != channels:  # e.g. grayscale images of a dataset with RGB statistics
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    if kind in FLIPPING:
        options.setdefault("flip", cfg.flip)
    if kind in DEFAULT_CROP_SCALE:
        options.setdefault("crop_scale", cfg.crop_scale)
    return build_pipeline(kind, image_size=image_side(cfg, dataset), mean=mean, std=std, **options)


def optimizer_of(cfg: BackboneConfig) -> OptimizerSpec:
    return OptimizerSpec(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)


def schedule_of(cfg: BackboneConfig) -> ScheduleSpec:
    return ScheduleSpec(
        cfg.schedule,
        cfg.final_lr_fraction,
        cfg.milestones,
        warmup=cfg.warmup,
        per_epoch=cfg.schedule_per_epoch,
    )


def embedding_method_args(
    cfg: BackboneConfig, dataset: ImageDataset, num_clusters: int
) -> dict[str, Any]:
    """Keyword arguments of :class:`~cluster_ssl.methods.contrastive.EmbeddingMethod`."""
    return {
        "backbone": make_backbone(cfg, dataset),
        "eval_transform": make_pipeline("eval", cfg, dataset),
        "optimizer": optimizer_of(cfg),
        "schedule": schedule_of(cfg),
        "num_clusters": num_clusters,
        "kmeans_restarts": cfg.kmeans_restarts,
        "views_in_one_batch": cfg.views_in_one_batch,
    }
