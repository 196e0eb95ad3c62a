"""Batched image operations with one parameter per image, on whatever device the batch is on.

Every function takes float images ``(B, C, H, W)`` in ``[0, 1]`` (except :func:`to_float`)
and per-image parameters as tensors of shape ``(B,)``; none of them draws random numbers.
The random modules in :mod:`cluster_ssl.augment.transforms` sample the parameters and call
these. Colour operations follow torchvision / PIL semantics (ITU-R 601-2 luma weights,
blend-then-clamp); a 1-channel image is its own grayscale, so the saturation and hue
operations leave it unchanged.

Functions whose names end in ``_`` work in place and return their input: on the CPU every
fresh full-batch temporary costs page faults (glibc hands large blocks back to the kernel),
which made out-of-place versions two to three times slower. Callers clone when the input is
not theirs to change. Multiply-then-add is used instead of ``torch.lerp`` / ``torch.where``
with broadcast operands, which take slow paths on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``0..255`` -> a new float32 tensor in ``[0, 1]`` (float input is copied)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating-point images, got {images.dtype}")
    return images.to(torch.float32, copy=True)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, 1)`` for broadcasting against a batch."""
    return values.view(-1, 1, 1, 1)


def _check_channels(images: torch.Tensor) -> None:
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"colour operations need 1- or 3-channel images, got {images.shape[1]} channels"
        )


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma ``(B, 1, H, W)`` as a new tensor (a 1-channel batch is returned as is)."""
    _check_channels(images)
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    luma = r * LUMA_WEIGHTS[0]
    luma.add_(g, alpha=LUMA_WEIGHTS[1]).add_(b, alpha=LUMA_WEIGHTS[2])
    return luma.unsqueeze(1)


def mean_luma(images: torch.Tensor) -> torch.Tensor:
    """Mean luma per image, ``(B, 1, 1, 1)`` (channel means, then weighted)."""
    _check_channels(images)
    means = images.mean(dim=(2, 3))
    if images.shape[1] == 3:
        weights = torch.tensor(LUMA_WEIGHTS, device=images.device, dtype=images.dtype)
        means = means @ weights.view(3, 1)
    return means.view(-1, 1, 1, 1)


def _blend_(images: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: ``factor * images + (1 - factor) * degenerate``, clamped (PIL's enhance).

    ``degenerate`` may be ``(B, 1, 1, 1)``, ``(B, 1, H, W)`` or full size.
    """
    factor = _per_image(factor)
    return images.mul_(factor).add_(degenerate * (1.0 - factor)).clamp_(0.0, 1.0)


