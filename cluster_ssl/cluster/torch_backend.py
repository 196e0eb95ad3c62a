"""k-means and exact kNN in torch, on whatever device the features are on.

The torch backend of :func:`cluster_ssl.cluster.kmeans.kmeans`,
:func:`~cluster_ssl.cluster.kmeans.assign` and :func:`cluster_ssl.cluster.knn.knn`, for
features on a GPU (faiss-cpu cannot use one) and for machines without faiss. All math is
float32 on the features' device; nothing is moved to an accelerator here.

Distances use the expansion ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, one matrix product per
block. A block holds at most :func:`block_elements` distances, so no N x N (or N x k) matrix
is built: on the CPU a block small enough to stay in the caches between the product that
writes it and the reduction that reads it, on an accelerator a larger one that keeps it
busy.

k-means (Lloyd), per restart:

1. greedy k-means++ seeding (Arthur & Vassilvitskii, 2007, with scikit-learn's local
   trials): the first centre is a uniformly drawn sample; each further one is the best of
   2 + ln k samples drawn with probability proportional to their squared distance D(x)^2
   to the nearest centre chosen so far, "best" lowering sum_x D(x)^2 most.
2. Up to ``n_iter`` iterations of: assign every sample to its nearest centre; move each
   centre to the mean of its samples. A centre left without samples takes faiss's rule
   (``split_clusters`` in faiss's Clustering.cpp): a donor cluster j is drawn with
   probability proportional to (size_j - 1), the empty centre becomes c_j (1 + eps s) and
   the donor c_j (1 - eps s), with s = (+1, -1, +1, ...) and eps = 1/1024, and the donor's
   size is shared evenly between the two for later draws.
3. A restart stops early once an assignment equals the previous one and no centre was
   split in between: further iterations would change nothing.

The restart with the lowest inertia (sum of squared distances of the samples to their
final centres) is kept. Random draws come from a CPU generator seeded with ``seed + r`` for
restart r, so a seed gives the same centres on every run and every device (up to the
float rounding of each device's matrix products).

Per iteration the host waits for the device once: for the two flags "assignment changed"
and "a cluster is empty". Cluster sums are deterministic on every device: ``index_add_``
on the CPU, where it runs in order, and a sort followed by ``torch.segment_reduce``
elsewhere, where ``index_add_`` uses atomic float additions whose order varies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: distances per block of a matrix product on the CPU (2**22 float32 = 16 MiB)
CPU_BLOCK_ELEMENTS = 1 << 22
#: distances per block on an accelerator (2**26 float32 = 256 MiB)
DEVICE_BLOCK_ELEMENTS = 1 << 26
#: relative perturbation of a split centre (faiss's EPS)
SPLIT_EPS = 1.0 / 1024.0


@dataclass(frozen=True)
class LloydRun:
    """One k-means restart.

    Attributes:
        centroids: (k, d) float32 centres, on the features' device.
        labels: (N,) int64 index of each sample's nearest centre.
        dist2: (N,) float32 squared L2 distance of each sample to that centre.
        inertia: ``dist2`` summed in float64.
        iterations: centre updates performed (at most ``n_iter``; fewer when it converged).
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    dist2: torch.Tensor
    inertia: float
    iterations: int


def block_elements(device: torch.device) -> int:
    """Distances per block of a matrix product on ``device``.

    Args:
        device: where the product runs.

    Returns:
        :data:`CPU_BLOCK_ELEMENTS` on the CPU, else :data:`DEVICE_BLOCK_ELEMENTS`.
    """
    return CPU_BLOCK_ELEMENTS if device.type == "cpu" else DEVICE_BLOCK_ELEMENTS


