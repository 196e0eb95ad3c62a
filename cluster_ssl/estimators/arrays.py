"""From a user's numpy array to the tensors the recipes train on, with scikit-learn's checks.

Two kinds of input:

* ``images``: (N, H, W) or (N, C, H, W) (or (N, H, W, C) with C in 1 or 3), for the image
  methods. uint8 arrays are used as they are; any other numeric array is scaled to 0..255
  with the minimum and maximum seen by ``fit`` (kept, so ``predict`` scales new images the
  same way) and stored as uint8, the toolkit's image format.
* ``vectors``: (N, D) feature vectors, for DEC and IDEC's MLP autoencoders; used as given
  (float32). Scale them as the autoencoder should see them (e.g. ``MinMaxScaler`` in a
  ``Pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

INPUT_KINDS = ("images", "vectors")


@dataclass(frozen=True)
class PixelScale:
    """The affine map fitted on the training images: uint8 = (x - low) * 255 / (high - low)."""

    low: float
    high: float

    @classmethod
    def fit(cls, x: np.ndarray) -> PixelScale:
        """The scale of ``x``'s pixels.

        Args:
            x: training images; uint8 keep 0-255, other dtypes their own min and max.

        Returns:
            The scale that maps them onto 0-255.
        """
        if x.dtype == np.uint8:
            return cls(0.0, 255.0)
        low, high = float(x.min()), float(x.max())
        if low >= 0.0 and high <= 1.0:  # already in [0, 1]: keep the meaning of 0 and 1
            return cls(0.0, 1.0)
        return cls(low, high if high > low else low + 1.0)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Images on this scale mapped onto 0-255, as uint8.

        Args:
            x: images of any shape.

        Returns:
            uint8 images of the same shape (``x`` itself when already on 0-255 uint8).
        """
        if x.dtype == np.uint8 and (self.low, self.high) == (0.0, 255.0):
            return x
        scaled = (x.astype(np.float64) - self.low) * (255.0 / (self.high - self.low))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def image_layout(x: np.ndarray, owner: str) -> np.ndarray:
    """Images in the channels-first layout the backbones take.

    Args:
        x: (N, H, W), (N, H, W, C) with C in {1, 3}, or (N, C, H, W).
        owner: the estimator's name, for the error message.

    Returns:
        (N, C, H, W) images.

    Raises:
        ValueError: for any other shape (scikit-learn's convention for bad input).
    """
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if x.shape[1] in (1, 3):
            return x
    raise ValueError(
        f"{owner} expects images of shape (n_samples, height, width) or (n_samples, "
        f"channels, height, width) with 1 or 3 channels; got an array of shape {x.shape}. "
        "Reshape flat rows first, e.g. X.reshape(-1, 8, 8) for scikit-learn's digits"
    )


def to_tensor(x: np.ndarray, kind: str, scale: PixelScale | None) -> torch.Tensor:
    """The in-memory dataset's tensor.

    Args:
        x: validated images or vectors.
        kind: ``images`` or ``vectors``.
        scale: the training images' :class:`PixelScale` (None for vectors).

    Returns:
        uint8 (N, C, H, W) images or float32 (N, 1, 1, D) vectors.
    """
    if kind == "vectors":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None, None, :]
    assert scale is not None
    return torch.from_numpy(np.ascontiguousarray(scale.apply(x)))
