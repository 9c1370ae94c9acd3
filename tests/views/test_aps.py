"""APS views: sparse / selective patch sampling, coverage geometry, the overlap statistic, the transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from hf_sslviews.views.aps import APSViewTransform, kept_patch_overlap, patch_coverage, selective_patch_indices, sparse_patch_chunks
from hf_sslviews.views.augment import ViewAugmentation, color_jitter_float, sample_crop_box


def _random_boxes(n: int, side: int = 32, flip_1=None, flip_2=None, generator=None) -> torch.Tensor:
    """``[n, 2, 5]`` crop boxes of a side x side image, scale (0.15, 1), random or forced flips."""
    boxes = torch.zeros(n, 2, 5)
    for i in range(n):
        for view in range(2):
            boxes[i, view, :4] = torch.tensor(sample_crop_box(side, side, (0.15, 1.0), (3 / 4, 4 / 3)), dtype=torch.float32)
    boxes[:, 0, 4] = (torch.rand(n) < 0.5).float() if flip_1 is None else float(flip_1)
    boxes[:, 1, 4] = (torch.rand(n) < 0.5).float() if flip_2 is None else float(flip_2)
    return boxes


def _reference_coverage(box_src, box_dst, cells, grid_h, grid_w, track_flips=True):
    """Slow per-cell coverage: loops over destination cells and selected source cells."""
    top_s, left_s, h_s, w_s, f_s = [float(v) for v in box_src]
    top_d, left_d, h_d, w_d, f_d = [float(v) for v in box_dst]
    out = torch.zeros(grid_h * grid_w, dtype=torch.float64)
    for q in range(grid_h * grid_w):
        r_d, c_d = divmod(q, grid_w)
        if track_flips and f_d:
            c_d = grid_w - 1 - c_d
        y0, y1 = top_d + r_d * h_d / grid_h, top_d + (r_d + 1) * h_d / grid_h
        x0, x1 = left_d + c_d * w_d / grid_w, left_d + (c_d + 1) * w_d / grid_w
        area = 0.0
        for cell in cells.tolist():
            r_s, c_s = divmod(cell, grid_w)
            if track_flips and f_s:
                c_s = grid_w - 1 - c_s
            sy0, sy1 = top_s + r_s * h_s / grid_h, top_s + (r_s + 1) * h_s / grid_h
            sx0, sx1 = left_s + c_s * w_s / grid_w, left_s + (c_s + 1) * w_s / grid_w
            area += max(0.0, min(y1, sy1) - max(y0, sy0)) * max(0.0, min(x1, sx1) - max(x0, sx0))
        out[q] = area / ((y1 - y0) * (x1 - x0))
    return out


# ----------------------------------------------------------------------------- sparse sampling


def test_sparse_patch_chunks__disjoint_and_cover_grid():
    chunks = sparse_patch_chunks(16, 16, ratio=0.25, num_chunks=4, generator=torch.Generator().manual_seed(0))
    assert chunks.shape == (4, 64) and chunks.dtype == torch.int64
    assert torch.equal(chunks.flatten().sort().values, torch.arange(256))


def test_sparse_patch_chunks__non_square_partial_unique_in_range():
    chunks = sparse_patch_chunks(6, 10, ratio=0.2, num_chunks=3, batch_shape=(5,))
    assert chunks.shape == (5, 3, 12)
    for draw in chunks:
        assert draw.flatten().unique().numel() == 36
        assert int(draw.min()) >= 0 and int(draw.max()) < 60


def test_sparse_patch_chunks__random_across_draws():
    generator = torch.Generator().manual_seed(1)
    assert not torch.equal(sparse_patch_chunks(16, 16, generator=generator), sparse_patch_chunks(16, 16, generator=generator))


@pytest.mark.parametrize("ratio, chunks", [(0.0, 4), (1.5, 1), (0.25, 5), (0.5, 3)])
def test_sparse_patch_chunks__invalid_values_raise(ratio, chunks):
    with pytest.raises(ValueError):
        sparse_patch_chunks(16, 16, ratio=ratio, num_chunks=chunks)


# ----------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("grid_h, grid_w", [(4, 4), (3, 5)])
@pytest.mark.parametrize("flips", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_patch_coverage__matches_slow_reference(grid_h, grid_w, flips):
    torch.manual_seed(2)
    boxes = _random_boxes(3, side=40, flip_1=flips[0], flip_2=flips[1])
    cells = grid_h * grid_w
    selected = torch.stack([torch.randperm(cells)[: 2 * (cells // 4)].view(2, -1) for _ in range(3)])
    for track in (True, False):
        got = patch_coverage(boxes[:, 0], boxes[:, 1], selected, (grid_h, grid_w), track_flips=track)
        assert got.shape == (3, 2, cells)
        for i in range(3):
            for k in range(2):
                want = _reference_coverage(boxes[i, 0], boxes[i, 1], selected[i, k], grid_h, grid_w, track_flips=track)
                torch.testing.assert_close(got[i, k].double(), want, atol=1e-5, rtol=0)


def test_patch_coverage__same_box_full_grid_is_one():
    box = torch.tensor([3.0, 5.0, 20.0, 17.0, 1.0])
    coverage = patch_coverage(box, box, torch.arange(16 * 16).view(1, -1), 16)
    torch.testing.assert_close(coverage, torch.ones(1, 256))


def test_patch_coverage__flip_of_one_view_mirrors_columns():
    box = torch.tensor([0.0, 0.0, 32.0, 32.0, 0.0])
    flipped = torch.tensor([0.0, 0.0, 32.0, 32.0, 1.0])
    left_column = torch.arange(0, 16 * 16, 16).view(1, -1)
    coverage = patch_coverage(box, flipped, left_column, 16).view(16, 16)
    assert torch.all(coverage[:, 15] == 1) and torch.all(coverage[:, :15] == 0)
    naive = patch_coverage(box, flipped, left_column, 16, track_flips=False).view(16, 16)
    assert torch.all(naive[:, 0] == 1) and torch.all(naive[:, 1:] == 0)


# ----------------------------------------------------------------------------- selective sampling


def test_selective_patch_indices__unique_per_chunk_and_in_range():
    torch.manual_seed(3)
    coverage = torch.rand(5, 4, 256)
    indices = selective_patch_indices(coverage, 64)
    assert indices.shape == (5, 4, 64) and indices.dtype == torch.int64
    for row in indices.view(-1, 64):
        assert row.unique().numel() == 64
    assert int(indices.min()) >= 0 and int(indices.max()) < 256


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_selective_patch_indices__fully_covered_never_drawn(power):
    coverage = torch.zeros(200, 100)
    coverage[:, :60] = 1.0  # 40 free cells for 30 draws
    coverage[:, 60:70] = 1.5  # over-covered also counts as no free area
    indices = selective_patch_indices(coverage, 30, power=power, generator=torch.Generator().manual_seed(0))
    assert int(indices.min()) >= 70


def test_selective_patch_indices__power_prefers_free_cells():
    coverage = torch.zeros(4000, 4)
    coverage[:, 1] = 0.5  # weights 1 : 0.5**p
    draws = selective_patch_indices(coverage[:, :2], 1, power=3.0, generator=torch.Generator().manual_seed(0))
    share = (draws == 1).float().mean().item()
    assert abs(share - 0.125 / 1.125) < 0.03


def test_selective_patch_indices__all_covered_does_not_crash():
    indices = selective_patch_indices(torch.ones(2, 4, 64), 16)
    assert indices.shape == (2, 4, 16)
    assert all(row.unique().numel() == 16 for row in indices.view(-1, 16))


# ----------------------------------------------------------------------------- the APS statistic


def _overlap_statistic(boxes, power, track_flips=True, generator=None):
    n = boxes.shape[0]
    indices_1 = sparse_patch_chunks(16, 16, 0.25, 4, generator=generator, batch_shape=(n,))
    coverage = patch_coverage(boxes[:, 0], boxes[:, 1], indices_1, 16, track_flips=track_flips)
    indices_2 = selective_patch_indices(coverage, 64, power=power, generator=generator)
    return kept_patch_overlap(boxes[:, 0], boxes[:, 1], indices_1, indices_2, 16).mean().item()


def test_kept_patch_overlap__selective_about_4_percent_random_about_16():
    torch.manual_seed(4)
    boxes = _random_boxes(500)
    selective = _overlap_statistic(boxes, power=3.0)
    random = _overlap_statistic(boxes, power=0.0)
    assert 0.02 < selective < 0.07, selective
    assert 0.12 < random < 0.21, random
    assert selective < 0.5 * random


@pytest.mark.parametrize("flips", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_kept_patch_overlap__holds_whichever_view_is_flipped(flips):
    torch.manual_seed(5)
    boxes = _random_boxes(400, flip_1=flips[0], flip_2=flips[1])
    assert _overlap_statistic(boxes, power=3.0) < 0.5 * _overlap_statistic(boxes, power=0.0)


@pytest.mark.parametrize("flips", [(1.0, 0.0), (0.0, 1.0)])
def test_kept_patch_overlap__untracked_flips_break_it(flips):
    torch.manual_seed(6)
    boxes = _random_boxes(400, flip_1=flips[0], flip_2=flips[1])
    tracked = _overlap_statistic(boxes, power=3.0, track_flips=True)
    untracked = _overlap_statistic(boxes, power=3.0, track_flips=False)
    assert untracked > 2 * tracked, (tracked, untracked)


# ----------------------------------------------------------------------------- batched photometric ops


@pytest.mark.parametrize("size", [12, 80])  # the batched path, and the crop-by-crop path of large crops
@pytest.mark.parametrize("op, fn", [(0, F.adjust_brightness), (1, F.adjust_contrast), (2, F.adjust_saturation), (3, F.adjust_hue)])
def test_color_jitter_float__each_op_matches_torchvision(op, fn, size):
    torch.manual_seed(7)
    x = torch.rand(8, 3, size, size)
    x[:2, :, :4] = x[:2, :1, :4]  # grey pixels
    x[2:4, 1] = x[2:4, 0]  # ties at the maximum
    factors = torch.zeros(8, 4)
    factors[:, op] = torch.rand(8) * 0.2 - 0.1 if op == 3 else torch.rand(8) * 0.8 + 0.6
    enabled = tuple(i == op for i in range(4))
    got = color_jitter_float(x, torch.ones(8, dtype=torch.bool), torch.arange(4).repeat(8, 1), factors, enabled)
    want = torch.stack([fn(x[i], float(factors[i, op])) for i in range(8)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [8, 80])
def test_color_jitter_float__order_and_skip_respected(size):
    torch.manual_seed(8)
    x = torch.rand(2, 3, size, size)
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.05], [1.3, 0.7, 1.2, 0.05]])
    order = torch.tensor([[3, 1, 0, 2], [0, 1, 2, 3]])
    got = color_jitter_float(x, torch.tensor([True, False]), order, factors)
    want = x[0]
    for op in order[0].tolist():
        want = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue][op](want, float(factors[0, op]))
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0)
    assert torch.equal(got[1], x[1])


def test_photometric_normalize_batch__same_distribution_as_per_crop_path():
    torch.manual_seed(9)
    augment = ViewAugmentation.from_settings("aps", size=16)
    crops = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).repeat(1500, 1, 1, 1)
    batched = augment.photometric_normalize_batch(crops)
    per_crop = torch.stack([augment.normalize(augment.photometric(crop)) for crop in crops])
    assert batched.shape == crops.shape and batched.dtype == torch.float32
    # The uint8 path truncates after every op (about -0.5 level each, up to ~0.03 after
    # normalisation), the float path does not; beyond that the two distributions must agree.
    for stat in (lambda t: t.mean(dim=(1, 2, 3)), lambda t: t.std(dim=(1, 2, 3))):
        assert abs(stat(batched).mean() - stat(per_crop).mean()) < 0.07
        assert abs(stat(batched).std() - stat(per_crop).std()) < 0.05
    pixels = batched * torch.tensor(augment.std).view(1, 3, 1, 1) + torch.tensor(augment.mean).view(1, 3, 1, 1)
    share_gray = (pixels.diff(dim=1).abs().amax(dim=(1, 2, 3)) < 1e-5).float().mean()
    assert 0.14 < share_gray.item() < 0.26  # grayscale p = 0.2


# ----------------------------------------------------------------------------- the transform


def _png_bytes(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_aps_view_transform__keys_shapes_dtypes():
    torch.manual_seed(10)
    views = APSViewTransform.from_settings("cifar")
    rng = np.random.default_rng(0)
    batch = {"image": [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]}
    out = views(batch)
    assert set(out) == {"pixel_values_1", "pixel_values_2", "token_indices_1", "token_indices_2", "crop_boxes", "image_ok", "image_error"}
    assert out["image_ok"] == [True] * 3
    for i in range(3):
        for key in ("pixel_values_1", "pixel_values_2"):
            assert out[key][i].shape == (3, 32, 32) and out[key][i].dtype == torch.float32
        for key in ("token_indices_1", "token_indices_2"):
            assert out[key][i].shape == (4, 64) and out[key][i].dtype == torch.int64
        assert torch.equal(out["token_indices_1"][i].flatten().sort().values, torch.arange(256))
        assert all(chunk.unique().numel() == 64 for chunk in out["token_indices_2"][i])
        boxes = out["crop_boxes"][i]
        assert boxes.shape == (2, 5) and boxes.dtype == torch.float32
        assert torch.all(boxes[:, 2:4] >= 1) and torch.all(boxes[:, :2] + boxes[:, 2:4] <= 32)


def test_aps_view_transform__undecodable_bytes_marked_not_ok():
    views = APSViewTransform.from_settings("cifar")
    good = _png_bytes(np.zeros((32, 32, 3), dtype=np.uint8))
    out = views({"image": [{"bytes": b"not an image", "path": None}, good]})
    assert out["image_ok"] == [False, True]
    assert all(out[key][0] is None for key in views.output_keys)
    assert out["pixel_values_1"][1].shape == (3, 32, 32)


def test_aps_view_transform__grayscale_28px_and_non_square_inputs():
    views = APSViewTransform.from_settings("cifar")
    gray = _png_bytes(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8))
    wide = Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 50, 3), dtype=np.uint8))
    out = views({"image": [gray, wide]})
    assert out["image_ok"] == [True, True]
    assert out["pixel_values_2"][0].shape == (3, 32, 32)
    boxes = out["crop_boxes"][1]
    assert torch.all(boxes[:, 0] + boxes[:, 2] <= 20) and torch.all(boxes[:, 1] + boxes[:, 3] <= 50)


def test_aps_view_transform__imagenet_preset_grid_and_missing_column():
    views = APSViewTransform.from_settings("imagenet", interpolation="bilinear")
    assert (views.grid, views.num_chunks, views.num_patches) == (14, 4, 49)
    with pytest.raises(ValueError, match="image column"):
        views({"img": []})
    with pytest.raises(ValueError):
        APSViewTransform(size=32, patch_size=3)
