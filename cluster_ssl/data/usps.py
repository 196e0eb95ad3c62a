"""USPS digits in torchvision's format: bz2-compressed libsvm text, pixel values in [-1, 1]."""

from __future__ import annotations

import bz2
import math
from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import (
    MIB,
    check_labels,
    not_found,
    read_compressed,
    require_root,
    tensor_dataset,
    torchvision_download,
)
from cluster_ssl.runtime.errors import UserError

FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps"
SIDE = 16
CLASS_NAMES = [str(digit) for digit in range(10)]
#: larger than either file, compressed or not (``usps.bz2`` decompresses to about 20 MB)
MAX_USPS_BYTES = 256 * MIB


def parse_libsvm_line(line: str, path: Path, number: int) -> tuple[int, np.ndarray]:
    """One ``label index:value ...`` line -> (label 0..9, 256 floats); absent indices are 0.

    The label must be a whole number 1..10, each index 1..256 and each value finite (values
    beyond [-1, 1] are clipped to it, as the pixels they map to would be).
    """
    fields = line.split()
    try:
        label = float(fields[0])
        pairs = [field.split(":") for field in fields[1:]]
        entries = [(int(index), float(value)) for index, value in pairs]
    except (IndexError, ValueError):
        raise UserError(f"{path} line {number}: not a libsvm line of a 16x16 USPS image") from None
    where = f"{path} line {number}: not a USPS image"
    if not label.is_integer() or not 1 <= label <= len(CLASS_NAMES):
        raise UserError(f"{where}: its label {fields[0][:20]} is not a whole number 1..10")
    pixels = np.zeros(SIDE * SIDE, dtype=np.float32)
    for index, value in entries:
        if not 1 <= index <= SIDE * SIDE:
            raise UserError(f"{where}: pixel index {str(index)[:20]} is not 1..{SIDE * SIDE}")
        if not math.isfinite(value):
            raise UserError(f"{where}: pixel {index} is {value}, not a finite number")
        pixels[index - 1] = min(max(value, -1.0), 1.0)
    return int(label) - 1, pixels


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 1, 16, 16), values mapped [-1, 1] -> [0, 255] with rounding, labels 0..9."""
    raw = read_compressed(path, bz2.BZ2File, MAX_USPS_BYTES, "USPS", "bz2")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path} is not the USPS libsvm text: byte {error.start} is not ASCII; "
            "download it again"
        ) from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserError(f"{path} holds no images (no libsvm lines); download it again")
    parsed = [parse_libsvm_line(line, path, number) for number, line in lines]
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
