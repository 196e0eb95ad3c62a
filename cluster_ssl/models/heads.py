"""Heads that sit on a backbone's pooled features: projections, cluster heads, linear heads.

Each takes (N, in_dim) features. Which paper uses which:

* SimCLR: :class:`ProjectionHead` 512-512-ReLU-128, L2-normalised.
* CC: :class:`ProjectionHead` rep-rep-ReLU-128 (instance head) and :class:`ClusterHead`
  rep-rep-ReLU-K-softmax (cluster head).
* IDFD: :class:`LinearHead` 512->128, L2-normalised.
* SCAN: :class:`MultiClusterHead`, several linear K-way heads whose best (lowest loss) is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cluster_ssl.runtime.errors import UserError


def _check_positive(**sizes: int) -> None:
    bad = {name: size for name, size in sizes.items() if size < 1}
    if bad:
        shown = ", ".join(f"{name}={size}" for name, size in bad.items())
        raise UserError(f"head sizes must be at least 1; got {shown}")


class ProjectionHead(nn.Module):
    """MLP projection head: (Linear - [BatchNorm] - ReLU) x (num_layers - 1), then Linear.

    SimCLR (Chen et al., 2020): an MLP with one hidden layer, z = g(h) = W2 ReLU(W1 h),
    512-512-ReLU-128 on a ResNet-18, its output L2-normalised before the NT-Xent loss.
    CC (Li et al., 2021): the instance-level contrastive head is the same two-layer MLP,
    rep-rep-ReLU-128 with rep the backbone's feature size, L2-normalised.
    SimCLR v2 deepens it and adds batch normalisation (``num_layers=3, batch_norm=True``).

    Args:
        in_dim: backbone feature size.
        hidden_dim: width of each hidden layer.
        out_dim: projection size (128 in SimCLR and CC).
        num_layers: number of Linear layers (2 in SimCLR and CC; 1 is a single Linear).
        batch_norm: BatchNorm1d after every hidden Linear (those Linears then have no bias,
            which the normalisation would cancel).
        normalize: L2-normalise each output row.

    Raises:
        UserError: a size or ``num_layers`` below 1.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(
            in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers
        )
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.layers = nn.Sequential(*layers)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project backbone features.

        Args:
            x: (N, in_dim) backbone features.

        Returns:
            (N, out_dim) projections, unit rows when ``normalize``.
        """
        z = self.layers(x)
        return F.normalize(z, dim=1) if self.normalize else z


class ClusterHead(nn.Module):
    """CC's cluster-level head: Linear - ReLU - Linear to K, then softmax over the K clusters.

    CC (Li et al., 2021): the cluster-level contrastive head is a two-layer MLP whose output
    size is the number of clusters, followed by a softmax so that row i is sample i's soft
    assignment and column k is cluster k's representation in the cluster-level contrast.
    Prediction is the argmax of the row.

    Args:
        in_dim: backbone feature size (rep).
        hidden_dim: hidden width (rep in CC).
        num_clusters: K.

    Raises:
        UserError: a size below 1.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_clusters: int) -> None:
        super().__init__()
        _check_positive(in_dim=in_dim, hidden_dim=hidden_dim, num_clusters=num_clusters)
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_clusters),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft-assign samples to the K clusters.

        Args:
            x: (N, in_dim) backbone features.

        Returns:
            (N, K) cluster probabilities (rows sum to 1).
        """
        return self.layers(x).softmax(dim=1)


class MultiClusterHead(nn.Module):
    """SCAN's clustering heads: ``num_heads`` independent Linear layers to K logits each.

    SCAN (Van Gansbeke et al., 2020) trains several linear clustering heads on the same
    backbone at once, each with its own loss, and keeps the head with the lowest loss for
    evaluation and self-labelling. The softmax is left to the loss.

    Args:
        in_dim: backbone feature size.
        num_clusters: K.
        num_heads: number of heads (10 in SCAN's configs).

    Raises:
        UserError: a size or ``num_heads`` below 1.
    """

    def __init__(self, in_dim: int, num_clusters: int, num_heads: int) -> None:
        super().__init__()
        _check_positive(in_dim=in_dim, num_clusters=num_clusters, num_heads=num_heads)
        self.heads = nn.ModuleList(nn.Linear(in_dim, num_clusters) for _ in range(num_heads))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Compute every head's cluster logits.

        Args:
            x: (N, in_dim) backbone features.

        Returns:
            A list of ``num_heads`` (N, K) logits tensors, in head order.
        """
        return [head(x) for head in self.heads]


class LinearHead(nn.Module):
    """A single Linear layer, its output optionally L2-normalised.

    IDFD (Tao et al., 2021): the ResNet-18 features go through a linear layer to a
    128-dimensional feature, L2-normalised for instance discrimination against the memory
    bank and for the feature decorrelation constraint.

    Args:
        in_dim: backbone feature size (512 for ResNet-18).
        out_dim: output size (128 in IDFD).
        normalize: L2-normalise each output row.

    Raises:
        UserError: a size below 1.
    """

    def __init__(self, in_dim: int, out_dim: int, normalize: bool = True) -> None:
        super().__init__()
        _check_positive(in_dim=in_dim, out_dim=out_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map backbone features linearly.

        Args:
            x: (N, in_dim) backbone features.

        Returns:
            (N, out_dim) features, unit rows when ``normalize``.
        """
        z = self.linear(x)
        return F.normalize(z, dim=1) if self.normalize else z
