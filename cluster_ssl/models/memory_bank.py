"""A memory bank of one L2-normalised feature per training sample (IDFD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.runtime.distributed import all_gather_rows, current


class MemoryBank(nn.Module):
    """(N, dim) buffer ``memory`` of L2-normalised features, one row per dataset index.

    Rows start as normalised Gaussian noise drawn from a generator seeded with ``seed``, so
    every rank starts with the same bank. ``memory`` is a buffer: it follows ``.to(device)``
    and is saved in the owning module's ``state_dict``.

    Use in a training step: compute the loss against ``bank.memory``, then call
    :meth:`update` with the same batch (the loss sees the bank before this batch's update,
    as in the non-parametric classifier of Wu et al. 2018 that IDFD builds on). The update
    writes into the buffer in place (copying all N rows every step would cost a tenth of a
    step on a CPU), so a loss must not keep the bank for its backward pass:
    :func:`~cluster_ssl.losses.idfd.instance_discrimination_loss` keeps only its (B, d)
    gradient, and one that did keep it would make autograd raise, not compute a wrong
    gradient.

    Args:
        num_samples: N, the number of rows (one per dataset index).
        dim: size of each feature row.
        seed: seed of the generator that draws the initial rows.

    Raises:
        ValueError: ``num_samples`` or ``dim`` below 1.
    """

    memory: torch.Tensor

    def __init__(self, num_samples: int, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        if num_samples < 1 or dim < 1:
            raise ValueError(f"need num_samples >= 1 and dim >= 1, got {num_samples}, {dim}")
        generator = torch.Generator().manual_seed(seed)
        init = torch.randn(num_samples, dim, generator=generator)
        self.register_buffer("memory", F.normalize(init, dim=1))

    @property
    def num_samples(self) -> int:
        """N, the number of rows of ``memory``."""
        return self.memory.shape[0]

    @property
    def dim(self) -> int:
        """The size of each row of ``memory``."""
        return self.memory.shape[1]

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor, momentum: float = 0.5) -> None:
        """Move the rows of ``index`` towards ``features`` (IDFD / Wu et al.'s update).

            m_i <- normalise(momentum * m_i + (1 - momentum) * f_i),   f_i = normalise(x_i)

        IDFD uses momentum 0.5. The features are L2-normalised first (a no-op for the
        normalised embeddings the loss uses) and detached. Under DDP, ``index`` and
        ``features`` are first gathered from every rank, so all ranks apply the same update
        and their banks stay identical. Where an index occurs more than once in the
        (gathered) batch, e.g. a sample repeated by DDP's padding, its first occurrence is
        used, so the result does not depend on the scatter order.

        Args:
            index: (B,) dataset indices of the batch.
            features: (B, dim) this batch's features.
            momentum: weight of the old memory, in [0, 1).

        Raises:
            ValueError: ``momentum`` outside [0, 1), or ``index`` and ``features`` not (B,)
                and (B, dim).
        """
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if index.dim() != 1 or features.shape != (index.shape[0], self.dim):
            raise ValueError(
                f"need index (B,) and features (B, {self.dim}), got "
                f"{tuple(index.shape)} and {tuple(features.shape)}"
            )
        features = F.normalize(features.detach(), dim=1).to(self.memory.dtype)
        index = index.to(device=self.memory.device, dtype=torch.long)
        if current().enabled:
            index = all_gather_rows(index)
            features = all_gather_rows(features)
        unique, inverse = torch.unique(index, return_inverse=True)
        position = torch.arange(index.shape[0], device=index.device)
        first = torch.full_like(unique, index.shape[0]).scatter_reduce(
            0, inverse, position, reduce="amin"
        )
        mixed = momentum * self.memory[unique] + (1.0 - momentum) * features[first]
        self.memory.index_copy_(0, unique, F.normalize(mixed, dim=1))
