"""STL-10 from its binaries in ``stl10_binary/`` (images stored column-major, 3x96x96).

"train", "test" and "train+test" (5,000 / 8,000 / 13,000 images) are loaded into memory.
"unlabeled" (100,000 images, 2.7 GB), "train+unlabeled" (105,000) and "train+test+unlabeled"
(113,000, CC's STL-10 training set) are memory-mapped and read per item (:class:`MemmapImageDataset`); their unlabelled images have label -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cluster_ssl.data.base import ImageDataset
from cluster_ssl.data.common import (
    MIB,
    check_labels,
    describe,
    file_size,
    locate_folder,
    not_found,
    require_root,
    resize_images,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

FOLDER = "stl10_binary"
URL = "https://cs.stanford.edu/~acoates/stl10/"
SIDE = 96
RECORD = 3 * SIDE * SIDE
CLASS_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin", None),
}
LAZY_PARTS = {"unlabeled"}
#: larger than any binary loaded into memory (test_X.bin, the largest, holds 221 MB): a bigger
#: one is refused before it is read; memory-mapped binaries (unlabeled_X.bin holds 2.7 GB)
#: are never read whole, their limit only stops absurd sizes
MAX_IN_MEMORY_BYTES = 1024 * MIB
MAX_MAPPED_BYTES = 64 * 1024 * MIB


class MemmapImageDataset(ImageDataset):
    """Images read per item from STL-10 binaries through ``np.memmap`` (never all in memory).

    Each file holds consecutive 3x96x96 uint8 records, column-major (transposed on read).
    The maps are opened lazily in each process, so the dataset pickles cheaply to workers.
    """

    def __init__(
        self,
        name: str,
        files: list[Path],
        labels: np.ndarray | None,
        class_names: list[str] | None,
        image_size: int | None = None,
    ) -> None:
        self.name = name
        self.files = files
        self.counts = [count_records(path) for path in files]
        self.offsets = np.cumsum([0, *self.counts])
        self.labels = labels
        self.class_names = class_names
        self.image_size = image_size
        side = image_size or SIDE
        self.image_shape = (3, side, side)
        self._maps: list[np.memmap] | None = None
        if labels is not None and len(labels) != len(self):
            raise ValueError("labels and images differ in length")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._maps is None:
            self._maps = [
                np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, SIDE, SIDE))
                for path, count in zip(self.files, self.counts, strict=True)
            ]
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        record = self._maps[part][index - self.offsets[part]]
        image = torch.from_numpy(np.ascontiguousarray(record.transpose(0, 2, 1)))
        if self.image_size is not None:
            image = resize_images(image[None], self.image_size)[0]
        label = -1 if self.labels is None else int(self.labels[index])
        return {"image": image, "label": label, "index": index}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}


def count_records(path: Path, limit: int = MAX_MAPPED_BYTES) -> int:
    """How many 3x96x96 images a binary holds; a UserError naming it when it is not a regular
    file, is larger than ``limit``, empty, or its size is not a whole number of images."""
    size = file_size(path, limit, "STL-10 binary")
    if size % RECORD:
        raise UserError(
            f"{path} is truncated: {size} bytes is not a whole number of 3x96x96 images"
        )
    if not size:
        raise UserError(f"{path} is empty: it holds no images; download it again")
    return size // RECORD


def read_images(path: Path) -> np.ndarray:
    """All images of a binary as uint8 (N, 3, 96, 96), row-major."""
    count = count_records(path, MAX_IN_MEMORY_BYTES)
    data = _read(path, count * RECORD)
    return data.reshape(count, 3, SIDE, SIDE).transpose(0, 1, 3, 2)


def read_labels(path: Path, count: int, images: Path | None = None) -> np.ndarray:
    """Labels 1..10 stored as bytes -> 0..9, checked against the ``count`` images (of the
    file ``images``, named in the error) before the file is read."""
    size = file_size(path, MAX_IN_MEMORY_BYTES, "STL-10 labels")
    if size != count:
        of = f" in {images}" if images is not None else ""
        raise UserError(
            f"{path} holds {size} labels for the {count} images{of}; download them again"
        )
    labels = _read(path, count).astype(np.int64) - 1
    return check_labels(labels, len(CLASS_NAMES), path)


def _read(path: Path, size: int) -> np.ndarray:
    """The ``size`` bytes of ``path`` (checked beforehand) as uint8."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UserError(f"{path} cannot be read ({describe(error)})") from None
    if len(data) != size:
        raise UserError(f"{path} changed while it was read; load it again")
    return data


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.exists():
        raise not_found(
            "STL-10",
            path,
            f"download stl10_binary.tar.gz from {URL} (or rerun with --download), extract it "
            f"and pass --data-root DIR, the folder that contains {FOLDER}",
        )
    return path


def _labelled(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = FILES[part]
    images_path = _require(folder, images_name)
    images = read_images(images_path)
    return images, read_labels(_require(folder, labels_name), len(images), images_path)


def build_stl10(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> ImageDataset:
    """STL-10 splits: train, test, train+test (in memory); unlabeled, train+unlabeled,
    train+test+unlabeled (memmap)."""
    root = require_root(
        root, "STL-10", f"the folder that contains {FOLDER}", f"download it from {URL}"
    )
    folder = locate_folder(root, FOLDER, FILES["test"][0])
    parts = split.split("+")
    if download and not all((folder / FILES[part][0]).exists() for part in parts):
        _download(root)
    if LAZY_PARTS.intersection(parts):
        return _lazy(folder, parts, image_size)
    loaded = [_labelled(folder, part) for part in parts]
    images = np.concatenate([images for images, _ in loaded])
    labels = np.concatenate([labels for _, labels in loaded])
    return tensor_dataset("stl10", images, labels, CLASS_NAMES, image_size)


def _lazy(folder: Path, parts: list[str], image_size: int | None) -> MemmapImageDataset:
    files = [_require(folder, FILES[part][0]) for part in parts]
    labels = [
        read_labels(_require(folder, FILES[part][1]), count_records(path), path)
        if FILES[part][1]
        else np.full(count_records(path), -1, dtype=np.int64)
        for part, path in zip(parts, files, strict=True)
    ]
    all_labels = np.concatenate(labels)
    has_labels = bool((all_labels >= 0).any())
    return MemmapImageDataset(
        "stl10", files, all_labels if has_labels else None, CLASS_NAMES, image_size
    )


def _download(root: Path) -> None:
    from torchvision.datasets import STL10

    torchvision_download("STL-10", lambda: STL10(str(root), split="test", download=True), URL)
