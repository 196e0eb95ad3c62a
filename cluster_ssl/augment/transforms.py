"""Random, batched augmentation modules: each image in a batch gets its own parameters.

Parameters are drawn with torch's global RNG on the batch's device (``torch.rand(...,
device=images.device)``), so ``torch.manual_seed`` makes a pipeline reproducible. The maths
lives in :mod:`cluster_ssl.augment.functional`; these modules only sample parameters.
Inputs are float ``(B, C, H, W)`` in ``[0, 1]`` except where a docstring says otherwise.

Modules with an ``inplace`` argument leave their input untouched by default;
:func:`~cluster_ssl.augment.pipelines.build_pipeline` sets ``inplace=True`` where the input
is a tensor the pipeline made itself, which saves a full-batch copy per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cluster_ssl.augment import functional as AF


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def _coin(n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


class ToFloat(nn.Module):
    """uint8 ``0..255`` -> float32 ``[0, 1]`` (the pipeline's single conversion)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return AF.to_float(images)


class Resize(nn.Module):
    """Resize to ``size x size`` when the batch has another size (bilinear, antialiased)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return AF.resize(images, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class _MaybeInplace(nn.Module):
    """Base for modules that may overwrite their input (``inplace=True``) or work on a copy."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def _own(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.inplace else images.clone()


class Normalize(_MaybeInplace):
    """``(x - mean) / std`` per channel; a single mean/std value applies to every channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        super().__init__(inplace)
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have equal length")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean.shape[1] not in (1, images.shape[1]):
            raise ValueError(
                f"normalisation has {self.mean.shape[1]} channel statistics but the images "
                f"have {images.shape[1]} channels"
            )
        scale = 1.0 / self.std.to(images.device)
        return self._own(images).mul_(scale).sub_(self.mean.to(images.device) * scale)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images at once.

    Each image tries ``attempts`` (area, log-uniform aspect) draws and keeps the first that
    fits; if none fits it takes the centre crop with the aspect ratio clamped to ``ratio``.
    Returns ``(n, 4)`` float (top, left, height, width) with integer values.
    """
    area = height * width
    target = area * _uniform(n * attempts, *scale, device).view(n, attempts)
    log_ratio = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), device)
    aspect = torch.exp(log_ratio).view(n, attempts)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    found = fits.any(dim=1)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    top = torch.floor(torch.rand(n, device=device) * (height - h + 1))
    left = torch.floor(torch.rand(n, device=device) * (width - w + 1))
    top = torch.where(found, top, torch.full_like(top, (height - fallback_h) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fallback_w) // 2))
    return torch.stack((top, left, h, w), dim=1)


class RandomResizedCrop(nn.Module):
    """RandomResizedCrop to ``size`` plus horizontal flip with probability ``flip_p``, one op.

    Crop boxes follow torchvision's sampling; crop, resize (bilinear, no antialiasing) and
    flip are one ``grid_sample`` over the batch (:func:`functional.resized_crop`).
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.flip_p = flip_p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        device = images.device
        boxes = sample_crop_boxes(batch, height, width, self.scale, self.ratio, device)
        flip = _coin(batch, self.flip_p, device) if self.flip_p > 0 else None
        return AF.resized_crop(images, boxes, self.size, flip)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}"


class ColorJitter(_MaybeInplace):
    """torchvision's ColorJitter applied with probability ``p``, per-image factors.

    Factors are uniform in ``[max(0, 1 - b), 1 + b]`` (brightness, contrast, saturation) and
    ``[-hue, hue]``. The four operations run in one random order per call (shared by the
    batch, as kornia does; torchvision draws one per image). Saturation and hue are skipped
    on 1-channel images, where they are the identity.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        p: float = 1.0,
        inplace: bool = False,
    ) -> None:
        super().__init__(inplace)
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        if min(brightness, contrast, saturation) < 0:
            raise ValueError("brightness, contrast and saturation must be non-negative")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels = images.shape[:2]
        device = images.device
        applied = _coin(batch, self.p, device)

        def factors(amount: float) -> torch.Tensor:
            values = _uniform(batch, max(0.0, 1.0 - amount), 1.0 + amount, device)
            return torch.where(applied, values, torch.ones_like(values))

        ops: list[tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]] = []
        if self.brightness > 0:
            ops.append((AF.adjust_brightness_, factors(self.brightness)))
        if self.contrast > 0:
            ops.append((AF.adjust_contrast_, factors(self.contrast)))
        if self.saturation > 0 and channels > 1:
            ops.append((AF.adjust_saturation_, factors(self.saturation)))
        if self.hue > 0 and channels > 1:
            shift = _uniform(batch, -self.hue, self.hue, device)
            ops.append((AF.adjust_hue_, torch.where(applied, shift, torch.zeros_like(shift))))
        images = self._own(images)
        for position in torch.randperm(len(ops)).tolist():
            op, values = ops[position]
            images = op(images, values)
        return images

    def extra_repr(self) -> str:
        return (
            f"brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, p={self.p}"
        )


