"""PCL (Li et al., ICLR 2021): InfoNCE against a MoCo queue, and ProtoNCE.

The whole objective of PCL over M clusterings is

    L_ProtoNCE = L_InfoNCE + (1/M) sum_{m=1}^{M} L_proto^m

with :func:`info_nce_with_queue` the first term and :func:`proto_nce` one clustering's
term; the negatives of the latter are drawn by :func:`sample_negative_prototypes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cluster_ssl.losses.precision import full_precision
from cluster_ssl.runtime.errors import UserError

#: how negative prototypes are drawn: per sample (the paper) or once per batch (the code)
NEGATIVE_SAMPLING = ("per_sample", "batch")


@full_precision
def info_nce_with_queue(
    queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """MoCo's InfoNCE with the queue as negatives (PCL's instance term).

    With v_i the L2-normalised query of sample i, v'_i its key (the momentum encoder's
    embedding of the other view) and v'_1 ... v'_r the r keys in the queue:

        L_InfoNCE = -(1/B) sum_i log( e_i / (e_i + sum_{j=1}^{r} exp(v_i . v'_j / tau)) ),
        e_i = exp(v_i . v'_i / tau)

    i.e. cross-entropy of the (B, 1 + r) logits [v_i . v'_i, v_i . queue^T] / tau with the
    positive at index 0. Keys and queue are constants (no gradient); queries and keys are
    L2-normalised here. PCL uses tau = 0.2.

    Args:
        queries: (B, d) query-encoder embeddings.
        keys: (B, d) momentum-encoder embeddings of the other view, row i sample i.
        queue: (r, d) earlier keys, unit rows.
        temperature: tau > 0.

    Returns:
        Scalar loss, the mean over the batch.

    Raises:
        ValueError: ``queries`` and ``keys`` are not both (B, d) with ``queue`` (r, d), or
            ``temperature`` is not positive.
    """
    if queries.dim() != 2 or keys.shape != queries.shape or queue.shape[1:] != queries.shape[1:]:
        raise ValueError(
            f"need queries and keys (B, d) and queue (r, d), got {tuple(queries.shape)}, "
            f"{tuple(keys.shape)} and {tuple(queue.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q = F.normalize(queries, dim=1)
    k = F.normalize(keys.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue.detach().T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros_like(positive[:, 0], dtype=torch.long))


def sample_negative_prototypes(
    positive: torch.Tensor,
    num_prototypes: int,
    num_negatives: int,
    *,
    sampling: str = "per_sample",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The r negative prototypes of each sample, drawn uniformly without replacement.

    * ``per_sample`` (the paper): each sample's own r draws from the k - 1 prototypes that
      are not its positive; r is capped at k - 1 (then every other prototype is a negative).
    * ``batch`` (PCL's public code): one draw of r shared by the whole batch, from the
      prototypes that are no sample's positive; capped at how many those are. Each sample's
      logits are then its positive and these r, as in the public CIFAR reproduction (PCL's
      own code also keeps the batch's other positives in every denominator). It needs k
      well above the batch size for any prototype to remain free; when none does, this is
      a :class:`~cluster_ssl.runtime.errors.UserError` naming the settings to change.

    Randomness comes from ``generator``, or torch's global generator on the device of
    ``positive`` (seeded runs are reproducible).

    Args:
        positive: (B,) each sample's positive prototype, in [0, k).
        num_prototypes: k.
        num_negatives: r >= 1.
        sampling: ``per_sample`` or ``batch``.
        generator: optional generator on the device of ``positive``.

    Returns:
        (B, r') int64 prototype indices on the device of ``positive``, r' being r after the
        caps above, no row holding its sample's positive (with ``batch``, the rows are
        equal).

    Raises:
        ValueError: ``sampling`` is not one of :data:`NEGATIVE_SAMPLING`, or
            ``num_negatives`` < 1.
        UserError: with ``batch``, every prototype is some sample's positive.
    """
    if sampling not in NEGATIVE_SAMPLING:
        raise ValueError(f"sampling must be one of {NEGATIVE_SAMPLING}, got {sampling!r}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got {num_negatives}")
    device = positive.device
    positive = positive.to(torch.long)
    if sampling == "per_sample":
        count = min(num_negatives, num_prototypes - 1)
        scores = torch.rand(
            positive.shape[0], num_prototypes - 1, device=device, generator=generator
        )
        drawn = scores.topk(count, dim=1).indices  # a uniform subset of {0, ..., k - 2}
        return drawn + (drawn >= positive[:, None]).long()  # skip over the positive
    is_free = torch.ones(num_prototypes, dtype=torch.bool, device=device)
    is_free[positive] = False
    free = is_free.nonzero().squeeze(1)
    if free.numel() == 0:
        raise UserError(
            f"every one of the {num_prototypes} prototypes is the positive of some sample in "
            f"a batch of {positive.shape[0]}, so negative_sampling=batch has no negatives; "
            "raise --set num_prototypes well above the batch size, lower --set batch_size, "
            "or use --set negative_sampling=per_sample"
        )
    order = torch.randperm(free.numel(), device=device, generator=generator)
    shared = free[order[:num_negatives]]
    return shared.expand(positive.shape[0], -1)


@full_precision
def proto_nce(
    queries: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    prototypes: torch.Tensor,
    concentration: torch.Tensor,
) -> torch.Tensor:
    """One clustering's ProtoNCE term (PCL, the prototype part of the ProtoNCE loss).

    With v_i the L2-normalised query of sample i, c_s its positive prototype (the centroid
    of its cluster), c_1 ... c_r its negative prototypes and phi the concentrations:

        L_proto^m = -(1/B) sum_i log( e_i / (e_i + sum_{j=1}^{r} exp(v_i . c_j / phi_j)) ),
        e_i = exp(v_i . c_s / phi_s)

    i.e. cross-entropy over the (B, 1 + r) logits with the positive at index 0. Prototypes
    and concentrations are constants from the E-step.

    Args:
        queries: (B, d) query-encoder embeddings (normalised here).
        positive: (B,) each sample's prototype index.
        negatives: (B, r) negative prototype indices (:func:`sample_negative_prototypes`).
        prototypes: (k, d) unit-norm prototypes.
        concentration: (k,) phi > 0.

    Returns:
        Scalar loss, the mean over the batch.

    Raises:
        ValueError: ``queries`` and ``prototypes`` are not (B, d) and (k, d) with the same
            d, or ``concentration`` is not (k,).
    """
    if queries.dim() != 2 or prototypes.dim() != 2 or queries.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"need queries (B, d) and prototypes (k, d), got {tuple(queries.shape)} and "
            f"{tuple(prototypes.shape)}"
        )
    if concentration.shape != prototypes.shape[:1]:
        raise ValueError(
            f"need one concentration per prototype, got {tuple(concentration.shape)} for "
            f"{prototypes.shape[0]} prototypes"
        )
    q = F.normalize(queries, dim=1)
    scaled = (q @ prototypes.detach().T) / concentration.detach()  # (B, k) v . c / phi
    columns = torch.cat([positive[:, None], negatives], dim=1).to(scaled.device, torch.long)
    logits = scaled.gather(1, columns)
    return F.cross_entropy(logits, torch.zeros_like(columns[:, 0]))
