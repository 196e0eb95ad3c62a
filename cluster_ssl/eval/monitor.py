"""Label-aware monitoring of an embedding during training."""

from __future__ import annotations

import numpy as np

from cluster_ssl.cluster.knn import knn


def knn_accuracy(
    embedding: np.ndarray, labels: np.ndarray, k: int = 20, temperature: float = 0.07
) -> float:
    """Leave-one-out weighted kNN accuracy (Wu et al. 2018's monitor).

    Each sample's class is voted by its ``k`` nearest other samples (cosine similarity),
    each vote weighted by exp(s / temperature). Unlabelled samples (label < 0) neither
    vote nor count.
    """
    labels = np.asarray(labels)
    keep = labels >= 0
    embedding, labels = np.asarray(embedding)[keep], labels[keep]
    k = min(k, len(labels) - 1)
    if k < 1:
        return float("nan")
    similarity, neighbours = knn(embedding, k, metric="cosine", exclude_self=True)
    weights = np.exp((similarity - 1.0) / temperature)
    votes = np.zeros((len(labels), int(labels.max()) + 1))
    np.add.at(votes, (np.arange(len(labels))[:, None], labels[neighbours]), weights)
    return float((votes.argmax(axis=1) == labels).mean())
