"""k-means with faiss (CPU, or all GPUs faiss sees), scikit-learn's kernel (CPU) or torch
(the features' device).

Minimises the within-cluster sum of squares

    J = sum_i min_j ||x_i - mu_j||^2

by Lloyd iterations, keeping the best of ``n_init`` seeded restarts. Used to initialise the DEC
family's centres (20 restarts), for DeepCluster's pseudo-labels and to evaluate embeddings.

The implementation is chosen by :func:`cluster_ssl.cluster.backend.resolve_backend`: on
the CPU with faiss installed, scikit-learn's Lloyd kernel
(:mod:`cluster_ssl.cluster.sklearn_backend`, started from faiss's initial centres) for
many samples and few clusters (the sizes are the rule's), faiss otherwise; torch
(:mod:`cluster_ssl.cluster.torch_backend`) for tensors on a GPU or without faiss. faiss and
torch differ in their initial centres (faiss: k distinct random samples; torch: greedy
k-means++) and so in which local minimum a restart reaches; on well-separated clusters
they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.nn.functional as F

from cluster_ssl.cluster.backend import require_faiss, resolve_backend, torch_device
from cluster_ssl.cluster.features import (
    Features,
    as_float32_matrix,
    as_float32_tensor,
    l2_normalise,
)
from cluster_ssl.cluster.knn import flat_index, resolve_use_gpu
from cluster_ssl.cluster.sklearn_backend import kmeans_sklearn
from cluster_ssl.cluster.torch_backend import kmeans_torch, nearest_centroids
from cluster_ssl.runtime.errors import UserError

if TYPE_CHECKING:
    import faiss


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
    faiss = require_faiss()
    known = faiss.ClusteringParameters()
    unknown = [name for name in params if not hasattr(known, name)]
    if unknown:
        raise RuntimeError(
            f"faiss {faiss.__version__} has no ClusteringParameters field(s) {unknown}; "
            "upgrade faiss (>= 1.7.4)"
        )
    return faiss.Kmeans(d, k, gpu=use_gpu, **params)


def _nearest(x: np.ndarray, centroids: np.ndarray, use_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distance to, and index of, the nearest centroid for each row of x (faiss)."""
    index = flat_index(centroids.shape[1], inner_product=False, use_gpu=use_gpu)
    index.add(centroids)
    dist2, labels = index.search(x, 1)
    return dist2[:, 0], labels[:, 0].astype(np.int64)


def assign(
    x: Features, centroids: Features, use_gpu: bool | None = None, backend: str = "auto"
) -> np.ndarray:
    """Index of the nearest centroid (squared L2) of every row of ``x``.

    For spherical centroids, pass L2-normalised ``x`` (nearest in L2 = highest cosine).

    Args:
        x: (N, d) features, numpy or torch.
        centroids: (k, d) centres, numpy or torch (moved to the features' device for torch).
        use_gpu: faiss: None = use the GPUs when faiss sees any. torch: None = the device
            ``x`` is on, False = the CPU, True = ``x`` must be on a GPU.
        backend: ``"auto"``, ``"faiss"`` or ``"torch"`` (see :func:`kmeans`).

    Returns:
        (N,) int64 numpy array of centroid indices.

    Raises:
        ValueError: ``x`` and ``centroids`` differ in dimension.
    """
    if resolve_backend(backend, x, use_gpu) == "torch":
        feats = as_float32_tensor(x, device=torch_device(x, use_gpu))
        cents = as_float32_tensor(centroids, name="centroids", device=feats.device)
        _check_dims(feats.shape[1], cents.shape[1])
        return nearest_centroids(feats, cents)[0].cpu().numpy()
    feats = as_float32_matrix(x)
    cents = as_float32_matrix(centroids, name="centroids")
    _check_dims(feats.shape[1], cents.shape[1])
    return _nearest(feats, cents, resolve_use_gpu(use_gpu))[1]


