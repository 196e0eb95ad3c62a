"""NT-Xent, CC and IDFD losses and the memory bank, against explicit float64 loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster_ssl.losses.cc import (
    cluster_contrastive_loss,
    cluster_size_entropy,
    instance_contrastive_loss,
)
from cluster_ssl.losses.contrastive import NTXentLoss, nt_xent
from cluster_ssl.losses.idfd import feature_decorrelation_loss, instance_discrimination_loss
from cluster_ssl.models.memory_bank import MemoryBank


def unit(v: np.ndarray) -> np.ndarray:
    return v / math.sqrt(sum(float(x) ** 2 for x in v))


def numpy_nt_xent(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """Mean over the 2B anchors of -log(exp(s_pos/tau) / sum_{k != i} exp(s_ik/tau))."""
    views = [unit(row) for row in a] + [unit(row) for row in b]
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        denominator = 0.0
        for k in range(2 * n):
            if k != i:
                denominator += math.exp(float(np.dot(views[i], views[k])) / tau)
        numerator = math.exp(float(np.dot(views[i], views[positive])) / tau)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


def numpy_entropy(p: np.ndarray) -> float:
    b, k = p.shape
    sizes = [sum(p[i, j] for i in range(b)) for j in range(k)]
    total = sum(sizes)
    return -sum((s / total) * math.log(s / total) for s in sizes)


def random_assignments(rng: np.random.Generator, b: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.ones(k), size=b)


def as_leaf(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def assert_useful_gradient(*leaves: torch.Tensor) -> None:
    for leaf in leaves:
        assert leaf.grad is not None
        assert torch.isfinite(leaf.grad).all()
        assert leaf.grad.abs().sum() > 0


# --- NT-Xent -------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_loop(tau: float) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    za, zb = as_leaf(a), as_leaf(b)
    loss = nt_xent(za, zb, tau)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(numpy_nt_xent(a, b, tau), rel=1e-10)
    loss.backward()
    assert_useful_gradient(za, zb)


def test_nt_xent_normalises_inside_and_single_process_gather_is_a_no_op() -> None:
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.standard_normal((4, 5))), torch.tensor(rng.standard_normal((4, 5)))
    scales = torch.tensor([[0.1], [2.0], [7.0], [1.0]], dtype=torch.float64)
    reference = nt_xent(a, b, 0.3)
    assert nt_xent(a * scales, b, 0.3).item() == pytest.approx(reference.item(), rel=1e-12)
    assert nt_xent(a, b, 0.3, gather=False).item() == pytest.approx(reference.item(), rel=1e-12)
    assert NTXentLoss(0.3)(a, b).item() == pytest.approx(reference.item(), rel=1e-12)


def test_nt_xent_is_symmetric_in_views_and_lower_for_aligned_views() -> None:
    rng = np.random.default_rng(2)
    a, b = torch.tensor(rng.standard_normal((4, 5))), torch.tensor(rng.standard_normal((4, 5)))
    assert nt_xent(a, b, 0.5).item() == pytest.approx(nt_xent(b, a, 0.5).item(), rel=1e-12)
    assert nt_xent(a, a + 0.01 * b, 0.5) < nt_xent(a, b, 0.5)


def test_temperature_is_validated() -> None:
    z = torch.randn(4, 5)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            nt_xent(z, z, bad)
        with pytest.raises(ValueError, match="temperature"):
            NTXentLoss(bad)
        with pytest.raises(ValueError, match="temperature"):
            instance_discrimination_loss(z, torch.arange(4), z, bad)
        with pytest.raises(ValueError, match="temperature"):
            feature_decorrelation_loss(z, bad)
    with pytest.raises(ValueError, match="B, d"):
        nt_xent(z, z[:3], 0.5)


# --- CC ------------------------------------------------------------------------------------


def test_instance_contrastive_loss_is_nt_xent_at_half() -> None:
    a, b = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert instance_contrastive_loss(a, b).item() == nt_xent(a, b, 0.5).item()


def test_cluster_size_entropy_matches_loop() -> None:
    p = random_assignments(np.random.default_rng(3), 4, 3)
    assert cluster_size_entropy(torch.tensor(p)).item() == pytest.approx(
        numpy_entropy(p), rel=1e-12
    )
    uniform = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    assert cluster_size_entropy(uniform).item() == pytest.approx(math.log(3), rel=1e-12)
    one_cluster = torch.tensor([[1.0, 0.0, 0.0]] * 4, dtype=torch.float64)
    assert cluster_size_entropy(one_cluster).item() == 0.0  # an empty cluster adds nothing


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_cluster_contrastive_loss_matches_loop(tau: float) -> None:
    rng = np.random.default_rng(4)
    b, k = 4, 3
    p_a, p_b = random_assignments(rng, b, k), random_assignments(rng, b, k)
    # the cluster representations are the columns: a 2K-way NT-Xent over K x B matrices
    contrast = numpy_nt_xent(p_a.T.copy(), p_b.T.copy(), tau)
    entropy = numpy_entropy(p_a) + numpy_entropy(p_b)

    ta, tb = as_leaf(p_a), as_leaf(p_b)
    loss, parts = cluster_contrastive_loss(ta, tb, tau)
    assert parts["cluster_contrast"].item() == pytest.approx(contrast, rel=1e-10)
    assert parts["entropy"].item() == pytest.approx(entropy, rel=1e-10)
    assert loss.item() == pytest.approx(contrast - entropy, rel=1e-10)
    loss.backward()
    assert_useful_gradient(ta, tb)


def test_entropy_constant_shifts_the_value_by_two_log_k_not_the_gradient() -> None:
    rng = np.random.default_rng(5)
    k = 3
    p_a, p_b = random_assignments(rng, 4, k), random_assignments(rng, 4, k)
    paper_a, paper_b, code_a, code_b = (as_leaf(p) for p in (p_a, p_b, p_a, p_b))
    paper, paper_parts = cluster_contrastive_loss(paper_a, paper_b)
    code, code_parts = cluster_contrastive_loss(code_a, code_b, entropy_constant=True)
    assert (code - paper).item() == pytest.approx(2 * math.log(k), abs=1e-12)
    # the public code's per-view term: ne = log K + sum_k P(y_k) log P(y_k)
    ne = sum(math.log(k) - numpy_entropy(p) for p in (p_a, p_b))
    assert code.item() == pytest.approx(code_parts["cluster_contrast"].item() + ne, rel=1e-10)
    assert code_parts["entropy"].item() == paper_parts["entropy"].item()
    paper.backward()
    code.backward()
    torch.testing.assert_close(paper_a.grad, code_a.grad, rtol=0, atol=1e-14)
    torch.testing.assert_close(paper_b.grad, code_b.grad, rtol=0, atol=1e-14)


# --- IDFD ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_instance_discrimination_matches_loop(tau: float) -> None:
    rng = np.random.default_rng(6)
    n, b, d = 7, 4, 5
    bank = np.stack([unit(row) for row in rng.standard_normal((n, d))])
    feats = rng.standard_normal((b, d))
    index = [5, 0, 3, 3]
    expected = 0.0
    for i in range(b):
        v = unit(feats[i])
        logits = [float(np.dot(v, bank[j])) / tau for j in range(n)]
        log_norm = math.log(sum(math.exp(x) for x in logits))
        expected += -(logits[index[i]] - log_norm)
    expected /= b

    leaf = as_leaf(feats)
    bank_t = torch.tensor(bank, requires_grad=True)
    loss = instance_discrimination_loss(leaf, torch.tensor(index), bank_t, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert_useful_gradient(leaf)
    assert bank_t.grad is None  # the bank is a constant


def test_instance_discrimination_gradient_matches_finite_differences() -> None:
    generator = torch.Generator().manual_seed(9)
    bank = F.normalize(torch.randn(11, 5, generator=generator, dtype=torch.float64), dim=1)
    feats = torch.randn(4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([10, 0, 3, 3])
    assert torch.autograd.gradcheck(
        lambda f: instance_discrimination_loss(f, index, bank, 0.3), (feats,)
    )


@pytest.mark.parametrize("tau", [0.05, 0.002])
def test_instance_discrimination_equals_composed_cross_entropy_at_small_temperatures(
    tau: float,
) -> None:
    """Logits up to 1/tau = 500, where exp overflows fp32 without the row maximum taken
    out: fp32 value and gradient equal float64 log-softmax's."""
    generator = torch.Generator().manual_seed(10)
    bank = F.normalize(torch.randn(300, 16, generator=generator), dim=1)
    feats = torch.randn(32, 16, generator=generator)
    index = torch.randint(0, 300, (32,), generator=generator)
    ours, reference = feats.clone().requires_grad_(), feats.double().requires_grad_()
    loss = instance_discrimination_loss(ours, index, bank, tau)
    loss.backward()
    composed = F.cross_entropy(F.normalize(reference, dim=1) @ bank.double().T / tau, index)
    composed.backward()
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.double(), composed.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.grad.double(), reference.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("tau2", [2.0, 0.5])
def test_feature_decorrelation_matches_loop(tau2: float) -> None:
    rng = np.random.default_rng(7)
    b, d = 4, 5
    feats = rng.standard_normal((b, d))
    columns = [unit(feats[:, j]) for j in range(d)]  # each dimension normalised over the batch
    expected = 0.0
    for j in range(d):
        logits = [float(np.dot(columns[j], columns[m])) / tau2 for m in range(d)]
        expected += -(logits[j] - math.log(sum(math.exp(x) for x in logits)))
    expected /= d

    leaf = as_leaf(feats)
    loss = feature_decorrelation_loss(leaf, tau2)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert_useful_gradient(leaf)


