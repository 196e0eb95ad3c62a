"""DEC's clustering layer: trainable centres and Student-t soft assignment."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cluster_ssl.cluster.student_t import soft_assign


class ClusteringLayer(nn.Module):
    """Soft assignment of embeddings to K trainable centres (DEC, eq. 1).

    q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha + 1) / 2)
           / sum_j' (1 + ||z_i - mu_j'||^2 / alpha)^(-(alpha + 1) / 2)

    The centres mu are a (K, d) ``nn.Parameter`` trained with the encoder against KL(P || Q).
    They start Glorot-uniform (as the Keras ``ClusteringLayer``) but are meant to be overwritten
    by k-means centres on the pretrained embedding with ``set_centres``.

    Args:
        num_clusters: K.
        embedding_dim: d, the size of the embeddings z.
        alpha: degrees of freedom of the Student-t kernel (1 in DEC, IDEC and DCEC).

    Raises:
        ValueError: ``num_clusters`` or ``embedding_dim`` below 1, or ``alpha`` not positive.
    """

    def __init__(self, num_clusters: int, embedding_dim: int, alpha: float = 1.0) -> None:
        super().__init__()
        if num_clusters < 1 or embedding_dim < 1:
            raise ValueError(
                f"num_clusters and embedding_dim must be positive; got {num_clusters}, "
                f"{embedding_dim}"
            )
        if alpha <= 0:
            raise ValueError(f"alpha must be positive; got {alpha}")
        self.num_clusters = num_clusters
        self.embedding_dim = embedding_dim
        self.alpha = alpha
        self.centres = nn.Parameter(torch.empty(num_clusters, embedding_dim))
        nn.init.xavier_uniform_(self.centres)

    @torch.no_grad()
    def set_centres(self, centres: torch.Tensor | np.ndarray) -> None:
        """Copy (K, d) centres (e.g. k-means ``cluster_centers_``) into the parameter in place.

        The parameter object is kept, so optimisers built before the call still update it.

        Args:
            centres: (K, d) centres, a tensor or array; converted to the parameter's dtype
                and device.

        Raises:
            ValueError: ``centres`` is not (K, d) = (num_clusters, embedding_dim).
        """
        values = torch.as_tensor(centres)
        if tuple(values.shape) != tuple(self.centres.shape):
            raise ValueError(
                f"expected centres of shape {tuple(self.centres.shape)} (num_clusters, "
                f"embedding_dim); got {tuple(values.shape)}"
            )
        self.centres.copy_(values.to(dtype=self.centres.dtype, device=self.centres.device))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Soft-assign embeddings to the centres with the Student-t kernel above.

        Args:
            z: (N, d) embeddings.

        Returns:
            q, the (N, K) soft assignments; rows sum to one.
        """
        return soft_assign(z, self.centres, self.alpha)

    def extra_repr(self) -> str:
        """The settings shown in the module's ``repr``.

        Returns:
            ``"num_clusters=..., embedding_dim=..., alpha=..."``.
        """
        return (
            f"num_clusters={self.num_clusters}, embedding_dim={self.embedding_dim}, "
            f"alpha={self.alpha}"
        )
