"""Clustering metrics on hand-worked cases and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

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


def brute_force_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Best one-to-one matching by enumerating every injective map."""
    preds, trues = np.unique(y_pred), np.unique(y_true)
    best = 0
    if preds.size <= trues.size:
        for image in itertools.permutations(trues, preds.size):
            mapping = dict(zip(preds, image, strict=True))
            best = max(best, sum(mapping[p] == t for p, t in zip(y_pred, y_true, strict=True)))
    else:
        for image in itertools.permutations(preds, trues.size):
            mapping = dict(zip(image, trues, strict=True))
            best = max(
                best, sum(mapping.get(p, -1) == t for p, t in zip(y_pred, y_true, strict=True))
            )
    return best / y_true.size


def test_permuted_labels_score_one() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2, 3])
    y_pred = np.array([2, 2, 3, 3, 0, 0, 1])
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert nmi(y_true, y_pred) == pytest.approx(1.0)
    assert ari(y_true, y_pred) == pytest.approx(1.0)
    assert hungarian_mapping(y_true, y_pred) == {2: 0, 3: 1, 0: 2, 1: 3}


def test_worked_3x3_example() -> None:
    # Count matrix C[pred, true], worked by hand:
    #            true 0  true 1  true 2
    #   pred 0      3       4       0
    #   pred 1      0       1       5
    #   pred 2      4       0       1
    # Greedy (largest entry first) takes C[1,2]=5, then C[0,1]=4, then C[2,0]=4: 13.
    # The six permutations (true for pred 0,1,2) give:
    #   (0,1,2) 3+1+1=5   (0,2,1) 3+5+0=8   (1,0,2) 4+0+1=5
    #   (1,2,0) 4+5+4=13  (2,0,1) 0+0+0=0   (2,1,0) 0+1+4=5
    # so the optimum is pred0->1, pred1->2, pred2->0 with 13 of 18 samples: ACC = 13/18.
    # Majority vote per cluster: 4 + 5 + 4 = 13 as well.
    cells = {(0, 0): 3, (0, 1): 4, (1, 1): 1, (1, 2): 5, (2, 0): 4, (2, 2): 1}
    y_pred = np.concatenate([np.full(n, p) for (p, _), n in cells.items()])
    y_true = np.concatenate([np.full(n, t) for (_, t), n in cells.items()])
    expected = np.array([[3, 4, 0], [0, 1, 5], [4, 0, 1]])
    np.testing.assert_array_equal(count_matrix(y_true, y_pred), expected)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(13 / 18)
    assert hungarian_mapping(y_true, y_pred) == {0: 1, 1: 2, 2: 0}
    assert overcluster_accuracy(y_true, y_pred) == pytest.approx(13 / 18)


def test_collapsed_to_one_cluster_scores_largest_class_share() -> None:
    y_true = np.array([0] * 5 + [1] * 3 + [2] * 2)
    y_pred = np.zeros(10, dtype=int)
    assert count_matrix(y_true, y_pred).shape == (1, 3)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(0.5)
    assert nmi(y_true, y_pred) == pytest.approx(0.0)
    assert hungarian_mapping(y_true, y_pred) == {0: 0}
    result = evaluate_clustering(y_true, y_pred, num_clusters=3)
    assert result["acc"] == pytest.approx(0.5)
    assert result["clusters_used"] == 1
    assert result["cluster_sizes"] == [10, 0, 0]
    assert "acc_overcluster" not in result


def test_more_clusters_than_classes() -> None:
    # Each class split in two clusters: one-to-one matching keeps one half of each class,
    # majority vote keeps everything.
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 2, 2, 3, 3])
    assert count_matrix(y_true, y_pred).shape == (4, 2)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 8)
    assert overcluster_accuracy(y_true, y_pred) == 1.0
    mapping = hungarian_mapping(y_true, y_pred)
    # Clusters 2 and 3 tie for class 1; exactly one of them is matched.
    assert mapping[0] == 0
    assert len(mapping) == 2 and sorted(mapping.values()) == [0, 1]
    result = evaluate_clustering(y_true, y_pred, num_clusters=6)
    assert result["acc"] == pytest.approx(5 / 8)
    assert result["acc_overcluster"] == 1.0
    assert result["clusters_used"] == 4
    assert result["cluster_sizes"] == [3, 1, 2, 2, 0, 0]


def test_fewer_clusters_than_classes() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y_pred = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # Best: cluster 0 -> class 0 or 1 (2 correct), cluster 1 -> class 2 or 3 (2 correct).
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 8)
    assert brute_force_accuracy(y_true, y_pred) == pytest.approx(4 / 8)


def test_non_contiguous_label_ids() -> None:
    y_true = np.array([7, 7, 42, 42, 42, 3])
    y_pred = np.array([100, 100, 5, 5, 100, 9])
    # Rows: pred ids 5, 9, 100; columns: true ids 3, 7, 42.
    np.testing.assert_array_equal(count_matrix(y_true, y_pred), [[0, 0, 2], [1, 0, 0], [0, 2, 1]])
    assert hungarian_mapping(y_true, y_pred) == {5: 42, 9: 3, 100: 7}
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 6)


def test_unlabelled_samples_are_ignored() -> None:
    y_true = np.array([0, 0, 1, 1, -1, -1, -1])
    y_pred = np.array([1, 1, 0, 0, 0, 1, 2])
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert nmi(y_true, y_pred) == pytest.approx(1.0)
    assert ari(y_true, y_pred) == pytest.approx(1.0)
    result = evaluate_clustering(y_true, y_pred, num_clusters=3)
    assert result["acc"] == 1.0
    assert result["acc_overcluster"] == 1.0  # 3 clusters > 2 labelled classes
    assert result["cluster_sizes"] == [3, 3, 1]  # sizes count every sample
    only_unlabelled = evaluate_clustering(np.full(7, -1), y_pred, num_clusters=3)
    assert set(only_unlabelled) == {"clusters_used", "cluster_sizes"}


def test_without_labels_only_sizes() -> None:
    result = evaluate_clustering(None, torch.tensor([0, 2, 2]), num_clusters=4)
    assert result == {"clusters_used": 2, "cluster_sizes": [1, 0, 2, 0]}


def test_nmi_ari_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    assert nmi(y_true, y_pred) == pytest.approx(
        normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic")
    )
    assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred))


@pytest.mark.parametrize("seed", range(12))
def test_accuracy_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k_true, k_pred = rng.integers(1, 5), rng.integers(1, 6)
    n = int(rng.integers(5, 30))
    y_true = rng.integers(0, k_true, n) * 3 + 1  # non-contiguous ids
    y_pred = rng.integers(0, k_pred, n)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))
    assert overcluster_accuracy(y_true, y_pred) >= cluster_accuracy(y_true, y_pred)


def test_cluster_sizes_includes_empty_and_rejects_out_of_range() -> None:
    np.testing.assert_array_equal(cluster_sizes([1, 1, 3], 5), [0, 2, 0, 1, 0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cluster_sizes([0, 3], 3)


def test_mismatched_lengths_and_no_labels_raise() -> None:
    with pytest.raises(ValueError, match="labels"):
        cluster_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="no labelled samples"):
        cluster_accuracy([-1, -1], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        evaluate_clustering([-1, -1], [0, 1, 1], num_clusters=2)
