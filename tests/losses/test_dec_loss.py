"""DEC's loss, soft assignment, target distribution and the paper's closed-form gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster_ssl.cluster.student_t import soft_assign, target_distribution
from cluster_ssl.losses.dec import dec_clustering_loss


def numpy_soft_assign(z: np.ndarray, mu: np.ndarray, alpha: float) -> np.ndarray:
    n, k = z.shape[0], mu.shape[0]
    q = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            q[i, j] = (1.0 + np.sum((z[i] - mu[j]) ** 2) / alpha) ** (-(alpha + 1.0) / 2.0)
        q[i] /= q[i].sum()
    return q


def numpy_target(q: np.ndarray) -> np.ndarray:
    n, k = q.shape
    f = [sum(q[i, j] for i in range(n)) for j in range(k)]
    p = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            p[i, j] = q[i, j] ** 2 / f[j]
        p[i] /= p[i].sum()
    return p


def numpy_kl_batchmean(p: np.ndarray, q: np.ndarray) -> float:
    total = 0.0
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            if p[i, j] > 0:
                total += p[i, j] * np.log(p[i, j] / q[i, j])
    return total / p.shape[0]


def random_problem(seed: int, n: int = 7, k: int = 3, d: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((k, d))


def test_loss_matches_numpy_loop() -> None:
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(5), size=8)
    p = rng.dirichlet(np.ones(5), size=8)
    p[0, 2] = 0.0  # a zero target contributes nothing
    p[0] /= p[0].sum()
    loss = dec_clustering_loss(torch.from_numpy(q), torch.from_numpy(p))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(numpy_kl_batchmean(p, q), rel=1e-10)


def test_loss_is_zero_for_equal_distributions_and_target_is_detached() -> None:
    q = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    p = q.clone().requires_grad_(True)
    loss = dec_clustering_loss(q, p)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert not loss.requires_grad  # nothing flows into p


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_gradients_match_paper_closed_form(alpha: float) -> None:
    z_np, mu_np = random_problem(seed=int(alpha))
    n, k = z_np.shape[0], mu_np.shape[0]
    z = torch.tensor(z_np, dtype=torch.float64, requires_grad=True)
    mu = torch.tensor(mu_np, dtype=torch.float64, requires_grad=True)
    q = soft_assign(z, mu, alpha)
    p = target_distribution(q.detach())
    loss = dec_clustering_loss(q, p) * n  # the paper's L sums over samples
    loss.backward()

    p_np = p.double().numpy()
    q_np = numpy_soft_assign(z_np, mu_np, alpha)
    grad_z = np.zeros_like(z_np)
    grad_mu = np.zeros_like(mu_np)
    c = (alpha + 1.0) / alpha
    for i in range(n):
        for j in range(k):
            diff = z_np[i] - mu_np[j]
            term = (1.0 + diff @ diff / alpha) ** -1 * (p_np[i, j] - q_np[i, j]) * diff
            grad_z[i] += c * term
            grad_mu[j] -= c * term

    # soft_assign computes in float32 (it calls .float()), hence float32-level tolerances.
    np.testing.assert_allclose(z.grad.numpy(), grad_z, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mu.grad.numpy(), grad_mu, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_soft_assign_and_target_match_numpy(alpha: float) -> None:
    z_np, mu_np = random_problem(seed=3, n=40, k=5, d=3)
    q = soft_assign(torch.from_numpy(z_np), torch.from_numpy(mu_np), alpha)
    q_np = numpy_soft_assign(z_np, mu_np, alpha)
    np.testing.assert_allclose(q.double().numpy(), q_np, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(q.sum(dim=1).numpy(), 1.0, atol=1e-6)

    p = target_distribution(q)
    np.testing.assert_allclose(p.double().numpy(), numpy_target(q_np), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(p.sum(dim=1).numpy(), 1.0, atol=1e-6)

    def mean_entropy(dist: np.ndarray) -> float:
        return float(-(dist * np.log(dist)).sum(axis=1).mean())

    assert mean_entropy(p.double().numpy()) < mean_entropy(q_np)
