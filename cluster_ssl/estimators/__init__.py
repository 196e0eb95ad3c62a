"""scikit-learn estimators, one per recipe that declares one: ``DEC(n_clusters=10).fit_predict(X)``.

``ESTIMATORS`` lists them; each is importable by its name (``from cluster_ssl.estimators
import IDEC``).
"""

from typing import Any

from cluster_ssl.estimators.base import DeepClusteringEstimator
from cluster_ssl.estimators.methods import ESTIMATORS

NAMES = [cls.__name__ for cls in ESTIMATORS]
__all__ = ["ESTIMATORS", "DeepClusteringEstimator", *NAMES]


def __getattr__(name: str) -> Any:
    for cls in ESTIMATORS:
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module 'cluster_ssl.estimators' has no attribute {name!r}")
