"""Choosing the number of clusters on a learned embedding (``--k auto``)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.knn import l2_normalise

#: silhouettes are computed on at most this many samples (a seeded subsample)
SILHOUETTE_SAMPLE = 5000


def choose_k(
    embedding: np.ndarray, candidates: range, seed: int = 0, restarts: int = 10
) -> tuple[int, dict[int, float]]:
    """The k with the highest mean silhouette of k-means on the L2-normalised embedding.

    For each k: k-means (``restarts`` restarts, seeded) on all samples, then the mean
    silhouette s = mean_i (b_i - a_i) / max(a_i, b_i) with cosine distances, a_i the mean
    distance of sample i to its own cluster and b_i to the nearest other cluster (on a
    seeded subsample of :data:`SILHOUETTE_SAMPLE` points). Ties go to the smaller k. A k
    for which the subsample holds members of only one cluster has no silhouette and
    scores -1.

    Args:
        embedding: (N, d) features.
        candidates: the k to try.
        seed: seed of the k-means restarts and of the subsample.
        restarts: k-means restarts per k.

    Returns:
        The chosen k, and the mean silhouette of every k tried.
    """
    z = l2_normalise(np.asarray(embedding, dtype=np.float32))
    rng = np.random.default_rng(seed)
    sample = np.arange(len(z))
    if len(sample) > SILHOUETTE_SAMPLE:
        sample = np.sort(rng.choice(len(z), SILHOUETTE_SAMPLE, replace=False))
    scores: dict[int, float] = {}
    for k in candidates:
        labels = kmeans(z, k, n_init=restarts, seed=seed).labels
        if len(np.unique(labels[sample])) < 2:
            scores[k] = -1.0  # the subsample saw one cluster: no silhouette
            continue
        scores[k] = float(silhouette_score(z[sample], labels[sample], metric="cosine"))
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores
