"""PCL's E-step (Li et al., ICLR 2021): prototypes at several granularities, with the
concentration of each.

For each number of clusters k_m, k-means on the momentum-encoder features v_z gives
assignments and centroids c, which serve as prototypes, and each prototype's concentration
phi (the temperature of its logits in ProtoNCE) is estimated from the distances of its
members. Two k-means, by ``kmeans_style`` (one of :data:`ESTEP_KMEANS`):

- ``"pcl"``, PCL's own (``main_pcl.py`` run_kmeans): Euclidean k-means, 20 Lloyd
  iterations, the best of 5 seeded restarts (faiss on the CPU, torch for features on a
  GPU); each centroid is L2-normalised to serve as a prototype.
- ``"propos"``, ProPos's reproduction of PCL (torch_clustering):
  :func:`~cluster_ssl.cluster.cosine_kmeans.cosine_kmeans`, cosine assignment, 10
  k-means++ restarts of up to 300 iterations; the prototypes are the plain means, not
  normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cluster_ssl.cluster.cosine_kmeans import cosine_kmeans
from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.knn import Features, as_float32_matrix, l2_normalise
from cluster_ssl.runtime.errors import UserError

#: the E-step's k-means: PCL's own, or ProPos's (see the module)
ESTEP_KMEANS = ("pcl", "propos")


@dataclass(frozen=True)
class Prototypes:
    """One clustering of the E-step.

    Attributes:
        assignments: (N,) int64 prototype of each sample, in dataset order.
        centroids: (k, d) float32 prototypes (unit rows with PCL's k-means).
        concentration: (k,) float32 phi of each prototype, mean equal to the temperature.
    """

    assignments: np.ndarray
    centroids: np.ndarray
    concentration: np.ndarray

    @property
    def num_prototypes(self) -> int:
        """k, the number of prototypes."""
        return self.centroids.shape[0]


def concentration(
    distances: np.ndarray,
    assignments: np.ndarray,
    num_prototypes: int,
    temperature: float,
    *,
    alpha: float = 10.0,
    percentiles: tuple[float, float] = (10.0, 90.0),
) -> np.ndarray:
    """PCL's concentration estimate of each of ``num_prototypes`` clusters.

    With Z the number of members of cluster c and v_z its members' features,

        phi_c = sum_{z=1}^{Z} ||v_z - c||_2 / (Z log(Z + alpha)),   alpha = 10

    so a tight, populous cluster gets a small phi (a sharper softmax). Then, as PCL's code:
    clusters with at most one member (empty ones included) take the largest phi of the
    others; phi is clipped to its 10th-90th percentile; and it is rescaled so that its mean
    equals ``temperature`` (the InfoNCE tau). Two edge cases the code leaves undefined: a
    cluster whose members all coincide with the centroid (phi 0, e.g. duplicated images)
    takes the smallest positive phi, so no logit is divided by zero; and when no cluster has a
    positive phi at all, every phi is ``temperature``.

    Args:
        distances: (N,) ||v_z - c_{a(z)}||, each sample's Euclidean distance to its
            cluster's centroid (before the centroid is normalised).
        assignments: (N,) cluster of each sample, in [0, num_prototypes).
        num_prototypes: k.
        temperature: the mean phi after rescaling (0.2 in PCL).
        alpha: smoothing that keeps small clusters from getting a too-small phi.
        percentiles: the clipping range.

    Returns:
        (k,) float32 phi.
    """
    counts = np.bincount(assignments, minlength=num_prototypes)
    sums = np.bincount(assignments, weights=distances.astype(np.float64), minlength=num_prototypes)
    phi = np.zeros(num_prototypes)
    populated = counts > 1
    z = counts[populated]
    phi[populated] = sums[populated] / (z * np.log(z + alpha))
    phi[~populated] = phi.max()
    if not (phi > 0).any():
        return np.full(num_prototypes, temperature, dtype=np.float32)
    phi[phi <= 0] = phi[phi > 0].min()
    low, high = np.percentile(phi, percentiles)
    phi = np.clip(phi, low, high)
    return (temperature * phi / phi.mean()).astype(np.float32)


def estimate_prototypes(
    features: Features,
    num_prototypes: Sequence[int],
    temperature: float,
    *,
    seed: int = 0,
    restarts: int = 5,
    iterations: int = 20,
    alpha: float = 10.0,
    kmeans_style: str = "pcl",
) -> list[Prototypes]:
    """The E-step: k-means on ``features`` at each granularity of ``num_prototypes``.

    Granularity m is clustered with seed ``seed + m`` (PCL's code seeds its m-th k-means
    with m). With ``kmeans_style="pcl"``, plain (Euclidean) k-means on the given features
    as PCL's code does (PCL passes L2-normalised features), its centroids L2-normalised
    after the concentration is measured against them; with ``"propos"``, ProPos's cosine
    k-means, its plain-mean centroids kept as they are.

    Args:
        features: (N, d) features, numpy or torch (a tensor on a GPU is clustered there).
        num_prototypes: k of each clustering (e.g. 250, 500, 1000), each at most N.
        temperature: the mean of each clustering's phi (:func:`concentration`).
        seed: base seed of the k-means restarts.
        restarts: k-means restarts, the best kept (5 in PCL; ``"pcl"`` only).
        iterations: Lloyd iterations per restart (20 in PCL; ``"pcl"`` only).
        alpha: the concentration's smoothing.
        kmeans_style: one of :data:`ESTEP_KMEANS`.

    Returns:
        One :class:`Prototypes` per entry of ``num_prototypes``, in order.

    Raises:
        UserError: a k above N, or non-finite features.
        ValueError: an unknown ``kmeans_style``.
    """
    if kmeans_style not in ESTEP_KMEANS:
        raise ValueError(
            f"kmeans_style must be one of {', '.join(ESTEP_KMEANS)}, got {kmeans_style!r}"
        )
    x = as_float32_matrix(features)
    too_many = [k for k in num_prototypes if k > x.shape[0]]
    if too_many:
        raise UserError(
            f"num_prototypes {too_many} exceed the {x.shape[0]} training images; "
            f"lower --set num_prototypes (each at most {x.shape[0]})"
        )
    clusterings = []
    propos = kmeans_style == "propos"
    # the concentration measures distances in the space k-means clustered
    clustered = l2_normalise(x) if propos else x
    for m, k in enumerate(num_prototypes):
        if propos:
            result = cosine_kmeans(features, k, seed=seed + m)
            prototypes = result.centroids
        else:
            result = kmeans(features, k, n_init=restarts, n_iter=iterations, seed=seed + m)
            prototypes = l2_normalise(result.centroids)
        distances = np.linalg.norm(clustered - result.centroids[result.labels], axis=1)
        clusterings.append(
            Prototypes(
                assignments=result.labels,
                centroids=prototypes,
                concentration=concentration(distances, result.labels, k, temperature, alpha=alpha),
            )
        )
    return clusterings
