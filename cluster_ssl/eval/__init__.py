"""Evaluation: clustering metrics."""

from cluster_ssl.eval.metrics import (
    ari,
    cluster_accuracy,
    cluster_sizes,
    count_matrix,
    evaluate_clustering,
    hungarian_mapping,
    nmi,
    overcluster_accuracy,
)

__all__ = [
    "ari",
    "cluster_accuracy",
    "cluster_sizes",
    "count_matrix",
    "evaluate_clustering",
    "hungarian_mapping",
    "nmi",
    "overcluster_accuracy",
]
