"""k-means and kNN, on every backend (faiss, torch; scikit-learn's kernel for k-means),
against brute force numpy and on well-separated blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster_ssl.cluster.kmeans import KMeansResult, assign, kmeans
from cluster_ssl.cluster.knn import ivf_index, knn, resolve_use_gpu
from cluster_ssl.eval.metrics import cluster_accuracy
from cluster_ssl.runtime.errors import UserError

both_backends = pytest.mark.parametrize("backend", ["faiss", "torch"])
kmeans_backends = pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])


def blobs(
    n_per: int = 50, k: int = 4, d: int = 8, spread: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """k gaussian blobs with centres 10 apart on the axes and small spread."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(k, d)
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + spread * rng.standard_normal((k * n_per, d))
    order = rng.permutation(y.size)
    return x[order].astype(np.float32), y[order]


# ---------------------------------------------------------------- k-means


@kmeans_backends
def test_kmeans_recovers_blobs(backend: str) -> None:
    x, y = blobs()
    result = kmeans(x, 4, n_init=5, seed=0, backend=backend)
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (4, 8) and result.centroids.dtype == np.float32
    assert result.labels.shape == (200,) and result.labels.dtype == np.int64
    assert cluster_accuracy(y, result.labels) == 1.0
    dist2 = ((x[:, None, :] - result.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(result.labels, dist2.argmin(1))
    assert result.inertia == pytest.approx(dist2.min(1).sum(), rel=1e-4)


@kmeans_backends
def test_kmeans_same_seed_identical_result_and_torch_input(backend: str) -> None:
    x, _ = blobs(n_per=40, k=6, d=5, spread=3.0, seed=1)  # overlapping: init matters
    first = kmeans(x, 6, n_init=3, seed=7, backend=backend)
    second = kmeans(torch.from_numpy(x.astype(np.float64)), 6, n_init=3, seed=7, backend=backend)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.inertia == second.inertia


@kmeans_backends
def test_kmeans_takes_seeds_beyond_a_c_int(backend: str) -> None:
    """faiss's seed is a C int; larger seeds (numpy allows up to 2**32 - 1) are folded."""
    x, _ = blobs(n_per=40, k=6, d=5, spread=3.0, seed=1)
    folded = kmeans(x, 6, n_init=3, seed=2**31 + 7, backend=backend)
    expected = kmeans(x, 6, n_init=3, seed=7, backend=backend)
    np.testing.assert_array_equal(folded.labels, expected.labels)


@kmeans_backends
def test_kmeans_k_equals_n_and_one_cluster(backend: str) -> None:
    x, _ = blobs(n_per=3, k=2, d=3)
    assert kmeans(x, 6, n_init=1, backend=backend).inertia == pytest.approx(0.0, abs=1e-4)
    single = kmeans(x, 1, n_init=1, backend=backend)
    np.testing.assert_allclose(single.centroids[0], x.mean(0), atol=1e-5)
    assert (single.labels == 0).all()


@both_backends
def test_kmeans_spherical_unit_centroids(backend: str) -> None:
    x, y = blobs(spread=0.5)
    result = kmeans(3.0 * x, 4, n_init=2, spherical=True, backend=backend)
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    assert cluster_accuracy(y, result.labels) == 1.0


@kmeans_backends
def test_kmeans_user_errors(backend: str) -> None:
    x, _ = blobs(n_per=2, k=2)
    with pytest.raises(UserError, match=r"k=5 is larger than the number of samples \(4\)"):
        kmeans(x, 5, backend=backend)
    with pytest.raises(UserError, match="num_clusters"):
        kmeans(x, 0, backend=backend)
    x[1, 2] = np.nan
    with pytest.raises(UserError, match="NaN"):
        kmeans(x, 2, backend=backend)


@both_backends
def test_assign_nearest_centroid(backend: str) -> None:
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.tensor([[9.0, 1.0], [1.0, 1.0], [-1.0, 8.0]])
    np.testing.assert_array_equal(assign(x, centroids, backend=backend), [1, 0, 2])
    with pytest.raises(ValueError, match="d=2"):
        assign(x, np.zeros((3, 4)), backend=backend)


def test_gpu_request_without_gpu_is_a_user_error() -> None:
    if resolve_use_gpu(None):
        pytest.skip("faiss sees a GPU here")
    with pytest.raises(UserError, match="GPU"):
        knn(np.zeros((4, 2), np.float32), 1, use_gpu=True)


# ---------------------------------------------------------------- kNN


def brute_force_knn(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if metric == "l2":
        scores = ((x[:, None, :] - x[None]) ** 2).sum(-1)
        np.fill_diagonal(scores, np.inf)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = x @ x.T
        np.fill_diagonal(scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@both_backends
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_knn_matches_brute_force(metric: str, backend: str) -> None:
    x = np.random.default_rng(0).standard_normal((150, 6)).astype(np.float32)
    # several chunks, the last partial
    scores, indices = knn(x, 5, metric=metric, chunk_size=32, backend=backend)
    expected_scores, expected_indices = brute_force_knn(x, 5, metric)
    assert scores.shape == (150, 5) and scores.dtype == np.float32
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)


@both_backends
def test_knn_include_self(backend: str) -> None:
    x = np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32)
    scores, indices = knn(x, 3, metric="l2", exclude_self=False, backend=backend)
    np.testing.assert_array_equal(indices[:, 0], np.arange(20))
    np.testing.assert_allclose(scores[:, 0], 0.0, atol=1e-5)
    assert knn(x, 20, exclude_self=False, backend=backend)[1].shape == (20, 20)


@both_backends
def test_knn_neighbours_share_blob(backend: str) -> None:
    x, y = blobs(n_per=30, k=3, d=4, spread=0.5)
    _, indices = knn(torch.from_numpy(x), 10, backend=backend)
    assert (y[indices] == y[:, None]).all()
    assert not (indices == np.arange(x.shape[0])[:, None]).any()


@both_backends
def test_knn_exclude_self_with_duplicates(backend: str) -> None:
    # Ten identical points: the query itself may rank anywhere among its ties, or not be
    # returned at all; each row must still hold k distinct other points.
    x = np.zeros((10, 3), np.float32)
    x[:, 0] = 1.0
    _, indices = knn(x, 4, metric="l2", backend=backend)
    assert indices.shape == (10, 4)
    for i, row in enumerate(indices):
        assert i not in row and len(set(row.tolist())) == 4


@both_backends
def test_knn_k_too_large_is_a_user_error(backend: str) -> None:
    x = np.ones((5, 2), np.float32)
    with pytest.raises(UserError, match="k=5"):
        knn(x, 5, backend=backend)
    with pytest.raises(UserError, match="k=0"):
        knn(x, 0, backend=backend)


def test_approximate_search_finds_the_exact_neighbours_on_clustered_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16)) * 4
    x = (centres[rng.integers(0, 8, 4000)] + rng.normal(size=(4000, 16))).astype(np.float32)
    _, exact = knn(x, 10)
    _, approx = knn(x, 10, approximate=True)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact, strict=True)])
    assert recall > 0.97
    assert not (approx == np.arange(4000)[:, None]).any()


