"""CLSA's RandAugment ops and sampler, and the CLSA view transform."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.views.clsa import CLSA_SETTINGS, CLSAViewTransform
from hf_sslviews.views.randaugment import RANDAUGMENT_OPS, RANDAUGMENT_POOLS, OpDraw, RandAugment, enhance_factor, posterize_bits, solarize_threshold

# ----------------------------------------------------------------------------- helpers


def ramp() -> torch.Tensor:
    """uint8 [3, 16, 16] holding every value 0..255 once per channel."""
    return torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).repeat(3, 1, 1)


def noise(size: int = 64, low: int = 20, high: int = 240, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (3, size, size), dtype=torch.uint8, generator=generator)


def bright_coords(img: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels of channel 0 above 127."""
    rows, cols = np.nonzero(img[0].numpy() > 127)
    return rows.astype(float), cols.astype(float)


def pil_image(height: int = 40, width: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- the ops


@pytest.mark.parametrize("name", sorted(RANDAUGMENT_OPS))
@pytest.mark.parametrize("v", [1, 9])
def test_op__keeps_size_and_dtype_and_changes_image(name, v):
    img = noise()
    for sign in (1, -1):
        out = RANDAUGMENT_OPS[name](img, v, sign)
        assert out.shape == img.shape and out.dtype == torch.uint8
        if name == "Identity":
            assert torch.equal(out, img)
        else:
            assert not torch.equal(out, img), f"{name} at v={v} left the image unchanged"


@pytest.mark.parametrize("v", [1, 9])
def test_solarize__threshold_on_a_ramp(v):
    threshold = 256 - int(25.6 * v)
    assert solarize_threshold(v) == threshold == {1: 231, 9: 26}[v]
    x = ramp()
    expected = torch.where(x >= threshold, 255 - x, x)
    assert torch.equal(RANDAUGMENT_OPS["Solarize"](x, v, 1), expected)


@pytest.mark.parametrize("v, bits", [(1, 4), (2, 4), (3, 5), (5, 6), (8, 7), (9, 7)])
def test_posterize__keeps_int_4v_over_10_plus_4_bits(v, bits):
    assert posterize_bits(v) == bits
    out = RANDAUGMENT_OPS["Posterize"](ramp(), v, 1)
    assert out[0].unique().numel() == 2**bits
    assert torch.equal(out, ramp() & (256 - 2 ** (8 - bits)))


@pytest.mark.parametrize("v", [1, 9])
def test_brightness__scales_by_the_factor_itself(v):
    factor = 0.09 * v + 0.05
    assert enhance_factor(v) == pytest.approx(factor)
    x = ramp()
    out = RANDAUGMENT_OPS["Brightness"](x, v, 1).float()
    assert (out - x.float() * factor).abs().max() <= 1.0


@pytest.mark.parametrize("v", [1, 9])
def test_color__moves_towards_gray_by_the_factor(v):
    img = noise(seed=1)
    gray = F.rgb_to_grayscale(img, num_output_channels=3).float()
    out = RANDAUGMENT_OPS["Color"](img, v, 1).float()
    assert (out - (gray + enhance_factor(v) * (img.float() - gray))).abs().max() <= 1.0


@pytest.mark.parametrize("v", [1, 9])
def test_contrast__shrinks_the_spread_by_the_factor(v):
    img = noise(seed=2)
    out = RANDAUGMENT_OPS["Contrast"](img, v, 1).float()
    ratio = out.std() / img.float().std()
    assert ratio.item() == pytest.approx(enhance_factor(v), abs=0.02)


def test_sharpness__factor_below_one_smooths_more_at_low_magnitude():
    img = noise(seed=3)

    def roughness(x):
        return (x[..., 1:, :].float() - x[..., :-1, :].float()).abs().mean().item()

    low, high = (roughness(RANDAUGMENT_OPS["Sharpness"](img, v, 1)) for v in (1, 9))
    assert low < high < roughness(img)


def test_autocontrast__stretches_each_channel_to_full_range():
    img = noise(low=100, high=150, seed=4)
    out = RANDAUGMENT_OPS["AutoContrast"](img, 5, 1)
    assert out.amin(dim=(1, 2)).tolist() == [0, 0, 0]
    # torchvision truncates the rescaled value when casting back, so the top lands on 254 or 255.
    assert all(value >= 254 for value in out.amax(dim=(1, 2)).tolist())
    assert out.float().std() > 2.5 * img.float().std()


def test_equalize__flattens_the_histogram():
    img = noise(size=128, low=100, high=150, seed=5)
    out = RANDAUGMENT_OPS["Equalize"](img, 5, 1).float()
    assert out.max() == 255 and out.min() < 10
    # The cumulative histogram of an equalised image is close to the identity line.
    for q in (64, 128, 192):
        assert (out < q).float().mean().item() == pytest.approx(q / 256, abs=0.05)


@pytest.mark.parametrize("v", [1, 9])
def test_invert_and_identity(v):
    img = noise()
    assert torch.equal(RANDAUGMENT_OPS["Invert"](img, v, 1), 255 - img)
    assert torch.equal(RANDAUGMENT_OPS["Identity"](img, v, -1), img)


@pytest.mark.parametrize("v", [1, 9])
def test_rotate__by_plus_minus_3v_degrees(v):
    img = torch.zeros(3, 129, 129, dtype=torch.uint8)
    img[:, 63:66, 14:115] = 255  # a horizontal bar through the centre
    angles = []
    for sign in (1, -1):
        rows, cols = bright_coords(RANDAUGMENT_OPS["Rotate"](img, v, sign))
        slope = np.polyfit(cols, rows, 1)[0]
        angles.append(math.degrees(math.atan(slope)))
    # Image rows grow downwards, so a counter-clockwise rotation gives a negative slope.
    assert abs(angles[0]) == pytest.approx(3 * v, abs=0.7)
    assert angles[0] == pytest.approx(-angles[1], abs=0.5)
    assert np.sign(angles[0]) != np.sign(angles[1])


@pytest.mark.parametrize("v", [1, 9])
def test_rotate__plus_then_minus_restores_the_centre(v):
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    smooth = (127 + 100 * torch.sin(x / 9) * torch.cos(y / 13)).to(torch.uint8).expand(3, -1, -1).contiguous()
    once = RANDAUGMENT_OPS["Rotate"](smooth, v, 1)
    back = RANDAUGMENT_OPS["Rotate"](once, v, -1)
    centre = (slice(None), slice(30, 66), slice(30, 66))
    restored = (back[centre].float() - smooth[centre].float()).abs().mean()
    moved = (once[centre].float() - smooth[centre].float()).abs().mean()
    assert restored < 4 and moved > 2 * restored


@pytest.mark.parametrize("name, axis", [("ShearX", 1), ("ShearY", 0)])
@pytest.mark.parametrize("v", [1, 9])
def test_shear__factor_0_03v_about_the_top_left_corner(name, axis, v):
    img = torch.zeros(3, 128, 128, dtype=torch.uint8)
    if axis == 1:
        img[:, :, 40:42] = 255  # vertical line, ShearX tilts it
    else:
        img[:, 40:42, :] = 255  # horizontal line, ShearY tilts it
    slopes = []
    for sign in (1, -1):
        out = RANDAUGMENT_OPS[name](img, v, sign)
        rows, cols = bright_coords(out)
        slopes.append(np.polyfit(rows, cols, 1)[0] if axis == 1 else np.polyfit(cols, rows, 1)[0])
        # PIL shears about the origin: the first row (ShearX) / column (ShearY) does not move.
        edge = out[0, 0] if axis == 1 else out[0, :, 0]
        assert torch.nonzero(edge > 127).flatten().tolist() == [40, 41]
    assert abs(slopes[0]) == pytest.approx(0.03 * v, abs=0.006)
    assert slopes[0] == pytest.approx(-slopes[1], abs=0.006)


@pytest.mark.parametrize("name", ["TranslateX", "TranslateY"])
@pytest.mark.parametrize("v, pixels", [(1, 6), (9, 60)])  # int(0.03 v * 224)
def test_translate__0_03v_of_the_size_with_black_fill(name, v, pixels):
    img = noise(size=224, low=20, high=240)
    dim = -1 if name == "TranslateX" else -2
    for sign in (1, -1):
        out = RANDAUGMENT_OPS[name](img, v, sign)
        shift = sign * pixels
        expected = torch.roll(img, shifts=shift, dims=dim)
        index = torch.arange(224)
        valid = (index >= shift) if shift > 0 else (index < 224 + shift)
        kept = valid.view(1, 1, -1) if dim == -1 else valid.view(1, -1, 1)
        assert torch.equal(out[kept.expand_as(out)], expected[kept.expand_as(out)])
        assert (out[(~kept).expand_as(out)] == 0).all()


# ----------------------------------------------------------------------------- the sampler


def test_sampler__five_ops_with_replacement_half_applied():
    torch.manual_seed(0)
    sampler = RandAugment()
    draws = [sampler.sample() for _ in range(2000)]
    assert all(len(d) == 5 for d in draws)
    flat = [op for d in draws for op in d]
    names = Counter(op.name for op in flat)
    assert set(names) == set(RANDAUGMENT_POOLS["official"]) and "Invert" not in names
    # Uniform over 14 ops: each about 10000 / 14 = 714 times.
    assert min(names.values()) > 600 and max(names.values()) < 830
    # With replacement, P(some op twice among 5 of 14) = 1 - 14*13*12*11*10 / 14**5 = 0.553.
    repeats = np.mean([len({op.name for op in d}) < 5 for d in draws])
    assert repeats == pytest.approx(0.553, abs=0.04)
    assert np.mean([op.applied for op in flat]) == pytest.approx(0.5, abs=0.02)
    assert set(op.magnitude for op in flat) == set(range(1, 10))
    assert set(op.sign for op in flat) == {1, -1}


def test_sampler__paper_pool_has_invert_instead_of_identity():
    torch.manual_seed(0)
    sampler = RandAugment(pool="paper")
    names = {op.name for _ in range(500) for op in sampler.sample()}
    assert "Invert" in names and "Identity" not in names and len(names) == 14


def test_sampler__augment_reports_exactly_the_applied_ops():
    img = noise()
    sampler = RandAugment(pool=["Invert"], num_ops=5)
    torch.manual_seed(1)
    out, applied = sampler.augment(img)
    assert all(isinstance(op, OpDraw) and op.applied for op in applied)
    # Invert is its own inverse: an even number of applications gives the image back.
    assert torch.equal(out, img if len(applied) % 2 == 0 else 255 - img)
    skipped = [OpDraw("Invert", 3, 1, False)]
    assert torch.equal(RandAugment.apply(img, skipped), img)
    assert str(OpDraw("Rotate", 7, -1, True)) == "Rotate(-7)"


def test_sampler__reproducible_from_torch_seed():
    img = noise()
    sampler = RandAugment()
    torch.manual_seed(3)
    first = [sampler(img) for _ in range(5)]
    torch.manual_seed(3)
    second = [sampler(img) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize(
    "kwargs", [dict(pool="nope"), dict(pool=["Rotate", "Blur"]), dict(apply_p=1.5), dict(magnitude_range=(0, 11)), dict(num_ops=-1)]
)
def test_sampler__rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandAugment(**kwargs)


def test_sampler__rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        RandAugment()(torch.rand(3, 8, 8))


# ----------------------------------------------------------------------------- the view transform


@pytest.mark.parametrize(
    "preset, key, weak, strong",
    [("single", 224, [224], [96]), ("multi", 224, [224, 192, 160, 128, 96], [224, 192, 160, 128, 96])],
)
def test_clsa_views__shapes_and_dtypes(preset, key, weak, strong):
    torch.manual_seed(0)
    out = CLSAViewTransform(preset)({"image": [pil_image()]})
    assert out["image_ok"] == [True]
    assert out["key_pixel_values"][0].shape == (3, key, key) and out["key_pixel_values"][0].dtype == torch.float32
    assert [t.shape[-1] for t in out["weak_pixel_values"][0]] == weak
    assert [t.shape[-1] for t in out["strong_pixel_values"][0]] == strong
    for t in out["weak_pixel_values"][0] + out["strong_pixel_values"][0]:
        assert t.dtype == torch.float32 and t.shape[0] == 3 and t.shape[1] == t.shape[2]


def test_clsa_views__multi_scales_follow_the_paper():
    views = CLSAViewTransform("multi")
    scales = [(0.2, 1.0), (0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429)]
    assert [aug.scale for aug in views.strong_views] == scales == [aug.scale for aug in views.weak_views]
    assert views.key_view.scale == (0.2, 1.0) and views.key_view.jitter == (0.4, 0.4, 0.4, 0.1)


@pytest.mark.parametrize("preset, n", [("single_cifar", 1), ("multi_cifar", 5)])
def test_clsa_views__collator_makes_per_resolution_batches(preset, n):
    torch.manual_seed(0)
    rows = CLSAViewTransform(preset)({"image": [pil_image(seed=i) for i in range(4)]})
    examples = [{key: values[i] for key, values in rows.items()} for i in range(4)]
    batch = ViewCollator()(examples)
    assert batch["key_pixel_values"].shape == (4, 3, 32, 32)
    weak_sizes = [size for size, _ in CLSA_SETTINGS[preset]["weak"]]
    strong_sizes = [size for size, _ in CLSA_SETTINGS[preset]["strong"]]
    assert len(batch["weak_pixel_values"]) == len(batch["strong_pixel_values"]) == n
    assert [tuple(t.shape) for t in batch["weak_pixel_values"]] == [(4, 3, s, s) for s in weak_sizes]
    assert [tuple(t.shape) for t in batch["strong_pixel_values"]] == [(4, 3, s, s) for s in strong_sizes]


def _record_boxes(aug, store):
    geometric = aug.geometric

    def recorded(image):
        crop, box = geometric(image)
        store.append(box)
        return crop, box

    aug.geometric = recorded


def test_clsa_views__weak_and_strong_crops_are_independent():
    torch.manual_seed(0)
    spec = [(32, (0.2, 1.0))]
    views = CLSAViewTransform("single_cifar", weak=spec, strong=spec)
    weak_boxes, strong_boxes = [], []
    _record_boxes(views.weak_views[0], weak_boxes)
    _record_boxes(views.strong_views[0], strong_boxes)
    views({"image": [pil_image(64, 64)] * 20})
    assert len(weak_boxes) == len(strong_boxes) == 20
    same = sum(w == s for w, s in zip(weak_boxes, strong_boxes))
    assert same == 0


def _without_photometric(views):
    for aug in [views.key_view, *views.weak_views, *views.strong_views]:
        aug.jitter_p = aug.grayscale_p = aug.blur_p = 0.0


def test_clsa_views__randaugment_only_on_strong_views():
    image = Image.new("RGB", (40, 40), (200, 50, 10))
    views = CLSAViewTransform("single_cifar", pool=["Invert"], num_ops=1, apply_p=1.0)
    _without_photometric(views)
    out = views({"image": [image]})
    plain = views.key_view.normalize(torch.tensor([200, 50, 10], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32))
    inverted = views.key_view.normalize((255 - torch.tensor([200, 50, 10], dtype=torch.uint8)).view(3, 1, 1).expand(3, 16, 16))
    assert torch.allclose(out["key_pixel_values"][0], plain, atol=1e-5)
    assert torch.allclose(out["weak_pixel_values"][0][0], plain, atol=1e-5)
    assert torch.allclose(out["strong_pixel_values"][0][0], inverted, atol=1e-5)


@pytest.mark.parametrize("stage, gray", [("after_photometric", 165), ("after_geometric", 138)])
def test_clsa_views__randaugment_stage(stage, gray):
    # (200, 50, 10): grayscale -> 90 -> solarize(threshold 26) -> 165; or solarize -> (55, 205, 10) -> 138.
    image = Image.new("RGB", (40, 40), (200, 50, 10))
    views = CLSAViewTransform("single_cifar", pool=["Solarize"], num_ops=1, apply_p=1.0, magnitude_range=(9, 9), randaugment_stage=stage)
    _without_photometric(views)
    views.strong_views[0].grayscale_p = 1.0
    view, ops = views.strong_view(F.pil_to_tensor(image))
    assert [(op.name, op.magnitude) for op in ops] == [("Solarize", 9)]
    pixel = torch.tensor([gray] * 3, dtype=torch.uint8).view(3, 1, 1).expand(3, 16, 16)
    assert torch.allclose(view, views.key_view.normalize(pixel), atol=2 / 255 / 0.224)


@pytest.mark.parametrize("kwargs", [dict(preset="large"), dict(weak=[]), dict(randaugment_stage="before_crop")])
def test_clsa_views__rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CLSAViewTransform(**kwargs)


def test_clsa_views__without_strong_views_is_the_mocov2_base():
    views = CLSAViewTransform("single_cifar", strong=())
    assert views.output_keys == ("key_pixel_values", "weak_pixel_values") and not views.strong_views
    rows = views({"image": [Image.fromarray(noise(32).permute(1, 2, 0).numpy())] * 2})
    assert "strong_pixel_values" not in rows and len(rows["weak_pixel_values"]) == 2


def test_clsa_views__photometric_overrides_reach_every_view_and_typos_are_refused():
    views = CLSAViewTransform("single_cifar", jitter=(0.4, 0.4, 0.0, 0.0), grayscale_p=0.0)
    for aug in [views.key_view, *views.weak_views, *views.strong_views]:
        assert aug.jitter == (0.4, 0.4, 0.0, 0.0) and aug.grayscale_p == 0.0 and aug.blur_p == 0.5  # the rest stays MoCo v2's
    with pytest.raises(ValueError, match="jiter"):
        CLSAViewTransform("single_cifar", jiter=(0.4, 0.4, 0.0, 0.0))


def test_clsa_views__former_preset_keyword_still_names_the_view_set():
    assert len(CLSAViewTransform(preset="multi").weak_views) == len(CLSAViewTransform("multi").weak_views) == 5
