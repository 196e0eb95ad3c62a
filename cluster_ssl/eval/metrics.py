"""Clustering metrics: ACC (Hungarian), overclustering ACC, NMI, ARI, cluster sizes.

The one place metrics are computed. Conventions shared by every function here:

- ``y_true`` and ``y_pred`` are 1-D integer sequences (numpy arrays, lists or torch tensors)
  of the same length. Label ids may be arbitrary integers, not necessarily contiguous
  (``{3, 7, 42}`` is fine); they are relabelled internally.
- A negative ground-truth label (``-1``, as in STL-10's unlabelled split) marks an unlabelled
  sample: it is ignored by ACC, NMI and ARI.

ACC is computed on an explicit K_pred x K_true count matrix with
``scipy.optimize.linear_sum_assignment``, which accepts rectangular matrices, so a run that
collapsed to fewer clusters than there are classes (or one with more) still evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

Labels = np.ndarray | torch.Tensor | Sequence[int]


def _as_labels(labels: Labels, name: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _labelled(y_true: Labels, y_pred: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate both label vectors and drop the samples whose ground truth is negative."""
    true = _as_labels(y_true, "y_true")
    pred = _as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    keep = true >= 0
    if not keep.any():
        raise ValueError("no labelled samples (every ground-truth label is negative)")
    return true[keep], pred[keep]


def _contingency(y_true: Labels, y_pred: Labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count matrix plus the original label ids of its rows (pred) and columns (true)."""
    true, pred = _labelled(y_true, y_pred)
    true_ids, true_idx = np.unique(true, return_inverse=True)
    pred_ids, pred_idx = np.unique(pred, return_inverse=True)
    counts = np.zeros((pred_ids.size, true_ids.size), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    return counts, pred_ids, true_ids


def count_matrix(y_true: Labels, y_pred: Labels) -> np.ndarray:
    """K_pred x K_true matrix C with C[a, b] = #samples in predicted cluster a and class b.

    Rows follow the sorted distinct predicted ids, columns the sorted distinct true ids
    (among labelled samples); ids need not be contiguous.
    """
    return _contingency(y_true, y_pred)[0]


def hungarian_mapping(y_true: Labels, y_pred: Labels) -> dict[int, int]:
    """One-to-one cluster -> class mapping maximising the number of matched samples.

    Solves max_m sum_a C[a, m(a)] over injective m with ``linear_sum_assignment`` on the
    rectangular count matrix. When there are more clusters than classes, the clusters left
    unmatched are absent from the returned dict.
    """
    counts, pred_ids, true_ids = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(pred_ids[r]): int(true_ids[c]) for r, c in zip(rows, cols, strict=True)}


def cluster_accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Unsupervised clustering accuracy, as reported by DEC and the later papers.

    ACC = max_m (1/n) sum_i 1{y_i = m(c_i)}, m ranging over one-to-one cluster -> class maps.

    Works for any K_pred vs K_true: a run collapsed to one cluster scores the share of the
    largest class; with more clusters than classes the surplus clusters count as wrong.
    """
    counts = count_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def overcluster_accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Accuracy when each cluster maps to its majority class (many-to-one).

    ACC_over = (1/n) sum_a max_b C[a, b]. Meant for overclustering (more clusters than
    classes); it is never below :func:`cluster_accuracy`.
    """
    counts = count_matrix(y_true, y_pred)
    return float(counts.max(axis=1).sum() / counts.sum())


def nmi(y_true: Labels, y_pred: Labels) -> float:
    """Normalised mutual information, I(Y; C) / ((H(Y) + H(C)) / 2) (arithmetic mean)."""
    true, pred = _labelled(y_true, y_pred)
    return float(normalized_mutual_info_score(true, pred, average_method="arithmetic"))


def ari(y_true: Labels, y_pred: Labels) -> float:
    """Adjusted Rand index (sklearn ``adjusted_rand_score``)."""
    true, pred = _labelled(y_true, y_pred)
    return float(adjusted_rand_score(true, pred))


def cluster_sizes(y_pred: Labels, k: int) -> np.ndarray:
    """Histogram of length ``k`` of cluster ids in [0, k), empty clusters included."""
    pred = _as_labels(y_pred, "y_pred")
    if pred.size and (pred.min() < 0 or pred.max() >= k):
        raise ValueError(f"cluster ids must lie in [0, {k}), got [{pred.min()}, {pred.max()}]")
    return np.bincount(pred, minlength=k)


def evaluate_clustering(y_true: Labels | None, y_pred: Labels, num_clusters: int) -> dict[str, Any]:
    """Every clustering number a run reports.

    Always: ``clusters_used`` (number of non-empty clusters) and ``cluster_sizes`` (list of
    length ``num_clusters``), over all samples. When ``y_true`` is given and has labelled
    samples: ``acc`` (one-to-one Hungarian), ``nmi``, ``ari``, and, when ``num_clusters``
    exceeds the number of classes, ``acc_overcluster`` (majority vote per cluster).
    Unlabelled samples (negative ``y_true``) are ignored for acc / nmi / ari.
    """
    sizes = cluster_sizes(y_pred, num_clusters)
    result: dict[str, Any] = {
        "clusters_used": int((sizes > 0).sum()),
        "cluster_sizes": sizes.tolist(),
    }
    if y_true is None:
        return result
    true = _as_labels(y_true, "y_true")
    if true.size != int(sizes.sum()):
        raise ValueError(f"y_true has {true.size} labels but y_pred has {int(sizes.sum())}")
    if not (true >= 0).any():
        return result
    result["acc"] = cluster_accuracy(true, y_pred)
    result["nmi"] = nmi(true, y_pred)
    result["ari"] = ari(true, y_pred)
    if num_clusters > np.unique(true[true >= 0]).size:
        result["acc_overcluster"] = overcluster_accuracy(true, y_pred)
    return result
