"""Per-dataset normalisation statistics, read from the dataset registry."""

from __future__ import annotations

from cluster_ssl.data.registry import DATASETS

FALLBACK_MEAN: tuple[float, ...] = (0.5,)
FALLBACK_STD: tuple[float, ...] = (0.5,)

#: CIFAR-10's per-pixel standard deviation over its 50,000 training images, as IDFD's
#: ``main.py`` normalises with (mean (0.4914, 0.4822, 0.4465)). The registry's CIFAR-10 std
#: (0.2023, 0.1994, 0.2010), which SCAN's configs use, is the mean of the per-image stds.
CIFAR10_PIXEL_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel on the 0..1 scale for dataset ``name``.

    Unknown names get ``(0.5,), (0.5,)``, which normalisation applies to every channel.
    """
    if name in DATASETS:
        spec = DATASETS.get(name)
        return tuple(spec.mean), tuple(spec.std)
    return FALLBACK_MEAN, FALLBACK_STD


def unnormalised_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of zeros and ones: normalising with them leaves images on the 0..1
    scale (CC's code feeds its network unnormalised images)."""
    return (0.0,) * channels, (1.0,) * channels