def _check_dims(features: int, centroids: int) -> None:
    if features != centroids:
        raise ValueError(f"features have d={features} but centroids d={centroids}")


def kmeans(
    x: Features,
    k: int,
    n_init: int = 20,
    n_iter: int = 300,
    seed: int = 0,
    use_gpu: bool | None = None,
    spherical: bool = False,
    backend: str = "auto",
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups.

    Unlike faiss's default (train on at most 256 * k sampled points), every sample is used:
    ``max_points_per_centroid`` is set to ceil(N / k), so no silent subsampling happens.
    faiss's warning for fewer than 39 points per centroid is switched off. The torch
    backend always uses every sample.

    Both backends re-seed a centre left empty during the iterations by splitting a
    populated cluster (faiss's rule); the final assignment can still leave a cluster empty
    (:mod:`cluster_ssl.cluster.reseed` fills those).

    Args:
        x: (N, d) features, numpy or torch. faiss copies them to CPU float32; torch computes
            in float32 on the tensor's device (numpy: the CPU).
        k: number of clusters, 1 <= k <= N.
        n_init: restarts from different seeded initialisations; the one with the lowest
            objective is kept (faiss ``nredo``). faiss starts each from k distinct random
            samples (scikit-learn from the same ones), torch from greedy k-means++ seeding.
        n_iter: maximum Lloyd iterations (centre updates) per restart (faiss ``niter``).
            faiss (>= 1.14) stops a restart early once its objective no longer changes,
            torch and scikit-learn once an assignment repeats the previous one, where
            further iterations would change nothing.
        seed: the random seed; the same seed and input give the same result. faiss takes a
            C int, so any seed is folded into [0, 2**31) first (for every backend).
        use_gpu: faiss: None = use the GPUs when faiss sees any. torch: None = the device
            ``x`` is on, False = the CPU, True = ``x`` must be on a GPU.
        spherical: spherical k-means: samples are L2-normalised first and the centroids
            re-normalised after every iteration, so assignments follow cosine similarity.
        backend: ``"auto"`` (torch for a tensor on a GPU, else, when faiss is installed,
            ``"sklearn"`` or faiss by size, else torch), ``"faiss"``, ``"torch"`` or
            ``"sklearn"`` (not spherical); see :mod:`cluster_ssl.cluster.backend`.

    Returns:
        The centroids, each sample's nearest centroid and the inertia.

    Raises:
        UserError: k out of range, non-finite features, a GPU requested where there is
            none, or ``backend="faiss"`` without faiss.
        ValueError: unknown ``backend``.
    """
    chosen = resolve_backend(backend, x, use_gpu, clusters=k, spherical=spherical)
    if chosen == "torch":
        tensor = as_float32_tensor(x, device=torch_device(x, use_gpu))
        _check_k(k, tensor.shape[0])
        if spherical:
            tensor = F.normalize(tensor, dim=1, eps=1e-12)
        run = kmeans_torch(tensor, k, n_init, n_iter, seed % 2**31, spherical=spherical)
        return KMeansResult(
            centroids=run.centroids.cpu().numpy(),
            labels=run.labels.cpu().numpy(),
            inertia=run.inertia,
        )

    feats = as_float32_matrix(x)
    n, d = feats.shape
    _check_k(k, n)
    if chosen == "sklearn":
        centroids, labels, inertia = kmeans_sklearn(feats, k, n_init, n_iter, seed % 2**31)
        return KMeansResult(centroids=centroids, labels=labels, inertia=inertia)
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


def _check_k(k: int, n: int) -> None:
    """UserError unless 1 <= k <= N."""
    if not 1 <= k <= n:
        raise UserError(
            f"k={k} is larger than the number of samples ({n}); k-means needs 1 <= k <= {n}, "
            "lower --set num_clusters or use more data"
            if k > n
            else f"k={k} clusters requested; k must be at least 1 (--set num_clusters)"
        )
