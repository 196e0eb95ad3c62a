"""k-means with faiss (CPU, or all GPUs faiss sees).

Minimises the within-cluster sum of squares

    J = sum_i min_j ||x_i - mu_j||^2

by Lloyd iterations, keeping the best of ``n_init`` seeded restarts. Used to initialise the DEC
family's centres (20 restarts), for DeepCluster's pseudo-labels and to evaluate embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from cluster_ssl.cluster.knn import (
    Features,
    as_float32_matrix,
    flat_index,
    l2_normalise,
    resolve_use_gpu,
)
from cluster_ssl.runtime.errors import UserError


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans`.

    Attributes:
        centroids: (k, d) float32 cluster centres (unit norm when spherical).
        labels: (N,) int64 index of each sample's nearest centroid.
        inertia: sum over samples of the squared L2 distance to the assigned centroid
            (for spherical k-means measured on the L2-normalised samples).
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float


def _faiss_kmeans(d: int, k: int, use_gpu: bool, **params: Any) -> faiss.Kmeans:
    """faiss.Kmeans with the given ClusteringParameters fields.

    The one place clustering-parameter names meet faiss: a name this faiss build does not
    know raises a clear error instead of faiss's bare AttributeError.
    """
    known = faiss.ClusteringParameters()
    unknown = [name for name in params if not hasattr(known, name)]
    if unknown:
        raise RuntimeError(
            f"faiss {faiss.__version__} has no ClusteringParameters field(s) {unknown}; "
            "upgrade faiss (>= 1.7.4)"
        )
    return faiss.Kmeans(d, k, gpu=use_gpu, **params)


def _nearest(x: np.ndarray, centroids: np.ndarray, use_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distance to, and index of, the nearest centroid for each row of x."""
    index = flat_index(centroids.shape[1], inner_product=False, use_gpu=use_gpu)
    index.add(centroids)
    dist2, labels = index.search(x, 1)
    return dist2[:, 0], labels[:, 0].astype(np.int64)


def assign(x: Features, centroids: Features, use_gpu: bool | None = None) -> np.ndarray:
    """(N,) int64 index of the nearest centroid (squared L2) of every row of ``x``.

    For spherical centroids, pass L2-normalised ``x`` (nearest in L2 = highest cosine).
    """
    feats = as_float32_matrix(x)
    cents = as_float32_matrix(centroids, name="centroids")
    if feats.shape[1] != cents.shape[1]:
        raise ValueError(f"features have d={feats.shape[1]} but centroids d={cents.shape[1]}")
    return _nearest(feats, cents, resolve_use_gpu(use_gpu))[1]


def kmeans(
    x: Features,
    k: int,
    n_init: int = 20,
    n_iter: int = 300,
    seed: int = 0,
    use_gpu: bool | None = None,
    spherical: bool = False,
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups with faiss k-means.

    Args:
        x: (N, d) features, numpy or torch (any device; copied to CPU float32).
        k: number of clusters, 1 <= k <= N.
        n_init: restarts from different seeded random initialisations; the one with the
            lowest objective is kept (faiss ``nredo``).
        n_iter: maximum Lloyd iterations per restart (faiss ``niter``); faiss stops a restart
            early once its objective no longer changes.
        seed: the random seed; the same seed and input give the same result. faiss takes a
            C int, so any seed is folded into [0, 2**31) first.
        use_gpu: None = use the GPUs when faiss sees any.
        spherical: spherical k-means: samples are L2-normalised first and faiss re-normalises
            the centroids after every iteration, so assignments follow cosine similarity.

    Unlike faiss's default (train on at most 256 * k sampled points), every sample is used:
    ``max_points_per_centroid`` is set to ceil(N / k), so no silent subsampling happens.
    faiss's warning for fewer than 39 points per centroid is switched off.
    """
    feats = as_float32_matrix(x)
    n, d = feats.shape
    if not 1 <= k <= n:
        raise UserError(
            f"k={k} is larger than the number of samples ({n}); k-means needs 1 <= k <= {n}, "
            "lower --set num_clusters or use more data"
            if k > n
            else f"k={k} clusters requested; k must be at least 1 (--set num_clusters)"
        )
    if spherical:
        feats = l2_normalise(feats)
    gpu = resolve_use_gpu(use_gpu)
    km = _faiss_kmeans(
        d,
        k,
        gpu,
        niter=n_iter,
        nredo=n_init,
        seed=seed % 2**31,
        spherical=spherical,
        max_points_per_centroid=math.ceil(n / k),
        min_points_per_centroid=1,
        verbose=False,
    )
    km.train(feats)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    dist2, labels = _nearest(feats, centroids, gpu)
    return KMeansResult(
        centroids=centroids, labels=labels, inertia=float(dist2.astype(np.float64).sum())
    )
