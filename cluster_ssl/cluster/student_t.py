"""DEC's Student-t soft assignment and its sharpened target distribution."""

from __future__ import annotations

import torch


def soft_assign(z: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Student-t kernel between embeddings and centres (DEC, eq. 1).

    q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha + 1) / 2) / sum_j' (same for j')

    Args:
        z: (N, d) embeddings.
        centres: (K, d) cluster centres mu.
        alpha: degrees of freedom of the Student-t distribution (1 in all three papers).

    Returns:
        (N, K) rows summing to one.
    """
    if z.dtype in (torch.float16, torch.bfloat16):  # distances need fp32 range and precision
        z, centres = z.float(), centres.float()
    dist2 = (z.unsqueeze(1) - centres.to(z.dtype).unsqueeze(0)).pow(2).sum(dim=-1)
    kernel = (1.0 + dist2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's auxiliary target (eq. 3), computed from q over the WHOLE dataset.

    p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'),   f_j = sum_i q_ij

    Squaring sharpens confident assignments; dividing by the soft cluster frequency f_j
    keeps large clusters from swallowing the rest.

    Args:
        q: (N, K) soft assignments of the whole dataset (rows summing to one).

    Returns:
        (N, K) targets p, rows summing to one.
    """
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)
