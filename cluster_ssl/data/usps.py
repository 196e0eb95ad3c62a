"""USPS digits in torchvision's format: bz2-compressed libsvm text, pixel values in [-1, 1]."""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import (
    check_labels,
    not_found,
    require_root,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps"
SIDE = 16
CLASS_NAMES = [str(digit) for digit in range(10)]


def parse_libsvm_line(line: str, path: Path, number: int) -> tuple[int, np.ndarray]:
    """One ``label index:value ...`` line -> (label 0..9, 256 floats); absent indices are 0."""
    fields = line.split()
    pixels = np.zeros(SIDE * SIDE, dtype=np.float32)
    try:
        label = int(float(fields[0])) - 1
        for field in fields[1:]:
            index, value = field.split(":")
            pixels[int(index) - 1] = float(value)
    except (IndexError, ValueError):
        raise UserError(f"{path} line {number}: not a libsvm line of a 16x16 USPS image") from None
    return label, pixels


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 1, 16, 16), values mapped [-1, 1] -> [0, 255] with rounding, labels 0..9."""
    try:
        with bz2.open(path, "rt", encoding="ascii") as handle:
            lines = [line for line in handle if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(
            f"{path} is a truncated or corrupt bz2 file ({error}); download it again"
        ) from None
    parsed = [parse_libsvm_line(line, path, number) for number, line in enumerate(lines, 1)]
    labels = check_labels(np.array([label for label, _ in parsed]), len(CLASS_NAMES), path)
    values = np.stack([pixels for _, pixels in parsed]) if parsed else np.zeros((0, SIDE * SIDE))
    images = np.clip(np.round((values + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    return images.reshape(-1, 1, SIDE, SIDE), labels


def build_usps(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """USPS: 7,291 train + 2,007 test digits, 16x16 grey (``usps.bz2``, ``usps.t.bz2`` in root)."""
    root = require_root(root, "USPS", "the folder holding usps.bz2 and usps.t.bz2", f"see {URL}")
    parts = []
    for part in split.split("+"):
        path = root / FILES[part]
        if download and not path.exists():
            _download(root, train=part == "train")
        if not path.exists():
            raise not_found(
                "USPS",
                path,
                f"download it from {URL} (or rerun with --download) and pass --data-root DIR",
            )
        parts.append(read_usps(path))
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return tensor_dataset("usps", images, labels, CLASS_NAMES, image_size)


def _download(root: Path, train: bool) -> None:
    from torchvision.datasets import USPS

    torchvision_download("USPS", lambda: USPS(str(root), train=train, download=True), URL)
