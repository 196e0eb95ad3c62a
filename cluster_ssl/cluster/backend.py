"""Which implementation runs k-means and kNN: faiss, scikit-learn's k-means kernel or torch.

faiss is optional. It is imported here, lazily, and only by the faiss code paths, so the
package imports and clusters without it. The rule for ``backend="auto"`` lives in
:func:`resolve_backend` and nowhere else:

* features in a tensor on an accelerator (CUDA, ...) -> torch, on that device (faiss-cpu
  cannot use it, and faiss-gpu is not installed on the GPU machines);
* otherwise, when faiss is importable, plain (not spherical) k-means of at least
  :data:`SKLEARN_MIN_SAMPLES` (10,000) samples into at most :data:`SKLEARN_MAX_CLUSTERS`
  (100) clusters, or into any number below :data:`SKLEARN_ANY_CLUSTERS_BELOW` (15,000)
  samples, where faiss has no GPU -> ``"sklearn"``: scikit-learn's Lloyd kernel
  started from faiss's own initial centres (:mod:`cluster_ssl.cluster.sklearn_backend`).
  With few clusters an iteration is bound by reading the features, which faiss does three
  times and scikit-learn once; on 10,000 and 70,000 x 128 features, k = 10, one thread,
  a faiss iteration took 1.2-1.5x scikit-learn's (``tools/kmeans_backends.py --grid``,
  docs/BENCHMARKS.md; at k = 100 the two are level). Fewer samples stay on faiss, whose
  fixed cost is lower there, so the digits-sized runs of the DEC family keep their
  numbers. With many clusters and few samples a run converges in ~12 iterations and
  faiss's stopping rule (an objective that repeats) runs one more than scikit-learn's (an
  assignment that repeats), which cost more than faiss's faster iterations saved at
  10,000 x 128, k = 1,000 (0.94-0.99x scikit-learn's time, 1.05-1.08x per iteration);
* otherwise faiss (k-means with more clusters, kNN, assignment): on the CPU the torch
  backend is slower (1.7x for exact kNN and 2-3x for k-means at k = 1000 on 70,000 x 128
  features, 2 cores; measured by ``tools/kmeans_backends.py``), and at k = 1,000 faiss's
  k-means is 1.09x faster than scikit-learn's at 20,000 samples and 1.2x from 70,000;
* otherwise torch, on the CPU.

The methods hand k-means (and SCAN's mining, PCL's E-step) their embedding as a tensor on
the run's device, so on a GPU it is clustered there, and on a CPU faiss (or scikit-learn's
kernel) receives the same float32 values as from a numpy array.
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import torch

from cluster_ssl.cluster.features import Features
from cluster_ssl.runtime.errors import UserError

Backend = Literal["auto", "faiss", "torch", "sklearn"]
BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch", "sklearn")
#: k-means on at least this many samples may run scikit-learn's kernel (below it stays on
#: faiss, so the DEC family's digits runs keep their numbers)
SKLEARN_MIN_SAMPLES = 10_000
#: ... and at most this many clusters (above it faiss's kernel is as fast or faster)
SKLEARN_MAX_CLUSTERS = 100
#: ... or any number of clusters below this many samples (faiss's extra iteration)
SKLEARN_ANY_CLUSTERS_BELOW = 15_000


def import_faiss() -> ModuleType | None:
    """The faiss module, or None when it cannot be imported.

    Returns:
        The module; None if faiss is not installed (or blocked in ``sys.modules``).
    """
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def require_faiss() -> ModuleType:
    """The faiss module, for code that cannot run without it.

    Returns:
        The module.

    Raises:
        UserError: faiss is not importable.
    """
    faiss = import_faiss()
    if faiss is None:
        raise UserError(
            "the faiss backend was requested but faiss is not installed; install faiss-cpu "
            "(or faiss-gpu), or use backend='torch' / 'auto'"
        )
    return faiss


def on_accelerator(x: Features) -> bool:
    """Whether ``x`` is a tensor on a device other than the CPU.

    Args:
        x: features, numpy or torch.

    Returns:
        True for a CUDA (or other non-CPU) tensor.
    """
    return isinstance(x, torch.Tensor) and x.device.type != "cpu"


def resolve_backend(
    backend: str,
    x: Features,
    use_gpu: bool | None = None,
    clusters: int | None = None,
    spherical: bool = False,
) -> str:
    """The implementation that runs on ``x``: ``"faiss"``, ``"torch"`` or ``"sklearn"``.

    Args:
        backend: one of :data:`BACKENDS`.
        x: the features (numpy or torch) the call works on.
        use_gpu: the caller's GPU request. ``False`` keeps the work on the CPU, so
            ``"auto"`` then prefers faiss even for a CUDA tensor (copied to the CPU).
        clusters: k for a k-means call, None for anything else (kNN, assignment): only
            k-means has a ``"sklearn"`` implementation.
        spherical: a spherical k-means (scikit-learn has none).

    Returns:
        The implementation; for ``"auto"`` as the module docstring says.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`, or ``"sklearn"`` for
            something other than a plain k-means.
        UserError: ``"faiss"`` or ``"sklearn"`` (whose initial centres are faiss's)
            requested but faiss is not importable.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        )
    if backend == "sklearn" and (clusters is None or spherical):
        raise ValueError("backend='sklearn' runs plain (not spherical) k-means only")
    if backend in ("faiss", "sklearn"):
        require_faiss()
        return backend
    if backend == "torch":
        return "torch"
    if on_accelerator(x) and use_gpu is not False:
        return "torch"
    faiss = import_faiss()
    if faiss is None:
        return "torch"
    faiss_gpus = use_gpu is not False and getattr(faiss, "get_num_gpus", lambda: 0)() > 0
    if (
        clusters is not None
        and not spherical
        and not faiss_gpus
        and len(x) >= SKLEARN_MIN_SAMPLES
        and (clusters <= SKLEARN_MAX_CLUSTERS or len(x) < SKLEARN_ANY_CLUSTERS_BELOW)
    ):
        return "sklearn"
    return "faiss"


def torch_device(x: Features, use_gpu: bool | None) -> torch.device:
    """The device the torch backend computes on: ``x``'s own, as the GPU request allows.

    The torch backend never moves data onto an accelerator by itself: pass the features
    as a tensor on the device that should do the work.

    Args:
        x: the features.
        use_gpu: None = where ``x`` is; False = the CPU; True = where ``x`` is, which must
            be an accelerator.

    Returns:
        The device.

    Raises:
        UserError: ``use_gpu=True`` but ``x`` is not on an accelerator.
    """
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    if use_gpu is False:
        return torch.device("cpu")
    if use_gpu and device.type == "cpu":
        raise UserError(
            "GPU search was requested but the features are on the CPU and faiss sees no GPU "
            "(faiss-cpu is installed, faiss is missing or CUDA is unavailable); pass the "
            "features as a CUDA tensor, drop the GPU option or install faiss-gpu"
        )
    return device
