"""SCAN (Van Gansbeke et al., ECCV 2020): the clustering loss and self-labelling's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cluster_ssl.losses.precision import full_precision
from cluster_ssl.runtime.distributed import all_reduce_mean, current, gather_with_grad

#: SCAN clamps the mean assignment at this value inside the entropy's logarithm
#: (``EPS`` of the public code's ``losses/losses.py``, used only by ``entropy``)
EPS = 1e-8
#: the public code's consistency term is ``nn.BCELoss`` against ones, which clamps the
#: logarithm (not the probability) at this value
BCE_LOG_FLOOR = -100.0


@full_precision
def neighbour_consistency(agreement: torch.Tensor) -> torch.Tensor:
    """SCAN's consistency term: -mean log <Phi(X), Phi(k)> as the public code computes it,
    ``nn.BCELoss()(agreement, ones)`` (``losses/losses.py`` ``SCANLoss`` and
    ``utils/evaluate_utils.py`` ``scan_evaluate``).

    PyTorch's BCE clamps each log at -100 (a pair that disagrees completely costs 100,
    not -log 1e-8 = 18.4) and keeps a gradient -1/x down to x = 1e-12; a clamp of x at
    1e-8 would cap the cost at 18.4 and stop the gradient of every pair below 1e-8. The
    agreement (never negative) is clamped to at most 1 first (rounding can exceed it; BCE
    refuses inputs above 1).

    Args:
        agreement: inner products <Phi(X), Phi(k)> of pairs of probability vectors, any shape.

    Returns:
        Scalar mean over all pairs.
    """
    agreement = agreement.clamp_max(1.0)
    return F.binary_cross_entropy(agreement, torch.ones_like(agreement))


def mean_assignment_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of the batch's mean soft assignment (SCAN's entropy term).

        H(p_bar) = -sum_k p_bar_k log p_bar_k,   p_bar = mean_i p_i

    p_bar is clamped below at :data:`EPS` inside the logarithm.

    Args:
        p: (B, K) soft assignments (rows sum to one).

    Returns:
        Scalar H(p_bar), between 0 and log K.
    """
    mean = p.mean(dim=0).clamp_min(EPS)
    return -(mean * mean.log()).sum()


@full_precision
def scan_loss(
    anchor_logits: torch.Tensor,
    neighbour_logits: torch.Tensor,
    entropy_weight: float = 5.0,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SCAN's clustering loss for one head (paper eq. 2).

        L = -1/|D| sum_X sum_{k in N_X} log <Phi(X), Phi(k)>  -  lambda * H(p_bar),
        p_bar = 1/|D| sum_X Phi(X),   H(p) = -sum_c p_c log p_c

    with Phi the softmax of the head, one neighbour k drawn per anchor X, the log of
    <.,.> clamped at -100 as the public code's ``nn.BCELoss`` does
    (:func:`neighbour_consistency`; p_bar, not <.,.>, is clamped at 1e-8, as its
    ``entropy``) and lambda = 5 in every paper config.
    The entropy term is at most log K, so a negative total is normal.

    Under DDP with ``gather`` the anchors' probabilities are gathered from every rank (with
    gradient) before p_bar is taken, so the entropy describes the global batch.

    Args:
        anchor_logits: (B, K) the head's logits for the anchors X.
        neighbour_logits: (B, K) the head's logits for one mined neighbour k of each
            anchor, row i the neighbour of row i of ``anchor_logits``.
        entropy_weight: lambda, the weight of the entropy term (5 in SCAN).
        gather: gather the anchors' probabilities across ranks for the entropy under DDP.

    Returns:
        ``(loss, parts)``: the scalar loss and ``parts``, the scalars
        ``{"consistency": ..., "entropy": H(p_bar)}``.

    Raises:
        ValueError: ``anchor_logits`` and ``neighbour_logits`` are not both (B, K).
    """
    if anchor_logits.shape != neighbour_logits.shape or anchor_logits.dim() != 2:
        raise ValueError(
            "anchor and neighbour logits must both be (B, K), got "
            f"{tuple(anchor_logits.shape)} and {tuple(neighbour_logits.shape)}"
        )
    anchors = anchor_logits.softmax(dim=1)
    neighbours = neighbour_logits.softmax(dim=1)
    agreement = (anchors * neighbours).sum(dim=1)
    consistency = neighbour_consistency(agreement)
    if gather and current().enabled:
        anchors = gather_with_grad(anchors)
    entropy = mean_assignment_entropy(anchors)
    return consistency - entropy_weight * entropy, {
        "consistency": consistency,
        "entropy": entropy,
    }


@full_precision
def confident_self_label_loss(
    weak_logits: torch.Tensor,
    strong_logits: torch.Tensor,
    threshold: float = 0.99,
    class_balanced: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """SCAN's self-labelling loss (paper eq. 3, with class balancing as the public code).

    Pseudo-labels y_i = argmax Phi(x_i) on the un-augmented view, kept where
    max Phi(x_i) > threshold (the "confident" set C). Cross-entropy of the strongly
    augmented view against them, each class c weighted w_c = |C| / |C_c| (inverse of its
    frequency among the confident samples) and normalised by the weights (PyTorch's
    weighted mean):

        L = sum_{i in C} w_{y_i} * (-log softmax(f(T(x_i)))_{y_i}) / sum_{i in C} w_{y_i}

    Without class balancing (SCAN's ``apply_class_balancing: False``, its ImageNet
    configs) every w_c = 1: the plain mean over C.

    Under DDP the class frequencies and the normalisation are those of the confident set of
    the global batch (all ranks), so the ranks' averaged loss is the single-process loss.

    Args:
        weak_logits: (B, K) logits of the un-augmented view, from which the pseudo-labels
            are taken; no gradient flows through them.
        strong_logits: (B, K) logits of the strongly augmented view of the same samples.
        threshold: a sample is confident when its largest probability exceeds this.
        class_balanced: weight each class by the inverse of its confident frequency.

    Returns:
        ``(loss, confident)``: loss is the scalar loss, or None when no sample passes the
        threshold (the caller must report it); ``confident`` is the (B,) bool mask, for
        logging the confident fraction.
    """
    with torch.no_grad():
        confidence, targets = weak_logits.softmax(dim=1).max(dim=1)
        confident = confidence > threshold
        counts = torch.bincount(targets[confident], minlength=weak_logits.shape[1]).float()
        world = current().world_size
        if world > 1:  # the confident set of the global batch
            counts = all_reduce_mean(counts) * world
        total = counts.sum()
        if total == 0:
            return None, confident
        weights = torch.where(counts > 0, total / counts.clamp_min(1), 1.0)
        if not class_balanced:
            weights = torch.ones_like(weights)
        sample_weights = weights[targets] * confident
    per_sample = F.cross_entropy(strong_logits, targets, reduction="none")
    # this rank's share of the global weighted mean: DDP averages the ranks' losses
    loss = world * (sample_weights * per_sample).sum() / (counts * weights).sum()
    return loss, confident
