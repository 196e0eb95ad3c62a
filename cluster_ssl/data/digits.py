"""scikit-learn's 8x8 handwritten digits: 1,797 images shipped with scikit-learn (works offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import tensor_dataset

TRAIN_SIZE = 1438  # the first 80% of the 1,797 images; the rest is "test"
CLASS_NAMES = [str(digit) for digit in range(10)]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 1, 8, 8), values 0..16 scaled to 0..255, and their labels."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    images = np.round(pixels * 255.0 / 16.0).astype(np.uint8).reshape(-1, 1, 8, 8)
    return images, labels.astype(np.int64)


def build_digits(
    root: Path | None, split: str, image_size: int | None, download: bool
) -> TensorImageDataset:
    """Digits; "train" = first 1,438, "test" = last 359, "train+test" = all (no native split).

    ``root`` and ``download`` are ignored: the data ships inside scikit-learn.
    """
    images, labels = load_digits_arrays()
    chosen = {
        "train": slice(0, TRAIN_SIZE),
        "test": slice(TRAIN_SIZE, None),
        "train+test": slice(None),
    }[split]
    return tensor_dataset("digits", images[chosen], labels[chosen], CLASS_NAMES, image_size)
