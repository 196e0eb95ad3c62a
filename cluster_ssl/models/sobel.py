"""DeepCluster's fixed Sobel input layer: grayscale, then horizontal and vertical gradients.

Caron et al. (2018), Sec. 4: "we use a fixed linear transformation based on Sobel filters to
remove color and increase local contrast", so that clustering cannot latch onto colour. As
in the public code, the grayscale image is the mean of the channels (a 1x1 convolution with
weights 1/3) and two 3x3 Sobel kernels with zero padding 1 follow:

    G_x = [[1, 0, -1], [2, 0, -2], [1, 0, -1]] * gray
    G_y = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]] * gray

(``*`` is cross-correlation, as ``conv2d`` computes it). The kernels are constants, not
parameters: nothing here is trained, and the backbone behind it sees 2 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOBEL_CHANNELS = 2


class SobelFilter(nn.Module):
    """(B, C, H, W) images -> (B, 2, H, W) Sobel gradients of their channel mean."""

    def __init__(self) -> None:
        super().__init__()
        g_x = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        g_y = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
        self.register_buffer("kernels", torch.stack([g_x, g_y])[:, None], persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Sobel gradients G_x and G_y of the images' channel mean (see the module docstring).

        Args:
            images: (B, C, H, W) images, any number of channels.

        Returns:
            (B, 2, H, W) gradients, channel 0 G_x and channel 1 G_y.
        """
        gray = images.mean(dim=1, keepdim=True)
        return F.conv2d(gray, self.kernels.to(gray.dtype), padding=1)
