"""ProPos's E-step k-means (cluster/cosine_kmeans.py) against a float64 loop written from
torch_clustering's ``PyTorchKMeans.fit_predict`` (metric cosine) started from the same
seeds; its plain-mean centres, zero centres for empty clusters, stopping rules, and the
PCL E-step that uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cluster_ssl.cluster import cosine_kmeans as module
from cluster_ssl.cluster.cosine_kmeans import cosine_kmeans, most_similar_centres
from cluster_ssl.cluster.prototypes import concentration, estimate_prototypes
from cluster_ssl.eval.metrics import cluster_accuracy


def reference(x: np.ndarray, seeds: np.ndarray, max_iter: int, tol: float):
    """One restart of torch_clustering's loop, element by element in float64: centres the
    members' means (zero when empty), assignment by the largest cosine, the lowest-inertia
    state of any iteration kept, stop on a repeated assignment or a centre shift within
    tol * mean(var(x))."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n, d = x.shape
    k = len(seeds)
    threshold = tol * np.mean(np.var(x, axis=0, ddof=1))

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        na, nb = math.sqrt(a @ a), math.sqrt(b @ b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)

    def predict(centres):
        labels, inertia = [], 0.0
        for i in range(n):
            distances = [1.0 - cos(x[i], centres[j]) for j in range(k)]
            labels.append(int(np.argmin(distances)))
            inertia += min(distances)
        return np.array(labels), inertia

    state = x[seeds].copy()
    labels, _ = predict(state)
    best = (None, None, math.inf)
    for _ in range(max_iter):
        new_state = np.zeros((k, d))
        for j in range(k):
            members = x[labels == j]
            if len(members):
                new_state[j] = members.sum(axis=0) / len(members)
        new_labels, inertia = predict(new_state)
        if inertia < best[2]:
            best = (new_state, new_labels, inertia)
        shift = sum(1.0 - cos(state[j], new_state[j]) for j in range(k))
        stop = np.array_equal(new_labels, labels) or shift <= threshold
        state, labels = new_state, new_labels
        if stop:
            break
    return best


def blobs(n_per: int, k: int, d: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    x = rng.standard_normal((k, d))[y] * 3.0 + spread * rng.standard_normal((k * n_per, d))
    return x.astype(np.float32), y


@pytest.mark.parametrize(("max_iter", "tol"), [(300, 1e-4), (2, 1e-4), (300, 50.0)])
def test_matches_torch_clusterings_loop_from_the_same_seeds(monkeypatch, max_iter, tol) -> None:
    x, _ = blobs(n_per=15, k=4, d=6, spread=2.5, seed=1)  # overlapping: several iterations
    seeds = np.array([0, 1, 2, 3, 4])  # five seeds in one blob: the loop has work to do
    monkeypatch.setattr(module, "kmeans_plus_plus_seeds", lambda *args: torch.from_numpy(seeds))
    ours = cosine_kmeans(x, 5, n_init=1, max_iter=max_iter, tol=tol)
    centres, labels, inertia = reference(x.astype(np.float64), seeds, max_iter, tol)
    np.testing.assert_array_equal(ours.labels, labels)
    np.testing.assert_allclose(ours.centroids, centres, atol=1e-5)
    assert ours.inertia == pytest.approx(inertia, rel=1e-5)


def test_centres_are_the_plain_means_of_their_members() -> None:
    x, y = blobs(n_per=20, k=3, d=8, spread=0.3, seed=0)
    result = cosine_kmeans(x, 3, seed=0)
    assert cluster_accuracy(y, result.labels) == 1.0
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for j in range(3):  # converged: the kept centres are the means of the kept assignment
        np.testing.assert_allclose(result.centroids[j], unit[result.labels == j].mean(0), atol=1e-6)
    norms = np.linalg.norm(result.centroids, axis=1)
    assert (norms < 1.0).all() and (norms > 0.9).all()  # means of unit rows, not unit
    again = cosine_kmeans(torch.from_numpy(x), 3, seed=0)  # seeded, numpy or torch
    np.testing.assert_array_equal(again.labels, result.labels)


def test_more_restarts_never_end_higher() -> None:
    x, _ = blobs(n_per=10, k=6, d=4, spread=1.5, seed=2)
    inertias = [cosine_kmeans(x, 6, n_init=n, seed=3).inertia for n in (1, 3, 10)]
    assert inertias[0] >= inertias[1] >= inertias[2]


def test_a_zero_centre_is_at_cosine_distance_one() -> None:
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.1]]), dim=1)
    centres = torch.tensor([[0.0, 0.0], [0.5, 0.0]])
    labels, distances = most_similar_centres(x, centres)
    # the second row's cosine to [0.5, 0] is negative: the zero centre (similarity 0) wins
    assert labels.tolist() == [1, 0]
    torch.testing.assert_close(distances, torch.tensor([0.0, 1.0]))


def test_bad_sizes_are_errors() -> None:
    x, _ = blobs(n_per=2, k=2, d=3, spread=0.1, seed=0)
    with pytest.raises(ValueError, match="k <= 4"):
        cosine_kmeans(x, 5)
    with pytest.raises(ValueError, match="n_init=0"):
        cosine_kmeans(x, 2, n_init=0)
    with pytest.raises(ValueError, match="max_iter=0"):
        cosine_kmeans(x, 2, max_iter=0)


def test_propos_estep_keeps_plain_mean_prototypes_and_their_distances() -> None:
    x, y = blobs(n_per=20, k=3, d=8, spread=0.3, seed=0)
    (clustering,) = estimate_prototypes(x, (3,), 0.2, seed=4, kmeans_style="propos")
    expected = cosine_kmeans(x, 3, seed=4)
    np.testing.assert_array_equal(clustering.assignments, expected.labels)
    np.testing.assert_array_equal(clustering.centroids, expected.centroids)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    distances = np.linalg.norm(unit - expected.centroids[expected.labels], axis=1)
    np.testing.assert_allclose(
        clustering.concentration, concentration(distances, expected.labels, 3, 0.2), rtol=1e-5
    )
    with pytest.raises(ValueError, match="kmeans_style"):
        estimate_prototypes(x, (3,), 0.2, kmeans_style="faiss")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_cosine_kmeans_matches_the_cpu_and_repeats_exactly() -> None:
    x, y = blobs(n_per=40, k=5, d=16, spread=0.5, seed=6)
    cpu = cosine_kmeans(x, 5, seed=0)
    first = cosine_kmeans(torch.from_numpy(x).cuda(), 5, seed=0)
    second = cosine_kmeans(torch.from_numpy(x).cuda(), 5, seed=0)
    assert cluster_accuracy(y, first.labels) == 1.0
    np.testing.assert_array_equal(first.labels, cpu.labels)
    np.testing.assert_allclose(first.centroids, cpu.centroids, atol=1e-5)
    np.testing.assert_array_equal(first.centroids, second.centroids)
