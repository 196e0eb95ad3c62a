"""The torch backend of k-means and kNN against the faiss path, the backend choice, and the
package without faiss. CUDA tests run only where torch sees a GPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cluster_ssl.cluster import backend as backend_module
from cluster_ssl.cluster import torch_backend
from cluster_ssl.cluster.backend import resolve_backend, torch_device
from cluster_ssl.cluster.kmeans import assign, kmeans
from cluster_ssl.cluster.knn import faiss_num_gpus, knn
from cluster_ssl.runtime.errors import UserError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def separated(
    n: int = 600, k: int = 6, d: int = 16, spread: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """n points around k random centres (N(0, 100) coordinates), Gaussian noise of std
    ``spread``: well separated at the default spread."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    y = rng.integers(0, k, n)
    x = centres[y] + spread * rng.normal(size=(n, d))
    return x.astype(np.float32), y


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings group the samples identically (labels permuted)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def true_scores(x: np.ndarray, indices: np.ndarray, metric: str) -> np.ndarray:
    """float64 score of each row of ``x`` against its listed neighbours."""
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    neighbours = x[indices]  # (N, k, d)
    if metric == "l2":
        return ((x[:, None, :] - neighbours) ** 2).sum(-1)
    return (x[:, None, :] * neighbours).sum(-1)


def assert_same_neighbours(
    x: np.ndarray, expected: np.ndarray, got: np.ndarray, metric: str, tol: float = 1e-5
) -> None:
    """Identical neighbour lists, except where two candidates tie to within ``tol``."""
    differ = expected != got
    assert differ.mean() < 0.01
    if differ.any():
        exact_expected = true_scores(x, expected, metric)[differ]
        exact_got = true_scores(x, got, metric)[differ]
        scale = max(1.0, float(np.abs(exact_expected).max()))
        np.testing.assert_allclose(exact_got, exact_expected, atol=tol * scale, rtol=0)


# ---------------------------------------------------------------- agreement with faiss


@pytest.mark.parametrize("spherical", [False, True])
def test_torch_kmeans_finds_the_faiss_partition(spherical: bool) -> None:
    x, y = separated()
    reference = kmeans(x, 6, n_init=10, seed=0, spherical=spherical, backend="faiss")
    result = kmeans(x, 6, n_init=3, seed=0, spherical=spherical, backend="torch")
    assert same_partition(reference.labels, y)  # the reference itself found the blobs
    assert same_partition(result.labels, reference.labels)
    assert result.inertia == pytest.approx(reference.inertia, rel=1e-4)
    assert result.centroids.dtype == np.float32 and result.centroids.shape == (6, 16)
    assert result.labels.dtype == np.int64
    if spherical:
        np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)


