"""IDFD (Tao et al., ICLR 2021): instance discrimination and feature decorrelation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cluster_ssl.losses.precision import full_precision
from cluster_ssl.runtime.distributed import current, gather_with_grad


@full_precision
def instance_discrimination_loss(
    features: torch.Tensor,
    index: torch.Tensor,
    bank: torch.Tensor,
    temperature: float,
    unit_rows: bool = True,
) -> torch.Tensor:
    """Instance discrimination against a memory bank, full softmax over all N instances.

    Each sample is its own class; with v_i the L2-normalised feature of sample i and
    m_j the memory bank's row for instance j:

        P(i | v) = exp(v . m_i / tau) / sum_{j=1}^{N} exp(v . m_j / tau)
        L_I = -(1/B) sum_{b} log P(index_b | v_b)

    i.e. cross-entropy of the logits v . M^T / tau against the instance index. The bank is
    a constant: no gradient flows to it, and nothing of it is kept for the backward pass,
    so :meth:`cluster_ssl.models.memory_bank.MemoryBank.update` may change it in place
    right after this call. The (B, N) logits are never held at once (see
    :class:`_BankCrossEntropy`). The features are L2-normalised here (a no-op for
    normalised inputs). IDFD's public code uses tau = 1.0; the paper discusses tau as a
    tuned hyperparameter, so the recipe chooses.

    Args:
        features: (B, d) embeddings of this rank's batch.
        index: (B,) their dataset indices, in [0, N).
        bank: (N, d) memory bank (``MemoryBank.memory``).
        temperature: tau > 0.
        unit_rows: the bank's rows have unit L2 norm, as ``MemoryBank`` keeps them, so
            every logit lies in [-1/tau, 1/tau] and exp is left unguarded where that
            cannot overflow; with False each row's maximum is always taken out first
            (right for any bank, a little slower).

    Returns:
        Scalar loss, the mean over the batch.

    Raises:
        ValueError: ``features`` and ``bank`` are not (B, d) and (N, d) with the same d, or
            ``temperature`` is not positive.
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
    with_gradient = torch.is_grad_enabled() and scaled.requires_grad
    bound = 1.0 / temperature if unit_rows else math.inf
    return _BankCrossEntropy.apply(
        scaled, bank.detach().to(scaled.dtype), target, bound, with_gradient
    )


def logits_per_block(device: torch.device) -> int:
    """How many logits :class:`_BankCrossEntropy` holds at once (B x bank rows of a block).

    On a CPU 512 KiB of float32, which stays in a core's cache between the two products
    that read it (blocks of 32K to 4M logits took 63-89 ms a step for 256 x 70,000, fastest
    at 128K: ``tools/benchmark.py bank-loss --block N``, docs/BENCHMARKS.md); on a GPU 64M,
    so that few kernels are launched.

    Args:
        device: the device the logits are computed on.

    Returns:
        The number of logits per block: 2**17 on a CPU, 2**26 otherwise.
    """
    return 2**17 if device.type == "cpu" else 2**26


class _BankCrossEntropy(torch.autograd.Function):
    """Cross-entropy of the logits s . M^T against the target rows, the gradient only to s.

    M is a constant. First order only: a second derivative through it is not computed.

    For logits l_bj = s_b . m_j, softmax p_bj = exp(l_bj) / Z_b and targets t_b:

        L = (1/B) sum_b (log Z_b - l_{b, t_b})
        dL/ds_b = (1/B) (sum_j p_bj m_j - m_{t_b})

    The same value and gradient as ``F.cross_entropy(s @ M.T, t)``, computed block by
    block of bank rows in the forward pass: each block's logits are exponentiated in
    place, added to Z_b and multiplied into sum_j exp(l_bj) m_j, so the (B, N) matrix
    never exists (it would be 72 MB a step for 70,000 images, 1.3 GB for ImageNet) and each
    block is read from the cache. Where exp could overflow (|l| <= ``bound`` = 1/tau for
    unit rows is known), the running row maximum c_b is taken out first, rescaling the
    sums when it grows (log Z_b = c_b + log sum_j exp(l_bj - c_b)). Only the (B, d)
    gradient is kept for the backward pass: not the bank, which may then change in place.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        scaled: torch.Tensor,
        bank: torch.Tensor,
        target: torch.Tensor,
        bound: float,
        with_gradient: bool,
    ) -> torch.Tensor:
        rows = max(1, logits_per_block(scaled.device) // scaled.shape[0])
        take_out_max = not _exp_cannot_overflow(bound, bank.shape[0], scaled.dtype)
        row_max = scaled.new_full((scaled.shape[0], 1), -math.inf)
        partition = scaled.new_zeros(scaled.shape[0], 1)
        weighted = scaled.new_zeros(scaled.shape) if with_gradient else None
        for start in range(0, bank.shape[0], rows):
            block = bank[start : start + rows]
            logits = scaled @ block.T
            if take_out_max:
                new_max = torch.maximum(row_max, logits.amax(dim=1, keepdim=True))
                # terms below exp(-60) of the row's largest change Z by less than N e^-60
                # of it, far below float32's resolution; smaller ones would give denormal
                # products, which a CPU computes many times slower
                logits.sub_(new_max).clamp_(min=-60.0)
                rescale = (row_max - new_max).exp_()  # 0 for the first block
                partition.mul_(rescale)
                if weighted is not None:
                    weighted.mul_(rescale)
                row_max = new_max
            unnormalised = logits.exp_()
            partition.add_(unnormalised.sum(dim=1, keepdim=True))
            if weighted is not None:
                weighted.addmm_(unnormalised, block)
        chosen = bank[target]
        target_logit = (scaled * chosen).sum(dim=1, keepdim=True)
        log_partition = partition.log() + row_max if take_out_max else partition.log()
        if weighted is not None:
            ctx.save_for_backward(weighted.div_(partition).sub_(chosen).div_(target.shape[0]))
        return (log_partition - target_logit).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None, None]:
        (gradient,) = ctx.saved_tensors
        return gradient * grad_loss, None, None, None, None


def _exp_cannot_overflow(bound: float, count: int, dtype: torch.dtype) -> bool:
    """Whether exp of ``count`` logits in [-bound, bound] is safe without taking out the max.

    Safe means the sum does not overflow ``dtype`` and the largest term of a row stays a
    normal number, so no maximum need be taken out (the result is the same either way, in
    fewer passes).
    """
    info = torch.finfo(dtype)
    return bound + math.log(count) < math.log(info.max) - 1 and -bound > math.log(info.tiny) + 1


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
    :func:`~cluster_ssl.runtime.distributed.gather_with_grad`, which is the single-process
    loss on the global batch (and so are the DDP-averaged gradients).

    Args:
        features: (B, d) embeddings of the batch.
        temperature2: tau_2 > 0.

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``features`` is not (B, d), or ``temperature2`` is not positive.
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