def block_rows(columns: int, budget: int) -> int:
    """Rows of a block of a (rows x ``columns``) matrix that fits the element budget.

    Args:
        columns: the matrix's columns.
        budget: elements per block.

    Returns:
        At least 1.
    """
    return max(1, budget // max(1, columns))


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each row.

    Args:
        x: (N, d) float32 tensor.

    Returns:
        (N,) float32 tensor on ``x``'s device.
    """
    return (x * x).sum(dim=1)


def nearest_centroids(
    x: torch.Tensor,
    centroids: torch.Tensor,
    x_norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre (squared L2) of every row of ``x``, by blocks of rows.

    Args:
        x: (N, d) float32 features.
        centroids: (k, d) float32 centres on ``x``'s device.
        x_norms: :func:`squared_norms` of ``x`` if already computed.

    Returns:
        ``(labels, dist2)``: (N,) int64 index of the nearest centre (the lowest index among
        ties) and (N,) float32 squared distance to it, clamped at 0.
    """
    if x_norms is None:
        x_norms = squared_norms(x)
    c_norms = squared_norms(centroids)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dist2 = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    rows = block_rows(centroids.shape[0], block_elements(x.device))
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        # ||c||^2 - 2 x.c: the row's ||x||^2 does not change which centre is nearest
        partial = torch.addmm(c_norms, x[start:stop], centroids.T, alpha=-2.0)
        best, index = partial.min(dim=1)
        labels[start:stop] = index
        dist2[start:stop] = (best + x_norms[start:stop]).clamp_min_(0.0)
    return labels, dist2


def cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of the rows of ``x`` assigned to each cluster, the same on every run.

    ``index_add_`` on the CPU (it adds in row order there); elsewhere
    :func:`sorted_cluster_sums`.

    Args:
        x: (N, d) float32 features.
        labels: (N,) int64 cluster of each row, in [0, k).
        k: number of clusters.

    Returns:
        (k, d) float32 sums, zero rows for empty clusters.
    """
    if x.device.type == "cpu":
        sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
        return sums.index_add_(0, labels, x)
    return sorted_cluster_sums(x, labels, k)


def sorted_cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`cluster_sums` without atomic additions, in a fixed order on any device.

    The rows are sorted by cluster (a stable sort), then summed segment by segment
    (``torch.segment_reduce``).

    Args:
        x: (N, d) float32 features.
        labels: (N,) int64 cluster of each row, in [0, k).
        k: number of clusters.

    Returns:
        (k, d) sums, zero rows for empty clusters.
    """
    order = torch.argsort(labels, stable=True)
    lengths = torch.bincount(labels, minlength=k)
    return torch.segment_reduce(x[order], "sum", lengths=lengths, axis=0, unsafe=True)


def local_trials(k: int) -> int:
    """Candidates per step of the greedy k-means++ seeding: 2 + floor(ln k), as
    scikit-learn draws.

    Args:
        k: number of clusters.

    Returns:
        At least 2.
    """
    return 2 + int(math.log(k)) if k > 1 else 2


def kmeans_plus_plus_seeds(
    x: torch.Tensor, x_norms: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """Greedy k-means++ seeding: (k,) int64 indices of the rows chosen as initial centres.

    The first centre is a uniformly drawn row. Each further step draws
    :func:`local_trials` candidates with probability proportional to D(x)^2 and keeps the
    one that lowers the potential sum_x D(x)^2 most. Every step stays on the device (no
    host sync): a draw is a binary search of a uniform number in the cumulative sum of
    D(x)^2, and the choice among the candidates an argmin.
    """
    n = x.shape[0]
    trials = local_trials(k)
    # all uniforms at once, from the CPU generator: the same draws on every device
    uniforms = torch.rand(k, trials, generator=generator, dtype=torch.float64).to(x.device)
    chosen = torch.empty(k, dtype=torch.int64, device=x.device)
    chosen[:1] = (uniforms[0, :1] * n).long().clamp_(max=n - 1)
    centre = x.index_select(0, chosen[:1])
    nearest = torch.addmm(x_norms.unsqueeze(1), x, centre.T, alpha=-2.0)
    nearest = nearest.squeeze(1).add_(squared_norms(centre)).clamp_(min=0.0)
    for i in range(1, k):
        cumulative = nearest.cumsum(0, dtype=torch.float64)
        total = cumulative[-1:]
        drawn = torch.searchsorted(cumulative, uniforms[i] * total, right=True)
        # every row on a chosen centre (fewer distinct rows than k): draw uniformly
        uniform = (uniforms[i] * n).long()
        candidates = torch.where(total > 0, drawn, uniform).clamp_(max=n - 1)
        centres = x.index_select(0, candidates)  # (trials, d)
        dist2 = torch.addmm(x_norms.unsqueeze(1), x, centres.T, alpha=-2.0)
        dist2 = dist2.add_(squared_norms(centres)).clamp_(min=0.0)  # (N, trials)
        dist2 = torch.minimum(dist2, nearest.unsqueeze(1), out=dist2)
        best = dist2.sum(dim=0, dtype=torch.float64).argmin().reshape(1)
        chosen[i : i + 1] = candidates.index_select(0, best)
        nearest = dist2.index_select(1, best).squeeze(1)
    return chosen


def _split_empty_clusters(
    centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> None:
    """faiss's rule for empty clusters (see the module docstring), in place on ``centroids``.

    Args:
        centroids: (k, d) centres after the update (empty ones zero), modified in place.
        counts: (k,) cluster sizes of the assignment the update used.
        generator: CPU generator for the donor draws.
    """
    sizes = counts.to(device="cpu", dtype=torch.float64)
    d = centroids.shape[1]
    signs = torch.ones(d, dtype=centroids.dtype, device=centroids.device)
    signs[1::2] = -1.0
    for empty in torch.nonzero(sizes == 0).flatten().tolist():
        weights = (sizes - 1.0).clamp_(min=0.0)
        donor = int(torch.multinomial(weights, 1, generator=generator))
        centre = centroids[donor].clone()
        centroids[empty] = centre * (1.0 + SPLIT_EPS * signs)
        centroids[donor] = centre * (1.0 - SPLIT_EPS * signs)
        sizes[empty] = sizes[donor] / 2.0
        sizes[donor] -= sizes[empty]


def lloyd(
    x: torch.Tensor,
    k: int,
    n_iter: int,
    generator: torch.Generator,
    spherical: bool = False,
    x_norms: torch.Tensor | None = None,
) -> LloydRun:
    """One k-means restart: greedy k-means++ seeding, then Lloyd iterations (see the module).

    Args:
        x: (N, d) float32 features (L2-normalised rows for spherical k-means).
        k: number of clusters, 1 <= k <= N.
        n_iter: maximum number of centre updates.
        generator: CPU generator for the seeding and the empty-cluster donors.
        spherical: L2-normalise the centres after seeding and after every update.
        x_norms: :func:`squared_norms` of ``x`` if already computed.

    Returns:
        The restart's centres, final assignment, inertia and iteration count.
    """
    n = x.shape[0]
    if x_norms is None:
        x_norms = squared_norms(x)
    # k = N: every sample its own centre, as faiss does
    seeds = (
        torch.arange(n, device=x.device)
        if k == n
        else kmeans_plus_plus_seeds(x, x_norms, k, generator)
    )
    centroids = x[seeds]
    if spherical:
        centroids = F.normalize(centroids, dim=1)
    previous: torch.Tensor | None = None
    split = False
    iterations = 0
    while True:
        labels, dist2 = nearest_centroids(x, centroids, x_norms)
        if iterations >= n_iter or k == n:
            break
        counts = torch.bincount(labels, minlength=k)
        changed = torch.ones((), dtype=torch.bool, device=x.device)
        if previous is not None:
            changed = (labels != previous).any()
        flags = torch.stack([changed, (counts == 0).any()]).tolist()  # the one sync
        if not flags[0] and not split:
            break  # the update would give the same centres back
        centroids = cluster_sums(x, labels, k) / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
        split = bool(flags[1])
        if split:
            _split_empty_clusters(centroids, counts, generator)
        if spherical:
            centroids = F.normalize(centroids, dim=1)
        previous = labels
        iterations += 1
    inertia = float(dist2.sum(dtype=torch.float64))
    return LloydRun(centroids, labels, dist2, inertia, iterations)


def kmeans_torch(
    x: torch.Tensor,
    k: int,
    n_init: int,
    n_iter: int,
    seed: int,
    spherical: bool = False,
) -> LloydRun:
    """The best of ``n_init`` :func:`lloyd` restarts (lowest inertia; the first on ties).

    Args:
        x: (N, d) float32 features on the device to compute on (L2-normalised rows for
            spherical k-means).
        k: number of clusters, 1 <= k <= N.
        n_init: restarts, at least 1.
        n_iter: maximum centre updates per restart.
        seed: restart r draws from a CPU generator seeded with ``seed + r``.
        spherical: spherical k-means (unit centres).

    Returns:
        The kept restart.
    """
    x_norms = squared_norms(x)
    best: LloydRun | None = None
    for restart in range(max(1, n_init)):
        generator = torch.Generator().manual_seed(seed + restart)
        run = lloyd(x, k, n_iter, generator, spherical=spherical, x_norms=x_norms)
        if best is None or run.inertia < best.inertia:
            best = run
    assert best is not None
    return best


def _merge(
    candidates: list[tuple[torch.Tensor, torch.Tensor]], k: int, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of several (values, indices) candidate blocks of the same rows, in no
    particular order."""
    if len(candidates) == 1:
        return candidates[0]
    values = torch.cat([block[0] for block in candidates], dim=1)
    indices = torch.cat([block[1] for block in candidates], dim=1)
    values, order = torch.topk(values, k, dim=1, largest=largest, sorted=False)
    return values, torch.gather(indices, 1, order)


def knn_torch(
    x: torch.Tensor,
    k: int,
    metric: str,
    exclude_self: bool,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of ``x`` among the rows of ``x``.

    The (N x N) scores are computed tile by tile, each tile at most
    :func:`block_elements` scores: up to ``chunk_size`` queries (and at most
    sqrt(elements / 4)) against as many rows as fit, four times the queries or more. Each
    tile keeps its own top k; a block of queries merges them whenever they add up to a
    tile's width, and once more at the end, then sorts the k best. A query's own row is
    masked out when ``exclude_self``.

    Args:
        x: (N, d) float32 features, rows L2-normalised already for ``"cosine"``.
        k: neighbours per row, k <= N - 1 with ``exclude_self``, else k <= N.
        metric: ``"cosine"`` / ``"ip"`` (largest inner product) or ``"l2"`` (smallest
            squared distance).
        exclude_self: leave each row out of its own neighbours.
        chunk_size: most queries per tile.

    Returns:
        ``(scores, indices)``, both (N, k) numpy arrays on the CPU: float32 similarities,
        best first (cosine / ip) or squared L2 distances, nearest first (l2); int64 indices.
    """
    n = x.shape[0]
    largest = metric != "l2"
    worst = float("-inf") if largest else float("inf")
    norms = squared_norms(x) if metric == "l2" else None
    budget = block_elements(x.device)
    rows = max(1, min(chunk_size, n, math.isqrt(budget // 4)))
    width = max(k, block_rows(rows, budget))
    scores_out = torch.empty(n, k, dtype=torch.float32, device=x.device)
    indices_out = torch.empty(n, k, dtype=torch.int64, device=x.device)
    for q_start in range(0, n, rows):
        q_stop = min(q_start + rows, n)
        queries = x[q_start:q_stop]
        candidates: list[tuple[torch.Tensor, torch.Tensor]] = []
        pending = 0
        for c_start in range(0, n, width):
            c_stop = min(c_start + width, n)
            if norms is None:
                scores = queries @ x[c_start:c_stop].T
            else:  # ||y||^2 - 2 q.y: the query's own norm is added after the search
                scores = torch.addmm(
                    norms[c_start:c_stop], queries, x[c_start:c_stop].T, alpha=-2.0
                )
            low, high = max(q_start, c_start), min(q_stop, c_stop)
            if exclude_self and low < high:
                diagonal = torch.arange(low, high, device=x.device)
                scores[diagonal - q_start, diagonal - c_start] = worst
            values, index = torch.topk(
                scores, min(k, c_stop - c_start), dim=1, largest=largest, sorted=False
            )
            candidates.append((values, index + c_start))
            pending += values.shape[1]
            if pending >= width:
                candidates = [_merge(candidates, k, largest)]
                pending = k
        values, index = _merge(candidates, k, largest)
        values, order = torch.sort(values, dim=1, descending=largest)
        index = torch.gather(index, 1, order)
        if norms is not None:
            values = (values + norms[q_start:q_stop].unsqueeze(1)).clamp_(min=0.0)
        scores_out[q_start:q_stop] = values
        indices_out[q_start:q_stop] = index
    return scores_out.cpu().numpy(), indices_out.cpu().numpy()