def test_torch_kmeans_labels_and_inertia_are_the_nearest_centroids() -> None:
    x, _ = separated(spread=6.0, seed=3)  # overlapping: many iterations, uneven clusters
    result = kmeans(x, 6, n_init=2, n_iter=7, seed=1, backend="torch")
    dist2 = ((x[:, None, :].astype(np.float64) - result.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(result.labels, dist2.argmin(1))
    assert result.inertia == pytest.approx(dist2.min(1).sum(), rel=1e-5)
    np.testing.assert_array_equal(assign(x, result.centroids, backend="torch"), result.labels)
    np.testing.assert_array_equal(assign(x, result.centroids, backend="faiss"), result.labels)


def test_assignment_in_several_blocks_matches_one(monkeypatch) -> None:
    x, _ = separated(spread=4.0, seed=2)
    whole = kmeans(x, 6, n_init=1, seed=4, backend="torch")
    monkeypatch.setattr(torch_backend, "CPU_BLOCK_ELEMENTS", 6 * 50)  # 50 rows per block
    blocked = kmeans(x, 6, n_init=1, seed=4, backend="torch")
    np.testing.assert_array_equal(blocked.labels, whole.labels)
    np.testing.assert_allclose(blocked.centroids, whole.centroids, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_torch_knn_matches_faiss_exact_search(monkeypatch, metric: str, exclude_self) -> None:
    x, _ = separated(n=700, d=12, spread=3.0, seed=5)
    expected_scores, expected = knn(
        x, 20, metric=metric, exclude_self=exclude_self, backend="faiss"
    )
    # tiles of 16 queries x 64 rows: several tiles per query, merged along the way
    monkeypatch.setattr(torch_backend, "CPU_BLOCK_ELEMENTS", 1024)
    scores, indices = knn(x, 20, metric=metric, exclude_self=exclude_self, backend="torch")
    assert scores.shape == indices.shape == (700, 20)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert_same_neighbours(x, expected, indices, metric)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-3)
    if exclude_self:
        assert not (indices == np.arange(700)[:, None]).any()
    elif metric != "ip":  # a sample is its own nearest neighbour (not so for raw ip)
        np.testing.assert_array_equal(indices[:, 0], np.arange(700))


def test_torch_knn_tiles_do_not_change_the_result(monkeypatch) -> None:
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    one_tile = knn(x, 7, metric="l2", backend="torch")
    monkeypatch.setattr(torch_backend, "CPU_BLOCK_ELEMENTS", 256)  # 8 queries x 32 rows
    many = knn(x, 7, metric="l2", backend="torch", chunk_size=5)
    np.testing.assert_array_equal(many[1], one_tile[1])
    np.testing.assert_allclose(many[0], one_tile[0], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- k-means details


def test_restarts_keep_the_lowest_inertia() -> None:
    x, _ = separated(spread=8.0, seed=6)  # overlapping clusters: restarts differ
    tensor = torch.from_numpy(x)
    singles = [
        torch_backend.lloyd(tensor, 6, 300, torch.Generator().manual_seed(11 + r)) for r in range(4)
    ]
    assert len({round(run.inertia, 3) for run in singles}) > 1
    best = min(singles, key=lambda run: run.inertia)
    result = kmeans(x, 6, n_init=4, seed=11, backend="torch")
    assert result.inertia == best.inertia
    np.testing.assert_array_equal(result.centroids, best.centroids.numpy())
    np.testing.assert_array_equal(result.labels, best.labels.numpy())


def test_torch_kmeans_is_deterministic_for_a_seed() -> None:
    x, _ = separated(spread=8.0, seed=7)
    first = kmeans(x, 6, n_init=3, seed=5, backend="torch")
    second = kmeans(torch.from_numpy(x.astype(np.float64)), 6, n_init=3, seed=5, backend="torch")
    np.testing.assert_array_equal(first.centroids, second.centroids)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.inertia == second.inertia
    folded = kmeans(x, 6, n_init=3, seed=2**31 + 5, backend="torch")  # as faiss folds seeds
    np.testing.assert_array_equal(folded.centroids, first.centroids)


def test_converged_restart_stops_early_and_n_iter_bounds_the_updates() -> None:
    x, _ = separated()
    tensor = torch.from_numpy(x)
    converged = torch_backend.lloyd(tensor, 6, 300, torch.Generator().manual_seed(0))
    assert 1 <= converged.iterations < 300
    capped = torch_backend.lloyd(tensor, 6, 1, torch.Generator().manual_seed(0))
    assert capped.iterations == 1
    seeds_only = torch_backend.lloyd(tensor, 6, 0, torch.Generator().manual_seed(0))
    assert seeds_only.iterations == 0


def test_kmeans_plus_plus_seeds_are_distinct_points_one_per_blob() -> None:
    x, y = separated(k=6, spread=0.1)
    tensor = torch.from_numpy(x)
    chosen = torch_backend.kmeans_plus_plus_seeds(
        tensor, torch_backend.squared_norms(tensor), 6, torch.Generator().manual_seed(3)
    )
    assert sorted(y[chosen.numpy()].tolist()) == list(range(6))


def test_seeding_with_fewer_distinct_points_than_k_draws_uniformly() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    chosen = torch_backend.kmeans_plus_plus_seeds(
        x, torch_backend.squared_norms(x), 4, torch.Generator().manual_seed(0)
    )
    assert ((chosen >= 0) & (chosen < 4)).all()


def test_an_empty_cluster_is_split_off_a_populated_one(monkeypatch) -> None:
    """Two seeds on the same sample: the second centre gets nothing in the first assignment
    and is re-seeded by faiss's split rule, so the result still has k populated clusters."""
    x, y = separated(k=2, spread=0.5, seed=8)
    two = kmeans(x, 2, n_init=1, seed=0, backend="torch")
    splits = []
    original = torch_backend._split_empty_clusters

    def recording(centroids, counts, generator):
        splits.append(int((counts == 0).sum()))
        return original(centroids, counts, generator)

    monkeypatch.setattr(torch_backend, "_split_empty_clusters", recording)
    first = int(np.flatnonzero(y == 0)[0])
    other = int(np.flatnonzero(y == 1)[0])
    seeds = torch.tensor([first, first, other])
    monkeypatch.setattr(torch_backend, "kmeans_plus_plus_seeds", lambda *args: seeds)
    result = kmeans(x, 3, n_init=1, seed=0, backend="torch")
    assert splits and splits[0] == 1
    assert np.bincount(result.labels, minlength=3).min() > 0
    assert result.inertia < two.inertia


def test_split_rule_matches_faiss() -> None:
    centroids = torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 8.0], [1.0, 1.0, 1.0]])
    counts = torch.tensor([0, 5, 1])  # only cluster 1 has a member to spare
    torch_backend._split_empty_clusters(centroids, counts, torch.Generator().manual_seed(0))
    eps = torch_backend.SPLIT_EPS
    signs = torch.tensor([1.0, -1.0, 1.0])
    base = torch.tensor([2.0, 4.0, 8.0])
    torch.testing.assert_close(centroids[0], base * (1 + eps * signs))
    torch.testing.assert_close(centroids[1], base * (1 - eps * signs))
    torch.testing.assert_close(centroids[2], torch.tensor([1.0, 1.0, 1.0]))


