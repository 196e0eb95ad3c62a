"""PCA whitening followed by L2-normalisation: DeepCluster's preprocessing before k-means.

Caron et al. (2018): "the features are PCA-reduced to 256 dimensions, whitened and
l2-normalized". With the mean mu and the covariance of the N rows of X

    C = 1/N sum_i (x_i - mu)(x_i - mu)^T = U diag(lambda) U^T,   lambda_1 >= lambda_2 >= ...

each row is projected on the ``dim`` leading eigenvectors and scaled to unit variance,

    y_i = diag(lambda_1..dim + eps * lambda_1)^(-1/2) U_dim^T (x_i - mu),   z_i = y_i / ||y_i||

so the y_i have identity covariance (up to the regulariser ``eps * lambda_1``, which only
matters for directions of almost no variance). The public code computes the same with
faiss's ``PCAMatrix(d, dim, eigen_power=-0.5)`` (without the regulariser) followed by
L2-normalisation; here the eigendecomposition runs in float64 with torch, on the features'
device.

A ``dim`` beyond min(N - 1, d) is an error, never clamped: N centred samples span at most
N - 1 directions and d features at most d, so more components would be pure noise scaled
up to unit variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cluster_ssl.runtime.errors import UserError

#: rows per chunk when accumulating the mean and covariance, so no float64 (N, d) copy exists
CHUNK_ROWS = 65536


@dataclass(frozen=True)
class PCAWhitening:
    """A fitted whitening: ``mean`` (d,), ``projection`` (d, dim) (the leading eigenvectors,
    column j divided by sqrt(lambda_j + eps * lambda_1)) and ``eigenvalues`` (dim,)."""

    mean: torch.Tensor
    projection: torch.Tensor
    eigenvalues: torch.Tensor

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """Project and scale: y = (x - mu) P.

        Args:
            x: (N, d) features, any device.

        Returns:
            (N, dim) whitened rows, in ``x``'s floating dtype (float32 for integer input),
            on ``x``'s device.
        """
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mean = self.mean.to(device=x.device, dtype=dtype)
        projection = self.projection.to(device=x.device, dtype=dtype)
        return (x.to(dtype) - mean) @ projection

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten, then scale each row to unit L2 norm.

        Args:
            x: (N, d) features, any device.

        Returns:
            (N, dim) unit rows (see :meth:`whiten`).
        """
        return F.normalize(self.whiten(x), dim=1)


def check_pca_dim(dim: int, num_samples: int, num_features: int) -> None:
    """Check that PCA can give ``dim`` components.

    Args:
        dim: requested components.
        num_samples: N.
        num_features: d.

    Raises:
        UserError: unless 1 <= dim <= min(N - 1, d).
    """
    limit = min(num_samples - 1, num_features)
    if not 1 <= dim <= limit:
        raise UserError(
            f"pca_dim={dim} is impossible for {num_samples} samples of {num_features} features: "
            f"PCA gives 1 to min(N - 1, d) = {limit} components; set --set pca_dim between 1 "
            f"and {limit}"
            if limit >= 1
            else f"PCA needs at least 2 samples and 1 feature, got {num_samples} x {num_features}"
        )


def fit_pca_whitening(x: torch.Tensor, dim: int, eps: float = 1e-6) -> PCAWhitening:
    """Fit the whitening of the rows of ``x`` (N, d) to ``dim`` components.

    Args:
        x: features, any device; the fit runs in float64 on that device.
        dim: number of components kept, 1 <= dim <= min(N - 1, d).
        eps: regulariser relative to the largest eigenvalue (added before the inverse
            square root).

    Returns:
        The fitted whitening (float64 tensors on ``x``'s device).

    Raises:
        ValueError: ``x`` is not 2-D.
        UserError: ``dim`` out of range, non-finite features, or all samples identical.
    """
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, d) tensor, got shape {tuple(x.shape)}")
    n, d = x.shape
    check_pca_dim(dim, n, d)
    if not torch.isfinite(x).all():
        raise UserError("features contain NaN or inf; the model diverged (lower the learning rate)")
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    for chunk in x.split(CHUNK_ROWS):
        total += chunk.double().sum(dim=0)
    mean = total / n
    covariance = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for chunk in x.split(CHUNK_ROWS):
        centred = chunk.double() - mean
        covariance += centred.T @ centred
    covariance /= n
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues = eigenvalues.flip(0)[:dim].clamp_min(0.0)
    eigenvectors = eigenvectors.flip(1)[:, :dim]
    if eigenvalues[0] <= 0:
        raise UserError(
            "every sample has the same features, so there is nothing to whiten; the model "
            "collapsed (lower the learning rate)"
        )
    scale = (eigenvalues + eps * eigenvalues[0]).rsqrt()
    return PCAWhitening(mean=mean, projection=eigenvectors * scale, eigenvalues=eigenvalues)


def pca_whiten(x: torch.Tensor, dim: int, eps: float = 1e-6) -> torch.Tensor:
    """DeepCluster's preprocessing in one call: fit on ``x``, whiten it, L2-normalise rows.

    Args:
        x: (N, d) features, any device.
        dim: components kept, 1 <= dim <= min(N - 1, d).
        eps: regulariser relative to the largest eigenvalue.

    Returns:
        (N, dim) unit rows on ``x``'s device.
    """
    return fit_pca_whitening(x, dim, eps)(x)
