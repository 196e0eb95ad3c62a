"""scikit-learn estimators, one per method: ``DEC(n_clusters=10).fit_predict(X)``."""

from cluster_ssl.estimators.base import DeepClusteringEstimator
from cluster_ssl.estimators.methods import (
    CC,
    DCEC,
    DEC,
    ESTIMATORS,
    IDEC,
    IDFD,
    PCL,
    SCAN,
    DeepCluster,
    SimCLRKMeans,
)

__all__ = [
    "CC",
    "DCEC",
    "DEC",
    "ESTIMATORS",
    "IDEC",
    "IDFD",
    "PCL",
    "SCAN",
    "DeepCluster",
    "DeepClusteringEstimator",
    "SimCLRKMeans",
]
