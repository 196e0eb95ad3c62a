"""k-nearest-neighbour search (exact, or on a faiss inverted file), and the faiss index
helpers k-means shares.

Two implementations, chosen by :func:`cluster_ssl.cluster.backend.resolve_backend`: faiss
(CPU, or the GPUs a faiss-gpu build sees) and torch (exact search by blocks of matrix
products, on the features' own device; :mod:`cluster_ssl.cluster.torch_backend`). The
faiss helpers below (GPU detection, building a flat or inverted-file index and moving it
to the GPUs) are the only code touching faiss's index API, and import faiss only when
called; the clustering parameters are wrapped in :mod:`cluster_ssl.cluster.kmeans`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch.nn.functional as F

from cluster_ssl.cluster.backend import (
    import_faiss,
    require_faiss,
    resolve_backend,
    torch_device,
)
from cluster_ssl.cluster.features import (
    Features,
    as_float32_matrix,
    as_float32_tensor,
    l2_normalise,
)
from cluster_ssl.cluster.torch_backend import knn_torch
from cluster_ssl.runtime.errors import UserError

if TYPE_CHECKING:
    import faiss

__all__ = [
    "MIN_PROBES",
    "Features",
    "Metric",
    "as_float32_matrix",
    "faiss_num_gpus",
    "flat_index",
    "ivf_index",
    "knn",
    "l2_normalise",
    "resolve_use_gpu",
]

Metric = Literal["cosine", "ip", "l2"]


def faiss_num_gpus() -> int:
    """GPUs faiss can use.

    Returns:
        The count; 0 for faiss-cpu builds (including ones lacking ``get_num_gpus``) and
        when faiss is not installed.
    """
    faiss = import_faiss()
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None else 0


def resolve_use_gpu(use_gpu: bool | None) -> bool:
    """Whether the faiss path runs on the GPUs.

    Args:
        use_gpu: None = use the GPUs when faiss sees any; True = require them; False = CPU.

    Returns:
        True to use faiss's GPUs.

    Raises:
        UserError: True, but faiss sees no GPU.
    """
    available = faiss_num_gpus() > 0
    if use_gpu is None:
        return available
    if use_gpu and not available:
        raise UserError(
            "faiss GPU search was requested but faiss sees no GPU (faiss-cpu is installed or "
            "CUDA is unavailable); drop the GPU option or install faiss-gpu"
        )
    return use_gpu


def flat_index(d: int, inner_product: bool, use_gpu: bool) -> faiss.Index:
    """Exact (brute-force) faiss index.

    Args:
        d: dimension of the vectors.
        inner_product: score by inner product (``IndexFlatIP``), else squared L2
            (``IndexFlatL2``).
        use_gpu: copy the index to all GPUs faiss sees.

    Returns:
        The empty index.
    """
    faiss = require_faiss()
    index = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


#: lists an inverted-file search probes at least (small indexes have few, large lists)
MIN_PROBES = 8
#: the share of the true neighbours an approximate search must find, checked on a sample
MIN_RECALL = 0.99
#: queries the recall is measured on
RECALL_SAMPLE = 1000


def ivf_index(x: np.ndarray, inner_product: bool, seed: int = 0) -> faiss.Index:
    """Approximate (inverted-file) faiss index over ``x``, trained and filled.

    sqrt(N) lists are found by k-means on ``x`` (seeded); each query probes the nearest
    1/16 of them, at least :data:`MIN_PROBES`.

    Args:
        x: (N, d) float32 C-contiguous vectors.
        inner_product: score by inner product, else squared L2.
        seed: seed of the k-means that finds the lists.

    Returns:
        The index, holding the rows of ``x``.
    """
    faiss = require_faiss()
    n, d = x.shape
    lists = max(1, int(np.sqrt(n)))
    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    index = faiss.index_factory(d, f"IVF{lists},Flat", metric)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed
    index.train(x)
    index.add(x)
    ivf.nprobe = min(lists, max(MIN_PROBES, lists // 16))
    return index


def knn(
    x: Features,
    k: int,
    metric: Metric = "cosine",
    exclude_self: bool = True,
    chunk_size: int = 65536,
    use_gpu: bool | None = None,
    approximate: bool = False,
    backend: str = "auto",
    stats: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every row of ``x`` among the rows of ``x``.

    Queries are searched ``chunk_size`` rows at a time, so no N x N matrix is ever built.

    Args:
        x: (N, d) features, numpy or torch.
        k: neighbours per sample.
        metric: ``"cosine"`` (rows L2-normalised, then inner product), ``"ip"`` (raw inner
            product) or ``"l2"`` (squared Euclidean distance).
        exclude_self: drop each query from its own neighbour list. faiss searches k + 1 and
            removes the query's own index when it is among them, otherwise (more than k
            exact duplicates tie with it) the last, k+1-th, neighbour; torch masks the
            query's own row out. Either way each row holds k other samples.
        chunk_size: queries per faiss search call or torch block (torch uses fewer when a
            block of scores would exceed its memory budget).
        use_gpu: faiss: None = GPU when faiss sees one. torch: None = the device ``x`` is
            on, False = the CPU, True = ``x`` must be on a GPU.
        approximate: on the CPU with faiss, search an inverted-file index (:func:`ivf_index`)
            instead of every pair: about 16x less scanning, at a recall a little below 1
            (rows whose probed lists hold too few points are searched exactly). Ignored on
            faiss's GPUs, where the exact search is fast, and by the torch backend, which is
            always exact.
        backend: ``"auto"`` (torch for a tensor on a GPU, else faiss when installed, else
            torch), ``"faiss"`` or ``"torch"``; see :mod:`cluster_ssl.cluster.backend`.
        stats: filled with the search's ``recall`` (1.0 when exact, else measured by
            :func:`tune_probes`, which widens the probes until it is at least
            :data:`MIN_RECALL`) and, for an inverted file, its ``probes`` and ``lists``.

    Returns:
        ``(scores, indices)``, both (N, k) numpy arrays: float32 similarities, best first,
        for cosine / ip; float32 squared L2 distances, nearest first, for l2; int64
        indices.

    Raises:
        ValueError: unknown ``metric`` or ``backend``.
        UserError: k out of range, non-finite features, a GPU requested where there is
            none, or ``backend="faiss"`` without faiss.
    """
    if metric not in ("cosine", "ip", "l2"):
        raise ValueError(f"metric must be 'cosine', 'ip' or 'l2', got {metric!r}")
    chosen = resolve_backend(backend, x, use_gpu)
    if chosen == "torch":
        tensor = as_float32_tensor(x, device=torch_device(x, use_gpu))
        _check_neighbours(k, tensor.shape[0], exclude_self)
        if metric == "cosine":
            tensor = F.normalize(tensor, dim=1, eps=1e-12)
        if stats is not None:
            stats["recall"] = 1.0  # always exact
        return knn_torch(tensor, k, metric, exclude_self, chunk_size)

    feats = as_float32_matrix(x)
    n = feats.shape[0]
    _check_neighbours(k, n, exclude_self)
    if metric == "cosine":
        feats = l2_normalise(feats)
    gpu = resolve_use_gpu(use_gpu)
    k_search = k + 1 if exclude_self else k
    found = {"recall": 1.0}
    if approximate and not gpu:
        index = ivf_index(feats, inner_product=metric != "l2")
        exact = flat_index(feats.shape[1], inner_product=metric != "l2", use_gpu=False)
        exact.add(feats)
        found["recall"] = tune_probes(index, exact, feats, k_search)
        ivf = require_faiss().extract_index_ivf(index)
        found.update(probes=ivf.nprobe, lists=ivf.nlist)
    else:
        index = flat_index(feats.shape[1], inner_product=metric != "l2", use_gpu=gpu)
        index.add(feats)
    if stats is not None:
        stats.update(found)

    k_search = k + 1 if exclude_self else k
    scores = np.empty((n, k), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        chunk_scores, chunk_indices = index.search(feats[start:stop], k_search)
        if exclude_self:
            chunk_scores, chunk_indices = _drop_self(
                chunk_scores, chunk_indices, np.arange(start, stop)
            )
        scores[start:stop] = chunk_scores
        indices[start:stop] = chunk_indices
    short = np.flatnonzero((indices < 0).any(axis=1))  # an IVF search found fewer than k
    if len(short):
        exact_scores, exact_indices = _exact_rows(feats, short, k_search, metric, exclude_self)
        scores[short], indices[short] = exact_scores, exact_indices
    return scores, indices


def tune_probes(
    index: faiss.Index,
    exact: faiss.Index,
    feats: np.ndarray,
    k_search: int,
    target: float = MIN_RECALL,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
) -> float:
    """Probe more lists of an inverted-file index until it finds ``target`` of the true
    neighbours.

    A seeded sample of queries is searched exactly and with the index; while the share of
    the exact top-k that the index finds is below ``target``, the probes double (probing
    every list is the exact search).

    Args:
        index: the inverted-file index (:func:`ivf_index`), changed in place.
        exact: a flat index over the same rows.
        feats: the (N, d) rows both hold, in the same order.
        k_search: neighbours per query.
        target: the recall to reach.
        sample: queries to measure it on.
        seed: seed of the sample.

    Returns:
        The recall measured with the probes kept.
    """
    faiss = require_faiss()
    rows = np.random.default_rng(seed).choice(len(feats), min(sample, len(feats)), replace=False)
    queries = np.ascontiguousarray(feats[rows])
    _, truth = exact.search(queries, k_search)
    ivf = faiss.extract_index_ivf(index)
    while True:
        _, found = index.search(queries, k_search)
        hits = [len(set(a) & set(b)) for a, b in zip(truth.tolist(), found.tolist(), strict=True)]
        recall = sum(hits) / truth.size
        if recall >= target or ivf.nprobe >= ivf.nlist:
            return recall
        ivf.nprobe = min(ivf.nlist, 2 * ivf.nprobe)


def _check_neighbours(k: int, n: int, exclude_self: bool) -> None:
    """UserError unless 1 <= k <= N (N - 1 when the sample itself is excluded)."""
    max_k = n - 1 if exclude_self else n
    if not 1 <= k <= max_k:
        raise UserError(
            f"k={k} neighbours requested but only {n} samples"
            f"{' (excluding the sample itself)' if exclude_self else ''}; "
            f"use 1 <= k <= {max_k} (lower the number of neighbours)"
        )


def _exact_rows(
    feats: np.ndarray, rows: np.ndarray, k_search: int, metric: Metric, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Exact faiss search for the given query rows (those an inverted file left short)."""
    index = flat_index(feats.shape[1], inner_product=metric != "l2", use_gpu=False)
    index.add(feats)
    scores, indices = index.search(feats[rows], k_search)
    return _drop_self(scores, indices, rows) if exclude_self else (scores, indices)


def _drop_self(
    scores: np.ndarray, indices: np.ndarray, query_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """From (m, k+1) results keep k per row: without the query's own id, else without the last."""
    keep = indices != query_ids[:, None]
    keep[keep.all(axis=1), -1] = False
    m, k_plus_1 = indices.shape
    return (
        scores[keep].reshape(m, k_plus_1 - 1),
        indices[keep].reshape(m, k_plus_1 - 1),
    )
