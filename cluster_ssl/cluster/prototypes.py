"""PCL's E-step (Li et al., ICLR 2021): prototypes at several granularities, with the
concentration of each.

For each number of clusters k_m, k-means (20 Lloyd iterations, the best of 5 seeded
restarts; faiss on the CPU, torch for features on a GPU) on the momentum-encoder features
v_z gives assignments and centroids c; each centroid is then L2-normalised to serve as a
prototype, and its concentration phi (the temperature of its logits in ProtoNCE) estimated
from the distances of its members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.knn import Features, as_float32_matrix, l2_normalise
from cluster_ssl.runtime.errors import UserError


@dataclass(frozen=True)
class Prototypes:
    """One clustering of the E-step.

    Attributes:
        assignments: (N,) int64 prototype of each sample, in dataset order.
        centroids: (k, d) float32 prototypes, unit rows.
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
) -> list[Prototypes]:
    """The E-step: k-means on ``features`` at each granularity of ``num_prototypes``.

    Granularity m is clustered with seed ``seed + m`` (PCL's code seeds its m-th k-means
    with m), plain (Euclidean) k-means on the given features as the code does; PCL passes
    L2-normalised features. Centroids are L2-normalised after the concentration is measured
    against them.

    Args:
        features: (N, d) features, numpy or torch (a tensor on a GPU is clustered there).
        num_prototypes: k of each clustering (e.g. 250, 500, 1000), each at most N.
        temperature: the mean of each clustering's phi (:func:`concentration`).
        seed: base seed of the k-means restarts.
        restarts: k-means restarts, the best kept (5 in PCL).
        iterations: Lloyd iterations per restart (20 in PCL).
        alpha: the concentration's smoothing.

    Returns:
        One :class:`Prototypes` per entry of ``num_prototypes``, in order.

    Raises:
        UserError: a k above N, or non-finite features.
    """
    x = as_float32_matrix(features)
    too_many = [k for k in num_prototypes if k > x.shape[0]]
    if too_many:
        raise UserError(
            f"num_prototypes {too_many} exceed the {x.shape[0]} training images; "
            f"lower --set num_prototypes (each at most {x.shape[0]})"
        )
    clusterings = []
    for m, k in enumerate(num_prototypes):
        result = kmeans(features, k, n_init=restarts, n_iter=iterations, seed=seed + m)
        distances = np.linalg.norm(x - result.centroids[result.labels], axis=1)
        clusterings.append(
            Prototypes(
                assignments=result.labels,
                centroids=l2_normalise(result.centroids),
                concentration=concentration(distances, result.labels, k, temperature, alpha=alpha),
            )
        )
    return clusterings
