"""Feature matrices as the clustering code takes them: checked (N, d) float32 arrays or
tensors, and L2-normalisation of their rows."""

from __future__ import annotations

import numpy as np
import torch

from cluster_ssl.runtime.errors import UserError

#: the inputs every function of :mod:`cluster_ssl.cluster` accepts as features
Features = np.ndarray | torch.Tensor


def _non_finite_error(name: str, bad_rows: int, total_rows: int) -> UserError:
    return UserError(
        f"{name} contain NaN or inf in {bad_rows} of {total_rows} rows; the model "
        "diverged or the data holds invalid values (lower the learning rate, or use bf16 "
        "instead of fp16)"
    )


def as_float32_matrix(x: Features, name: str = "features") -> np.ndarray:
    """A C-contiguous float32 numpy copy (or view) of ``x``, on the CPU.

    Args:
        x: (N, d) numpy array, torch tensor (any device, copied to the CPU) or anything
            ``np.asarray`` takes.
        name: what ``x`` is, for the error messages.

    Returns:
        (N, d) float32 array.

    Raises:
        ValueError: ``x`` is not two-dimensional.
        UserError: ``x`` contains NaN or inf.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float32).numpy()
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {array.shape}")
    # a finite sum means every element is finite, and costs less than an N x d mask; a
    # sum that overflowed to inf from finite values falls through to the full check
    with np.errstate(over="ignore"):
        total = array.sum()
    if not np.isfinite(total) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise _non_finite_error(name, bad, array.shape[0])
    return array


def as_float32_tensor(
    x: Features, name: str = "features", device: torch.device | None = None
) -> torch.Tensor:
    """A contiguous float32 tensor of ``x``, on ``x``'s own device unless one is given.

    A numpy array becomes a CPU tensor sharing its memory where it already is float32 and
    contiguous; callers must not write into the result.

    Args:
        x: (N, d) numpy array, torch tensor or anything ``np.asarray`` takes.
        name: what ``x`` is, for the error messages.
        device: where the tensor should live; None keeps a tensor where it is (numpy input:
            the CPU).

    Returns:
        (N, d) float32 tensor.

    Raises:
        ValueError: ``x`` is not two-dimensional.
        UserError: ``x`` contains NaN or inf.
    """
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        array = np.ascontiguousarray(x, dtype=np.float32)
        if not array.flags.writeable:  # torch.from_numpy warns about read-only memory
            array = array.copy()
        tensor = torch.from_numpy(array)
    tensor = tensor.to(device=device, dtype=torch.float32).contiguous()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {tuple(tensor.shape)}")
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise _non_finite_error(name, bad, tensor.shape[0])
    return tensor


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (all-zero rows stay zero).

    Args:
        x: (N, d) array.
        eps: the smallest norm divided by, so that zero rows stay finite.

    Returns:
        (N, d) C-contiguous float32 array with unit (or zero) rows.
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)
