"""Per-dataset normalisation statistics, read from the dataset registry."""

from __future__ import annotations

from cluster_ssl.data.registry import DATASETS

FALLBACK_MEAN: tuple[float, ...] = (0.5,)
FALLBACK_STD: tuple[float, ...] = (0.5,)


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel on the 0..1 scale for dataset ``name``.

    Unknown names get ``(0.5,), (0.5,)``, which normalisation applies to every channel.
    """
    if name in DATASETS:
        spec = DATASETS.get(name)
        return tuple(spec.mean), tuple(spec.std)
    return FALLBACK_MEAN, FALLBACK_STD
