"""k-means on scikit-learn's kernel from faiss's initial centres, and the size rule that
picks it (`resolve_backend`)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from cluster_ssl.cluster import backend as backend_module
from cluster_ssl.cluster.backend import (
    SKLEARN_ANY_CLUSTERS_BELOW,
    SKLEARN_MAX_CLUSTERS,
    SKLEARN_MIN_SAMPLES,
    resolve_backend,
)
from cluster_ssl.cluster.features import as_float32_matrix
from cluster_ssl.cluster.kmeans import kmeans
from cluster_ssl.cluster.sklearn_backend import faiss_initial_rows
from cluster_ssl.runtime.errors import UserError


def overlapping(n: int = 600, k: int = 8, d: int = 6, seed: int = 0) -> np.ndarray:
    """Blobs that overlap, so where a run starts decides where it ends."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2.0
    return (centres[rng.integers(0, k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


# ---------------------------------------------------------------- the kernel


@pytest.mark.parametrize("seed", [0, 5, 2**31 - 2])
def test_the_initial_rows_are_the_ones_faiss_starts_from(seed: int) -> None:
    x = overlapping()
    start = kmeans(x, 8, n_init=1, n_iter=0, seed=seed, backend="faiss").centroids
    rows = faiss_initial_rows(len(x), 8, seed, restart=0)
    assert len(set(rows.tolist())) == 8
    np.testing.assert_array_equal(start, x[rows])


@pytest.mark.parametrize(
    ("n", "k", "seed"), [(1, 1, 0), (2, 2, 3), (10, 3, 5), (1000, 1000, 7), (70_000, 100, 2**31)]
)
def test_the_first_steps_of_faiss_s_shuffle_give_its_first_rows(n: int, k: int, seed: int) -> None:
    faiss = backend_module.require_faiss()
    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
    np.testing.assert_array_equal(faiss_initial_rows(n, k, seed - 1, restart=0), perm[:k])


def test_no_iterations_keep_faiss_s_start_and_assignment() -> None:
    x = overlapping()
    ours = kmeans(x, 8, n_init=1, n_iter=0, seed=3, backend="sklearn")
    reference = kmeans(x, 8, n_init=1, n_iter=0, seed=3, backend="faiss")
    np.testing.assert_array_equal(ours.centroids, reference.centroids)
    np.testing.assert_array_equal(ours.labels, reference.labels)
    assert ours.inertia == pytest.approx(reference.inertia, rel=1e-5)


@pytest.mark.parametrize("n_iter", [1, 3, 50])
@pytest.mark.parametrize("n_init", [1, 3])
def test_it_follows_faiss_s_lloyd_iterations_from_the_same_start(n_iter: int, n_init: int) -> None:
    """Same start, same Lloyd steps: the same partition and centres up to float rounding."""
    x = overlapping()
    ours = kmeans(x, 8, n_init=n_init, n_iter=n_iter, seed=11, backend="sklearn")
    reference = kmeans(x, 8, n_init=n_init, n_iter=n_iter, seed=11, backend="faiss")
    np.testing.assert_array_equal(ours.labels, reference.labels)
    np.testing.assert_allclose(ours.centroids, reference.centroids, atol=1e-4)
    assert ours.inertia == pytest.approx(reference.inertia, rel=1e-4)


def test_its_inertia_is_the_sum_of_squared_distances() -> None:
    x = overlapping()
    result = kmeans(x, 8, n_init=2, seed=1, backend="sklearn")
    dist2 = ((x[:, None, :] - result.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(result.labels, dist2.argmin(1))
    assert result.inertia == pytest.approx(float(dist2.min(1).sum()), rel=1e-4)


def test_the_finite_check_passes_finite_values_whose_sum_overflows() -> None:
    """The check reads one float32 sum first (cheaper than a mask): an overflow of
    finite values to inf must not read as a non-finite feature."""
    x = overlapping()
    x[:2] = np.finfo(np.float32).max / 2
    assert as_float32_matrix(x) is x
    x[5, 1] = np.nan
    with pytest.raises(UserError, match="NaN or inf in 1 of 600 rows"):
        as_float32_matrix(x)


def test_sklearn_is_refused_for_spherical_k_means_and_for_knn() -> None:
    x = overlapping()
    with pytest.raises(ValueError, match="plain"):
        kmeans(x, 4, spherical=True, backend="sklearn")
    with pytest.raises(ValueError, match="plain"):
        resolve_backend("sklearn", x)


# ---------------------------------------------------------------- the size rule


def features(n: int) -> np.ndarray:
    """n rows; the rule reads only their number."""
    return np.zeros((n, 2), dtype=np.float32)


def test_auto_takes_sklearn_for_many_samples_and_few_clusters() -> None:
    big = features(SKLEARN_MIN_SAMPLES)
    assert resolve_backend("auto", big, clusters=SKLEARN_MAX_CLUSTERS) == "sklearn"
    assert resolve_backend("auto", torch.from_numpy(big), clusters=2) == "sklearn"
    # many clusters: scikit-learn's below SKLEARN_ANY_CLUSTERS_BELOW samples, then faiss's
    assert resolve_backend("auto", big, clusters=1000) == "sklearn"
    larger = features(SKLEARN_ANY_CLUSTERS_BELOW)
    assert resolve_backend("auto", larger, clusters=SKLEARN_MAX_CLUSTERS) == "sklearn"
    assert resolve_backend("auto", larger, clusters=SKLEARN_MAX_CLUSTERS + 1) == "faiss"
    assert resolve_backend("auto", big, clusters=2, spherical=True) == "faiss"
    assert resolve_backend("auto", big) == "faiss"  # kNN, assignment
    small = features(SKLEARN_MIN_SAMPLES - 1)  # digits-sized runs keep faiss's numbers
    assert resolve_backend("auto", small, clusters=10) == "faiss"
    for explicit in ("faiss", "torch"):
        assert resolve_backend(explicit, big, clusters=10) == explicit
    assert resolve_backend("sklearn", small, clusters=10) == "sklearn"


def test_auto_keeps_faiss_where_faiss_has_a_gpu(monkeypatch) -> None:
    faiss = backend_module.import_faiss()
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    big = features(SKLEARN_MIN_SAMPLES)
    assert resolve_backend("auto", big, clusters=10) == "faiss"
    assert resolve_backend("auto", big, use_gpu=False, clusters=10) == "sklearn"


def test_without_faiss_auto_is_torch_and_sklearn_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    big = features(SKLEARN_MIN_SAMPLES)
    assert resolve_backend("auto", big, clusters=10) == "torch"
    with pytest.raises(UserError, match="faiss is not installed"):
        resolve_backend("sklearn", big, clusters=10)


def test_auto_runs_the_rule_s_choice(monkeypatch) -> None:
    """At the rule's size, auto gives exactly what backend='sklearn' gives."""
    x = overlapping(n=SKLEARN_MIN_SAMPLES, k=10, d=4)
    auto = kmeans(x, 10, n_init=2, n_iter=5, seed=2)
    explicit = kmeans(x, 10, n_init=2, n_iter=5, seed=2, backend="sklearn")
    np.testing.assert_array_equal(auto.centroids, explicit.centroids)
    np.testing.assert_array_equal(auto.labels, explicit.labels)
