"""Property tests (hypothesis) for every view sampler: any image size and mode, any valid arguments.

For random images (1..300 x 1..300 pixels, modes L / RGB / RGBA, given as PIL images or PNG
bytes) and random valid arguments, each sampler returns its documented keys with the
documented shapes, ``float32`` finite pixels inside the normalised range, and (APS) patch
indices in range, unique within each chunk, view-1 chunks disjoint.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.views import RANDAUGMENT_OPS, APSViewTransform, CLSAViewTransform, MultiTaskViewTransform, RandAugment, cutout_box, sample_crop_box, two_view_transform
from hf_sslviews.views.base import IMAGENET_MEAN, IMAGENET_STD

# Few examples, no deadline: 2 shared CPU cores, and the first call of an op is slow.
FAST = settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# The normalised range of a [0, 1] pixel with ImageNet statistics, per channel.
LOW = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1) - 1e-4
HIGH = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1) + 1e-4

sides = st.integers(min_value=1, max_value=300)
modes = st.sampled_from(["L", "RGB", "RGBA"])
scales = st.tuples(st.floats(0.05, 1.0), st.floats(0.05, 1.0)).map(lambda pair: (min(pair), max(pair)))


@st.composite
def images(draw):
    """A random image value as the view transforms receive it: a PIL image or a decode=False dict."""
    width, height, mode = draw(sides), draw(sides), draw(modes)
    seed = draw(st.integers(0, 2**16))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode=mode)
    if draw(st.booleans()):
        return image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return {"bytes": buffer.getvalue(), "path": None}


def assert_pixels(tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(tensor.shape) == shape
    assert tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()
    assert (tensor >= LOW).all() and (tensor <= HIGH).all(), "outside the normalised range of [0, 1] pixels"


def one_row(transform, value) -> dict:
    out = transform({"image": [value]})
    assert set(out) == set(transform.output_keys) | {"image_ok", "image_error"}
    assert out["image_ok"] == [True] and out["image_error"] == [None]
    return {key: values[0] for key, values in out.items()}


@FAST
@given(image=images(), size=st.sampled_from([8, 16, 32]), scale=scales, ratio=st.sampled_from([(3 / 4, 4 / 3), (1.0, 1.0), (0.2, 5.0)]), seed=st.integers(0, 1000))
def test_two_view__keys_shapes_dtype_finite(image, size, scale, ratio, seed):
    torch.manual_seed(seed)
    row = one_row(two_view_transform(size=size, scale=scale, ratio=ratio), image)
    for key in ("pixel_values_1", "pixel_values_2"):
        assert_pixels(row[key], (3, size, size))


@FAST
@given(height=sides, width=sides, scale=scales, ratio=st.tuples(st.floats(0.1, 10), st.floats(0.1, 10)).map(sorted), seed=st.integers(0, 1000))
def test_sample_crop_box__inside_the_image(height, width, scale, ratio, seed):
    torch.manual_seed(seed)
    top, left, h, w = sample_crop_box(height, width, scale, tuple(ratio))
    assert 1 <= h and 1 <= w and 0 <= top and 0 <= left and top + h <= height and left + w <= width


@st.composite
def aps_arguments(draw):
    patch_size = draw(st.sampled_from([2, 4, 8]))
    grid = draw(st.integers(1, 8))
    ratio = draw(st.sampled_from([0.125, 0.25, 0.5, 1.0]))
    cells = grid * grid
    n = int(cells * ratio + 1e-9)
    if n < 1:
        ratio, n = 1.0, cells
    num_chunks = draw(st.integers(1, cells // n))
    power = draw(st.sampled_from([0.0, 1.0, 3.0]))
    return dict(size=grid * patch_size, patch_size=patch_size, ratio=ratio, num_chunks=num_chunks, power=power, scale=draw(scales), track_flips=draw(st.booleans()))


@FAST
@given(batch=st.lists(images(), min_size=1, max_size=3), kwargs=aps_arguments(), seed=st.integers(0, 1000))
def test_aps__indices_in_range_unique_per_chunk_view1_chunks_disjoint(batch, kwargs, seed):
    torch.manual_seed(seed)
    transform = APSViewTransform(**kwargs)
    out = transform({"image": batch})
    assert out["image_ok"] == [True] * len(batch)
    size, cells, k, n = kwargs["size"], transform.grid**2, transform.num_chunks, transform.num_patches
    for i, value in enumerate(batch):
        assert_pixels(out["pixel_values_1"][i], (3, size, size))
        assert_pixels(out["pixel_values_2"][i], (3, size, size))
        for key in ("token_indices_1", "token_indices_2"):
            indices = out[key][i]
            assert indices.dtype == torch.int64 and tuple(indices.shape) == (k, n)
            assert int(indices.min()) >= 0 and int(indices.max()) < cells
            for chunk in indices:
                assert chunk.unique().numel() == n, f"{key}: repeated index in a chunk"
                assert torch.equal(chunk, chunk.sort().values)
        assert out["token_indices_1"][i].unique().numel() == k * n, "view-1 chunks overlap"
        boxes = out["crop_boxes"][i]
        assert boxes.dtype == torch.float32 and tuple(boxes.shape) == (2, 5)
        probe = value if isinstance(value, Image.Image) else Image.open(io.BytesIO(value["bytes"]))
        width, height = probe.size
        top, left, h, w, flipped = boxes.unbind(-1)
        assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
        assert (top + h <= height).all() and (left + w <= width).all()
        assert set(flipped.tolist()) <= {0.0, 1.0}
    rows = [{key: values[i] for key, values in out.items()} for i in range(len(batch))]
    collated = ViewCollator()(rows)
    assert tuple(collated["token_indices_1"].shape) == (len(batch), k, n)


@st.composite
def view_specs(draw, max_views: int = 2):
    count = draw(st.integers(1, max_views))
    return [(draw(st.sampled_from([8, 16, 24])), draw(scales)) for _ in range(count)]


@FAST
@given(
    image=images(),
    key=view_specs(1),
    weak=view_specs(),
    strong=view_specs(),
    num_ops=st.integers(0, 6),
    apply_p=st.floats(0, 1),
    magnitude=st.tuples(st.integers(1, 10), st.integers(1, 10)).map(sorted),
    pool=st.sampled_from(["official", "paper"]),
    stage=st.sampled_from(["after_photometric", "after_geometric"]),
    seed=st.integers(0, 1000),
)
def test_clsa__keys_shapes_dtype_finite(image, key, weak, strong, num_ops, apply_p, magnitude, pool, stage, seed):
    torch.manual_seed(seed)
    transform = CLSAViewTransform(
        "single_cifar", key=key[0], weak=weak, strong=strong, num_ops=num_ops, apply_p=apply_p,
        magnitude_range=tuple(magnitude), pool=pool, randaugment_stage=stage,
    )
    row = one_row(transform, image)
    assert_pixels(row["key_pixel_values"], (3, key[0][0], key[0][0]))
    for name, specs in (("weak_pixel_values", weak), ("strong_pixel_values", strong)):
        assert isinstance(row[name], list) and len(row[name]) == len(specs)
        for tensor, (size, _) in zip(row[name], specs):
            assert_pixels(tensor, (3, size, size))


@FAST
@given(
    image=images(),
    n_global=st.integers(1, 3),
    n_local=st.integers(0, 3),
    n_cutout=st.integers(0, 2),
    sizes=st.tuples(st.sampled_from([8, 16, 32]), st.sampled_from([8, 16]), st.sampled_from([8, 16, 32])),
    area=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    seed=st.integers(0, 1000),
)
def test_multitask__keys_shapes_dtype_finite(image, n_global, n_local, n_cutout, sizes, area, seed):
    torch.manual_seed(seed)
    global_size, local_size, cutout_size = sizes
    transform = MultiTaskViewTransform(
        "cifar", n_global=n_global, n_local=n_local, n_cutout=n_cutout,
        global_size=global_size, local_size=local_size, cutout_size=cutout_size, cutout_area=tuple(area),
    )
    row = one_row(transform, image)
    assert_pixels(row["global_pixel_values"], (n_global, 3, global_size, global_size))
    assert ("local_pixel_values" in row) == (n_local > 0)
    assert ("cutout_pixel_values" in row) == (n_cutout > 0)
    if n_local:
        assert_pixels(row["local_pixel_values"], (n_local, 3, local_size, local_size))
    if n_cutout:
        # The cutout is filled with the mean pixel before the colour ops: still in range.
        assert_pixels(row["cutout_pixel_values"], (n_cutout, 3, cutout_size, cutout_size))


@FAST
@given(height=st.integers(1, 64), width=st.integers(1, 64), area=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted), seed=st.integers(0, 1000))
def test_cutout_box__inside_the_image(height, width, area, seed):
    torch.manual_seed(seed)
    top, left, h, w = cutout_box(height, width, tuple(area))
    assert 1 <= h <= height and 1 <= w <= width and 0 <= top <= height - h and 0 <= left <= width - w


@pytest.mark.parametrize("name", sorted(RANDAUGMENT_OPS))
@settings(max_examples=8, deadline=None, database=None)
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    batch=st.sampled_from([(), (2,)]),
    magnitude=st.integers(1, 10),
    sign=st.sampled_from([-1, 1]),
    seed=st.integers(0, 1000),
)
def test_randaugment_op__keeps_shape_and_uint8(name, height, width, batch, magnitude, sign, seed):
    image = torch.randint(0, 256, (*batch, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    out = RANDAUGMENT_OPS[name](image, magnitude, sign)
    assert out.dtype == torch.uint8 and out.shape == image.shape


@FAST
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    num_ops=st.integers(0, 8),
    apply_p=st.floats(0, 1),
    magnitude=st.tuples(st.integers(1, 10), st.integers(1, 10)).map(sorted),
    pool=st.one_of(st.sampled_from(["official", "paper"]), st.lists(st.sampled_from(sorted(RANDAUGMENT_OPS)), min_size=1, max_size=4)),
    seed=st.integers(0, 1000),
)
def test_randaugment__draws_and_output(height, width, num_ops, apply_p, magnitude, pool, seed):
    torch.manual_seed(seed)
    augment = RandAugment(num_ops=num_ops, apply_p=apply_p, magnitude_range=tuple(magnitude), pool=pool)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    out, applied = augment.augment(image)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert len(applied) <= num_ops
    for draw in applied:
        assert draw.applied and draw.name in augment.pool and magnitude[0] <= draw.magnitude <= magnitude[1] and draw.sign in (-1, 1)


def test_randaugment_solarize__magnitude_0_allowed_by_validation_works():
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    augment = RandAugment(num_ops=1, apply_p=1.0, magnitude_range=(0, 0), pool=["Solarize"])
    assert torch.equal(augment(image), image)  # threshold 256: nothing is inverted, as in PIL
