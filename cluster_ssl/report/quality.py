"""How trustworthy each cluster looks: size, confidence, silhouette and a "looks mixed" flag;
and, for ``--k auto``, whether the chosen k clearly beat the others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: confidence below which an image counts as uncertain
LOW_CONFIDENCE = 0.5
#: a cluster "looks mixed" in any run when its mean silhouette is below this ...
MIXED_SILHOUETTE = 0.05
#: ... or when at least this share of its images are below LOW_CONFIDENCE
MIXED_LOW_SHARE = 0.3
#: and, judged against the run's own clusters (at least RELATIVE_MIN_CLUSTERS of them),
#: when its low-confidence share is above this multiple of their median (and at least
#: LOW_SHARE_FLOOR) ...
RELATIVE_LOW_SHARE = 1.5
LOW_SHARE_FLOOR = 0.05
#: ... or its silhouette below this multiple of their median (and below SILHOUETTE_CEILING)
RELATIVE_SILHOUETTE = 0.75
SILHOUETTE_CEILING = 0.5
RELATIVE_MIN_CLUSTERS = 3
#: silhouettes are computed on at most this many samples (seeded, the map's sample)
SILHOUETTE_SAMPLE = 5000
#: the chosen k is "not clearly better" when another k scores within this of it
K_MARGIN = 0.01

# Why relative cues: how confident and how separated clusters are depends on the method
# (CC's softmax against k-means' cosine to a centre) and the data, so fixed thresholds
# either miss or flag everything. On 3,000 Fashion-MNIST PNGs clustered by CC (docs/RESULTS.md)
# the fixed ones flagged none of the 5 clusters whose majority class is under 60%; the
# relative ones flag 4 of them and none of the 5 purer. The floor and ceiling keep a run
# of clean clusters free of flags.
MIXED_RULE = (
    f"a cluster looks mixed when its mean silhouette is below {MIXED_SILHOUETTE} or "
    f"{MIXED_LOW_SHARE:.0%} or more of its images have confidence below {LOW_CONFIDENCE}; "
    f"or, against this run's clusters, when its share below {LOW_CONFIDENCE} is over "
    f"{RELATIVE_LOW_SHARE}x their median (and at least {LOW_SHARE_FLOOR:.0%}) or its "
    f"silhouette under {RELATIVE_SILHOUETTE}x their median (and under {SILHOUETTE_CEILING})"
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
    sizes, means, lows = [], [], []
    for cluster in range(num_clusters):
        members = labels == cluster
        size = int(members.sum())
        mean = low = None
        if confidence is not None and size:
            scores = confidence[members]
            mean, low = float(scores.mean()), float((scores < LOW_CONFIDENCE).mean())
        sizes.append(size)
        means.append(mean)
        lows.append(low)
    low_median = _median(lows, sizes)
    silhouette_median = _median(silhouettes, sizes)
    result = []
    for size, mean, low, silhouette in zip(sizes, means, lows, silhouettes, strict=True):
        reasons = []
        if size and silhouette is not None:
            if silhouette < MIXED_SILHOUETTE:
                reasons.append(f"silhouette {silhouette:.2f} < {MIXED_SILHOUETTE}")
            elif (
                silhouette_median is not None
                and silhouette < RELATIVE_SILHOUETTE * silhouette_median
                and silhouette < SILHOUETTE_CEILING
            ):
                reasons.append(
                    f"silhouette {silhouette:.2f}, under {RELATIVE_SILHOUETTE}x the clusters' "
                    f"median {silhouette_median:.2f}"
                )
        if size and low is not None:
            if low >= MIXED_LOW_SHARE:
                reasons.append(f"{low:.0%} of images below {LOW_CONFIDENCE} confidence")
            elif (
                low_median is not None
                and low > RELATIVE_LOW_SHARE * low_median
                and low >= LOW_SHARE_FLOOR
            ):
                reasons.append(
                    f"{low:.0%} of images below {LOW_CONFIDENCE} confidence, over "
                    f"{RELATIVE_LOW_SHARE}x the clusters' median {low_median:.0%}"
                )
        result.append(
            ClusterQuality(size, mean, low, silhouette, bool(reasons), "; ".join(reasons))
        )
    return result


def _median(values: list[float | None], sizes: list[int]) -> float | None:
    """The median of the non-empty clusters' values; None with fewer than
    :data:`RELATIVE_MIN_CLUSTERS` of them."""
    known = [v for v, size in zip(values, sizes, strict=True) if size and v is not None]
    return float(np.median(known)) if len(known) >= RELATIVE_MIN_CLUSTERS else None


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
