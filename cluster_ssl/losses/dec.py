"""DEC's clustering loss: KL divergence from the soft assignments Q to the target P."""

from __future__ import annotations

import torch

from cluster_ssl.losses.precision import full_precision


@full_precision
def dec_clustering_loss(q: torch.Tensor, p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """KL(P || Q) between target and soft assignments (DEC, eq. 2), averaged over the batch.

    The paper's objective sums over the whole dataset:

        L = KL(P || Q) = sum_i sum_j p_ij log(p_ij / q_ij)

    Here the sum over clusters j is taken per sample and the mean over samples i of the batch
    ("batchmean"), as in the Keras DEC / IDEC / DCEC code, which compiles the model with
    Keras's ``kld`` loss (sum over the last axis, mean over the batch). The gradient is the
    paper's divided by the batch size. ``q`` and ``p`` are clamped below by ``eps`` inside the
    logarithms; entries with p_ij = 0 contribute 0.

    Args:
        q: (B, K) soft assignments (rows sum to one), e.g. from
            :func:`cluster_ssl.cluster.student_t.soft_assign`.
        p: (B, K) target distribution, e.g. from
            :func:`cluster_ssl.cluster.student_t.target_distribution`; treated as a constant
            (detached), since DEC recomputes it only every ``update_interval`` iterations.
        eps: lower clamp for q and p inside log.

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``q`` and ``p`` are not both (B, K).
    """
    if q.shape != p.shape or q.dim() != 2:
        raise ValueError(f"q and p must both be (B, K), got {tuple(q.shape)} and {tuple(p.shape)}")
    p = p.detach()
    kl = p * (p.clamp_min(eps).log() - q.clamp_min(eps).log())
    return kl.sum(dim=1).mean()
