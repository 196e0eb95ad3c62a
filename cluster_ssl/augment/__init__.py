"""Batched augmentation pipelines on the training device (see :func:`build_pipeline`)."""

from cluster_ssl.augment.pipelines import PIPELINES, Pipeline, TwoViews, build_pipeline
from cluster_ssl.augment.stats import dataset_stats

__all__ = ["PIPELINES", "Pipeline", "TwoViews", "build_pipeline", "dataset_stats"]
