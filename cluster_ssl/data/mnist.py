"""MNIST and Fashion-MNIST from their IDX files (raw or .gz), parsed here with numpy."""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import (
    MIB,
    check_labels,
    first_existing,
    not_found,
    read_compressed,
    read_file,
    require_root,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

IDX_UBYTE = 0x08
#: larger than any IDX file (raw or decompressed) of these datasets: MNIST's train images
#: hold 47 MB; a bigger file, or a gzip that inflates past it, is refused before it is read
MAX_IDX_BYTES = 256 * MIB
SIDE = 28
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset lives: its torchvision folder name, home page and class names."""

    name: str
    title: str
    folder: str
    url: str
    class_names: tuple[str, ...]
    default_root: Path | None = None


MNIST = IdxSource(
    name="mnist",
    title="MNIST",
    folder="MNIST",
    url="http://yann.lecun.com/exdb/mnist/",
    class_names=tuple(str(digit) for digit in range(10)),
)
FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    title="Fashion-MNIST",
    folder="FashionMNIST",
    url="https://github.com/zalandoresearch/fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    default_root=FASHION_SYSTEM_DIR,
)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (``.gz`` or raw) into an array of its declared shape.

    Raises a UserError naming the file when it is not a regular file, is too large, its
    magic number is wrong or its data does not match the declared shape.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] == 0:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated: the IDX header is incomplete")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape)  # exact: the declared sizes may be huge
    if len(raw) - header != expected:
        raise UserError(
            f"{path} is truncated or corrupt: header says {shape} = {expected} bytes, "
            f"file holds {len(raw) - header}; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    if path.suffix != ".gz":
        return read_file(path, MAX_IDX_BYTES, "IDX")
    return read_compressed(path, gzip.GzipFile, MAX_IDX_BYTES, "IDX", "gzip")


def find_idx_file(source: IdxSource, root: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``root`` or ``root/<Folder>/raw`` (torchvision's layout)."""
    folders = (root, root / source.folder / "raw")
    return first_existing([folder / f"{stem}{ext}" for folder in folders for ext in ("", ".gz")])


def load_idx_split(source: IdxSource, root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) and labels of the "train" or "test" part."""
    images_path, labels_path = (_require(source, root, stem) for stem in FILES[part])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or not len(images):
        raise UserError(
            f"{images_path} holds an array of shape {images.shape}, not N x {SIDE} x {SIDE} "
            f"{source.title} images; download it again"
        )
    if labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"{labels_path} ({labels.shape}) does not hold one label for each of the "
            f"{len(images)} images in {images_path}; download them again"
        )
    labels = check_labels(labels, len(source.class_names), labels_path)
    return images[:, None], labels


def _require(source: IdxSource, root: Path, stem: str) -> Path:
    path = find_idx_file(source, root, stem)
    if path is None:
        raise not_found(
            source.title,
            f"{root / source.folder / 'raw' / stem}[.gz] (or {stem}[.gz] directly in {root})",
            f"download it from {source.url} (or rerun with --download) and pass --data-root DIR",
        )
    return path


def _download(source: IdxSource, root: Path) -> None:
    from torchvision import datasets

    tv_class = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[source.name]
    torchvision_download(
        source.title, lambda: tv_class(str(root), train=True, download=True), source.url
    )


def build_idx_dataset(
    source: IdxSource, root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """Load ``split`` ("train", "test" or "train+test") of an IDX dataset into memory."""
    if root is None and source.default_root is not None and source.default_root.is_dir():
        root = source.default_root
    root = require_root(
        root,
        source.title,
        f"the folder holding {source.folder}/raw/ or the IDX files",
        f"download it from {source.url} or rerun with --download",
    )
    if download and not all(
        find_idx_file(source, root, stem) for pair in FILES.values() for stem in pair
    ):
        _download(source, root)
    parts = [load_idx_split(source, root, part) for part in split.split("+")]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return tensor_dataset(source.name, images, labels, list(source.class_names), image_size)


def build_mnist(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """MNIST: 60,000 train + 10,000 test handwritten digits, 28x28 grey."""
    return build_idx_dataset(MNIST, root, split, image_size, download)


def build_fashion_mnist(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """Fashion-MNIST; without a root, Debian's /usr/share/datasets/fashion-mnist when present."""
    return build_idx_dataset(FASHION_MNIST, root, split, image_size, download)
