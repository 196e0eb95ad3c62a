"""k-means with cosine assignment and plain-mean centres, as ProPos's reproduction of PCL
runs its E-step (Hzzone/torch_clustering ``PyTorchKMeans(metric="cosine",
init="k-means++", n_init=10, max_iter=300, tol=1e-4)``).

It minimises the cosine inertia

    J = sum_i min_j (1 - cos(x_i, mu_j)),   mu_j = mean of the samples assigned to j

where, unlike spherical k-means, a centre stays the plain mean of its members (its norm
below 1 for unit samples) and only the assignment looks at its direction. Per restart:

1. greedy k-means++ seeding with D(x) = 1 - cos(x, nearest centre) as the sampling
   weight; for unit rows 1 - cos = ||x - c||^2 / 2, so this is the squared-L2 seeding of
   :func:`~cluster_ssl.cluster.torch_backend.kmeans_plus_plus_seeds`.
2. Up to ``max_iter`` iterations of: each centre moves to the mean of its samples (an
   empty cluster's centre becomes the zero vector, at cosine distance 1 from everything);
   every sample is reassigned to its most similar centre. The centres and assignment of
   the lowest J seen at any iteration are kept.
3. A restart stops when an assignment repeats the previous one, or when the centres moved
   by sum_j (1 - cos(mu_j^old, mu_j^new)) <= tol * mean_d var(x_d).

The restart of the lowest J wins; restart r draws from a CPU generator seeded ``seed + r``
(torch_clustering's random states ``random_state + r``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cluster_ssl.cluster.features import Features, as_float32_tensor
from cluster_ssl.cluster.kmeans import KMeansResult
from cluster_ssl.cluster.torch_backend import (
    block_elements,
    block_rows,
    cluster_sums,
    kmeans_plus_plus_seeds,
    squared_norms,
)

#: ProPos's E-step: restarts, iteration cap and relative tolerance of torch_clustering
PROPOS_RESTARTS = 10
PROPOS_MAX_ITER = 300
PROPOS_TOL = 1e-4


def most_similar_centres(
    x: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's most cosine-similar centre, by blocks of rows.

    Args:
        x: (N, d) float32 unit rows.
        centres: (k, d) float32 centres of any norm (a zero centre has similarity 0).

    Returns:
        ``(labels, distances)``: (N,) int64 index of the most similar centre and (N,)
        float32 cosine distance 1 - cos to it.
    """
    directions = F.normalize(centres, dim=1)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    distances = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    rows = block_rows(centres.shape[0], block_elements(x.device))
    for start in range(0, x.shape[0], rows):
        best, index = (x[start : start + rows] @ directions.T).max(dim=1)
        labels[start : start + rows] = index
        distances[start : start + rows] = 1.0 - best
    return labels, distances


def _restart(
    x: torch.Tensor, k: int, max_iter: int, tol: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One restart: the centres, assignment and J of its lowest-J iteration."""
    centres = x[kmeans_plus_plus_seeds(x, squared_norms(x), k, generator)]
    labels, _ = most_similar_centres(x, centres)
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(max_iter):  # at least one: cosine_kmeans checks
        counts = torch.bincount(labels, minlength=k).clamp_(min=1).unsqueeze(1)
        moved = cluster_sums(x, labels, k) / counts.to(x.dtype)
        new_labels, distances = most_similar_centres(x, moved)
        inertia = float(distances.sum(dtype=torch.float64))
        if best is None or inertia < best[2]:
            best = (moved, new_labels, inertia)
        shift = (1.0 - F.cosine_similarity(centres, moved, dim=1, eps=1e-12)).sum()
        converged = torch.equal(new_labels, labels) or float(shift) <= tol
        centres, labels = moved, new_labels
        if converged:
            break
    assert best is not None
    return best


def cosine_kmeans(
    features: Features,
    k: int,
    n_init: int = PROPOS_RESTARTS,
    max_iter: int = PROPOS_MAX_ITER,
    tol: float = PROPOS_TOL,
    seed: int = 0,
) -> KMeansResult:
    """Cluster the L2-normalised rows of ``features`` into ``k`` groups (see the module).

    Computed in float32 with torch on the features' device (numpy: the CPU).

    Args:
        features: (N, d) features, numpy or torch; rows are L2-normalised first (the
            centres are then means of unit rows, as ProPos's are of its normalised keys).
        k: number of clusters, 1 <= k <= N.
        n_init: restarts, the lowest J kept.
        max_iter: most centre updates per restart.
        tol: a restart stops once its centres move by at most ``tol`` times the mean
            per-dimension variance of the rows.
        seed: restart r is seeded ``seed + r``.

    Returns:
        The plain-mean centres (not normalised), each sample's most similar centre and J.

    Raises:
        ValueError: k outside [1, N], or ``n_init`` or ``max_iter`` below 1.
        UserError: non-finite features.
    """
    x = F.normalize(as_float32_tensor(features), dim=1, eps=1e-12)
    if not 1 <= k <= x.shape[0] or n_init < 1 or max_iter < 1:
        raise ValueError(
            f"need 1 <= k <= {x.shape[0]}, n_init >= 1 and max_iter >= 1, "
            f"got k={k}, n_init={n_init}, max_iter={max_iter}"
        )
    threshold = tol * float(x.var(dim=0).mean()) if x.shape[0] > 1 else 0.0
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for restart in range(n_init):
        generator = torch.Generator().manual_seed(seed + restart)
        run = _restart(x, k, max_iter, threshold, generator)
        if best is None or run[2] < best[2]:
            best = run
    assert best is not None
    centres, labels, inertia = best
    return KMeansResult(centres.cpu().numpy(), labels.cpu().numpy(), inertia)
