"""Autoencoders of the DEC family: DEC/IDEC's fully connected one and DCEC's convolutional one.

Both expose the same interface so the clustering methods can use either:

* ``.encoder`` / ``.decoder``: ``nn.Sequential`` modules;
* ``encode(x) -> z`` with ``z`` of shape (N, embedding_dim);
* ``forward(x) -> (z, reconstruction)``, the reconstruction being in the layout the model
  compares against (flattened (N, D) for the MLP, (N, C, H, W) for the CAE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cluster_ssl.runtime.errors import UserError


class InputShapeError(UserError, ValueError):
    """An input or image size the autoencoder cannot handle.

    A ``UserError`` (the CLI prints it without a traceback) and a ``ValueError``.
    """


def _init_linear_keras_dec(layer: nn.Linear) -> None:
    """Keras DEC's ``VarianceScaling(1/3, 'fan_in', 'uniform')``: U(+-1/sqrt(fan_in)), zero bias."""
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)


def _init_glorot(layer: nn.Linear | nn.Conv2d | nn.ConvTranspose2d) -> None:
    """Keras' default ``glorot_uniform`` kernel and zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    assert layer.bias is not None
    nn.init.zeros_(layer.bias)


#: weight initialisations of the MLP autoencoder, by name (biases are zero in both)
MLP_WEIGHT_INITS = {"fan_in_uniform": _init_linear_keras_dec, "glorot_uniform": _init_glorot}


class MLPAutoencoder(nn.Module):
    """DEC / IDEC's stacked autoencoder, d-500-500-2000-10 and its mirror.

    Encoder: Linear layers ``input_dim -> *hidden_dims -> embedding_dim`` with a ReLU after
    every layer except the embedding (linear). Decoder: the mirror
    ``embedding_dim -> *reversed(hidden_dims) -> input_dim`` with a ReLU after every layer
    except the output (linear).

    Initialisation (``weight_init``), biases zero in both:

    * ``fan_in_uniform`` (default): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), exactly the
      ``VarianceScaling(scale=1/3, mode='fan_in', distribution='uniform')`` the Keras DEC
      reimplementation uses on MNIST and Fashion-MNIST (same bound as
      ``nn.init.kaiming_uniform_(w, a=sqrt(5))``, but with zero rather than random biases);
    * ``glorot_uniform``: Keras' default, which that code keeps for USPS.

    Args:
        input_dim: D, the number of input features (C * H * W for images).
        hidden_dims: widths of the hidden encoder layers (decoder uses them reversed).
        embedding_dim: size of the embedding z.
        weight_init: ``fan_in_uniform`` or ``glorot_uniform`` (above).

    Raises:
        UserError: unknown ``weight_init``.
        ValueError: a layer size below 1.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int] = (500, 500, 2000),
        embedding_dim: int = 10,
        weight_init: str = "fan_in_uniform",
    ) -> None:
        super().__init__()
        if weight_init not in MLP_WEIGHT_INITS:
            raise UserError(
                f"unknown weight_init {weight_init!r}; use one of {', '.join(MLP_WEIGHT_INITS)}"
            )
        if input_dim < 1 or embedding_dim < 1 or any(h < 1 for h in hidden_dims):
            raise ValueError(
                f"layer sizes must be positive; got input_dim={input_dim}, "
                f"hidden_dims={tuple(hidden_dims)}, embedding_dim={embedding_dim}"
            )
        self.input_dim = input_dim
        self.embedding_dim = embedding_dim
        initialise = MLP_WEIGHT_INITS[weight_init]
        self.encoder = self._stack([input_dim, *hidden_dims, embedding_dim], initialise)
        self.decoder = self._stack([embedding_dim, *reversed(hidden_dims), input_dim], initialise)

    @staticmethod
    def _stack(dims: Sequence[int], initialise: Callable[[nn.Linear], None]) -> nn.Sequential:
        """Linear layers between consecutive ``dims``, ReLU after all but the last."""
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            linear = nn.Linear(fan_in, fan_out)
            initialise(linear)
            layers.append(linear)
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch into the (N, embedding_dim) latent space.

        Args:
            x: (N, D) or (N, C, H, W) input, flattened to (N, D).

        Returns:
            (N, embedding_dim) embeddings z.

        Raises:
            InputShapeError: the flattened input does not have ``input_dim`` features.
        """
        x = x.flatten(1)
        if x.shape[1] != self.input_dim:
            raise InputShapeError(
                f"MLPAutoencoder was built for input_dim={self.input_dim} but got inputs with "
                f"{x.shape[1]} features per sample"
            )
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch and reconstruct it from the embedding.

        Args:
            x: (N, D) or (N, C, H, W) input, flattened to (N, D).

        Returns:
            ``(z, reconstruction)``: the (N, embedding_dim) embeddings and the flattened
            (N, D) reconstruction.

        Raises:
            InputShapeError: the flattened input does not have ``input_dim`` features.
        """
        z = self.encode(x)
        return z, self.decoder(z)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Keras 'same' padding (before, after) along one axis.

    Output size ceil(size / stride); when the total padding is odd the extra pixel goes after,
    e.g. 5x5 stride 2 on an even size pads 1 before and 2 after.
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvAutoencoder(nn.Module):
    """DCEC's convolutional autoencoder (CAE), with Keras' exact padding arithmetic.

    Encoder::

        conv C->32 5x5 s2 'same' - ReLU - conv 32->64 5x5 s2 'same' - ReLU
        - conv 64->128 3x3 s2 (pad3) - ReLU - flatten - Linear -> embedding_dim (no activation)

    Decoder (mirror)::

        Linear -> 128*h*h - ReLU - reshape (128, h, h) - deconv 128->64 3x3 s2 (pad3) - ReLU
        - deconv 64->32 5x5 s2 'same' - ReLU - deconv 32->C 5x5 s2 'same' (linear output)

    As in DCEC's code, ``pad3`` is 'same' when the side H is divisible by 8
    (32 -> 16 -> 8 -> 4) and 'valid' otherwise (28 -> 14 -> 7 -> 3); so square images whose side
    is a multiple of 4 and at least 8 are supported (28x28, 32x32, 96x96, ...), with any number
    of channels, and the reconstruction comes out at exactly (C, H, W).

    Padding: Keras' 'same' pads asymmetrically (5x5 stride 2 on an even side: 1 before,
    2 after; 3x3 stride 2: 0 before, 1 after), which PyTorch's symmetric ``padding=`` cannot
    express, so each 'same' conv is an explicit ``nn.ZeroPad2d`` followed by an unpadded conv.
    Each 'same' transposed conv is an unpadded ``nn.ConvTranspose2d`` followed by a crop of the
    same (before, after) amounts (``nn.ZeroPad2d`` with negative padding), which makes it the
    exact adjoint of the corresponding conv, as ``tf.nn.conv2d_transpose`` is. Every layer thus
    computes the same function as its Keras counterpart (ported Keras weights would still need
    the NHWC -> NCHW permutation of the dense layers next to the flatten/reshape).

    Initialisation: Keras' default ``glorot_uniform`` (``nn.init.xavier_uniform_``) for every
    conv, transposed conv and dense kernel, zero biases.

    Args:
        image_shape: (C, H, W) of the input images, H == W.
        channels: filters of the three conv layers (DCEC: 32, 64, 128).
        embedding_dim: size of the embedding z (DCEC: 10).

    Raises:
        InputShapeError: unsupported image size (also a ``ValueError``).
        ValueError: ``channels`` is not three positive filter counts, or ``embedding_dim``
            is below 1.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64, 128),
        embedding_dim: int = 10,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise InputShapeError(f"image_shape must be (C, H, W); got {tuple(image_shape)}")
        c, h, w = image_shape
        if h != w or h % 4 != 0 or h < 8 or c < 1:
            raise InputShapeError(
                f"ConvAutoencoder supports square images whose side is a multiple of 4 and at "
                f"least 8, e.g. (C, 28, 28) or (C, 32, 32), grayscale or RGB; got image_shape="
                f"{tuple(image_shape)}. Resize the images (e.g. to 28x28 or 32x32)."
            )
        if len(channels) != 3 or any(ch < 1 for ch in channels) or embedding_dim < 1:
            raise ValueError(
                f"channels must be three positive filter counts and embedding_dim positive; "
                f"got channels={tuple(channels)}, embedding_dim={embedding_dim}"
            )
        self.image_shape = (c, h, w)
        self.embedding_dim = embedding_dim
        self.conv3_padding = "same" if h % 8 == 0 else "valid"

        # (in_channels, out_channels, kernel, padding before/after, input side) per conv stage.
        stages: list[tuple[int, int, int, tuple[int, int], int]] = []
        size = h
        for in_ch, out_ch, kernel, same in zip(
            (c, *channels[:2]),
            channels,
            (5, 5, 3),
            (True, True, self.conv3_padding == "same"),
            strict=True,
        ):
            pad = _same_padding(size, kernel, 2) if same else (0, 0)
            stages.append((in_ch, out_ch, kernel, pad, size))
            size = (size + sum(pad) - kernel) // 2 + 1
        flat = channels[2] * size * size

        encoder: list[nn.Module] = []
        for in_ch, out_ch, kernel, pad, _ in stages:
            if pad != (0, 0):
                encoder.append(nn.ZeroPad2d((pad[0], pad[1], pad[0], pad[1])))
            conv = nn.Conv2d(in_ch, out_ch, kernel, stride=2)
            _init_glorot(conv)
            encoder += [conv, nn.ReLU()]
        embed = nn.Linear(flat, embedding_dim)
        _init_glorot(embed)
        encoder += [nn.Flatten(), embed]
        self.encoder = nn.Sequential(*encoder)

        expand = nn.Linear(embedding_dim, flat)
        _init_glorot(expand)
        decoder: list[nn.Module] = [expand, nn.ReLU(), nn.Unflatten(1, (channels[2], size, size))]
        for i, (in_ch, out_ch, kernel, pad, side) in enumerate(reversed(stages)):
            deconv = nn.ConvTranspose2d(out_ch, in_ch, kernel, stride=2)
            _init_glorot(deconv)
            decoder.append(deconv)
            # Unpadded output is (size - 1) * 2 + kernel; crop back to ``side`` as Keras does.
            after = (size - 1) * 2 + kernel - pad[0] - side
            if (pad[0], after) != (0, 0):
                decoder.append(nn.ZeroPad2d((-pad[0], -after, -pad[0], -after)))
            if i < len(stages) - 1:
                decoder.append(nn.ReLU())
            size = side
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of images into the (N, embedding_dim) latent space.

        Args:
            x: (N, C, H, W) images of the ``image_shape`` the model was built for.

        Returns:
            (N, embedding_dim) embeddings z.

        Raises:
            InputShapeError: ``x`` is not (N, C, H, W) with (C, H, W) == ``image_shape``.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise InputShapeError(
                f"ConvAutoencoder was built for images of shape {self.image_shape} (C, H, W) "
                f"but got a batch of shape {tuple(x.shape)}"
            )
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch of images and reconstruct them from the embedding.

        Args:
            x: (N, C, H, W) images of the ``image_shape`` the model was built for.

        Returns:
            ``(z, reconstruction)``: the (N, embedding_dim) embeddings and the
            (N, C, H, W) reconstruction.

        Raises:
            InputShapeError: ``x`` is not (N, C, H, W) with (C, H, W) == ``image_shape``.
        """
        z = self.encode(x)
        return z, self.decoder(z)