def test_sorted_sums_used_off_the_cpu_equal_index_add() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 7, generator=generator)
    labels = torch.randint(0, 9, (500,), generator=generator)
    labels[labels == 4] = 5  # cluster 4 empty
    expected = torch.zeros(9, 7).index_add_(0, labels, x)
    got = torch_backend.sorted_cluster_sums(x, labels, 9)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got[4] == 0).all()


def test_k_equal_to_n_copies_the_samples() -> None:
    x, _ = separated(n=8, k=2, d=3)
    result = kmeans(x, 8, n_init=2, backend="torch")
    assert result.inertia == pytest.approx(0.0, abs=1e-4)
    assert sorted(result.labels.tolist()) == list(range(8))


# ---------------------------------------------------------------- backend choice


def test_auto_prefers_faiss_on_the_cpu_and_torch_on_an_accelerator() -> None:
    x = np.zeros((4, 2), np.float32)
    assert resolve_backend("auto", x) == "faiss"
    assert resolve_backend("auto", torch.from_numpy(x)) == "faiss"
    on_device = torch.zeros(4, 2, device="meta")  # stands in for a CUDA tensor
    assert resolve_backend("auto", on_device) == "torch"
    assert resolve_backend("auto", on_device, use_gpu=False) == "faiss"
    assert resolve_backend("torch", x) == "torch"
    assert resolve_backend("faiss", on_device) == "faiss"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cuda", x)


def test_torch_device_follows_the_features() -> None:
    x = torch.zeros(4, 2, device="meta")
    assert torch_device(x, None).type == "meta"
    assert torch_device(x, False).type == "cpu"
    assert torch_device(np.zeros((4, 2)), None).type == "cpu"
    with pytest.raises(UserError, match="CUDA tensor"):
        torch_device(np.zeros((4, 2)), True)


def test_torch_backend_user_errors() -> None:
    x, _ = separated(n=4, k=2)
    with pytest.raises(UserError, match=r"k=5 is larger than the number of samples \(4\)"):
        kmeans(x, 5, backend="torch")
    with pytest.raises(UserError, match="k=4"):
        knn(x, 4, backend="torch")
    with pytest.raises(UserError, match="GPU"):
        knn(x, 1, use_gpu=True, backend="torch")
    with pytest.raises(ValueError, match="d=16"):
        assign(x, np.zeros((2, 3)), backend="torch")
    x[1, 2] = np.inf
    with pytest.raises(UserError, match="NaN or inf in 1 of 4 rows"):
        kmeans(torch.from_numpy(x), 2, backend="torch")


# ---------------------------------------------------------------- without faiss


