"""Clusters matched to classes: the confusion matrix and per-class accuracy of a report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster_ssl.eval.metrics import hungarian_mapping


@dataclass
class Confusion:
    """``counts[i, j]``: images of class ``classes[i]`` in cluster ``clusters[j]``.

    Clusters are ordered by the class the one-to-one (Hungarian) matching gives them, so a
    good clustering shows a heavy diagonal; clusters matched to no class come last.
    ``per_class[i]`` is the fraction of class i found in its matched cluster (0 without one).
    """

    classes: list[str]
    clusters: list[int]
    counts: np.ndarray
    per_class: list[float]


def confusion(
    y_true: np.ndarray, y_pred: np.ndarray, num_clusters: int, class_names: list[str] | None
) -> Confusion:
    labelled = y_true >= 0
    true, pred = y_true[labelled], y_pred[labelled]
    class_ids = np.unique(true)
    mapping = hungarian_mapping(true, pred)  # cluster -> class
    cluster_of = {cls: cluster for cluster, cls in mapping.items()}
    matched = [cluster_of[c] for c in class_ids if c in cluster_of]
    clusters = matched + [c for c in range(num_clusters) if c not in matched]
    counts = np.zeros((len(class_ids), len(clusters)), dtype=np.int64)
    column = {cluster: j for j, cluster in enumerate(clusters)}
    row = {cls: i for i, cls in enumerate(class_ids)}
    np.add.at(counts, ([row[t] for t in true], [column[p] for p in pred]), 1)
    per_class = []
    for i, cls in enumerate(class_ids):
        cluster = cluster_of.get(int(cls))
        hits = counts[i, column[cluster]] if cluster is not None else 0
        per_class.append(float(hits / counts[i].sum()))
    names = [class_names[c] if class_names else str(c) for c in class_ids]
    return Confusion(names, clusters, counts, per_class)
