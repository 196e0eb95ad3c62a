"""k-means with scikit-learn's Lloyd kernel, started from faiss's initial centres.

Both minimise J = sum_i min_j ||x_i - mu_j||^2 by the same Lloyd iterations. On the CPU
they differ in how often an iteration reads the features: faiss three times (the squared
norms, the matrix product of its flat index, then the centre sums), scikit-learn once (a
chunk of 256 rows stays in the cache from its product to its sums). With few clusters an
iteration is bound by those reads and scikit-learn's kernel is the faster; with many it is
bound by the product and faiss's is as fast or faster (``tools/kmeans_backends.py
--grid``; the size rule is :func:`cluster_ssl.cluster.backend.resolve_backend`'s).

Restart r begins exactly where faiss's does: at the rows ``perm[:k]`` of faiss's
permutation ``rand_perm(N, seed + 1 + r * 15486557)`` (``Clustering::train_encoded``). From
there the two can part only through float rounding (the order of the sums) and on a
cluster left empty (faiss splits a populated one, scikit-learn moves the centre to the
sample farthest from its own). scikit-learn runs with ``tol=0``: a restart stops once an
assignment repeats (faiss once its objective repeats). The restart with the lowest inertia
is kept, the first on ties.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn import config_context
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from cluster_ssl.cluster.backend import require_faiss
from cluster_ssl.cluster.torch_backend import nearest_centroids

#: faiss's stride between the permutation seeds of two restarts (Clustering.cpp)
FAISS_REDO_STRIDE = 15486557


def faiss_initial_rows(n: int, k: int, seed: int, restart: int) -> np.ndarray:
    """The rows faiss's k-means takes as initial centres of a restart.

    faiss shuffles all N row indices (``rand_perm``: a Fisher-Yates shuffle where step i
    swaps position i with i + ``rand_int(N - i)``) and takes the first k; the first k
    steps alone settle them, so only those are replayed, with faiss's own generator
    (the whole shuffle costs a pass over N integers: 27 ms at N = 500,000 under load).

    Args:
        n: samples.
        k: clusters, at most ``n``.
        seed: faiss's ``ClusteringParameters.seed`` (a C int).
        restart: the restart (faiss's ``redo``), from 0.

    Returns:
        (k,) int64 row indices, distinct.
    """
    rng = require_faiss().RandomGenerator(seed + 1 + restart * FAISS_REDO_STRIDE)
    moved: dict[int, int] = {}  # the positions the steps so far have swapped
    rows = np.empty(k, dtype=np.int64)
    for i in range(k):
        j = i + rng.rand_int(n - i) if i + 1 < n else i
        rows[i] = moved.get(j, j)
        moved[j] = moved.get(i, i)
    return rows


def kmeans_sklearn(
    x: np.ndarray, k: int, n_init: int, n_iter: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The best of ``n_init`` Lloyd runs of scikit-learn's ``KMeans``, each from faiss's
    initial centres for that restart.

    Args:
        x: (N, d) float32 C-contiguous samples on the CPU, all finite.
        k: clusters, 1 <= k <= N.
        n_init: restarts, at least 1.
        n_iter: most Lloyd iterations per restart (0: the initial centres are kept).
        seed: faiss's seed, in [0, 2**31).

    Returns:
        ``(centroids, labels, inertia)``: (k, d) float32, (N,) int64, and the sum of the
        samples' squared distances to their centres (scikit-learn's, summed in float32:
        a float64 re-sum would cost another pass over the features).
    """
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for restart in range(max(1, n_init)):
        start = x[faiss_initial_rows(x.shape[0], k, seed, restart)]
        if n_iter < 1:  # scikit-learn needs one iteration; faiss assigns to the start
            labels, dist2 = nearest_centroids(torch.from_numpy(x), torch.from_numpy(start))
            run = (start, labels.numpy(), float(dist2.sum(dtype=torch.float64)))
        else:
            model = KMeans(k, init=start, n_init=1, max_iter=n_iter, tol=0.0, algorithm="lloyd")
            # the caller checked the features: skip scikit-learn's second pass over them
            with config_context(assume_finite=True), warnings.catch_warnings():
                # fewer distinct clusters than k: faiss does not warn either
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x)
            centroids = np.ascontiguousarray(model.cluster_centers_, dtype=np.float32)
            run = (centroids, model.labels_.astype(np.int64), float(model.inertia_))
        if best is None or run[2] < best[2]:
            best = run
    assert best is not None
    return best