def test_feature_decorrelation_is_minimal_for_orthogonal_dimensions() -> None:
    orthogonal = torch.eye(4, dtype=torch.float64)
    correlated = orthogonal + 0.5
    assert feature_decorrelation_loss(orthogonal) < feature_decorrelation_loss(correlated)


# --- memory bank ---------------------------------------------------------------------------


def test_memory_bank_starts_normalised_and_seeded() -> None:
    bank = MemoryBank(10, 5, seed=3)
    torch.testing.assert_close(bank.memory.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(bank.memory, MemoryBank(10, 5, seed=3).memory)
    assert not torch.equal(bank.memory, MemoryBank(10, 5, seed=4).memory)
    assert "memory" in bank.state_dict() and not list(bank.parameters())
    assert (bank.num_samples, bank.dim) == (10, 5)


@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_memory_bank_update_formula(momentum: float) -> None:
    bank = MemoryBank(6, 3, seed=0).double()
    before = bank.memory.numpy().copy()
    rng = np.random.default_rng(8)
    feats = rng.standard_normal((3, 3))
    index = [4, 1, 4]  # 4 twice: the first occurrence wins
    bank.update(torch.tensor(index), torch.tensor(feats, requires_grad=True), momentum)

    after = bank.memory.numpy()
    for row in range(6):
        if row not in index:
            np.testing.assert_array_equal(after[row], before[row])
    for position in (0, 1):
        row = index[position]
        expected = unit(momentum * before[row] + (1 - momentum) * unit(feats[position]))
        np.testing.assert_allclose(after[row], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), np.ones(6), atol=1e-12)
    assert not bank.memory.requires_grad


