"""Augmentation pipelines: shapes, ranges, randomness, seeding, and each op against torchvision."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cluster_ssl.augment import PIPELINES, TwoViews, build_pipeline, dataset_stats
from cluster_ssl.augment import functional as AF
from cluster_ssl.augment.pipelines import default_cutout
from cluster_ssl.augment.transforms import (
    SCAN_OPS,
    ColorJitter,
    Cutout,
    RandomGrayscale,
    sample_crop_boxes,
)
from cluster_ssl.runtime.errors import UserError

RGB_MEAN, RGB_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
GRAY_MEAN, GRAY_STD = (0.1307,), (0.3081,)


def rgb_batch(n=8, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def gray_batch(n=8, size=28, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=generator)


def bounds(mean, std):
    """Per-channel range of normalised values for inputs in [0, 1]."""
    mean, std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (0 - mean) / std - 1e-4, (1 - mean) / std + 1e-4


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize(
    ("images", "size", "mean", "std"),
    [(rgb_batch(), 32, RGB_MEAN, RGB_STD), (gray_batch(), 28, GRAY_MEAN, GRAY_STD)],
    ids=["rgb32", "gray28"],
)
def test_every_pipeline_gives_finite_normalised_batches(kind, images, size, mean, std):
    out = build_pipeline(kind, image_size=size, mean=mean, std=std)(images)
    assert out.shape == (images.shape[0], images.shape[1], size, size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    low, high = bounds(mean, std)
    assert (out >= low).all() and (out <= high).all()


@pytest.mark.parametrize("kind", PIPELINES)
def test_pipelines_resize_to_image_size_and_leave_float_input_untouched(kind):
    images = rgb_batch(4, 40).float() / 255
    before = images.clone()
    out = build_pipeline(kind, image_size=24, mean=RGB_MEAN, std=RGB_STD)(images)
    assert out.shape == (4, 3, 24, 24)
    assert torch.equal(images, before)


def test_cc_with_blur_and_strength_runs():
    pipeline = build_pipeline(
        "cc", image_size=32, mean=RGB_MEAN, std=RGB_STD, strength=0.5, blur=True
    )
    assert torch.isfinite(pipeline(rgb_batch())).all()
    assert AF.gaussian_kernel_size(224) == 23 and AF.gaussian_kernel_size(32) == 3


def test_eval_is_deterministic_and_equals_manual_normalisation():
    images = rgb_batch()
    pipeline = build_pipeline("eval", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    expected = (images.float() / 255 - torch.tensor(RGB_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        RGB_STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(pipeline(images), expected)
    assert torch.equal(pipeline(images), pipeline(images))


@pytest.mark.parametrize("kind", [k for k in PIPELINES if k != "eval"])
def test_two_views_differ_and_seeding_reproduces_them(kind):
    views = TwoViews(build_pipeline(kind, image_size=32, mean=RGB_MEAN, std=RGB_STD))
    images = rgb_batch()
    torch.manual_seed(3)
    first, second = views(images)
    assert first.shape == second.shape == (8, 3, 32, 32)
    assert not torch.equal(first, second)
    torch.manual_seed(3)
    again_first, again_second = views(images)
    assert torch.equal(first, again_first) and torch.equal(second, again_second)
    torch.manual_seed(4)
    assert not torch.equal(views(images)[0], first)


def test_two_views_with_two_pipelines():
    weak = build_pipeline("simclr", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    strong = build_pipeline("scan_strong", image_size=16, mean=RGB_MEAN, std=RGB_STD)
    a, b = TwoViews(weak, strong)(rgb_batch())
    assert a.shape == (8, 3, 32, 32) and b.shape == (8, 3, 16, 16)


def columns_decrease(out):
    """Per image: True when every row is non-increasing from left to right."""
    return (out[..., 1:] <= out[..., :-1] + 1e-5).flatten(1).all(dim=1)


def test_idfd_never_flips_while_simclr_does():
    # grey image, bright on the left: crops, jitter (positive factors) and grayscale all keep
    # columns non-increasing; only a horizontal flip can reverse them
    ramp = (255 - 8 * torch.arange(32)).to(torch.uint8)
    images = ramp.view(1, 1, 1, 32).expand(64, 3, 32, 32).contiguous()
    torch.manual_seed(0)
    idfd = build_pipeline("idfd", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    assert columns_decrease(idfd(images)).all()
    simclr = build_pipeline("simclr", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    assert not columns_decrease(simclr(images)).all()
    assert all(getattr(step, "flip_p", 0.0) == 0.0 for step in idfd)


@pytest.mark.parametrize("kind", ["simclr", "cc", "scan_strong", "crop_flip"])
def test_flip_false_turns_the_flips_off(kind):
    ramp = (255 - 8 * torch.arange(32)).to(torch.uint8)
    images = ramp.view(1, 1, 1, 32).expand(64, 3, 32, 32).contiguous()
    # scan_strong without its random operations and cutout: its full-size crop (no padding,
    # as SCAN) keeps the ramp; the slice also allows the optional padding
    options = {"strong_ops": 0, "cutout": 0} if kind == "scan_strong" else {}
    inner = slice(4, 28) if kind == "scan_strong" else slice(None)
    torch.manual_seed(0)
    for flip, expected in ((False, True), (True, False)):
        pipeline = build_pipeline(
            kind, image_size=32, mean=RGB_MEAN, std=RGB_STD, flip=flip, **options
        )
        assert bool(columns_decrease(pipeline(images)[..., inner]).all()) is expected


def test_cutout_zeroes_one_square_of_at_most_the_given_side():

    torch.manual_seed(0)
    images = torch.ones(200, 3, 32, 32)
    out = Cutout(8)(images)
    assert torch.equal(images, torch.ones_like(images))  # not in place by default
    sides = []
    for image in out:
        hole = image == 0
        assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])
        rows, cols = hole[0].any(dim=1), hole[0].any(dim=0)
        assert torch.equal(hole[0], rows.unsqueeze(1) & cols.unsqueeze(0))  # a rectangle
        for line in (rows, cols):
            idx = line.nonzero().flatten()
            if len(idx):
                assert idx[-1] - idx[0] + 1 == len(idx) <= 8  # contiguous, at most 8
        if rows.any() and not (rows[0] or rows[-1] or cols[0] or cols[-1]):
            assert rows.sum() == cols.sum()  # away from the borders: a square
        sides.append(int(rows.sum()))
    assert max(sides) == 8 and min(sides) < 8


def test_scan_strong_ends_with_cutout_after_normalisation():
    pipeline = build_pipeline("scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    assert [type(step).__name__ for step in pipeline][-2:] == ["Normalize", "Cutout"]
    assert pipeline[-1].max_side == 16
    assert (
        build_pipeline("scan_strong", image_size=96, mean=RGB_MEAN, std=RGB_STD)[-1].max_side == 32
    )
    no_cutout = build_pipeline("scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD, cutout=0)
    assert type(no_cutout[-1]).__name__ == "Normalize"


def test_scan_strong_augments_each_image_differently():
    torch.manual_seed(0)
    images = rgb_batch(1).expand(16, -1, -1, -1)
    out = build_pipeline("scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD)(images)
    assert torch.unique(out.flatten(1), dim=0).shape[0] == 16
    assert len(SCAN_OPS) == 14 and len(set(SCAN_OPS)) == 14


def test_crop_boxes_fit_and_follow_the_scale_range():
    torch.manual_seed(0)
    boxes = sample_crop_boxes(500, 32, 24, (0.2, 1.0), (3 / 4, 4 / 3), torch.device("cpu"))
    top, left, height, width = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 32).all() and (left + width <= 24).all()
    area = height * width / (32 * 24)
    assert area.min() > 0.15 and area.max() <= 1.0
    assert torch.equal(boxes, boxes.round())


# --- each batched op against torchvision's per-image functional (independent reference) ---


def float_images(n=4, channels=3, size=12, seed=0):
    return rgb_batch(n, size, seed)[:, :channels].float() / 255


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.4])
def test_brightness_contrast_saturation_match_torchvision(factor):
    x = float_images()
    f = torch.full((4,), factor)
    torch.testing.assert_close(AF.adjust_brightness_(x.clone(), f), TF.adjust_brightness(x, factor))
    # torchvision's luma weights are (0.2989, 0.587, 0.114), ours PIL's (0.299, ...)
    tol = {"atol": 2e-3, "rtol": 0}
    torch.testing.assert_close(
        AF.adjust_contrast_(x.clone(), f), TF.adjust_contrast(x, factor), **tol
    )
    torch.testing.assert_close(
        AF.adjust_saturation_(x.clone(), f), TF.adjust_saturation(x, factor), **tol
    )
    torch.testing.assert_close(AF.grayscale(x), TF.rgb_to_grayscale(x), **tol)


@pytest.mark.parametrize("shift", [-0.5, -0.1, 0.0, 0.25, 0.5])
def test_hue_matches_torchvision(shift):
    x = float_images()
    x[0, 1] = x[0, 0]  # ties between channels
    x[1] = x[1, :1]  # grey pixels
    out = AF.adjust_hue_(x.clone(), torch.full((4,), shift))
    torch.testing.assert_close(out, TF.adjust_hue(x, shift), atol=1e-5, rtol=0)


def test_per_image_factors_are_applied_per_image():
    x = float_images()
    shifts = torch.tensor([-0.4, 0.0, 0.3, 0.5])
    out = AF.adjust_hue_(x.clone(), shifts)
    for i, shift in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], shift), atol=1e-5, rtol=0)
    brightness = torch.tensor([0.5, 1.0, 1.5, 0.1])
    out = AF.adjust_brightness_(x.clone(), brightness)
    for i, factor in enumerate(brightness.tolist()):
        torch.testing.assert_close(out[i], TF.adjust_brightness(x[i], factor))


def test_sharpness_autocontrast_solarize_posterize_equalize_match_torchvision():
    x8 = rgb_batch(4, 12)
    x = x8.float() / 255
    for f in (0.05, 0.5, 0.95):
        torch.testing.assert_close(
            AF.adjust_sharpness_(x.clone(), torch.full((4,), f)), TF.adjust_sharpness(x, f)
        )
    torch.testing.assert_close(AF.autocontrast_(x.clone()), TF.autocontrast(x))
    torch.testing.assert_close(AF.solarize_(x.clone(), torch.full((4,), 0.5)), TF.solarize(x, 0.5))
    for bits in (4, 7):
        out = AF.posterize_(x.clone(), torch.full((4,), float(bits)))
        torch.testing.assert_close(out, TF.posterize(x8, bits).float() / 255)
    torch.testing.assert_close(AF.equalize_(x.clone()), TF.equalize(x8).float() / 255)


def test_resized_crop_matches_torchvision_crop_then_resize():
    x = float_images(3, size=20)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [3.0, 5.0, 9.0, 14.0], [10.0, 2.0, 10.0, 7.0]])
    flip = torch.tensor([False, True, False])
    out = AF.resized_crop(x, boxes, 16, flip)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        expected = TF.resized_crop(x[i], top, left, h, w, [16, 16], antialias=False)
        if flip[i]:
            expected = TF.horizontal_flip(expected)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


def test_padded_crop_matches_flip_then_reflect_pad_then_crop():
    x = float_images(3, size=10)
    offsets = torch.tensor([[0, 0], [2, 3], [4, 1]])
    flip = torch.tensor([True, False, True])
    out = AF.padded_crop(x, offsets, 2, flip)
    for i in range(3):
        image = TF.horizontal_flip(x[i]) if flip[i] else x[i]
        padded = TF.pad(image, [2, 2, 2, 2], padding_mode="reflect")
        top, left = offsets[i].tolist()
        torch.testing.assert_close(out[i], TF.crop(padded, top, left, 10, 10))


def test_affine_rotates_and_translates_like_pil():
    x = float_images(2, size=8)
    zero = torch.zeros(2)
    rotated = AF.affine_nearest(x, torch.tensor([90.0, -90.0]), (zero, zero), (zero, zero))
    torch.testing.assert_close(rotated[0], torch.rot90(x[0], 1, dims=(1, 2)))  # counter-clockwise
    torch.testing.assert_close(rotated[1], torch.rot90(x[1], -1, dims=(1, 2)))
    shifted = AF.affine_nearest(x, zero, (zero, zero), (torch.tensor([2.0, 0.0]), zero))
    torch.testing.assert_close(shifted[0, :, :, :6], x[0, :, :, 2:])  # reads 2 px to the right
    assert (shifted[0, :, :, 6:] == 0).all()
    torch.testing.assert_close(shifted[1], x[1])


def test_one_channel_images_skip_colour_only_ops():
    x = float_images(4, channels=1)
    torch.testing.assert_close(RandomGrayscale(p=1.0)(x), x)
    torch.testing.assert_close(AF.adjust_hue_(x.clone(), torch.full((4,), 0.3)), x)
    torch.testing.assert_close(AF.adjust_saturation_(x.clone(), torch.zeros(4)), x)
    jitter = ColorJitter(0.0, 0.0, 0.8, 0.2, p=1.0)  # saturation and hue only: a no-op here
    torch.testing.assert_close(jitter(x), x)


def test_modules_leave_their_input_alone_unless_inplace():
    x = float_images()
    before = x.clone()
    ColorJitter(0.4, 0.4, 0.4, 0.1)(x)
    RandomGrayscale(p=1.0)(x)
    assert torch.equal(x, before)
    RandomGrayscale(p=1.0, inplace=True)(x)
    assert not torch.equal(x, before)


def test_dataset_stats_come_from_the_registry_with_a_fallback():
    assert dataset_stats("cifar10") == (RGB_MEAN, RGB_STD)
    assert dataset_stats("mnist") == (GRAY_MEAN, GRAY_STD)
    assert dataset_stats("my-photos") == ((0.5,), (0.5,))


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="unknown augmentation"):
        build_pipeline("autoaugment", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    with pytest.raises(UserError, match="strength and blur"):
        build_pipeline("eval", image_size=32, mean=RGB_MEAN, std=RGB_STD, strength=0.5)
    with pytest.raises(UserError, match="above the 0.5 maximum"):
        build_pipeline("cc", image_size=32, mean=RGB_MEAN, std=RGB_STD, strength=3.0)
    with pytest.raises(UserError, match="no cutout"):
        build_pipeline("eval", image_size=32, mean=RGB_MEAN, std=RGB_STD, cutout=8)
    with pytest.raises(UserError, match="strong_ops applies to scan_strong"):
        build_pipeline("simclr", image_size=32, mean=RGB_MEAN, std=RGB_STD, strong_ops=2)
    with pytest.raises(UserError, match="strong_ops must be >= 0"):
        build_pipeline("scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD, strong_ops=-1)
    pipeline = build_pipeline("eval", image_size=28, mean=RGB_MEAN, std=RGB_STD)

    with pytest.raises(ValueError, match="3 channel statistics"):
        pipeline(gray_batch())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipelines_run_on_the_input_device():
    images = rgb_batch().cuda()
    for kind in PIPELINES:
        out = build_pipeline(kind, image_size=32, mean=RGB_MEAN, std=RGB_STD)(images)
        assert out.device == images.device


def test_scan_cutout_scales_with_small_images():
    assert [default_cutout(side) for side in (8, 16, 32, 64, 96, 224)] == [4, 8, 16, 32, 32, 75]


@pytest.mark.parametrize(("kind", "default"), [("simclr", 0.2), ("cc", 0.08), ("idfd", 0.2)])
def test_crop_scale_defaults_to_the_papers_and_can_be_raised(kind, default):
    def crop_scales(**options):
        pipeline = build_pipeline(kind, image_size=16, mean=GRAY_MEAN, std=GRAY_STD, **options)
        return [step.scale for step in pipeline if hasattr(step, "scale")]

    assert crop_scales() == [(default, 1.0)]
    assert crop_scales(crop_scale=0.5) == [(0.5, 1.0)]
    with pytest.raises(UserError, match=r"crop_scale must be in \(0, 1\]"):
        crop_scales(crop_scale=0.0)
    with pytest.raises(UserError, match="crop_scale applies to"):
        build_pipeline("eval", image_size=16, mean=GRAY_MEAN, std=GRAY_STD, crop_scale=0.5)


def test_scan_strong_crops_at_full_size_without_a_shift_unless_padded():
    """SCAN's RandomCrop(crop_size) without padding is a no-op on images of that size:
    without operations, Cutout and flips the pipeline only normalises."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    bare = {"strong_ops": 0, "cutout": 0, "flip": False}
    plain = build_pipeline("eval", image_size=32, mean=RGB_MEAN, std=RGB_STD)
    strong = build_pipeline("scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD, **bare)
    torch.testing.assert_close(strong(images), plain(images))
    padded = build_pipeline(
        "scan_strong", image_size=32, mean=RGB_MEAN, std=RGB_STD, crop_padding=4, **bare
    )
    assert padded[2].padding == 4
    assert not torch.equal(padded(images), plain(images))
    with pytest.raises(UserError, match="crop_padding applies to scan_strong"):
        build_pipeline("simclr", image_size=32, mean=RGB_MEAN, std=RGB_STD, crop_padding=2)
