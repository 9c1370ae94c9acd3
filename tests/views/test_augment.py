"""ViewAugmentation's fast paths against the straightforward torchvision pipeline.

The blur and hue rotation are re-implemented for speed (two 1-d convolutions instead of a k x k
one; a closed-form hue rotation): each must equal torchvision's op up to float rounding, and whole
views at 224 px, by either path (per-crop uint8, batched float32), must have the statistics of
``torchvision.transforms.v2`` views with the same settings.
"""

import math

import pytest
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from hf_sslviews.views.augment import (
    ViewAugmentation,
    _blur_grouped,
    adjust_hue_float,
    adjust_hue_uint8,
    color_jitter_float,
    gaussian_blur_float,
    gaussian_blur_uint8,
    sample_crop_box,
    solarize_float,
)


def _photo_like(size: int, seed: int) -> torch.Tensor:
    """Colour regions with a hard edge and fine texture (so that a blur and a crop's scale show)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (3, 6, 6), dtype=torch.uint8, generator=generator)
    image = F.resize(coarse, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=False).to(torch.int16)
    image[:, size // 3 : size // 2] = 255 - image[:, size // 3 : size // 2]  # a hard edge
    texture = torch.randint(-40, 41, (3, size // 2, size // 2), generator=generator, dtype=torch.int16)
    image += texture.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # 2 px grain
    return image.clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("size, kernel", [(32, 3), (96, 9), (224, 23)])
def test_gaussian_blur_uint8__equals_torchvision_up_to_rounding(size, kernel):
    torch.manual_seed(0)
    for seed in range(6):
        image = _photo_like(size, seed)
        sigma = float(torch.empty(()).uniform_(0.1, 2.0))
        ours, theirs = gaussian_blur_uint8(image, sigma, kernel).int(), F.gaussian_blur(image, [kernel, kernel], [sigma, sigma]).int()
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1
        assert (ours != theirs).float().mean() < 1e-3


@pytest.mark.parametrize("size, kernel", [(32, 3), (96, 9), (224, 23)])
def test_gaussian_blur_float__each_image_its_own_sigma_equals_torchvision(size, kernel):
    torch.manual_seed(1)
    images = torch.stack([_photo_like(size, seed) for seed in range(5)]).float() / 255
    sigmas = torch.tensor([0.1, 0.4, 0.9, 1.6, 2.0])
    theirs = torch.stack([F.gaussian_blur(image, [kernel, kernel], [float(s), float(s)]) for image, s in zip(images, sigmas)])
    # The CPU path (image by image, shifted slices), the grouped-convolution path other devices
    # take, and the in-place form the batched views use: all torchvision's blur, kernel cut at 4 sigma.
    assert (gaussian_blur_float(images, sigmas, kernel) - theirs).abs().max() < 1e-4
    cut = [min(kernel, 2 * math.ceil(4 * float(s)) + 1) for s in sigmas]
    for size_group in set(cut):
        rows = [i for i, size_of in enumerate(cut) if size_of == size_group]
        assert (_blur_grouped(images[rows], sigmas[rows], size_group) - theirs[rows]).abs().max() < 1e-4
    in_place = images.clone()
    assert gaussian_blur_float(in_place, sigmas, kernel, out=in_place) is in_place
    assert (in_place - theirs).abs().max() < 1e-4


def test_adjust_hue_float__equals_torchvision_with_grey_pixels_and_ties():
    torch.manual_seed(2)
    images = torch.rand(3, 3, 40, 40)
    images[0, :, :5] = images[0, :1, :5]  # grey: hue undefined, must stay grey
    images[1, 1] = images[1, 0]  # red and green tie for the maximum: red wins, as in torchvision
    images[2, 2, :10] = images[2, 0, :10]  # red and blue tie
    for hue in (-0.5, -0.1, 0.0, 0.04, 0.1, 0.5):
        theirs = torch.stack([F.adjust_hue(image, hue) for image in images])
        ours = adjust_hue_float(images, torch.full((3,), hue))
        assert (ours - theirs).abs().max() < 1e-5
    assert torch.equal(adjust_hue_float(images[:1], torch.tensor([0.3]))[0, :, :, :5][:, :5], images[0, :, :5, :5])


@pytest.mark.parametrize("size", [32, 96])  # 32 px: the batched path; 96 px: crop by crop, in place, on a CPU
def test_color_jitter_float__equals_torchvision_ops_in_the_drawn_order(size):
    torch.manual_seed(3)
    crops = torch.rand(6, 3, size, size)
    apply = torch.tensor([True, True, False, True, True, True])
    order = torch.rand(6, 4).argsort(dim=1)
    factors = torch.cat([torch.empty(6, 3).uniform_(0.6, 1.4), torch.empty(6, 1).uniform_(-0.1, 0.1)], dim=1)
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    theirs = crops.clone()
    for index in range(6):
        if apply[index]:
            for op in order[index].tolist():
                theirs[index] = ops[op](theirs[index], float(factors[index, op]))
    ours = color_jitter_float(crops, apply, order, factors)
    assert (ours - theirs).abs().max() < 1e-5
    assert torch.equal(ours[2], crops[2])  # not drawn: untouched


def test_solarize_float__equals_torchvision_at_threshold_128():
    levels = torch.arange(256, dtype=torch.float32).div(255).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    assert torch.equal(solarize_float(levels), F.solarize(levels, 128 / 255))
    assert solarize_float(levels)[0, 0].flatten()[127] == levels[0, 0].flatten()[127]  # 127 stays, 128 flips
    assert solarize_float(levels)[0, 0].flatten()[128] == 1 - levels[0, 0].flatten()[128]


@pytest.mark.parametrize("size", [32, 224])
def test_adjust_hue_uint8__equals_torchvision_up_to_rounding(size):
    for seed in range(6):
        image = _photo_like(size, seed)
        image[:, :4] = image[:1, :4]  # grey pixels: hue undefined, must stay grey
        hue = (seed - 2.5) / 25  # -0.1 .. 0.1
        ours, theirs = adjust_hue_uint8(image, hue).int(), F.adjust_hue(image, hue).int()
        assert (ours - theirs).abs().max() <= 1
        assert (ours != theirs).float().mean() < 1e-3


def _torchvision_view(augment: ViewAugmentation):
    """The same view written the usual way with torchvision v2."""
    steps = [
        v2.RandomResizedCrop(augment.size, scale=augment.scale, ratio=augment.ratio, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(augment.flip_p),
        v2.RandomApply([v2.ColorJitter(*augment.jitter)], p=augment.jitter_p),
        v2.RandomGrayscale(augment.grayscale_p),
        v2.RandomApply([v2.GaussianBlur(augment.blur_kernel, sigma=augment.blur_sigma)], p=augment.blur_p),
        v2.RandomSolarize(128, p=augment.solarize_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(augment.mean, augment.std),
    ]
    return v2.Compose(steps)


def _statistics(views: torch.Tensor, augment: ViewAugmentation) -> dict[str, float]:
    pixels = views * torch.tensor(augment.std).view(1, 3, 1, 1) + torch.tensor(augment.mean).view(1, 3, 1, 1)  # back to [0, 1]
    per_view_mean = pixels.mean(dim=(2, 3))  # [N, 3]
    per_view_std = pixels.std(dim=(2, 3))
    # Sharpness: mean absolute horizontal difference (a blur lowers it, a smaller crop raises it).
    sharpness = pixels.diff(dim=3).abs().mean(dim=(1, 2, 3))
    gray = (pixels.diff(dim=1).abs().amax(dim=(1, 2, 3)) < 2.5 / 255).float()
    return {
        "mean": per_view_mean.mean().item(), "mean_spread": per_view_mean.std().item(),
        "std": per_view_std.mean().item(), "sharpness": sharpness.mean().item(), "gray_share": gray.mean().item(),
    }


@pytest.mark.parametrize("preset", ["byol_view1", "byol_view2"])
def test_views_at_224__both_paths_have_the_statistics_of_torchvision_views(preset):
    # The batched float path (what the view transforms use) and the per-crop uint8 path (CLSA,
    # ``__call__``), each against torchvision on the same image.
    augment = ViewAugmentation.from_settings(preset, size=224)
    image = _photo_like(320, seed=3)
    n = 400
    torch.manual_seed(1)
    crops = torch.stack([augment.geometric(image)[0] for _ in range(n)])
    paths = {
        "batched": augment.photometric_normalize_batch(crops),
        "per_crop": torch.stack([augment.normalize(augment.photometric(crop)) for crop in crops]),
        "chosen": augment.photometric_normalize_crops(crops),
    }
    torch.manual_seed(2)
    reference = _torchvision_view(augment)
    paths["torchvision"] = torch.stack([reference(image) for _ in range(n)])
    stats = {name: _statistics(views, augment) for name, views in paths.items()}
    want = stats["torchvision"]
    for name in ("batched", "per_crop", "chosen"):
        got = stats[name]
        # Tolerances: about 4 standard errors of n=400 views (checked: blur off or sigma halved,
        # solarize p 0.5, jitter doubled, grayscale p 0.35 or crop scale (0.3, 1) each fail one).
        assert abs(got["mean"] - want["mean"]) < 4 * want["mean_spread"] / math.sqrt(n) + 0.01, (name, got, want)
        assert abs(got["mean_spread"] - want["mean_spread"]) < 0.15 * want["mean_spread"], (name, got, want)
        assert abs(got["std"] - want["std"]) < 0.08 * want["std"], (name, got, want)
        assert abs(got["sharpness"] - want["sharpness"]) < 0.1 * want["sharpness"], (name, got, want)
        assert abs(got["gray_share"] - want["gray_share"]) < 0.07, (name, got, want)


def test_sample_crop_box__same_area_and_aspect_distribution_as_torchvision():
    torch.manual_seed(4)
    height, width, scale, ratio = 375, 500, (0.08, 1.0), (3 / 4, 4 / 3)
    ours = torch.tensor([sample_crop_box(height, width, scale, ratio) for _ in range(3000)], dtype=torch.float64)
    theirs = torch.tensor([v2.RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), list(ratio)) for _ in range(3000)], dtype=torch.float64)
    for boxes in (ours, theirs):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= height).all() and (boxes[:, 1] + boxes[:, 3] <= width).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    aspect = lambda b: (b[:, 3] / b[:, 2]).log()  # noqa: E731
    centre_y = lambda b: (b[:, 0] + b[:, 2] / 2) / height  # noqa: E731
    for stat in (area, aspect, centre_y):
        a, b = stat(ours), stat(theirs)
        assert abs(a.mean() - b.mean()) < 4 * b.std() / math.sqrt(3000)
        assert abs(a.std() - b.std()) < 0.08 * b.std()
