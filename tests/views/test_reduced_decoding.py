"""JPEGs decoded at a reduced size when every crop allows it: the factor, the mapping, the views."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import hf_sslviews.views.base as views_base
from hf_sslviews.views import APSViewTransform, CropBox, MultiTaskViewTransform, two_view_transform
from hf_sslviews.views.augment import decode_reduction
from hf_sslviews.views.decode import ImageDecodeError, decode_image, load_uint8_tensor, open_image, oriented_size, pil_to_uint8_tensor


def _jpeg(width: int, height: int, seed: int = 0, orientation: int = 1) -> bytes:
    """A smooth colour photo-like JPEG (a blurred random field with a few hard edges)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    array = np.asarray(coarse).copy()
    array[height // 3 : height // 2] = 255 - array[height // 3 : height // 2]
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(array).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def test_decode_reduction__largest_factor_that_every_crop_allows():
    box = lambda side: CropBox(0, 0, side, side + 100, False)  # noqa: E731
    assert decode_reduction([box(500)], [224]) == 1  # 2x reduction needs 2 x 2 x 224 = 896 px
    assert decode_reduction([box(900)], [224]) == 2
    assert decode_reduction([box(1800), box(1000)], [224, 96]) == 4  # 8 would need 3,584 and 1,536
    assert decode_reduction([box(1800), box(700)], [224, 224]) == 1  # one crop too small decides
    assert decode_reduction([box(4000)], [224]) == 8
    assert decode_reduction([box(900)], [224], gap=4.0) == 1


def test_decode_image__jpeg_reduced_other_formats_whole():
    assert decode_image(_jpeg(1600, 1200), reduce=4).size == (400, 300)
    assert decode_image(_jpeg(1601, 1201), reduce=4).size == (401, 301)  # never reduced beyond the factor
    png = io.BytesIO()
    Image.new("RGB", (800, 600)).save(png, "PNG")
    assert decode_image(png.getvalue(), reduce=4).size == (800, 600)


def test_oriented_size__exif_rotated_jpeg_planned_upright():
    data = _jpeg(320, 200, orientation=6)  # stored landscape, shown portrait
    assert oriented_size(open_image(data)) == (320, 200)  # (height, width) once turned
    assert decode_image(data, reduce=2).size == (100, 160)  # (width, height): turned and halved


@pytest.mark.parametrize("name", ["pair", "multitask", "aps"])
def test_reduced_decoding__views_match_full_decoding(monkeypatch, name):
    reductions = []
    load = views_base.load_uint8_tensor
    monkeypatch.setattr(views_base, "load_uint8_tensor", lambda image, value, reduce=1: reductions.append(reduce) or load(image, value, reduce))
    transform = {
        "pair": lambda: two_view_transform(size=112, scale=(0.3, 1.0)),
        "multitask": lambda: MultiTaskViewTransform("imagenet", n_local=2, global_size=112, local_size=48, cutout_size=112),
        "aps": lambda: APSViewTransform(size=112, patch_size=16),
    }[name]()
    batch = {"image": [{"bytes": _jpeg(1600, 1200, seed), "path": None} for seed in range(6)]}
    views = {}
    for reduced in (True, False):
        transform.reduced_decoding = reduced
        torch.manual_seed(0)
        views[reduced] = transform(batch)
    assert max(reductions[:6]) >= 4 and set(reductions[6:]) == {1}  # reduced (4x: 2x decodes whole) the first time only
    for key, value in views[True].items():
        if key == "image_ok" or not isinstance(value[0], torch.Tensor):
            continue
        reduced, full = torch.stack(value), torch.stack(views[False][key])
        if not reduced.is_floating_point():  # patch indices, crop boxes: drawn from the header, identical
            assert torch.equal(reduced, full)
            continue
        # The same crops (boxes in full-size pixels), resampled from a libjpeg-reduced image: the
        # same statistics, pixels within about one grey level on average (edges move by under a pixel).
        assert (reduced - full).abs().mean() < 0.03
        assert abs(reduced.mean() - full.mean()) < 0.01 and abs(reduced.std() - full.std()) < 0.01
    if name == "aps":
        assert torch.equal(torch.stack(views[True]["crop_boxes"]), torch.stack(views[False]["crop_boxes"]))


@pytest.mark.parametrize("kind", ["rgb", "grey", "exif_rotated", "path"])
def test_load_uint8_tensor__jpeg_fast_path_gives_pils_pixels(kind, tmp_path):
    data = _jpeg(300, 200, seed=3, orientation=6 if kind == "exif_rotated" else 1)
    if kind == "grey":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("L").save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
    value = {"bytes": data, "path": None}
    if kind == "path":
        (tmp_path / "photo.jpg").write_bytes(data)
        value = {"bytes": None, "path": str(tmp_path / "photo.jpg")}
    fast = load_uint8_tensor(open_image(value), value)
    assert torch.equal(fast, pil_to_uint8_tensor(decode_image(value)))
    assert fast.shape == ((3, 300, 200) if kind == "exif_rotated" else (3, 200, 300))


def test_load_uint8_tensor__broken_jpeg_raises_pils_error():
    data = _jpeg(300, 200)
    broken = data[:600] + bytes(400) + data[1000:1200]  # header intact, scan data garbage and cut
    with pytest.raises(ImageDecodeError):
        load_uint8_tensor(open_image(broken), broken)
