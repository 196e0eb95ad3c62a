"""DEC-family autoencoders and the clustering layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cluster_ssl.models import ClusteringLayer, ConvAutoencoder, InputShapeError, MLPAutoencoder
from cluster_ssl.runtime.errors import UserError


def _linear_sizes(seq: nn.Sequential) -> list[int]:
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    return [linears[0].in_features] + [m.out_features for m in linears]


def _relu_after_each_linear(seq: nn.Sequential) -> list[bool]:
    modules = list(seq)
    return [
        i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
        for i, m in enumerate(modules)
        if isinstance(m, nn.Linear)
    ]


def _fit_steps(model: nn.Module, x: torch.Tensor, steps: int = 30) -> tuple[float, float]:
    """MSE before and after a few full-batch Adam steps of reconstruction."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = x if isinstance(model, ConvAutoencoder) else x.flatten(1)
    losses = []
    for _ in range(steps):
        _, recon = model(x)
        loss = nn.functional.mse_loss(recon, target)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


@pytest.mark.parametrize("shape", [(5, 64), (5, 784), (5, 1, 28, 28)])
def test_mlp_shapes(shape: tuple[int, ...]) -> None:
    dim = int(np.prod(shape[1:]))
    model = MLPAutoencoder(dim)
    z, recon = model(torch.randn(shape))
    assert z.shape == (5, 10)
    assert recon.shape == (5, dim)
    assert model.encode(torch.randn(shape)).shape == (5, 10)


def test_mlp_layer_sizes_and_activations() -> None:
    model = MLPAutoencoder(784)
    assert _linear_sizes(model.encoder) == [784, 500, 500, 2000, 10]
    assert _linear_sizes(model.decoder) == [10, 2000, 500, 500, 784]
    # ReLU after every layer except the embedding (encoder) and the output (decoder).
    assert _relu_after_each_linear(model.encoder) == [True, True, True, False]
    assert _relu_after_each_linear(model.decoder) == [True, True, True, False]
    assert not isinstance(model.encoder[-1], nn.ReLU)
    assert not isinstance(model.decoder[-1], nn.ReLU)


def test_mlp_keras_dec_initialisation() -> None:
    model = MLPAutoencoder(784)
    first = model.encoder[0]
    assert torch.all(first.bias == 0)
    assert first.weight.abs().max() <= 1 / np.sqrt(784)
    assert first.weight.abs().max() > 0.9 / np.sqrt(784)


def test_mlp_glorot_initialisation_and_unknown_name() -> None:
    model = MLPAutoencoder(784, weight_init="glorot_uniform")
    first = model.encoder[0]
    bound = np.sqrt(6 / (784 + 500))  # Glorot: U(+-sqrt(6 / (fan_in + fan_out)))
    assert torch.all(first.bias == 0)
    assert bound * 0.9 < first.weight.abs().max() <= bound
    with pytest.raises(UserError, match="unknown weight_init 'he'; use one of fan_in_uniform"):
        MLPAutoencoder(784, weight_init="he")


def test_mlp_rejects_wrong_input_dim() -> None:
    with pytest.raises(InputShapeError, match="input_dim=784"):
        MLPAutoencoder(784)(torch.randn(2, 64))


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 28, 28)])
def test_cae_shapes(image_shape: tuple[int, int, int]) -> None:
    model = ConvAutoencoder(image_shape)
    x = torch.randn(4, *image_shape)
    z, recon = model(x)
    assert z.shape == (4, 10)
    assert recon.shape == x.shape


@pytest.mark.parametrize(
    ("side", "padding", "sides"), [(28, "valid", [28, 14, 7, 3]), (32, "same", [32, 16, 8, 4])]
)
def test_cae_dcec_architecture(side: int, padding: str, sides: list[int]) -> None:
    model = ConvAutoencoder((1, side, side))
    assert model.conv3_padding == padding
    x = torch.randn(1, 1, side, side)
    seen = [side]
    for module in model.encoder:
        x = module(x)
        if isinstance(module, nn.ReLU):
            seen.append(x.shape[-1])
    assert seen == sides
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (32, (5, 5), (2, 2)),
        (64, (5, 5), (2, 2)),
        (128, (3, 3), (2, 2)),
    ]
    # Keras 'same' for 5x5 stride 2 on an even side: 1 before, 2 after.
    assert model.encoder[0].padding == (1, 2, 1, 2)
    # Linear embedding, linear output, ReLU between every other pair of layers.
    assert isinstance(model.encoder[-1], nn.Linear)
    assert not isinstance(model.decoder[-1], nn.ReLU)
    assert sum(isinstance(m, nn.ReLU) for m in model.encoder) == 3
    assert sum(isinstance(m, nn.ReLU) for m in model.decoder) == 3