class RandomGrayscale(_MaybeInplace):
    """Replace an image by its luma (kept 3-channel) with probability ``p``; no-op on 1 channel."""

    def __init__(self, p: float = 0.1, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            return self._own(images)
        chosen = _coin(images.shape[0], self.p, images.device).to(images.dtype)
        luma = AF.grayscale(images).expand_as(images)
        # lerp with a 0/1 weight is exact, and much faster than torch.where on the CPU
        return self._own(images).lerp_(luma, chosen.view(-1, 1, 1, 1))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RandomGaussianBlur(_MaybeInplace):
    """Gaussian blur with probability ``p``, sigma uniform in ``sigma`` per image (kornia)."""

    def __init__(
        self,
        kernel_size: int,
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
        inplace: bool = False,
    ) -> None:
        super().__init__(inplace)
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd and >= 3, got {kernel_size}")
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        device = images.device
        chosen = _coin(batch, self.p, device)
        sigma = _uniform(batch, *self.sigma, device)
        index = chosen.nonzero().squeeze(1)
        if index.numel() == 0:
            return self._own(images)
        blurred = AF.gaussian_blur(images[index], self.kernel_size, sigma[index])
        return self._own(images).index_copy_(0, index, blurred)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, p={self.p}"


class RandomPaddedCrop(nn.Module):
    """Horizontal flip (``flip_p``) then RandomCrop of the same size with reflect padding.

    torchvision's ``RandomHorizontalFlip`` + ``RandomCrop(size, padding, padding_mode=
    "reflect")`` in one nearest-neighbour ``grid_sample``; the images must already have the
    output size.
    """

    def __init__(self, padding: int, flip_p: float = 0.5) -> None:
        super().__init__()
        self.padding = padding
        self.flip_p = flip_p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        device = images.device
        offsets = torch.randint(0, 2 * self.padding + 1, (batch, 2), device=device)
        flip = _coin(batch, self.flip_p, device)
        return AF.padded_crop(images, offsets, self.padding, flip)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, flip_p={self.flip_p}"


def _scaled(low: float, high: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda u: low + (high - low) * u


_ENHANCE = _scaled(0.05, 0.95)
_SHIFT = _scaled(-0.1, 0.1)

# SCAN's 14 operations (data/augment.py), magnitude u ~ U[0, 1) mapped to its range there.
# The five geometric ones come last so that one warp handles all of them.
_PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "identity": lambda x, u: x,
    "autocontrast": lambda x, u: AF.autocontrast_(x),
    "equalize": lambda x, u: AF.equalize_(x),
    "solarize": lambda x, u: AF.solarize_(x, 256.0 * u / 255.0),
    "posterize": lambda x, u: AF.posterize_(x, torch.floor(4.0 + 4.0 * u)),
    "color": lambda x, u: AF.adjust_saturation_(x, _ENHANCE(u)),
    "contrast": lambda x, u: AF.adjust_contrast_(x, _ENHANCE(u), round_mean=True),
    "brightness": lambda x, u: AF.adjust_brightness_(x, _ENHANCE(u)),
    "sharpness": lambda x, u: AF.adjust_sharpness_(x, _ENHANCE(u)),
}
_GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
SCAN_OPS: tuple[str, ...] = (*_PIXEL_OPS, *_GEOMETRIC_OPS)


def _geometric(images: torch.Tensor, u: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Apply ``_GEOMETRIC_OPS[which]`` with magnitude ``u`` to each image, one warp."""
    height, width = images.shape[-2:]

    def only(k: int, values: torch.Tensor) -> torch.Tensor:
        return torch.where(which == k, values, torch.zeros_like(values))

    return AF.affine_nearest(
        images,
        angle=only(0, _scaled(-30.0, 30.0)(u)),
        shear=(only(1, _SHIFT(u)), only(2, _SHIFT(u))),
        translate=(only(3, _SHIFT(u) * width), only(4, _SHIFT(u) * height)),
    )


class RandomOps(nn.Module):
    """SCAN's strong augmentation core: ``num_ops`` operations per image out of 14.

    Each round draws, per image, one of :data:`SCAN_OPS` uniformly (with replacement across
    rounds, as ``random.choices``) and a magnitude uniform in the operation's range:
    rotate +-30 degrees; solarize threshold 0..256; posterize 4..7 bits (``int`` of
    U[4, 8)); colour, contrast, brightness and sharpness factors 0.05..0.95; shear +-0.1;
    translate +-0.1 of the side. Geometric operations use nearest sampling and black fill as
    PIL does. Per round the batch is sorted by operation and each operation runs once on its
    images (one host sync per round for the group sizes).
    """

    def __init__(self, num_ops: int = 4) -> None:
        super().__init__()
        self.num_ops = num_ops

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        for round_index in range(self.num_ops):
            images = self._round(images, owned=round_index > 0)
        return images

    def _round(self, images: torch.Tensor, owned: bool) -> torch.Tensor:
        """One operation per image; writes into ``images`` when ``owned``, else a new tensor."""
        batch = images.shape[0]
        device = images.device
        op = torch.randint(0, len(SCAN_OPS), (batch,), device=device)
        magnitude = torch.rand(batch, device=device)
        order = torch.argsort(op)
        counts = torch.bincount(op, minlength=len(SCAN_OPS)).tolist()
        grouped, grouped_op, grouped_u = images[order], op[order], magnitude[order]

        start = 0
        for k, fn in enumerate(_PIXEL_OPS.values()):  # in place on slices of ``grouped``
            end = start + counts[k]
            if end > start:
                fn(grouped[start:end], grouped_u[start:end])
            start = end
        if start < batch:
            which = grouped_op[start:] - len(_PIXEL_OPS)
            grouped[start:] = _geometric(grouped[start:], grouped_u[start:], which)
        target = images if owned else torch.empty_like(images)
        return target.index_copy_(0, order, grouped)

    def extra_repr(self) -> str:
        return f"num_ops={self.num_ops}, ops={SCAN_OPS}"


class Cutout(_MaybeInplace):
    """SCAN's Cutout: one square hole of side ``randint(1, max_side)`` per image, zero fill.

    The centre is uniform over the image and the hole is clipped at the borders (its side is
    ``2 * (side // 2)``, at most ``max_side``). Placed after normalisation, zero is the mean.
    """

    def __init__(self, max_side: int, inplace: bool = False) -> None:
        super().__init__(inplace)
        if max_side < 1:
            raise ValueError(f"cutout side must be >= 1, got {max_side}")
        self.max_side = max_side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        device = images.device
        sides = torch.randint(1, self.max_side + 1, (batch,), device=device)
        centres = torch.stack(
            (
                torch.randint(0, height, (batch,), device=device),
                torch.randint(0, width, (batch,), device=device),
            ),
            dim=1,
        )
        return AF.square_cutout_(self._own(images), centres, sides)

    def extra_repr(self) -> str:
        return f"max_side={self.max_side}"