def test_rows_an_inverted_file_cannot_fill_are_searched_exactly():
    # 400 points in 20 lists, 8 probed (about 160 points): too few for 300 neighbours
    x = np.random.default_rng(1).normal(size=(400, 4)).astype(np.float32)
    _, raw = ivf_index(x, inner_product=False).search(x, 301)
    short = (raw < 0).any(axis=1)
    assert short.any()  # the plain IVF search leaves holes in these rows
    _, approx = knn(x, 300, metric="l2", approximate=True)
    _, exact = knn(x, 300, metric="l2")
    assert (approx >= 0).all()
    assert np.array_equal(approx[short], exact[short])


def test_an_approximate_search_widens_its_probes_until_it_finds_99_percent():
    """Uniform points in 32-d are hard for an inverted file: at its first probes it misses
    many neighbours; the probes widen until the measured recall is at least 0.99."""
    pytest.importorskip("faiss")
    from cluster_ssl.cluster.knn import MIN_RECALL

    x = np.random.default_rng(0).normal(size=(6000, 32)).astype(np.float32)
    stats: dict[str, float] = {}
    _, approximate = knn(x, 10, approximate=True, stats=stats, backend="faiss")
    _, exact = knn(x, 10, backend="faiss")
    assert stats["recall"] >= MIN_RECALL and stats["probes"] > 8  # it had to widen
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate, exact, strict=True)])
    assert found >= 0.98  # the sample's recall holds for every query
    exact_stats: dict[str, float] = {}
    knn(x, 10, stats=exact_stats, backend="faiss")
    assert exact_stats == {"recall": 1.0}
