"""Contrastive Clustering (CC, Li et al., AAAI 2021): instance- and cluster-level contrast."""

from __future__ import annotations

import math

import torch

from cluster_ssl.losses.contrastive import nt_xent
from cluster_ssl.losses.precision import full_precision
from cluster_ssl.runtime.distributed import current, gather_with_grad


def instance_contrastive_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5, *, gather: bool = True
) -> torch.Tensor:
    """CC's instance-level loss: :func:`~cluster_ssl.losses.contrastive.nt_xent` unchanged.

    The symmetric 2B-way NT-Xent over the instance head's features; CC uses tau_I = 0.5.

    Args:
        z_a: (B, d) instance-head features of view a.
        z_b: (B, d) instance-head features of view b, row i the same sample as row i of
            ``z_a``.
        temperature: tau_I > 0 (CC uses 0.5).
        gather: contrast against all ranks' samples under DDP.

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``z_a`` and ``z_b`` are not both (B, d), or ``temperature`` is not
            positive.
    """
    return nt_xent(z_a, z_b, temperature, gather=gather)


def cluster_size_entropy(p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Entropy of the cluster-size distribution of a batch of soft assignments (CC).

        P(y_k) = sum_i p_ik / ||p||_1,    H(Y) = -sum_k P(y_k) log P(y_k)

    Args:
        p: (B, K) soft assignments (non-negative; rows normally sum to one).
        eps: lower clamp of P(y_k) inside the logarithm, so an empty cluster contributes 0.

    Returns:
        Scalar H(Y), between 0 and log K (uniform cluster sizes).
    """
    sizes = p.sum(dim=0)
    prob = sizes / sizes.sum()
    return -(prob * prob.clamp_min(eps).log()).sum()


@full_precision
def cluster_contrastive_loss(
    p_a: torch.Tensor,
    p_b: torch.Tensor,
    temperature: float = 1.0,
    *,
    entropy_constant: bool = False,
    entropy_weight: float = 1.0,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CC's cluster-level loss: contrast of cluster representations minus their entropy.

    Column k of the (B, K) assignment matrix of view a, y_k^a, is cluster k's
    representation. With s(y_i, y_j) the cosine similarity of two columns, the loss of
    cluster k against the 2K - 1 other columns is

        l_k^a = -log( exp(s(y_k^a, y_k^b) / tau_C) / D_k^a ),
        D_k^a = sum_{j != k} exp(s(y_k^a, y_j^a) / tau_C) + sum_j exp(s(y_k^a, y_j^b) / tau_C)

    and symmetrically for view b; L_clu is their mean over the 2K columns: exactly
    :func:`~cluster_ssl.losses.contrastive.nt_xent` applied to the transposed matrices.
    The cluster loss subtracts the entropy of each view's cluster-size distribution
    (see :func:`cluster_size_entropy`), which keeps all clusters in use:

        L = L_clu - (H(Y^a) + H(Y^b))

    With ``entropy_constant=True`` the public code's form is used instead, whose entropy
    term per view is ne = log K + sum_k P(y_k) log P(y_k) = log K - H(Y):
    L = L_clu - (H(Y^a) + H(Y^b)) + 2 log K. The shift is a constant: it changes the
    printed value (the public code's is non-negative in its entropy part) but not the
    gradient.

    Under DDP with ``gather=True`` the rows of both matrices are first gathered from every
    rank with :func:`~cluster_ssl.runtime.distributed.gather_with_grad`, so the columns and
    the cluster sizes describe the global batch and every rank computes the same loss (the
    one a single process computes on the concatenated batch); the all-reduce in the
    gather's backward keeps DDP's averaged gradient equal to that single-process gradient.

    Args:
        p_a: (B, K) soft assignments of view a (softmax output of the cluster head).
        p_b: (B, K) soft assignments of view b, row i the same sample as row i of ``p_a``.
        temperature: tau_C > 0 (CC uses 1.0).
        entropy_constant: add log K per view, as the public code does.
        entropy_weight: multiplies the entropy term (1 in the paper); raising it is the knob
            against collapse onto few clusters.
        gather: gather rows across ranks under DDP.

    Returns:
        ``(loss, parts)``: the scalar loss and ``parts``, the scalars
        ``{"cluster_contrast": L_clu, "entropy": H(Y^a) + H(Y^b)}`` (not detached; the
        paper's entropy whatever ``entropy_constant``).

    Raises:
        ValueError: ``p_a`` and ``p_b`` are not both (B, K), or ``temperature`` is not
            positive.
    """
    if p_a.dim() != 2 or p_a.shape != p_b.shape:
        raise ValueError(
            f"p_a and p_b must both be (B, K), got {tuple(p_a.shape)} and {tuple(p_b.shape)}"
        )
    if gather and current().enabled:
        both = gather_with_grad(torch.stack([p_a, p_b], dim=1))  # (N, 2, K)
        p_a, p_b = both[:, 0], both[:, 1]
    contrast = nt_xent(p_a.T, p_b.T, temperature, gather=False)
    entropy = cluster_size_entropy(p_a) + cluster_size_entropy(p_b)
    loss = contrast - entropy_weight * entropy
    if entropy_constant:
        loss = loss + entropy_weight * 2.0 * math.log(p_a.shape[1])
    return loss, {"cluster_contrast": contrast, "entropy": entropy}