@pytest.fixture
def no_faiss(monkeypatch):
    """faiss made unimportable, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert backend_module.import_faiss() is None


def test_everything_runs_on_torch_without_faiss(no_faiss) -> None:
    x, y = separated()
    assert resolve_backend("auto", x) == "torch"
    assert faiss_num_gpus() == 0
    result = kmeans(x, 6, n_init=2)
    assert same_partition(result.labels, y)
    np.testing.assert_array_equal(assign(x, result.centroids), result.labels)
    _, indices = knn(x, 5, approximate=True)  # exact in torch
    assert (y[indices] == y[:, None]).all()
    with pytest.raises(UserError, match="faiss is not installed"):
        kmeans(x, 6, backend="faiss")
    with pytest.raises(UserError, match="GPU"):
        knn(x, 5, use_gpu=True)


def test_the_cluster_helpers_run_without_faiss(no_faiss) -> None:
    from cluster_ssl.cluster.choose_k import choose_k
    from cluster_ssl.cluster.neighbours import mine_neighbours
    from cluster_ssl.cluster.prototypes import estimate_prototypes
    from cluster_ssl.cluster.reseed import kmeans_without_empty_clusters

    x, _ = separated(n=300, k=3, d=8)
    assert choose_k(x, range(2, 5), restarts=2)[0] == 3
    assert mine_neighbours(torch.from_numpy(x), 5).shape == (300, 5)
    assert len(estimate_prototypes(x, [3, 6], 0.2, restarts=1, iterations=5)) == 2
    assert np.bincount(kmeans_without_empty_clusters(x, 5, seed=0).labels).min() > 0


@pytest.mark.slow
def test_the_package_imports_without_faiss() -> None:
    code = (
        "import sys; sys.modules['faiss'] = None\n"
        "import cluster_ssl.cluster, cluster_ssl.cluster.kmeans, cluster_ssl.cluster.knn\n"
        "import cluster_ssl.cluster.reseed, cluster_ssl.cluster.prototypes\n"
        "import cluster_ssl.cluster.neighbours, cluster_ssl.cluster.choose_k\n"
        "import cluster_ssl.methods, cluster_ssl.cli\n"
        "import numpy as np\n"
        "x = np.random.default_rng(0).normal(size=(50, 4)).astype('float32')\n"
        "print(cluster_ssl.cluster.kmeans(x, 3, n_init=1).labels.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(50,)"


# ---------------------------------------------------------------- CUDA


@cuda
def test_cuda_kmeans_matches_the_cpu_and_repeats_exactly() -> None:
    x, y = separated()
    on_gpu = torch.from_numpy(x).cuda()
    assert resolve_backend("auto", on_gpu) == "torch"
    cpu = kmeans(x, 6, n_init=3, seed=0, backend="torch")
    first = kmeans(on_gpu, 6, n_init=3, seed=0)
    second = kmeans(on_gpu, 6, n_init=3, seed=0)
    assert same_partition(first.labels, cpu.labels) and same_partition(first.labels, y)
    assert first.inertia == pytest.approx(cpu.inertia, rel=1e-4)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(assign(on_gpu, first.centroids), first.labels)


@cuda
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_cuda_knn_matches_the_cpu(metric: str) -> None:
    x, _ = separated(n=700, d=12, spread=3.0, seed=5)
    _, expected = knn(x, 20, metric=metric, backend="torch")
    _, got = knn(torch.from_numpy(x).cuda(), 20, metric=metric)
    assert_same_neighbours(x, expected, got, metric)


# ---------------------------------------------------------------- the measuring script


def test_the_backend_benchmark_prints_its_command_and_tables(capsys) -> None:
    from tools.kmeans_backends import main

    main(
        [
            *("--n", "400", "--dim", "8", "--k", "3,5", "--iterations", "5"),
            *("--knn-n", "300", "--knn-k", "4", "--repeats", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert "python tools/kmeans_backends.py --n 400 --dim 8 --k 3,5" in out.splitlines()[0]
    assert out.count("| faiss | random samples |") == 2
    assert out.count("| torch (cpu) | greedy k-means++ |") == 2
    assert out.count("| scikit-learn | greedy k-means++ |") == 2
    assert "| torch (cpu) |" in out.split("exact 4-NN")[1]
    assert "identical neighbour sets on 100.00% of the rows" in out
