"""CIFAR-10 and CIFAR-100 (20 coarse superclasses) from the python pickle batches."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import (
    check_labels,
    locate_folder,
    not_found,
    require_root,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarSource:
    """One CIFAR variant: its folder, batch files per part, label key and class names."""

    name: str
    title: str
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    class_names: tuple[str, ...]


CIFAR10 = CifarSource(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    files={
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    },
    label_key="labels",
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
)
CIFAR100_20 = CifarSource(
    name="cifar100-20",
    title="CIFAR-100",
    folder="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    label_key="coarse_labels",
    class_names=(
        "aquatic_mammals",
        "fish",
        "flowers",
        "food_containers",
        "fruit_and_vegetables",
        "household_electrical_devices",
        "household_furniture",
        "insects",
        "large_carnivores",
        "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes",
        "large_omnivores_and_herbivores",
        "medium_mammals",
        "non-insect_invertebrates",
        "people",
        "reptiles",
        "small_mammals",
        "trees",
        "vehicles_1",
        "vehicles_2",
    ),
)


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch -> images uint8 (N, 3, 32, 32) and labels.

    Loaded like torchvision (``encoding="latin1"``); keys may be ``str`` (Python 2 pickles,
    the real files) or ``bytes`` (re-pickled by Python 3), both are accepted.
    """
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        entry = {_text(key): value for key, value in entry.items()}
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key])
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ImportError,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
    ) as error:
        raise UserError(
            f"{path} is not a CIFAR python batch with {label_key!r} ({type(error).__name__}: "
            f"{error}); download it again from {URL}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise UserError(f"{path}: expected N x 3072 pixels and N labels, found {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _text(key: str | bytes) -> str:
    return key.decode("latin1") if isinstance(key, bytes) else key


def build_cifar(
    source: CifarSource, root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """Load ``split`` ("train", "test", "train+test") of a CIFAR variant into memory."""
    expected = f"the folder that contains {source.folder}"
    fix = f"download it from {URL} (or rerun with --download)"
    root = require_root(root, source.title, expected, fix)
    folder = locate_folder(root, source.folder, source.files["test"][0])
    if download and not all(
        (folder / f).exists() for files in source.files.values() for f in files
    ):
        _download(source, root)
    parts = []
    for part in split.split("+"):
        for file in source.files[part]:
            path = folder / file
            if not path.exists():
                raise not_found(source.title, path, f"{fix} and pass --data-root DIR, {expected}")
            parts.append(read_batch(path, source.label_key))
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    labels = check_labels(labels, len(source.class_names), folder)
    return tensor_dataset(source.name, images, labels, list(source.class_names), image_size)


def _download(source: CifarSource, root: Path) -> None:
    from torchvision import datasets

    tv_class = {"cifar10": datasets.CIFAR10, "cifar100-20": datasets.CIFAR100}[source.name]
    torchvision_download(source.title, lambda: tv_class(str(root), download=True), URL)


def build_cifar10(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """CIFAR-10: 50,000 train + 10,000 test colour images, 32x32, 10 classes."""
    return build_cifar(CIFAR10, root, split, image_size, download)


def build_cifar100_20(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """CIFAR-100 with its 20 coarse superclass labels (``coarse_labels``)."""
    return build_cifar(CIFAR100_20, root, split, image_size, download)
