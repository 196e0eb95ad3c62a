"""SCAN's neighbour mining: the top-k nearest neighbours of every sample in a feature space."""

from __future__ import annotations

import numpy as np
import torch

from cluster_ssl.cluster.knn import knn

#: up to this many samples the search is exact; above, an inverted-file index (CPU only)
EXACT_LIMIT = 20_000


def mine_neighbours(
    features: torch.Tensor | np.ndarray,
    k: int,
    exact: bool | None = None,
    stats: dict[str, float] | None = None,
) -> torch.Tensor:
    """Each sample's k most similar other samples, most similar first.

    Similarity is the inner product of L2-normalised features (cosine), searched in chunks
    by :func:`~cluster_ssl.cluster.knn.knn` (faiss on the CPU, torch for features on a GPU
    or without faiss), so no N x N matrix is built; the sample itself is excluded.
    ``exact=None`` searches every pair up to :data:`EXACT_LIMIT` samples and, with faiss
    on the CPU, an inverted-file index above, whose probes widen until it finds at least
    99% of the true neighbours on a sample of queries (``stats["recall"]`` says how many it
    found); the torch search is always exact.

    Args:
        features: (N, d) features, numpy or torch (a tensor on a GPU is searched there).
        k: neighbours per sample, at most N - 1.
        exact: True = search every pair, False = the inverted file, None = by size.
        stats: filled with the search's measured ``recall`` (see
            :func:`~cluster_ssl.cluster.knn.knn`).

    Returns:
        (N, k) int64 CPU tensor of neighbour indices.
    """
    approximate = len(features) > EXACT_LIMIT if exact is None else not exact
    _, indices = knn(
        features, k, metric="cosine", exclude_self=True, approximate=approximate, stats=stats
    )
    return torch.from_numpy(indices)


def neighbour_accuracy(neighbours: torch.Tensor, labels: np.ndarray | None) -> float | None:
    """Fraction of (sample, neighbour) pairs whose labels agree (SCAN's mining accuracy).

    Pairs in which either sample is unlabelled (label < 0) are left out.

    Args:
        neighbours: (N, k) neighbour indices, as :func:`mine_neighbours` returns.
        labels: (N,) ground-truth labels, or None.

    Returns:
        The fraction in [0, 1]; None without labels or without a labelled pair.
    """
    if labels is None:
        return None
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    anchors = labels.unsqueeze(1).expand_as(neighbours)
    same = anchors == labels[neighbours.cpu()]
    known = (anchors >= 0) & (labels[neighbours.cpu()] >= 0)
    if not bool(known.any()):
        return None
    return float(same[known].float().mean())
