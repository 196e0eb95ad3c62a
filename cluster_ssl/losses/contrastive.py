"""SimCLR's NT-Xent (normalised temperature-scaled cross-entropy, a symmetric InfoNCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.losses.precision import full_precision
from cluster_ssl.runtime.distributed import current, gather_with_grad, rank_offset


@full_precision
def nt_xent(
    z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, *, gather: bool = True
) -> torch.Tensor:
    """Symmetric NT-Xent over the 2B views of a batch (SimCLR, Chen et al. 2020, eq. 1).

    With s_ij = z_i . z_j / (||z_i|| ||z_j||) the cosine similarity, the loss of anchor i
    whose other view is j(i) is

        l_i = -log( exp(s_{i,j(i)} / tau) / sum_{k != i} exp(s_ik / tau) )

    where k runs over the 2N contrast samples (both views of every sample, the anchor
    itself masked out), and the loss is the mean of l_i over this rank's 2B anchors
    (the B rows of ``z_a`` and the B rows of ``z_b``). The inputs are L2-normalised here,
    so passing already normalised features is harmless; the gradient flows through the
    normalisation.

    Under DDP with ``gather=True`` the contrast set is every rank's views, gathered with
    :func:`~cluster_ssl.runtime.distributed.gather_with_grad` (N = sum of the ranks' batch
    sizes), and each anchor's own column and its positive are located by
    :func:`~cluster_ssl.runtime.distributed.rank_offset`. With equal per-rank batches, the
    average of the ranks' losses equals the single-process loss on the concatenated batch,
    and so do the DDP-averaged gradients. With ``gather=False`` (or one process) N = B.

    Args:
        z_a: (B, d) first view's embeddings.
        z_b: (B, d) second view's embeddings, row i the same sample as row i of ``z_a``.
        temperature: tau > 0 (SimCLR/SCAN pretext 0.1, CC's instance loss 0.5).
        gather: contrast against all ranks' samples under DDP.

    Returns:
        Scalar loss, the mean over this rank's 2B anchors.

    Raises:
        ValueError: ``z_a`` and ``z_b`` are not both (B, d), or ``temperature`` is not
            positive.
    """
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be (B, d), got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    rows = z_a.shape[0]
    z_a = F.normalize(z_a, dim=1)
    z_b = F.normalize(z_b, dim=1)
    if gather and current().enabled:
        offset = rank_offset(rows, z_a.device)
        both = gather_with_grad(torch.stack([z_a, z_b], dim=1))  # (N, 2, d)
        contrast = torch.cat([both[:, 0], both[:, 1]])
    else:
        offset = 0
        contrast = torch.cat([z_a, z_b])
    n = contrast.shape[0] // 2
    anchors = torch.cat([z_a, z_b])
    logits = anchors @ contrast.T / temperature  # (2B, 2N)

    own = offset + torch.arange(rows, device=z_a.device)
    self_column = torch.cat([own, own + n])
    positive_column = torch.cat([own + n, own])
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[torch.arange(2 * rows, device=z_a.device), self_column] = True
    logits = logits.masked_fill(is_self, float("-inf"))
    return F.cross_entropy(logits, positive_column)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`: ``NTXentLoss(0.1)(z_a, z_b)``.

    Args:
        temperature: tau > 0 (SimCLR/SCAN pretext 0.1, CC's instance loss 0.5).
        gather: contrast against all ranks' samples under DDP.

    Raises:
        ValueError: ``temperature`` is not positive.
    """

    def __init__(self, temperature: float, *, gather: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.gather = gather

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Symmetric NT-Xent of two views' embeddings (see :func:`nt_xent`).

        Args:
            z_a: (B, d) first view's embeddings.
            z_b: (B, d) second view's embeddings, row i the same sample as row i of ``z_a``.

        Returns:
            Scalar loss.

        Raises:
            ValueError: ``z_a`` and ``z_b`` are not both (B, d).
        """
        return nt_xent(z_a, z_b, self.temperature, gather=self.gather)

    def extra_repr(self) -> str:
        """The settings shown in the module's ``repr``.

        Returns:
            ``"temperature=..., gather=..."``.
        """
        return f"temperature={self.temperature}, gather={self.gather}"
