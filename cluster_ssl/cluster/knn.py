"""k-nearest-neighbour search with faiss (exact, or on an inverted file), and the faiss
index helpers k-means shares.

The helpers at the top of this module (input conversion, GPU detection, building a flat index
and moving it to the GPUs) are the only code touching faiss's index API; the clustering
parameters are wrapped in :mod:`cluster_ssl.cluster.kmeans`.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import torch

from cluster_ssl.runtime.errors import UserError

Features = np.ndarray | torch.Tensor
Metric = Literal["cosine", "ip", "l2"]


def as_float32_matrix(x: Features, name: str = "features") -> np.ndarray:
    """(N, d) C-contiguous float32 numpy copy/view of ``x``; NaN or inf -> UserError."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float32).numpy()
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise UserError(
            f"{name} contain NaN or inf in {bad} of {array.shape[0]} rows; the model "
            "diverged or the data holds invalid values (lower the learning rate, or use bf16 "
            "instead of fp16)"
        )
    return array


def faiss_num_gpus() -> int:
    """GPUs faiss can use (0 for faiss-cpu builds, including ones lacking the function)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None else 0


def resolve_use_gpu(use_gpu: bool | None) -> bool:
    """None -> use the GPUs when faiss sees any; True without GPUs -> UserError."""
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
    """Exact (brute-force) index: inner product or squared L2, on all GPUs if asked."""
    index = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


#: lists an inverted-file search probes at least (small indexes have few, large lists)
MIN_PROBES = 8


def ivf_index(x: np.ndarray, inner_product: bool, seed: int = 0) -> faiss.Index:
    """Approximate (inverted-file) index over ``x``, already added: sqrt(N) lists found by
    k-means on ``x`` (seeded), each query probing the nearest 1/16 of them (at least
    :data:`MIN_PROBES`)."""
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


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)


def knn(
    x: Features,
    k: int,
    metric: Metric = "cosine",
    exclude_self: bool = True,
    chunk_size: int = 65536,
    use_gpu: bool | None = None,
    approximate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every row of ``x`` among the rows of ``x``.

    Queries are searched ``chunk_size`` rows at a time against a flat faiss index, so no
    N x N matrix is ever built.

    Args:
        x: (N, d) features.
        k: neighbours per sample.
        metric: ``"cosine"`` (rows L2-normalised, then inner product), ``"ip"`` (raw inner
            product) or ``"l2"`` (squared Euclidean distance).
        exclude_self: drop each query from its own neighbour list. Searches k + 1 and removes
            the query's own index when it is among them; otherwise (more than k exact
            duplicates tie with it) the last, k+1-th, neighbour is dropped.
        chunk_size: queries per faiss search call.
        use_gpu: None = GPU when faiss has one.
        approximate: on the CPU, search an inverted-file index (:func:`ivf_index`) instead
            of every pair: about 16x less scanning, at a recall a little below 1 (rows whose
            probed lists hold too few points are searched exactly). Ignored on the GPU,
            where the exact search is fast.

    Returns:
        ``(scores, indices)``, both (N, k): float32 similarities, best first, for
        cosine / ip; float32 squared L2 distances, nearest first, for l2; int64 indices.
    """
    if metric not in ("cosine", "ip", "l2"):
        raise ValueError(f"metric must be 'cosine', 'ip' or 'l2', got {metric!r}")
    feats = as_float32_matrix(x)
    n = feats.shape[0]
    max_k = n - 1 if exclude_self else n
    if not 1 <= k <= max_k:
        raise UserError(
            f"k={k} neighbours requested but only {n} samples"
            f"{' (excluding the sample itself)' if exclude_self else ''}; "
            f"use 1 <= k <= {max_k} (lower the number of neighbours)"
        )
    if metric == "cosine":
        feats = l2_normalise(feats)
    gpu = resolve_use_gpu(use_gpu)
    if approximate and not gpu:
        index = ivf_index(feats, inner_product=metric != "l2")
    else:
        index = flat_index(feats.shape[1], inner_product=metric != "l2", use_gpu=gpu)
        index.add(feats)

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


def _exact_rows(
    feats: np.ndarray, rows: np.ndarray, k_search: int, metric: Metric, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray]:
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
