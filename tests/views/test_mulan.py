"""MULAN's global, local and cutout views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.views.mulan import MultiTaskViewTransform, apply_cutout, cutout_box


def pil_image(height: int = 40, width: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def collate(rows: dict, n: int) -> dict:
    return ViewCollator()([{key: values[i] for key, values in rows.items()} for i in range(n)])


# ----------------------------------------------------------------------------- cutout_box / apply_cutout


def test_cutout_box__area_and_aspect_statistics():
    torch.manual_seed(0)
    boxes = [cutout_box(224, 224) for _ in range(4000)]
    area = np.array([h * w / 224**2 for _, _, h, w in boxes])
    log_aspect = np.array([math.log(w / h) for _, _, h, w in boxes])
    # Area U(0.2, 0.4): mean 0.3, std 0.2 / sqrt(12) = 0.0577, half the mass below 0.3.
    assert area.mean() == pytest.approx(0.3, abs=0.005)
    assert area.std() == pytest.approx(0.2 / math.sqrt(12), abs=0.004)
    assert np.mean(area < 0.3) == pytest.approx(0.5, abs=0.03)
    assert area.min() >= 0.2 - 0.005 and area.max() <= 0.4 + 0.005  # whole-pixel rounding
    # Aspect log-uniform in [3/4, 4/3]: log symmetric about 0 with std log(16/9) / sqrt(12).
    assert log_aspect.min() >= math.log(3 / 4) - 0.02 and log_aspect.max() <= math.log(4 / 3) + 0.02
    assert log_aspect.mean() == pytest.approx(0.0, abs=0.01)
    assert log_aspect.std() == pytest.approx(math.log(16 / 9) / math.sqrt(12), abs=0.01)
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224


def test_cutout_box__position_covers_the_image():
    torch.manual_seed(1)
    boxes = [cutout_box(32, 32) for _ in range(500)]
    tops = {top for top, _, _, _ in boxes}
    lefts = {left for _, left, _, _ in boxes}
    assert 0 in tops and 0 in lefts and max(tops) >= 10 and max(lefts) >= 10


@pytest.mark.parametrize("kwargs", [dict(area_range=(0.0, 0.4)), dict(area_range=(0.5, 0.4)), dict(aspect_range=(2.0, 1.0))])
def test_cutout_box__rejects_bad_ranges(kwargs):
    with pytest.raises(ValueError):
        cutout_box(32, 32, **kwargs)


def test_apply_cutout__fills_only_the_box():
    img = torch.full((3, 10, 12), 7, dtype=torch.uint8)
    out = apply_cutout(img, (2, 3, 4, 5), (124, 116, 104))
    assert torch.equal(img, torch.full((3, 10, 12), 7, dtype=torch.uint8))  # input untouched
    assert out[:, 2:6, 3:8].flatten(1).unique(dim=1).tolist() == [[124], [116], [104]]
    mask = torch.ones(10, 12, dtype=torch.bool)
    mask[2:6, 3:8] = False
    assert (out[:, mask] == 7).all()
    assert (apply_cutout(img.float(), (0, 0, 1, 1), 0.5)[:, 0, 0] == 0.5).all()
    with pytest.raises(ValueError, match="channels"):
        apply_cutout(img, (0, 0, 1, 1), (1, 2))


# ----------------------------------------------------------------------------- the view transform


def test_multitask_views__imagenet_shapes():
    torch.manual_seed(0)
    out = MultiTaskViewTransform()({"image": [pil_image()]})
    assert out["image_ok"] == [True]
    assert out["global_pixel_values"][0].shape == (2, 3, 224, 224)
    assert out["local_pixel_values"][0].shape == (2, 3, 96, 96)
    assert out["cutout_pixel_values"][0].shape == (1, 3, 224, 224)
    assert all(out[key][0].dtype == torch.float32 for key in ("global_pixel_values", "local_pixel_values", "cutout_pixel_values"))


@pytest.mark.parametrize("n_global, n_local, n_cutout", [(2, 2, 1), (2, 4, 2), (3, 0, 1), (2, 1, 0)])
def test_multitask_views__counts_and_collator(n_global, n_local, n_cutout):
    torch.manual_seed(0)
    views = MultiTaskViewTransform("cifar", n_global=n_global, n_local=n_local, n_cutout=n_cutout)
    batch = collate(views({"image": [pil_image(seed=i) for i in range(3)]}), 3)
    assert batch["global_pixel_values"].shape == (3, n_global, 3, 32, 32)
    if n_local:
        assert batch["local_pixel_values"].shape == (3, n_local, 3, 16, 16)
    else:
        assert "local_pixel_values" not in batch
    if n_cutout:
        assert batch["cutout_pixel_values"].shape == (3, n_cutout, 3, 32, 32)
    else:
        assert "cutout_pixel_values" not in batch
    assert batch["num_skipped_images"].item() == 0


def test_multitask_views__sizes_are_arguments():
    views = MultiTaskViewTransform("cifar", global_size=24, local_size=8, cutout_size=20)
    out = views({"image": [pil_image()]})
    assert out["global_pixel_values"][0].shape[-1] == 24
    assert out["local_pixel_values"][0].shape[-1] == 8
    assert out["cutout_pixel_values"][0].shape[-1] == 20


def test_multitask_views__paper_settings():
    views = MultiTaskViewTransform()
    g1, g2 = views.global_views
    assert (g1.blur_p, g1.solarize_p, g2.blur_p, g2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert g1.scale == g2.scale == views.cutout_views[0].scale == (0.25, 1.0)
    assert views.local_views[0].scale == (0.08, 0.25) and views.local_views[0].blur_p == 0.5
    for aug in [*views.global_views, *views.local_views, *views.cutout_views]:
        assert aug.jitter == (0.4, 0.4, 0.2, 0.1) and aug.jitter_p == 0.8 and aug.grayscale_p == 0.2
        assert aug.interpolation == F.InterpolationMode.BICUBIC


def _white_views(**kwargs) -> tuple[MultiTaskViewTransform, torch.Tensor]:
    views = MultiTaskViewTransform("cifar", **kwargs)
    for aug in views.cutout_views:
        aug.grayscale_p = aug.blur_p = 0.0
    return views, torch.full((3, 48, 48), 255, dtype=torch.uint8)


def test_multitask_views__cutout_is_the_normalised_mean_without_jitter():
    torch.manual_seed(0)
    views, white = _white_views(jitter_p=0.0)
    for _ in range(20):
        view, (top, left, h, w) = views.cutout_view(white)
        hole = torch.zeros(32, 32, dtype=torch.bool)
        hole[top : top + h, left : left + w] = True
        area = hole.float().mean().item()
        assert 0.19 <= area <= 0.41
        # The dataset mean as a uint8 pixel normalises to 0 up to rounding (< 0.5 / 255 / std).
        assert view[:, hole].abs().max() < 0.01
        assert (view[:, ~hole] > 2.0).all()  # white elsewhere: (1 - mean) / std > 2


def test_multitask_views__cutout_comes_before_colour_jitter():
    torch.manual_seed(0)
    views, white = _white_views(jitter_p=1.0)
    changed = 0
    for _ in range(10):
        view, (top, left, h, w) = views.cutout_view(white)
        changed += view[:, top : top + h, left : left + w].abs().max().item() > 0.05
    # Jitter runs after the fill, so the hole's colour moves with it.
    assert changed >= 8


@pytest.mark.parametrize("kwargs", [dict(preset="tiny"), dict(n_global=0), dict(n_local=-1), dict(cutout_area=(0.4, 0.2))])
def test_multitask_views__rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MultiTaskViewTransform(**kwargs)


def test_multitask_views__photometric_settings_reach_every_view():
    views = MultiTaskViewTransform("cifar", jitter=(0.4, 0.4, 0.0, 0.0), grayscale_p=0.0, solarize_p=0.0, mean=(0.5,) * 3, std=(0.25,) * 3)
    every = views.global_views + views.local_views + views.cutout_views
    assert all(aug.jitter == (0.4, 0.4, 0.0, 0.0) and aug.grayscale_p == 0.0 and aug.solarize_p == 0.0 for aug in every)
    # A grey image stays grey through every view: no saturation or hue shift can colour it.
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).convert("RGB")
    rows = views({"image": [grey] * 4})
    for key in views.output_keys:
        for value in rows[key]:
            assert torch.allclose(value[:, 0], value[:, 1], atol=1e-5) and torch.allclose(value[:, 1], value[:, 2], atol=1e-5)


def test_multitask_views__former_preset_keyword_still_names_the_sizes():
    former = MultiTaskViewTransform(preset="cifar", n_local=1, n_cutout=0)
    assert (former.global_views[0].size, former.local_views[0].size) == (32, 16)
