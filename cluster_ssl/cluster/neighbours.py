"""SCAN's neighbour mining: the top-k nearest neighbours of every sample in a feature space."""

from __future__ import annotations

import numpy as np
import torch

from cluster_ssl.cluster.knn import knn

#: up to this many samples the search is exact; above, an inverted-file index (CPU only)
EXACT_LIMIT = 20_000


def mine_neighbours(
    features: torch.Tensor | np.ndarray, k: int, exact: bool | None = None
) -> torch.Tensor:
    """(N, k) indices of each sample's k most similar other samples, most similar first.

    Similarity is the inner product of L2-normalised features (cosine), searched with faiss
    in chunks, so no N x N matrix is built; the sample itself is excluded. ``exact=None``
    searches every pair up to :data:`EXACT_LIMIT` samples and an inverted-file index above
    (on the CPU; at 70,000 SimCLR features of Fashion-MNIST: 2x faster than the exact
    search on one core, recall 0.9996, measured by ``tools/benchmark.py mining``).
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().float().cpu().numpy()
    approximate = len(features) > EXACT_LIMIT if exact is None else not exact
    _, indices = knn(features, k, metric="cosine", exclude_self=True, approximate=approximate)
    return torch.from_numpy(indices)


def neighbour_accuracy(neighbours: torch.Tensor, labels: np.ndarray | None) -> float | None:
    """Fraction of (sample, neighbour) pairs whose labels agree (SCAN's mining accuracy);
    None without labels. Unlabelled samples (label < 0) are left out."""
    if labels is None:
        return None
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    anchors = labels.unsqueeze(1).expand_as(neighbours)
    same = anchors == labels[neighbours.cpu()]
    known = (anchors >= 0) & (labels[neighbours.cpu()] >= 0)
    if not bool(known.any()):
        return None
    return float(same[known].float().mean())
