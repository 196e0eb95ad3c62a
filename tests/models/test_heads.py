"""Heads: output sizes, layer structure, normalisation, probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cluster_ssl.models.heads import ClusterHead, LinearHead, MultiClusterHead, ProjectionHead
from cluster_ssl.runtime.errors import UserError


def test_projection_head_simclr_shape_and_unit_norm() -> None:
    head = ProjectionHead(512, 512, 128)
    assert [type(m) for m in head.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in head.layers[::2]] == [(512, 512), (512, 128)]
    z = head(torch.randn(4, 512))
    assert z.shape == (4, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))


def test_projection_head_unnormalised_batch_norm_and_depth() -> None:
    head = ProjectionHead(16, 8, 4, num_layers=3, batch_norm=True, normalize=False)
    linears = [m for m in head.layers if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.layers) == 2
    assert [m.bias is None for m in linears] == [True, True, False]
    z = head(torch.randn(4, 16))
    assert z.shape == (4, 4)
    assert not torch.allclose(z.norm(dim=1), torch.ones(4))
    z.sum().backward()
    assert linears[0].weight.grad is not None


def test_projection_head_single_layer_is_linear() -> None:
    head = ProjectionHead(16, 8, 4, num_layers=1)
    assert [type(m) for m in head.layers] == [nn.Linear]
    assert head(torch.randn(2, 16)).shape == (2, 4)


def test_cluster_head_gives_probabilities() -> None:
    head = ClusterHead(32, 32, 10)
    assert [type(m) for m in head.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    p = head(torch.randn(4, 32))
    assert p.shape == (4, 10)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=1), torch.ones(4))


def test_multi_cluster_head_returns_logits_per_head() -> None:
    head = MultiClusterHead(32, 10, num_heads=3)
    assert isinstance(head.heads, nn.ModuleList) and len(head.heads) == 3
    x = torch.randn(4, 32)
    logits = head(x)
    assert isinstance(logits, list) and len(logits) == 3
    assert all(out.shape == (4, 10) for out in logits)
    torch.testing.assert_close(logits[1], head.heads[1](x))
    assert not torch.allclose(logits[0], logits[1])


def test_linear_head() -> None:
    head = LinearHead(512, 128)
    z = head(torch.randn(4, 512))
    assert z.shape == (4, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    x = torch.randn(4, 8)
    raw = LinearHead(8, 3, normalize=False)
    torch.testing.assert_close(raw(x), raw.linear(x))


@pytest.mark.parametrize(
    "build",
    [
        lambda: ProjectionHead(8, 8, 0),
        lambda: ProjectionHead(8, 8, 4, num_layers=0),
        lambda: ClusterHead(8, 8, 0),
        lambda: MultiClusterHead(8, 10, num_heads=0),
        lambda: LinearHead(0, 4),
    ],
)
def test_sizes_must_be_positive(build) -> None:
    with pytest.raises(UserError, match="at least 1"):
        build()
