"""The dataset catalogue: name -> :class:`DatasetSpec`, and :func:`build_dataset`.

Every builder is called as ``builder(root, split, image_size, download, **options)`` with a
validated split and ``root`` as an expanded Path (or None); it returns an ImageDataset.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster_ssl.data.base import SPLITS, ImageDataset
from cluster_ssl.data.cifar import build_cifar10, build_cifar100_20
from cluster_ssl.data.digits import build_digits
from cluster_ssl.data.folder import build_folder
from cluster_ssl.data.imagenet import build_imagenet10, build_imagenet_dogs, build_tiny_imagenet
from cluster_ssl.data.mnist import build_fashion_mnist, build_mnist
from cluster_ssl.data.stl10 import build_stl10
from cluster_ssl.data.synthetic import build_synthetic
from cluster_ssl.data.usps import build_usps
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STL_SPLITS = (*SPLITS, "unlabeled", "train+unlabeled", "train+test+unlabeled")


@dataclass(frozen=True)
class DatasetSpec:
    """What the toolkit knows about a dataset before loading it.

    ``image_size`` and ``channels`` describe the images the builder returns by default;
    ``mean``/``std`` are per-channel statistics on the 0..1 scale; ``in_memory`` says whether
    the usual splits are held as one uint8 tensor (else images are decoded per item);
    ``downloadable`` whether ``download=True`` can fetch the files (through torchvision).
    """

    name: str
    builder: Callable[..., ImageDataset]
    num_classes: int | None
    description: str
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...] = SPLITS
    default_split: str = "train"
    in_memory: bool = True
    downloadable: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")

_SPECS = (
    DatasetSpec(
        name="digits",
        builder=build_digits,
        num_classes=10,
        description="scikit-learn 8x8 digits, 1,797 images, built in "
        "(train = first 1,438, test = last 359)",
        image_size=8,
        channels=1,
        mean=(0.3053,),
        std=(0.3759,),
    ),
    DatasetSpec(
        name="mnist",
        builder=build_mnist,
        num_classes=10,
        description="MNIST 28x28 digits, 60k train + 10k test (IDX files, raw or .gz)",
        image_size=28,
        channels=1,
        mean=(0.1307,),
        std=(0.3081,),
        downloadable=True,
    ),
    DatasetSpec(
        name="fashion-mnist",
        builder=build_fashion_mnist,
        num_classes=10,
        description="Fashion-MNIST 28x28, 60k + 10k (IDX files; without --data-root "
        "/usr/share/datasets/fashion-mnist)",
        image_size=28,
        channels=1,
        mean=(0.2860,),
        std=(0.3530,),
        downloadable=True,
    ),
    DatasetSpec(
        name="usps",
        builder=build_usps,
        num_classes=10,
        description="USPS 16x16 digits, 7,291 + 2,007 (usps.bz2, usps.t.bz2 libsvm files)",
        image_size=16,
        channels=1,
        mean=(0.5,),
        std=(0.5,),
        downloadable=True,
    ),
    DatasetSpec(
        name="cifar10",
        builder=build_cifar10,
        num_classes=10,
        description="CIFAR-10 32x32, 50k + 10k (cifar-10-batches-py)",
        image_size=32,
        channels=3,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        downloadable=True,
    ),
    DatasetSpec(
        name="cifar100-20",
        builder=build_cifar100_20,
        num_classes=20,
        description="CIFAR-100 with its 20 coarse superclasses, 32x32, 50k + 10k "
        "(cifar-100-python)",
        image_size=32,
        channels=3,
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
        downloadable=True,
    ),
    DatasetSpec(
        name="stl10",
        builder=build_stl10,
        num_classes=10,
        description="STL-10 96x96, 5k train + 8k test + 100k unlabeled (stl10_binary; "
        "unlabeled splits memory-mapped, label -1)",
        image_size=96,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        splits=STL_SPLITS,
        downloadable=True,
    ),
    DatasetSpec(
        name="imagenet10",
        builder=build_imagenet10,
        num_classes=10,
        description="ImageNet-10: 10 ImageNet classes, ~13k images (root/train/<wnid>; "
        "test = root/val/<wnid>)",
        image_size=224,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_memory=False,
    ),
    DatasetSpec(
        name="imagenet-dogs",
        builder=build_imagenet_dogs,
        num_classes=15,
        description="ImageNet-Dogs: 15 dog breeds, ~19.5k images (root/train/<wnid>; "
        "test = root/val/<wnid>)",
        image_size=224,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_memory=False,
    ),
    DatasetSpec(
        name="tiny-imagenet",
        builder=build_tiny_imagenet,
        num_classes=200,
        description="Tiny-ImageNet 64x64, 200 classes, 100k train + 10k val as test "
        "(tiny-imagenet-200)",
        image_size=64,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_memory=False,
    ),
    DatasetSpec(
        name="synthetic",
        builder=build_synthetic,
        num_classes=10,
        description="seeded synthetic K-class images for tests and benchmarks "
        "(options n, num_classes, channels, seed)",
        image_size=32,
        channels=3,
        mean=(0.56, 0.56, 0.56),
        std=(0.29, 0.29, 0.29),
    ),
    DatasetSpec(
        name="folder",
        builder=build_folder,
        num_classes=None,
        description="any folder of images (jpg, png, webp, bmp, tiff, gif, avif), recursively, "
        "unlabelled, 96 px by default",
        image_size=96,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        splits=("train",),
        in_memory=False,
    ),
)
for _spec in _SPECS:
    DATASETS.register(_spec.name)(_spec)


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    image_size: int | None = None,
    download: bool = False,
    **options: object,
) -> ImageDataset:
    """Build dataset ``name`` (see :func:`list_datasets`) for ``split``.

    ``root`` is the data folder (``--data-root``); ``split`` defaults to the dataset's default
    split ("train" for all built-in ones); ``image_size`` resizes to a square of that side
    (None keeps each dataset's own default); ``download`` fetches missing files through
    torchvision where it can. ``options`` go to the builder (e.g. ``n``, ``num_classes``,
    ``channels``, ``seed`` for "synthetic"; ``channels`` for "folder").
    """
    spec = DATASETS.get(name)
    split = spec.default_split if split is None else split
    if split not in spec.splits:
        raise UserError(
            f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(spec.splits)}"
        )
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise UserError(f"image size must be a positive integer, got {image_size!r}")
    path = None if root is None else Path(root).expanduser()
    try:
        inspect.signature(spec.builder).bind(path, split, image_size, download, **options)
    except TypeError as error:
        raise UserError(f"dataset {name!r}: {error}") from None
    return spec.builder(path, split, image_size, download, **options)


def list_datasets() -> list[DatasetSpec]:
    """Every registered dataset's spec, sorted by name (for ``cluster-ssl list``)."""
    return [DATASETS.get(name) for name in DATASETS.names()]
