"""Deterministic K-class synthetic images for tests and benchmarks (labels known).

Each class is a smooth random prototype (a coarse random grid upsampled bicubically, tinted
by a random colour, so the difficulty does not grow easier with the channel count); each
sample is its class prototype shifted by a few pixels, plus a smooth random nuisance pattern
of its own (which, unlike pixel noise, does not average away in high dimension), plus pixel
noise. k-means on raw pixels then scores well above chance but clearly below 100%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import tensor_dataset

GRID = 4  # prototype detail: a GRID x GRID random pattern per channel
MAX_SHIFT_FRACTION = 0.125  # shift up to this fraction of the side, each axis
NUISANCE = 0.8  # amplitude of each sample's own smooth pattern, relative to the prototypes'
NOISE = 0.1  # pixel noise (std) on a 0..1 scale
COLOUR_GAIN = (0.5, 1.5)  # each class tints its pattern by a random gain per channel
SPLIT_STREAMS = {"train": 1, "test": 2}


def smooth_patterns(rng: np.random.Generator, count: int, channels: int, side: int) -> np.ndarray:
    """``count`` smooth random patterns (count, C, side, side) with values around [-0.5, 0.5]."""
    coarse = torch.from_numpy(rng.random((count, channels, GRID, GRID)) - 0.5)
    return F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=True).numpy()


def make_synthetic(
    n: int = 1000,
    num_classes: int = 10,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    stream: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, channels, size, size) and balanced labels; ``stream`` picks the
    sample draw (train and test share the prototypes, not the samples)."""
    shift = max(1, round(size * MAX_SHIFT_FRACTION))
    proto_rng = np.random.default_rng([seed, 0])
    colours = proto_rng.uniform(*COLOUR_GAIN, size=(num_classes, channels, 1, 1))
    protos = colours * smooth_patterns(proto_rng, num_classes, 1, size + 2 * shift)
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(n) % num_classes)
    offsets = rng.integers(0, 2 * shift + 1, size=(n, 2))
    images = np.stack(
        [
            protos[label, :, dy : dy + size, dx : dx + size]
            for label, (dy, dx) in zip(labels, offsets, strict=True)
        ]
    )
    images = images + NUISANCE * smooth_patterns(rng, n, 1, size)
    images = 0.5 + images + rng.normal(0, NOISE, images.shape)
    pixels = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
    return pixels, labels.astype(np.int64)


def build_synthetic(
    root: Path | None,
    split: str,
    image_size: int | None,
    download: bool,
    n: int = 1000,
    num_classes: int = 10,
    channels: int = 3,
    seed: int = 0,
) -> TensorImageDataset:
    """Synthetic set: ``n`` images per split part, ``image_size`` (default 32) pixels square."""
    parts = [
        make_synthetic(n, num_classes, image_size or 32, channels, seed, SPLIT_STREAMS[part])
        for part in split.split("+")
    ]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    class_names = [f"class_{k}" for k in range(num_classes)]
    return tensor_dataset("synthetic", images, labels, class_names, None)
