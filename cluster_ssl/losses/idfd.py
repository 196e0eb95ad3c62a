"""IDFD (Tao et al., ICLR 2021): instance discrimination and feature decorrelation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cluster_ssl.engine.distributed import current, gather_with_grad
from cluster_ssl.losses.precision import full_precision


@full_precision
def instance_discrimination_loss(
    features: torch.Tensor, index: torch.Tensor, bank: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Instance discrimination against a memory bank, full softmax over all N instances.

    Each sample is its own class; with v_i the L2-normalised feature of sample i and
    m_j the memory bank's row for instance j:

        P(i | v) = exp(v . m_i / tau) / sum_{j=1}^{N} exp(v . m_j / tau)
        L_I = -(1/B) sum_{b} log P(index_b | v_b)

    i.e. cross-entropy of the logits v . M^T / tau against the instance index. The bank is
    a constant (detached); it is refreshed after the step by
    :meth:`cluster_ssl.models.memory_bank.MemoryBank.update`. The features are
    L2-normalised here (a no-op for normalised inputs). IDFD's public code uses
    tau = 1.0; the paper discusses tau as a tuned hyperparameter, so the recipe chooses.

    Args:
        features: (B, d) embeddings of this rank's batch.
        index: (B,) their dataset indices, in [0, N).
        bank: (N, d) memory bank (``MemoryBank.memory``), rows L2-normalised.
        temperature: tau > 0.

    Returns:
        Scalar loss, the mean over the batch.
    """
    if features.dim() != 2 or bank.dim() != 2 or features.shape[1] != bank.shape[1]:
        raise ValueError(
            f"need features (B, d) and bank (N, d), got {tuple(features.shape)} "
            f"and {tuple(bank.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    # 1/tau scales the (B, d) features, not the (B, N) logits: one pass over N fewer
    scaled = F.normalize(features, dim=1) / temperature
    target = index.to(device=scaled.device, dtype=torch.long)
    return _BankCrossEntropy.apply(scaled, bank.detach().to(scaled.dtype), target)


class _BankCrossEntropy(torch.autograd.Function):
    """Cross-entropy of the logits s . M^T against the target rows, with the gradient
    only towards s (the bank M is a constant; the caller detaches it). Differentiable
    once: a second-order gradient through it raises.

    For logits l_bj = s_b . m_j, softmax p_bj = exp(l_bj) / Z_b and targets t_b:

        L = (1/B) sum_b (log Z_b - l_{b, t_b})
        dL/ds_b = (1/B) (sum_j p_bj m_j - m_{t_b})

    The same value and gradient as ``F.cross_entropy(s @ M.T, t)``, in fewer passes over
    B x N entries: the logits are exponentiated in place and kept unnormalised for the
    backward, which divides the (B, d) product by Z_b instead of the (B, N) matrix.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        scaled: torch.Tensor,
        bank: torch.Tensor,
        target: torch.Tensor,
    ) -> torch.Tensor:
        logits = scaled @ bank.T
        target_logit = logits.gather(1, target[:, None])
        row_max = logits.amax(dim=1, keepdim=True)
        unnormalised = logits.sub_(row_max).exp_()
        partition = unnormalised.sum(dim=1, keepdim=True)
        ctx.save_for_backward(unnormalised, partition, bank, target)
        return (row_max + partition.log() - target_logit).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        unnormalised, partition, bank, target = ctx.saved_tensors
        expected_row = (unnormalised @ bank).div_(partition)
        grad = expected_row.sub_(bank[target]).mul_(grad_loss / target.shape[0])
        return grad, None, None


@full_precision
def feature_decorrelation_loss(features: torch.Tensor, temperature2: float = 2.0) -> torch.Tensor:
    """IDFD's feature decorrelation: each feature dimension should resemble only itself.

    With F the (B, d) feature matrix of the batch and f_l = F[:, l] / ||F[:, l]|| the l-th
    feature dimension normalised over the batch (the rows of V = F^T, L2-normalised),
    the loss is

        Q(l | f) = exp(f_l . f / tau_2) / sum_{m=1}^{d} exp(f_m . f / tau_2)
        L_F = -(1/d) sum_{l=1}^{d} log Q(l | f_l)

    i.e. cross-entropy of the d x d similarity V V^T / tau_2 with the identity as target,
    averaged over the d dimensions. IDFD uses tau_2 = 2.0 and L = L_I + alpha L_F with
    alpha = 1. A feature dimension is a vector over the whole batch, so the loss does not
    split over samples: under DDP every rank computes it on all ranks' rows, gathered with
    :func:`~cluster_ssl.engine.distributed.gather_with_grad`, which is the single-process
    loss on the global batch (and so are the DDP-averaged gradients).

    Args:
        features: (B, d) embeddings of the batch.
        temperature2: tau_2 > 0.

    Returns:
        Scalar loss.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (B, d), got {tuple(features.shape)}")
    if temperature2 <= 0:
        raise ValueError(f"temperature2 must be positive, got {temperature2}")
    if current().enabled:
        features = gather_with_grad(features)
    v = F.normalize(features.T, dim=1)
    logits = v @ v.T / temperature2
    return F.cross_entropy(logits, torch.arange(v.shape[0], device=v.device))
