"""k-means without empty clusters: DeepCluster's re-seeding rule.

Caron et al. (2018), Sec. 3.3: "When a cluster becomes empty, we randomly select a non-empty
cluster and use its centroid with a small random perturbation as the new centroid for the
empty cluster. We then reassign the points belonging to the non-empty cluster to the two
resulting clusters."

k-means (faiss or torch) applies a version of this rule to the centroids between its
iterations, but the final nearest-centroid assignment can still leave clusters empty
(duplicated points, k close to the number of distinct points). :func:`fill_empty_clusters`
applies the rule explicitly to the final assignment, once per empty cluster, so no cluster
is empty afterwards:

* the donor j is drawn among the clusters that hold at least two distinct points, with
  probability proportional to its size (large clusters are split most often);
* its centroid c_j (the mean of its members) is copied and perturbed along a random
  direction delta of length ``perturbation`` times the members' RMS distance to c_j: the
  empty cluster gets c_j + delta and the donor keeps c_j - delta;
* the donor's members go to the nearer of the two centroids, i.e. x moves to the empty
  cluster iff (x - c_j) . delta > 0.

A split never empties a cluster, so one pass over the empty clusters fills them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.knn import Features, as_float32_matrix
from cluster_ssl.runtime.errors import UserError


@dataclass(frozen=True)
class Reclustering:
    """A clustering with every cluster non-empty.

    Attributes:
        labels: (N,) int64 cluster of each sample, every id in [0, k) used.
        centroids: (k, d) float32 centroids (re-seeded ones as the rule sets them).
        reseeded: how many empty clusters were re-seeded.
    """

    labels: np.ndarray
    centroids: np.ndarray
    reseeded: int


def fill_empty_clusters(
    x: Features,
    centroids: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    perturbation: float = 1e-3,
) -> Reclustering:
    """Re-seed every empty cluster of the assignment ``labels`` of ``x`` (see the module).

    Args:
        x: (N, d) features, numpy or torch.
        centroids: (k, d) centroids of the assignment.
        labels: (N,) cluster of each sample, in [0, k).
        rng: draws the donors and the perturbation directions.
        perturbation: length of a split's offset, relative to the donor's RMS radius.

    Returns:
        The new labels and centroids (copies), and how many clusters were re-seeded.

    Raises:
        UserError: an empty cluster remains but no cluster holds two distinct points (fewer
            distinct points than clusters).
    """
    feats = as_float32_matrix(x)
    centroids = np.array(centroids, dtype=np.float32)
    labels = np.array(labels, dtype=np.int64)
    k, d = centroids.shape
    sizes = np.bincount(labels, minlength=k)
    identical = np.zeros(k, dtype=bool)  # clusters found to hold copies of one point
    empty_ids = np.flatnonzero(sizes == 0)
    for empty in empty_ids:
        while True:
            weights = np.where((sizes >= 2) & ~identical, sizes, 0).astype(np.float64)
            if weights.sum() == 0:
                distinct = len(np.unique(feats, axis=0))
                raise UserError(
                    f"cannot fill the empty clusters of a {k}-way clustering: the "
                    f"{len(feats)} samples hold only {distinct} distinct points; use at most "
                    f"{distinct} clusters, or the features have collapsed (lower the "
                    "learning rate)"
                )
            donor = int(rng.choice(k, p=weights / weights.sum()))
            members = np.flatnonzero(labels == donor)
            points = feats[members].astype(np.float64)
            centre = points.mean(axis=0)
            offsets = points - centre
            if not offsets.any():
                identical[donor] = True
                continue
            direction = rng.standard_normal(d)
            moves = offsets @ direction > 0
            if moves.any() and not moves.all():
                break
        radius = np.sqrt((offsets**2).sum(axis=1).mean())
        delta = perturbation * radius * direction / np.linalg.norm(direction)
        centroids[empty] = centre + delta
        centroids[donor] = centre - delta
        labels[members[moves]] = empty
        sizes[empty] = moves.sum()
        sizes[donor] -= sizes[empty]
    return Reclustering(labels=labels, centroids=centroids, reseeded=len(empty_ids))


def kmeans_without_empty_clusters(
    x: Features,
    k: int,
    seed: int,
    n_iter: int = 20,
    use_gpu: bool | None = None,
) -> Reclustering:
    """One k-means run, then :func:`fill_empty_clusters`.

    Args:
        x: (N, d) features, numpy or torch (a tensor on a GPU is clustered there).
        k: number of clusters, at most the number of distinct samples.
        seed: seed of the k-means run and of the re-seeding generator.
        n_iter: Lloyd iterations of the run.
        use_gpu: as :func:`~cluster_ssl.cluster.kmeans.kmeans` takes it.

    Returns:
        A clustering with every cluster non-empty.
    """
    result = kmeans(x, k, n_init=1, n_iter=n_iter, seed=seed, use_gpu=use_gpu)
    rng = np.random.default_rng(seed)
    return fill_empty_clusters(x, result.centroids, result.labels, rng)