def adjust_brightness_(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: scale intensities by ``factor`` (0 = black, 1 = unchanged)."""
    return images.mul_(_per_image(factor)).clamp_(0.0, 1.0)


def adjust_contrast_(
    images: torch.Tensor, factor: torch.Tensor, round_mean: bool = False
) -> torch.Tensor:
    """In place: blend with the image's mean luma (0 = flat grey, 1 = unchanged).

    ``round_mean`` rounds the mean to an 8-bit level first, as ``PIL.ImageEnhance.Contrast``.
    """
    mean = mean_luma(images)
    if round_mean:
        mean = torch.floor(mean * 255.0 + 0.5) / 255.0
    return _blend_(images, mean, factor)


def adjust_saturation_(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: blend with the grayscale image (0 = gray, 1 = unchanged); 1 channel: no-op."""
    if images.shape[1] == 1:
        return images
    return _blend_(images, grayscale(images), factor)


def adjust_hue_(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """In place: rotate the HSV hue by ``shift`` turns (torchvision's range: ``[-0.5, 0.5]``).

    Hue is computed as torchvision does (red, then green, then blue wins ties for the
    maximum), in sixths of a turn; each channel is rebuilt with the closed form
    ``c = V - (V - min) * clamp(2 - |k - 2|, 0, 1)``, ``k = (n + 6h) mod 6``, ``n = 5, 3, 1``
    for R, G, B, since value ``V`` and chroma ``V - min`` are unchanged. 1 channel: no-op.
    """
    _check_channels(images)
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    maxc = torch.maximum(r, g)
    torch.maximum(maxc, b, out=maxc)
    delta = torch.minimum(r, g)
    torch.minimum(delta, b, out=delta)
    delta.neg_().add_(maxc)
    is_r = (maxc == r).to(images.dtype)
    is_g = (maxc == g).to(images.dtype).mul_(1.0 - is_r)
    is_b = (1.0 - is_r).sub_(is_g)
    # hue in sixths: (g - b) / delta when red is the max, 2 + (b - r) / delta for green, ...
    hue6 = (g - b).mul_(is_r)
    work = (b - r).add_(delta, alpha=2.0).mul_(is_g)
    hue6.add_(work)
    torch.sub(r, g, out=work).add_(delta, alpha=4.0).mul_(is_b)
    hue6.add_(work)
    # + 12 keeps it positive (the ratio is >= -1 and 6 * shift >= -3) for the floor-mod below
    hue6.div_(delta.clamp_min(1e-12)).add_((6.0 * shift + 12.0).view(-1, 1, 1))
    for channel, offset in enumerate((5.0, 3.0, 1.0)):
        k = torch.add(hue6, offset, out=work)
        k.sub_(torch.mul(k, 1.0 / 6.0, out=is_g).floor_().mul_(6.0))
        ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
        torch.addcmul(maxc, delta, ramp, value=-1.0, out=is_r)
        images[:, channel] = is_r
    return images


def adjust_sharpness_(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place: blend with PIL's SMOOTH-filtered image (0 = smoothed, 1 = unchanged).

    The filter leaves the one-pixel border as it is, as PIL and torchvision do.
    """
    if min(images.shape[-2:]) < 3:
        return images
    # SMOOTH is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13: the 3x3 box sum plus 4 x the centre
    interior = images[:, :, 1:-1, 1:-1]
    smooth = F.avg_pool2d(images, 3, stride=1).mul_(9.0).add_(interior, alpha=4.0).div_(13.0)
    _blend_(interior, smooth, factor)
    return images


def autocontrast_(images: torch.Tensor) -> torch.Tensor:
    """In place: stretch each channel to the full ``[0, 1]`` range (flat channels kept)."""
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, torch.ones_like(low), 1.0 / (high - low).clamp_min(1e-12))
    low = torch.where(flat, torch.zeros_like(low), low)
    return images.sub_(low).mul_(scale).clamp_(0.0, 1.0)


def equalize_(images: torch.Tensor) -> torch.Tensor:
    """In place: equalise each channel's histogram as ``PIL.ImageOps.equalize`` (kornia)."""
    from kornia.enhance import equalize  # loaded when used: the package imports without it

    return images.copy_(equalize(images))


def solarize_(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """In place: invert pixels at or above ``threshold`` (0..1 scale; above 1 inverts none)."""
    return images.copy_(torch.where(images >= _per_image(threshold), 1.0 - images, images))


def posterize_(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """In place: keep the top ``bits`` (1..8, integer-valued) bits of each 8-bit level."""
    step = _per_image(torch.exp2(8.0 - bits.to(images.dtype)))
    return images.mul_(255.0).round_().div_(step).floor_().mul_(step / 255.0)


def _separable_grid(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` grid ``(B, len(ys), len(xs), 2)`` from per-image column/row coordinates."""
    batch = xs.shape[0]
    xs = xs.view(batch, 1, -1).expand(-1, ys.shape[1], -1)
    ys = ys.view(batch, -1, 1).expand(-1, -1, xs.shape[2])
    return torch.stack((xs, ys), dim=-1)


def affine_nearest(
    images: torch.Tensor,
    angle: torch.Tensor,
    shear: tuple[torch.Tensor, torch.Tensor],
    translate: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """PIL-style inverse affine warps in one ``grid_sample`` (nearest, zero fill), new tensor.

    An output pixel centre ``(u, v)`` reads the input at
    ``u_in = cx + cos a (u - cx) + sin a (v - cy) + shear_x v + translate_x`` and
    ``v_in = cy - sin a (u - cx) + cos a (v - cy) + shear_y u + translate_y`` with
    ``a = -angle`` in radians, so a positive ``angle`` rotates counter-clockwise as
    ``PIL.Image.rotate``; shears are PIL's ``(1, s, 0, 0, 1, 0)`` coefficients and
    translations are in pixels. All parameters have shape ``(B,)``.
    """
    height, width = images.shape[-2:]
    device = images.device
    theta = -torch.deg2rad(angle).view(-1, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    u = (torch.arange(width, device=device, dtype=images.dtype) + 0.5).view(1, 1, -1)
    v = (torch.arange(height, device=device, dtype=images.dtype) + 0.5).view(1, -1, 1)
    cx, cy = width / 2.0, height / 2.0
    shear_x, shear_y = (s.view(-1, 1, 1) for s in shear)
    tx, ty = (t.view(-1, 1, 1) for t in translate)
    u_in = cx + cos * (u - cx) + sin * (v - cy) + shear_x * v + tx
    v_in = cy - sin * (u - cx) + cos * (v - cy) + shear_y * u + ty
    grid = torch.stack((2.0 * u_in / width - 1.0, 2.0 * v_in / height - 1.0), dim=-1)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def resized_crop(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop ``boxes`` (``(B, 4)``: top, left, height, width in pixels), resize to ``size``.

    One bilinear ``grid_sample`` with a per-image separable grid, new tensor: the same
    result as torchvision's ``resized_crop(..., antialias=False)`` (sampling positions and
    clamping at the crop's edges), with an optional horizontal ``flip`` (``(B,)`` bool)
    folded into the grid for free.
    """
    height, width = images.shape[-2:]
    top, left, crop_h, crop_w = (v.view(-1, 1) for v in boxes.unbind(1))
    centres = torch.arange(size, device=images.device, dtype=images.dtype) + 0.5

    def positions(start: torch.Tensor, length: torch.Tensor, side: int) -> torch.Tensor:
        # input position in pixels (pixel i covers [i, i + 1)), clamped to the crop's outer
        # pixel centres as interpolating the crop alone does, then normalised: 2 p / side - 1
        p = start + centres * (length / size)
        p = torch.minimum(torch.maximum(p, start + 0.5), start + length - 0.5)
        return p * (2.0 / side) - 1.0

    xs, ys = positions(left, crop_w, width), positions(top, crop_h, height)
    if flip is not None:
        xs = torch.where(flip.view(-1, 1), xs.flip(1), xs)
    grid = _separable_grid(xs, ys)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to ``size x size`` (bilinear, antialiased when shrinking); no-op when it fits."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    ).clamp_(0.0, 1.0)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in ``[-size + 1, 2 * size - 2]`` into ``[0, size)`` by reflect padding."""
    return (size - 1) - (size - 1 - index.abs()).abs()


def padded_crop(
    images: torch.Tensor, offsets: torch.Tensor, padding: int, flip: torch.Tensor
) -> torch.Tensor:
    """Reflect-pad by ``padding``, flip where ``flip``, crop the original size at ``offsets``.

    ``offsets`` is ``(B, 2)`` integer (row, column) positions in the padded image, in
    ``0..2 * padding``. The padded image is never built: each output pixel's source index
    is reflected into the image and read with one nearest-neighbour ``grid_sample`` at
    exact pixel centres (new tensor).
    """
    height, width = images.shape[-2:]
    device = images.device
    rows = offsets[:, :1] + torch.arange(height, device=device) - padding
    cols = offsets[:, 1:] + torch.arange(width, device=device)
    cols = torch.where(flip.view(-1, 1), width + 2 * padding - 1 - cols, cols) - padding
    rows, cols = _reflect(rows, height), _reflect(cols, width)
    ys = (2.0 * rows.to(images.dtype) + 1.0) / height - 1.0
    xs = (2.0 * cols.to(images.dtype) + 1.0) / width - 1.0
    grid = _separable_grid(xs, ys)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="border", align_corners=False)


def square_cutout_(
    images: torch.Tensor, centres: torch.Tensor, sides: torch.Tensor
) -> torch.Tensor:
    """In place: zero one square per image, as SCAN's ``Cutout``, clipped at the borders.

    ``centres`` is ``(B, 2)`` integer (row, column); ``sides`` is ``(B,)`` integer: the hole
    spans ``centre - side // 2`` to ``centre + side // 2`` (exclusive) on each axis, so its
    side is at most ``side``.
    """
    height, width = images.shape[-2:]
    half = (sides // 2).view(-1, 1)
    device = images.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= centres[:, :1] - half) & (rows < centres[:, :1] + half)
    in_cols = (cols >= centres[:, 1:] - half) & (cols < centres[:, 1:] + half)
    hole = in_rows.unsqueeze(2) & in_cols.unsqueeze(1)
    return images.masked_fill_(hole.unsqueeze(1), 0.0)


def gaussian_kernel_size(image_size: int, fraction: float = 0.1) -> int:
    """Odd Gaussian-blur kernel side of about ``fraction`` of the image side (at least 3)."""
    return max(3, int(fraction * image_size) // 2 * 2 + 1)


def gaussian_blur(images: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, one ``sigma`` per image (``(B,)``), reflect borders (kornia)."""
    kernel_size = min(kernel_size, 2 * min(images.shape[-2:]) - 1)  # reflect pad < side
    sigmas = sigma.view(-1, 1).expand(-1, 2)
    from kornia.filters import gaussian_blur2d  # loaded when used, as equalize

    return gaussian_blur2d(images, kernel_size, sigmas, border_type="reflect")