@pytest.mark.parametrize("side", [28, 32])
def test_cae_transposed_convs_are_adjoints_of_the_convs(side: int) -> None:
    """Like tf.nn.conv2d_transpose, each deconv (+ crop) is the adjoint of its padded conv."""
    model = ConvAutoencoder((1, side, side)).double()
    enc, dec = list(model.encoder), list(model.decoder)
    conv_at = [i for i, m in enumerate(enc) if isinstance(m, nn.Conv2d)]
    deconv_at = [i for i, m in enumerate(dec) if isinstance(m, nn.ConvTranspose2d)][::-1]
    sides = [side, side // 2, side // 4]
    for ci, di, n in zip(conv_at, deconv_at, sides, strict=True):
        conv, deconv = enc[ci], dec[di]
        pad = enc[ci - 1] if isinstance(enc[ci - 1], nn.ZeroPad2d) else nn.Identity()
        crop = dec[di + 1] if isinstance(dec[di + 1], nn.ZeroPad2d) else nn.Identity()
        with torch.no_grad():
            deconv.weight.copy_(conv.weight)
            conv.bias.zero_()
            deconv.bias.zero_()
            x = torch.randn(2, conv.in_channels, n, n, dtype=torch.float64)
            y = conv(pad(x))
            v = torch.randn_like(y)
            back = crop(deconv(v))
        assert back.shape == x.shape
        assert torch.allclose((y * v).sum(), (x * back).sum())


@pytest.mark.parametrize(
    "image_shape", [(1, 30, 30), (3, 28, 32), (1, 4, 4), (1, 27, 27), (28, 28)]
)
def test_cae_rejects_unsupported_sizes(image_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="28, 28"):
        ConvAutoencoder(image_shape)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        ConvAutoencoder(image_shape)  # type: ignore[arg-type]


def test_cae_rejects_wrong_batch_shape() -> None:
    with pytest.raises(InputShapeError, match=r"\(1, 28, 28\)"):
        ConvAutoencoder((1, 28, 28)).encode(torch.randn(2, 3, 28, 28))


def test_reconstruction_training_lowers_mse() -> None:
    torch.manual_seed(0)
    mlp_first, mlp_last = _fit_steps(MLPAutoencoder(64), torch.randn(16, 64))
    assert mlp_last < 0.8 * mlp_first
    cae_first, cae_last = _fit_steps(ConvAutoencoder((1, 28, 28)), torch.rand(16, 1, 28, 28))
    assert cae_last < 0.8 * cae_first


def test_clustering_layer() -> None:
    torch.manual_seed(0)
    layer = ClusteringLayer(num_clusters=4, embedding_dim=3)
    assert layer.centres.shape == (4, 3)
    assert isinstance(layer.centres, nn.Parameter)
    z = torch.randn(6, 3, requires_grad=True)
    q = layer(z)
    assert q.shape == (6, 4)
    assert torch.allclose(q.sum(dim=1), torch.ones(6))

    centres = np.eye(4, 3) * 5.0
    param = layer.centres
    layer.set_centres(centres)
    assert layer.centres is param
    assert torch.allclose(layer.centres, torch.as_tensor(centres, dtype=torch.float32))
    q = layer(torch.as_tensor(centres, dtype=torch.float32))
    assert torch.equal(q.argmax(dim=1), torch.arange(4))
    layer.set_centres(torch.zeros(4, 3))
    assert torch.all(layer.centres == 0)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        layer.set_centres(torch.zeros(3, 3))


def test_clustering_layer_gradients_reach_centres() -> None:
    torch.manual_seed(0)
    layer = ClusteringLayer(3, 2)
    z = torch.randn(10, 2, requires_grad=True)
    q = layer(z)
    p = (q.detach() ** 2) / q.detach().sum(0)
    p = p / p.sum(1, keepdim=True)
    nn.functional.kl_div(q.log(), p, reduction="batchmean").backward()
    assert layer.centres.grad is not None and layer.centres.grad.abs().sum() > 0
    assert z.grad is not None and z.grad.abs().sum() > 0
