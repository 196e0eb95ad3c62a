"""How trustworthy each cluster looks: size, confidence, silhouette and a "looks mixed" flag;
and, for ``--k auto``, whether the chosen k clearly beat the others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: confidence below which an image counts as uncertain
LOW_CONFIDENCE = 0.5
#: a cluster "looks mixed" when its mean silhouette is below this ...
MIXED_SILHOUETTE = 0.05
#: ... or when at least this share of its images are below LOW_CONFIDENCE
MIXED_LOW_SHARE = 0.3
#: silhouettes are computed on at most this many samples (seeded, the map's sample)
SILHOUETTE_SAMPLE = 5000
#: the chosen k is "not clearly better" when another k scores within this of it
K_MARGIN = 0.01

MIXED_RULE = (
    f"a cluster looks mixed when its mean silhouette is below {MIXED_SILHOUETTE} or when "
    f"{MIXED_LOW_SHARE:.0%} or more of its images have confidence below {LOW_CONFIDENCE}"
)


@dataclass
class ClusterQuality:
    """One cluster's numbers (None where they cannot be computed)."""

    size: int
    mean_confidence: float | None
    low_share: float | None
    silhouette: float | None
    mixed: bool
    why: str


def sample_indices(n: int, limit: int = SILHOUETTE_SAMPLE, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded subsample of at most ``limit`` of ``n`` items."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def cluster_silhouettes(
    embedding: np.ndarray, labels: np.ndarray, num_clusters: int
) -> list[float | None]:
    """Each cluster's mean silhouette (cosine) over the given (already sampled) points;
    None for a cluster with fewer than 2 points here, or when there are fewer than 2
    clusters."""
    from sklearn.metrics import silhouette_samples

    result: list[float | None] = [None] * num_clusters
    used = np.unique(labels)
    if len(used) < 2 or len(used) >= len(labels):
        return result
    values = silhouette_samples(np.asarray(embedding, dtype=np.float64), labels, metric="cosine")
    for cluster in used:
        members = labels == cluster
        if members.sum() >= 2:
            result[int(cluster)] = float(values[members].mean())
    return result


def cluster_quality(
    labels: np.ndarray,
    confidence: np.ndarray | None,
    num_clusters: int,
    silhouettes: list[float | None] | None = None,
) -> list[ClusterQuality]:
    """Per cluster: size, mean confidence, share below :data:`LOW_CONFIDENCE`, silhouette,
    and the flag of :data:`MIXED_RULE` (never for an empty cluster)."""
    silhouettes = silhouettes or [None] * num_clusters
    result = []
    for cluster in range(num_clusters):
        members = labels == cluster
        size = int(members.sum())
        mean = low = None
        if confidence is not None and size:
            scores = confidence[members]
            mean, low = float(scores.mean()), float((scores < LOW_CONFIDENCE).mean())
        silhouette = silhouettes[cluster]
        reasons = []
        if size and silhouette is not None and silhouette < MIXED_SILHOUETTE:
            reasons.append(f"silhouette {silhouette:.2f} < {MIXED_SILHOUETTE}")
        if size and low is not None and low >= MIXED_LOW_SHARE:
            reasons.append(f"{low:.0%} of images below {LOW_CONFIDENCE} confidence")
        result.append(
            ClusterQuality(size, mean, low, silhouette, bool(reasons), "; ".join(reasons))
        )
    return result


def k_warning(scores: dict[int, float]) -> str | None:
    """A sentence when the best k is not clearly better: another k scores within
    :data:`K_MARGIN` of it. None when it is, or with fewer than two k."""
    if len(scores) < 2:
        return None
    best = max(scores, key=lambda k: (scores[k], -k))
    close = sorted(k for k in scores if k != best and scores[best] - scores[k] < K_MARGIN)
    if not close:
        return None
    others = ", ".join(f"k = {k} ({scores[k]:.3f})" for k in close)
    return (
        f"k = {best} (silhouette {scores[best]:.3f}) is not clearly better than {others}: "
        f"they are within {K_MARGIN}. Look at the clusters of those k too before trusting it."
    )