def test_loss_backward_after_an_in_place_bank_update_is_the_gradient_against_the_old_bank():
    bank = MemoryBank(8, 4, seed=1)
    feats = torch.randn(3, 4, requires_grad=True)
    reference = feats.detach().double().requires_grad_()
    index = torch.tensor([2, 5, 7])
    old = bank.memory.clone()
    stored = bank.memory.data_ptr()
    loss = instance_discrimination_loss(feats, index, bank.memory, 0.5)
    bank.update(index, F.normalize(feats, dim=1))
    assert bank.memory.data_ptr() == stored and not torch.equal(bank.memory, old)  # in place
    loss.backward()
    composed = F.cross_entropy(F.normalize(reference, dim=1) @ old.double().T / 0.5, index)
    composed.backward()
    torch.testing.assert_close(loss.double(), composed.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(feats.grad.double(), reference.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.2, 0.004])  # without and with the running maximum
def test_instance_discrimination_block_by_block_equals_the_whole_matrix(monkeypatch, tau) -> None:
    import cluster_ssl.losses.idfd as idfd

    generator = torch.Generator().manual_seed(12)
    bank = F.normalize(torch.randn(50, 4, generator=generator), dim=1)
    feats = torch.randn(6, 4, generator=generator)
    index = torch.tensor([0, 7, 19, 20, 49, 7])
    whole, blocks = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    loss = instance_discrimination_loss(whole, index, bank, tau)
    loss.backward()
    monkeypatch.setattr(idfd, "logits_per_block", lambda device: 6 * 8)  # 8 rows: 7 blocks
    blocked = instance_discrimination_loss(blocks, index, bank, tau)
    blocked.backward()
    torch.testing.assert_close(blocked, loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(blocks.grad, whole.grad, rtol=1e-4, atol=1e-6)
    reference = feats.double().requires_grad_()
    composed = F.cross_entropy(F.normalize(reference, dim=1) @ bank.double().T / tau, index)
    composed.backward()
    assert torch.isfinite(blocked)  # 1/tau = 250 overflows exp in float32 at tau 0.004
    torch.testing.assert_close(blocked.double(), composed.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(blocks.grad.double(), reference.grad, rtol=1e-3, atol=1e-4)
    with torch.no_grad():  # no gradient is computed or kept
        again = instance_discrimination_loss(blocks, index, bank, tau)
    torch.testing.assert_close(again, blocked)


def test_a_bank_of_other_norms_needs_unit_rows_false() -> None:
    generator = torch.Generator().manual_seed(13)
    bank = 10 * F.normalize(torch.randn(40, 8, generator=generator), dim=1)  # rows of norm 10
    index = torch.arange(5)
    feats = bank[:5].clone().requires_grad_()  # aligned with their rows: logits up to 100/tau
    loss = instance_discrimination_loss(feats, index, bank, 0.1, unit_rows=False)
    loss.backward()
    reference = feats.detach().double().requires_grad_()
    composed = F.cross_entropy(F.normalize(reference, dim=1) @ bank.double().T / 0.1, index)
    composed.backward()
    torch.testing.assert_close(loss.double(), composed.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feats.grad.double(), reference.grad, rtol=1e-3, atol=1e-5)


def test_memory_bank_rejects_bad_arguments() -> None:
    bank = MemoryBank(4, 3)
    with pytest.raises(ValueError, match="momentum"):
        bank.update(torch.tensor([0]), torch.randn(1, 3), momentum=1.0)
    with pytest.raises(ValueError, match="features"):
        bank.update(torch.tensor([0, 1]), torch.randn(2, 4))


def test_losses_run_in_fp32_under_autocast():
    from cluster_ssl.losses.contrastive import nt_xent

    torch.manual_seed(0)
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    exact = nt_xent(z_a, z_b, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = nt_xent(z_a.bfloat16(), z_b.bfloat16(), 0.1)
    assert inside.dtype == torch.float32
    rounded = nt_xent(z_a.bfloat16().float(), z_b.bfloat16().float(), 0.1)
    assert torch.allclose(inside, rounded, atol=1e-6) and torch.allclose(inside, exact, atol=0.05)
