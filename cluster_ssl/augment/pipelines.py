"""Named augmentation pipelines (weak, strong, eval) built from batched device ops.

A pipeline maps a batch of images ``(B, C, H, W)`` -- uint8 as the loaders yield them, or
float in ``[0, 1]`` -- to normalised float32 ``(B, C, image_size, image_size)`` on the same
device, each image with its own random parameters. The uint8 -> float conversion happens
once, first. Randomness comes from torch's global RNG on the batch's device, so
``torch.manual_seed`` makes a run reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cluster_ssl.augment.functional import gaussian_kernel_size
from cluster_ssl.augment.transforms import (
    ColorJitter,
    Cutout,
    Normalize,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomOps,
    RandomPaddedCrop,
    RandomResizedCrop,
    Resize,
    ToFloat,
)
from cluster_ssl.runtime.errors import UserError

PIPELINES: tuple[str, ...] = ("eval", "simclr", "cc", "idfd", "scan_strong", "crop_flip")


class Pipeline(nn.Sequential):
    """A sequence of batched ops with the ``kind`` and ``image_size`` it was built for."""

    def __init__(self, kind: str, image_size: int, *steps: nn.Module) -> None:
        super().__init__(*steps)
        self.kind = kind
        self.image_size = image_size


def default_cutout(image_size: int) -> int:
    """SCAN's Cutout side for a given image side: half the side up to 32 px (16 on CIFAR),
    32 up to 96 px (STL-10), 75 above (ImageNet)."""
    if image_size <= 32:
        return max(1, image_size // 2)

    if image_size <= 96:
        return 32
    return 75


#: the pipelines with a horizontal flip (``flip=False`` turns it off)
FLIPPING = ("simclr", "cc", "scan_strong", "crop_flip")
#: the smallest crop area (RandomResizedCrop's scale) of each cropping pipeline
DEFAULT_CROP_SCALE = {"simclr": 0.2, "cc": 0.08, "idfd": 0.2, "crop_flip": 0.08}


def _weak_steps(
    kind: str, image_size: int, strength: float, blur: bool, flip: bool, crop_scale: float
) -> list[nn.Module]:
    """Crop/flip, colour jitter, grayscale and optional blur of the contrastive pipelines."""
    s = strength
    flip_p = 0.5 if flip else 0.0
    scale = (crop_scale, 1.0)
    hue = {"simclr": 0.1, "cc": 0.2, "idfd": 0.0}[kind] * s
    if hue > 0.5:
        raise UserError(f"strength {s} makes the {kind} hue jitter {hue:g}, above the 0.5 maximum")
    if kind == "simclr":
        crop = RandomResizedCrop(image_size, scale=scale, flip_p=flip_p)
        jitter = ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, hue, p=0.8, inplace=True)
    elif kind == "cc":
        crop = RandomResizedCrop(image_size, scale=scale, flip_p=flip_p)
        jitter = ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, hue, p=0.8, inplace=True)
    else:  # idfd: no flip, jitter always applied, no hue
        crop = RandomResizedCrop(image_size, scale=scale, flip_p=0.0)
        jitter = ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, hue, p=1.0, inplace=True)
    steps: list[nn.Module] = [crop, jitter, RandomGrayscale(p=0.2, inplace=True)]
    if blur:
        kernel = gaussian_kernel_size(image_size)
        steps.append(RandomGaussianBlur(kernel, (0.1, 2.0), p=0.5, inplace=True))
    return steps


def build_pipeline(
    kind: str,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    strength: float = 1.0,
    blur: bool = False,
    cutout: int | None = None,
    flip: bool = True,
    strong_ops: int = 4,
    crop_scale: float | None = None,
    crop_padding: int = 0,
) -> Pipeline:
    """Build the augmentation pipeline ``kind`` (one of :data:`PIPELINES`).

    - ``eval``: to float, resize to ``image_size`` when needed, normalise.
    - ``simclr`` (SCAN's weak view): RandomResizedCrop(scale 0.2-1), flip, ColorJitter
      (0.4s, 0.4s, 0.4s, 0.1s) p 0.8, grayscale p 0.2, normalise.
    - ``cc``: RandomResizedCrop(scale 0.08-1), flip, ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)
      p 0.8, grayscale p 0.2, normalise. CC uses s = 0.5 on CIFAR / Tiny-ImageNet and 1 on
      STL-10 / ImageNet subsets, with ``blur=True`` on the ImageNet subsets.
    - ``idfd``: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4s, 0.4s, 0.4s) always,
      grayscale p 0.2, no flip, normalise.
    - ``scan_strong``: resize when needed, flip, RandomCrop of the full size with
      ``crop_padding`` reflect padding (0, SCAN's ``RandomCrop(crop_size)`` without padding
      in ``utils/common_config.py``, a no-op crop: no shift), 4 of SCAN's 14 RandAugment
      operations per image, normalise, Cutout.
    - ``crop_flip`` (DeepCluster): RandomResizedCrop(scale ``crop_scale``-1), flip,
      normalise; no colour change.

    ``strength`` (s) scales the colour jitter of the three contrastive kinds; ``blur`` adds
    a Gaussian blur (p 0.5, sigma 0.1-2, odd kernel ~10% of ``image_size``) to them.
    ``cutout`` is the largest hole side: None means SCAN's value for ``scan_strong``
    (:func:`default_cutout`) and no Cutout for the other kinds; 0 disables it. Cutout comes
    after normalisation and fills zeros, as SCAN does. ``flip=False`` drops the horizontal
    flips of ``simclr``, ``cc`` and ``scan_strong`` (for digits and other images that flipping
    changes into something else); ``strong_ops`` is the number of RandAugment operations of
    ``scan_strong`` per image (4 in SCAN). ``crop_scale`` is the smallest crop area of the
    cropping kinds (None: each paper's, :data:`DEFAULT_CROP_SCALE`; a 0.08 crop of a 16 px
    digit is a blur of a few pixels). ``crop_padding`` (``scan_strong`` only) pads by that
    many pixels (reflect) before the crop, so images shift by up to that much; on by
    choice in the CPU presets that were tuned with it (``image_size // 8``). On 1-channel
    images the saturation,

    hue and grayscale steps are skipped (they are the identity there).

    Where this differs from the per-image torchvision / PIL originals: ColorJitter draws
    one order of its four operations per call for the whole batch (kornia does the same;
    torchvision draws one per image); crops are resized without antialiasing (only matters
    when a crop is larger than ``image_size``); luma uses PIL's (0.299, 0.587, 0.114), not
    torchvision's 0.2989; SCAN's operations work on float images without rounding to 8 bits
    between operations.
    """
    if kind not in PIPELINES:
        raise UserError(f"unknown augmentation {kind!r}; choose one of: {', '.join(PIPELINES)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image size must be a positive integer, got {image_size!r}")
    if strength <= 0:
        raise UserError(f"augmentation strength must be positive, got {strength}")
    if cutout is not None and cutout < 0:
        raise UserError(f"cutout side must be >= 0, got {cutout}")
    contrastive = kind in ("simclr", "cc", "idfd")
    if not contrastive and (strength != 1.0 or blur):
        raise UserError(f"strength and blur apply to simclr, cc and idfd, not to {kind!r}")
    if kind == "eval" and cutout:
        raise UserError("the eval pipeline takes no cutout")
    if kind != "scan_strong" and strong_ops != 4:
        raise UserError(f"strong_ops applies to scan_strong, not to {kind!r}")
    if strong_ops < 0:
        raise UserError(f"strong_ops must be >= 0, got {strong_ops}")
    if crop_padding and kind != "scan_strong":
        raise UserError(f"crop_padding applies to scan_strong, not to {kind!r}")
    if crop_padding < 0:
        raise UserError(f"crop_padding must be >= 0, got {crop_padding}")
    if crop_scale is not None and kind not in DEFAULT_CROP_SCALE:
        raise UserError(f"crop_scale applies to {', '.join(DEFAULT_CROP_SCALE)}, not to {kind!r}")
    crop_scale = DEFAULT_CROP_SCALE.get(kind, 1.0) if crop_scale is None else crop_scale
    if not 0 < crop_scale <= 1:
        raise UserError(f"crop_scale must be in (0, 1], got {crop_scale}")

    steps: list[nn.Module] = [ToFloat()]
    if contrastive:
        steps += _weak_steps(kind, image_size, strength, blur, flip, crop_scale)
    elif kind == "scan_strong":
        flip_p = 0.5 if flip else 0.0
        steps += [Resize(image_size), RandomPaddedCrop(crop_padding, flip_p=flip_p)]
        steps.append(RandomOps(num_ops=strong_ops))
        if cutout is None:
            cutout = default_cutout(image_size)
    elif kind == "crop_flip":
        crop = RandomResizedCrop(image_size, scale=(crop_scale, 1.0), flip_p=0.5 if flip else 0.0)
        steps.append(crop)
    else:
        steps.append(Resize(image_size))
    # every step before this one returned a tensor the pipeline made: safe to overwrite
    steps.append(Normalize(mean, std, inplace=True))
    if cutout:
        steps.append(Cutout(cutout, inplace=True))
    return Pipeline(kind, image_size, *steps)


class TwoViews(nn.Module):
    """Two independently augmented views of one batch, returned as a tuple ``(a, b)``.

    ``pipeline_b`` defaults to ``pipeline_a`` (called twice, fresh randomness each time).
    A tuple rather than a stacked tensor, so the two views may differ in size.
    """

    def __init__(self, pipeline_a: nn.Module, pipeline_b: nn.Module | None = None) -> None:
        super().__init__()
        self.pipeline_a = pipeline_a
        self.pipeline_b = pipeline_b

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        second = self.pipeline_a if self.pipeline_b is None else self.pipeline_b
        return self.pipeline_a(images), second(images)
