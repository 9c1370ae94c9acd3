"""Bad input, tried and counted: the catalogue of docs/bad_input.md as tests.

Every case names its input and its expected outcome:

- ``ok``: the image decodes to 8-bit RGB (and the views are finite ``float32`` crops);
- ``skip``: :func:`decode_image` raises :class:`ImageDecodeError`, the view transform marks the
  row ``image_ok=False``, the collator drops and counts it, the Trainer adds it to
  ``images_skipped`` and logs ``skipped_images``;
- ``error``: a specific exception whose message names the problem **and** the fix.

All images are made with PIL in memory; the 10,000 x 10,000 image is a hand-made PNG header,
never allocated.
"""

from __future__ import annotations

import atexit
import io
import logging
import re
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional
from unittest import mock

import datasets
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from hf_sslviews.data.collator import ViewCollator, batch_rows, keep_first_rows
from hf_sslviews.data.sources import check_columns, load_image_dataset, prepare_for_views, split_train_eval
from hf_sslviews.evaluation.features import extract_features
from hf_sslviews.modeling.clsa import CLSAConfig
from hf_sslviews.modeling.common.queue import KeyQueue
from hf_sslviews.modeling.mocov3 import MoCoV3Config
from hf_sslviews.modeling.mulan import MulanConfig
from hf_sslviews.modeling.repco import RepCoConfig
from hf_sslviews.modeling.simsiam import SimSiamConfig, SimSiamForPreTraining
from hf_sslviews.training.trainer import NonFiniteLossError, SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import APSViewTransform, CLSAViewTransform, ImageDecodeError, MultiTaskViewTransform, RandAugment, ViewAugmentation, decode_image, two_view_transform

# --------------------------------------------------------------------------------------------
# Images made in memory
# --------------------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
ORIENTATION = 0x0112  # the EXIF orientation tag


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def as_row(data: bytes) -> dict:
    """What an ``Image(decode=False)`` column hands the view transform."""
    return {"bytes": data, "path": None}


def rgb_noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB pixels, with almost no pixel data.

    The header is all PIL reads at ``Image.open``: this is how a decompression bomb looks
    before it is decoded, without allocating it here.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def gray16() -> Image.Image:
    """``I;16`` with a full-range horizontal ramp (0 .. 65535): clipping would make it white."""
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (8, 1))
    return Image.fromarray(ramp)


def palette_with_transparency() -> Image.Image:
    """Mode P, index 0 transparent (red in the palette), index 1 opaque green at (0, 0)."""
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 1)
    image.info["transparency"] = 0
    return image


def rgba_half_transparent() -> Image.Image:
    """Fully transparent red everywhere except an opaque blue pixel at (0, 0)."""
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    return image


def exif_rotated_png() -> bytes:
    """3 wide x 2 high, red at the top-left, EXIF orientation 6 (display rotated 90 deg clockwise)."""
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes())


def signed_int32_ramp() -> Image.Image:
    """Mode ``I`` from -100,000 to 2,000,000: dividing by 257 would clip it to black and white."""
    return Image.fromarray(np.tile(np.linspace(-100_000, 2_000_000, 16).astype(np.int32), (8, 1)))


def cielab_tiff() -> bytes:
    """A red (200, 30, 40) stored as a CIELab TIFF (PIL's LAB mode)."""
    from PIL import ImageCms

    red = Image.new("RGB", (4, 4), (200, 30, 40))
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return encode(ImageCms.applyTransform(red, to_lab), "TIFF")


def _near(expected: tuple[int, int, int], tolerance: int = 6) -> Callable[[np.ndarray], None]:
    def check(pixels: np.ndarray) -> None:
        assert np.abs(pixels[0, 0].astype(int) - np.array(expected)).max() <= tolerance, pixels[0, 0]

    return check


def float_with_nan() -> Image.Image:
    values = np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)
    values[0, 0], values[0, 1] = np.nan, np.inf
    return Image.fromarray(values, mode="F")


# --------------------------------------------------------------------------------------------
# Image cases
# --------------------------------------------------------------------------------------------


@dataclass
class ImageCase:
    """One input image and what must happen to it.

    Attributes:
        name: the case id (also the row of docs/bad_input.md).
        make: builds the column value (bytes, a PIL image, an ``Image(decode=False)`` dict).
        outcome: ``"ok"`` or ``"skip"``.
        size: expected (width, height) after decoding, for ``ok``.
        check: optional check of the decoded RGB pixels (``uint8 [H, W, 3]``).
        message: for ``skip``, a fragment the :class:`ImageDecodeError` message must contain.
    """

    name: str
    make: Callable[[], Any]
    outcome: str
    size: Optional[tuple[int, int]] = None
    check: Optional[Callable[[np.ndarray], None]] = None
    message: str = ""


def _ramp_kept(pixels: np.ndarray) -> None:
    row = pixels[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) > 0), row  # rescaled, not clipped


def _transparent_is_white(first: tuple[int, int, int]) -> Callable[[np.ndarray], None]:
    def check(pixels: np.ndarray) -> None:
        assert tuple(pixels[0, 0]) == first
        assert tuple(pixels[1, 1]) == (255, 255, 255)  # composited over white, not black

    return check


def _cmyk_red(pixels: np.ndarray) -> None:
    r, g, b = (int(v) for v in pixels[4, 4])
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def _rotated_clockwise(pixels: np.ndarray) -> None:
    # Upright: 2 wide x 3 high; the red top-left corner of the stored image is now top-right.
    red = np.argwhere(pixels[:, :, 0] > 128)
    assert red.tolist() == [[0, 1]], pixels[:, :, 0]


def _nan_black_rest_finite(pixels: np.ndarray) -> None:
    assert tuple(pixels[0, 0]) == (0, 0, 0) and tuple(pixels[0, 1]) == (0, 0, 0)
    assert pixels[-1, -1, 0] == 255


IMAGE_CASES = [
    ImageCase("rgb_png", lambda: as_row(encode(rgb_noise(20, 10))), "ok", (20, 10)),
    ImageCase("image_1x1_32px_crops", lambda: as_row(encode(rgb_noise(1, 1))), "ok", (1, 1)),
    ImageCase("image_8x8_32px_crops", lambda: as_row(encode(rgb_noise(8, 8))), "ok", (8, 8)),
    ImageCase("grayscale_L", lambda: as_row(encode(Image.new("L", (6, 5), 77))), "ok", (6, 5), lambda p: (p == 77).all()),
    ImageCase("sixteen_bit_I16", lambda: as_row(encode(gray16())), "ok", (16, 8), _ramp_kept),
    ImageCase("sixteen_bit_I16_pil_object", gray16, "ok", (16, 8), _ramp_kept),
    ImageCase("float_F_with_nan_inf", float_with_nan, "ok", (6, 4), _nan_black_rest_finite),
    ImageCase("palette_with_transparency", lambda: as_row(encode(palette_with_transparency())), "ok", (4, 4), _transparent_is_white((0, 255, 0))),
    ImageCase("rgba", lambda: as_row(encode(rgba_half_transparent())), "ok", (4, 4), _transparent_is_white((0, 0, 255))),
    ImageCase("cmyk_jpeg", lambda: as_row(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)), "ok", (8, 8), _cmyk_red),
    ImageCase("exif_orientation_6", lambda: as_row(exif_rotated_png()), "ok", (2, 3), _rotated_clockwise),
    ImageCase("uint8_array", lambda: RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8), "ok", (7, 5)),
    ImageCase("signed_int32_I", signed_int32_ramp, "ok", (16, 8), _ramp_kept),
    ImageCase("signed_int32_constant", lambda: Image.fromarray(np.full((4, 5), -7, dtype=np.int32)), "ok", (5, 4), lambda p: (p == 0).all()),
    ImageCase("cielab_tiff", lambda: as_row(cielab_tiff()), "ok", (4, 4), _near((200, 30, 40))),
    ImageCase("float_array_0_to_1", lambda: np.full((5, 7, 3), 0.5, dtype=np.float32), "ok", (7, 5), lambda p: (p == 128).all()),
    ImageCase("channels_first_tensor", lambda: torch.full((3, 5, 7), 9, dtype=torch.uint8), "ok", (7, 5), lambda p: (p == 9).all()),
    ImageCase("float_array_normalised", lambda: np.full((5, 7, 3), -1.5, dtype=np.float32), "skip", message=r"must hold values in \[0, 1\] or \[0, 255\], got \[-1.5, -1.5\]"),
    ImageCase("relative_path_missing", lambda: {"path": "no/such/image.png", "bytes": None}, "skip", message="No such file"),
    ImageCase("truncated_png", lambda: as_row(encode(rgb_noise(64, 64))[:400]), "skip", message="truncated"),
    ImageCase("random_bytes", lambda: as_row(RNG.integers(0, 256, 512, dtype=np.uint8).tobytes()), "skip", message="cannot identify image"),
    ImageCase("empty_bytes", lambda: as_row(b""), "skip", message="cannot identify image"),
    ImageCase("zero_size_image", lambda: Image.new("RGB", (0, 0)), "skip", message="zero size"),
    ImageCase("zero_size_png_header", lambda: as_row(png_header_only(0, 0)), "skip", message="cannot identify image"),
    ImageCase("missing_value_none", lambda: None, "skip", message="None"),
    ImageCase("dict_without_bytes_or_path", lambda: {"bytes": None, "path": None}, "skip", message="neither 'bytes' nor 'path'"),
    ImageCase("bomb_10000x10000_header", lambda: as_row(png_header_only(10_000, 10_000)), "skip", message="MAX_IMAGE_PIXELS"),
    ImageCase("bomb_above_2x_limit", lambda: as_row(png_header_only(20_000, 20_000)), "skip", message="MAX_IMAGE_PIXELS"),
]
SKIPS = [case for case in IMAGE_CASES if case.outcome == "skip"]


@pytest.fixture
def no_pixel_decoding_of_bombs(monkeypatch):
    """Fail the test if a decompression bomb gets as far as decoding (allocating) its pixels."""
    original = ImageFile.ImageFile.load

    def guarded(self):
        if self.width * self.height >= 10_000 * 10_000:
            raise AssertionError(f"a {self.width}x{self.height} image was decoded")
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.name)
def test_decode_image__catalogue(case, no_pixel_decoding_of_bombs):
    value = case.make()
    if case.outcome == "skip":
        with pytest.raises(ImageDecodeError, match=case.message):
            decode_image(value)
        return
    image = decode_image(value)
    assert image.mode == "RGB" and image.size == case.size
    if case.check is not None:
        result = case.check(np.asarray(image))
        assert result is None or bool(result)


def test_decode_image__bomb_is_logged_with_the_fix(caplog, no_pixel_decoding_of_bombs):
    with caplog.at_level(logging.WARNING, logger="hf_sslviews.views.decode"):
        with pytest.raises(ImageDecodeError, match=r"10000x10000 .*decompression bomb.*MAX_IMAGE_PIXELS = None"):
            decode_image(png_header_only(10_000, 10_000))
    assert any("MAX_IMAGE_PIXELS" in record.getMessage() for record in caplog.records)


def test_decode_image__lowered_limit_skips_and_raised_limit_lets_through(monkeypatch):
    # The real bomb path with a small image: PIL's limit lowered to 1,000 pixels.
    data = encode(rgb_noise(40, 30))  # 1,200 pixels: between 1x and 2x the limit, where PIL only warns
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(ImageDecodeError, match="exceeds PIL.Image.MAX_IMAGE_PIXELS"):
        decode_image(data)
    with pytest.raises(ImageDecodeError, match="MAX_IMAGE_PIXELS"):
        decode_image(encode(rgb_noise(50, 50)))  # 2,500 > 2x: PIL's own DecompressionBombError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the documented way to allow large images
    assert decode_image(data).size == (40, 30)


# --------------------------------------------------------------------------------------------
# The same cases through every view transform, the collator and the Trainer
# --------------------------------------------------------------------------------------------


def _catalogue_batch() -> dict[str, list]:
    return {"image": [case.make() for case in IMAGE_CASES], "label": list(range(len(IMAGE_CASES)))}


TRANSFORMS = {
    "two_view": lambda: two_view_transform(size=32),
    "aps": lambda: APSViewTransform(size=32, patch_size=8),
    "clsa": lambda: CLSAViewTransform("single_cifar"),
    "multitask": lambda: MultiTaskViewTransform("cifar", n_local=1),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_view_transform_and_collator__bad_rows_are_marked_dropped_and_counted(name, no_pixel_decoding_of_bombs):
    torch.manual_seed(0)
    transform = TRANSFORMS[name]()
    out = transform(_catalogue_batch())
    assert out["image_ok"] == [case.outcome == "ok" for case in IMAGE_CASES]
    rows = [{key: values[i] for key, values in out.items()} for i in range(len(IMAGE_CASES))]
    batch = ViewCollator()(rows)
    assert int(batch["num_skipped_images"]) == len(SKIPS)
    good = len(IMAGE_CASES) - len(SKIPS)
    reasons = batch.pop("skipped_image_reasons")
    assert len(reasons) == len(SKIPS), reasons  # one line per bad image, for the summary
    for key, value in batch.items():
        if key == "num_skipped_images":
            continue
        for tensor in value if isinstance(value, list) else [value]:
            assert tensor.shape[0] == good, key
            if tensor.is_floating_point():
                assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), key


def test_collator__a_batch_of_only_bad_images_is_a_count_alone():
    transform = two_view_transform(size=32)
    out = transform({"image": [as_row(b"junk"), None]})
    batch = ViewCollator()([{key: values[i] for key, values in out.items()} for i in range(2)])
    assert set(batch) == {"num_skipped_images", "skipped_image_reasons"} and int(batch["num_skipped_images"]) == 2
    assert "4 bytes: UnidentifiedImageError" in batch["skipped_image_reasons"][0] and "None" in batch["skipped_image_reasons"][1]


def test_keep_first_rows__cuts_every_per_example_tensor_and_keeps_scalars():
    # The cut SSLTrainer makes under data parallelism when another process's batch is smaller.
    batch = {
        "view1": torch.arange(4 * 2).reshape(4, 2), "crops": [torch.arange(4), torch.arange(4) + 10],
        "patch_indices": torch.arange(4 * 3).reshape(4, 3), "chunk_index": 1, "num_skipped_images": torch.tensor(0),
    }
    assert batch_rows(batch) == 4
    cut = keep_first_rows(batch, 3)
    assert batch_rows(cut) == 3
    assert torch.equal(cut["view1"], batch["view1"][:3]) and torch.equal(cut["patch_indices"], batch["patch_indices"][:3])
    assert [part.tolist() for part in cut["crops"]] == [[0, 1, 2], [10, 11, 12]]
    assert cut["chunk_index"] == 1 and int(cut["num_skipped_images"]) == 0
    assert keep_first_rows(batch, 4) is batch
    # No rows left: only the scalars, which SSLTrainer trains as an all-skipped batch.
    assert set(keep_first_rows(batch, 0)) == {"chunk_index", "num_skipped_images"}


def _trainer_args(tmp_path, **overrides) -> SSLTrainingArguments:
    base = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=1,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0,
    )
    base.update(overrides)
    return SSLTrainingArguments(**base)


def _tiny_simsiam(tiny_vit_kwargs, cls=SimSiamForPreTraining):
    torch.manual_seed(0)
    return cls(SimSiamConfig(**tiny_vit_kwargs, projector_dim=16, predictor_hidden_dim=4))


def test_trainer__catalogue_images_are_counted_in_the_trainer(tiny_vit_kwargs, tmp_path, no_pixel_decoding_of_bombs):
    # Only byte-encodable cases fit a datasets column; every skip among them is counted.
    cases = [case for case in IMAGE_CASES if isinstance(case.make(), dict) and case.make().get("bytes") is not None]
    bad = sum(case.outcome == "skip" for case in cases)
    features = datasets.Features({"image": datasets.Image(decode=False)})
    train = datasets.Dataset.from_dict({"image": [case.make() for case in cases]}, features=features)
    train = train.with_transform(two_view_transform(size=32))
    args = _trainer_args(tmp_path, per_device_train_batch_size=len(cases), max_bad_image_fraction=1.0)
    trainer = SSLTrainer(model=_tiny_simsiam(tiny_vit_kwargs), args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    assert (trainer.images_seen, trainer.images_skipped) == (len(cases), bad) and bad >= 5
    assert any(entry.get("skipped_images") == bad for entry in trainer.state.log_history)


def test_trainer__a_batch_of_only_bad_images_trains_a_zero_step_and_is_counted(tiny_vit_kwargs, tmp_path):
    # Batch 1 holds only bad images: the Trainer's own _prepare_inputs refused the empty batch
    # ("can only join an iterable"); it must be a zero-loss step that keeps the schedule.
    rows = [as_row(b"junk")] * 4 + [as_row(encode(rgb_noise(12, 12))) for _ in range(4)]
    train = datasets.Dataset.from_dict({"image": rows}, features=datasets.Features({"image": datasets.Image(decode=False)}))
    train = train.with_transform(two_view_transform(size=32))
    model = _tiny_simsiam(tiny_vit_kwargs)
    args = _trainer_args(tmp_path, max_steps=2, per_device_train_batch_size=4, max_bad_image_fraction=1.0)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    with mock.patch.object(trainer, "_get_train_sampler", return_value=torch.utils.data.SequentialSampler(train)):
        trainer.train()
    assert trainer.state.global_step == 2 and (trainer.images_seen, trainer.images_skipped) == (8, 4)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[0] == 0.0 and losses[1] != 0.0  # SimSiam: -cos, a real step is any non-zero value


def test_trainer__the_bad_image_stop_says_why_the_images_failed(tiny_vit_kwargs, tmp_path):
    # It said "16 of 16 images could not be decoded" and nothing more: relative paths, normalised
    # float arrays and 5-channel arrays looked alike.
    from hf_sslviews.training.trainer import BadImageFractionError

    paths = datasets.Dataset.from_dict({"image": [f"photos/{i}.png" for i in range(64)]})
    args = _trainer_args(tmp_path, per_device_train_batch_size=32, max_steps=2)
    trainer = SSLTrainer(model=_tiny_simsiam(tiny_vit_kwargs), args=args, train_dataset=paths.with_transform(two_view_transform(size=32)), data_collator=ViewCollator())
    with pytest.raises(BadImageFractionError, match=r"32 of 32 images could not be decoded .*the first: path 'photos/\d+.png' \(relative: read from the working folder .*No such file"):
        trainer.train()
    arrays = datasets.Dataset.from_dict({"image": [np.zeros((5, 8, 8), dtype=np.uint8)] * 4})
    with pytest.raises(ValueError, match=r"none of its 4 image\(s\) could be decoded; the first: array of shape \[5, 8, 8\].*channels last"):
        extract_features(_identity_model, arrays.add_column("label", [0] * 4), transform=lambda image: torch.zeros(3))


@pytest.mark.parametrize("feature", ["array3d", "array2d"])
def test_prepare_for_views__uint8_array_columns_decode_as_rgb(feature):
    # save_to_disk datasets with Array3D / Array2D pixels: datasets hands over nested lists.
    rng = np.random.default_rng(0)
    if feature == "array3d":
        pixels, features = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8), datasets.Features({"image": datasets.Array3D((12, 12, 3), "uint8")})
    else:
        pixels, features = rng.integers(0, 256, (2, 12, 12), dtype=np.uint8), datasets.Features({"image": datasets.Array2D((12, 12), "uint8")})
    dataset = prepare_for_views(datasets.Dataset.from_dict({"image": pixels}, features=features))
    assert decode_image(dataset[0]["image"]).tobytes() == Image.fromarray(pixels[0]).convert("RGB").tobytes()
    out = dataset.with_transform(two_view_transform(size=16))[0:2]
    assert out["image_ok"] == [True, True]


@pytest.mark.parametrize("feature", [datasets.Value("int64"), datasets.Value("float32"), datasets.ClassLabel(names=["a", "b"])])
def test_prepare_for_views__a_column_of_numbers_is_not_an_image_column(feature):
    dataset = datasets.Dataset.from_dict({"image": [0, 1], "picture": [b"", b""]}, features=datasets.Features({"image": feature, "picture": datasets.Value("binary")}))
    with pytest.raises(ValueError, match=r"image column 'image' holds .*, not images.*--image_column_name.*\['image', 'picture'\]"):
        prepare_for_views(dataset)


def test_trainer__decoded_image_column_without_prepare_for_views_fails_inside_datasets():
    # Documented limit: with Image(decode=True), datasets decodes before the view transform runs,
    # so a corrupt file raises PIL's error there. prepare_for_views makes it a counted skip.
    features = datasets.Features({"image": datasets.Image()})
    raw = datasets.Dataset.from_dict({"image": [as_row(encode(rgb_noise(8, 8))), as_row(b"junk")]}, features=features)
    with pytest.raises(Exception, match="cannot identify image"):
        raw.with_transform(two_view_transform(size=32))[1]
    prepared = prepare_for_views(raw).with_transform(two_view_transform(size=32))
    assert prepared[0]["image_ok"] and not prepared[1]["image_ok"]


class _OverflowAfterFirstStep(SimSiamForPreTraining):
    """fp16 overflow: from the second forward on, the loss passes through float16 and overflows."""

    calls = 0

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        type(self).calls += 1
        if type(self).calls > 1:
            # At least 7e4 in float16, whose largest value is 65504: inf, as an fp16 overflow gives.
            out["loss"] = ((out["loss"].half().abs() + 1) * 7e4).float()
        return out


def test_trainer__fp16_overflow_stops_with_the_fix(tiny_vit_kwargs, tmp_path):
    model = _tiny_simsiam(tiny_vit_kwargs, _OverflowAfterFirstStep)
    train = datasets.Dataset.from_dict(
        {"image": [as_row(encode(rgb_noise(12, 12))) for _ in range(8)]}, features=datasets.Features({"image": datasets.Image(decode=False)})
    ).with_transform(two_view_transform(size=32))
    args = _trainer_args(tmp_path, max_steps=2, per_device_train_batch_size=4)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite.*--bf16 instead of --fp16.*--max_grad_norm"):
        trainer.train()


# --------------------------------------------------------------------------------------------
# Errors: the message names the problem and the fix
# --------------------------------------------------------------------------------------------


@dataclass
class ErrorCase:
    """A call that must raise ``error`` with a message matching every pattern of ``names``
    (the problem first, then the fix or the accepted values)."""

    name: str
    call: Callable[[], Any]
    error: type
    names: tuple[str, ...]


def _small_dataset(columns=("image", "label"), n: int = 2) -> datasets.Dataset:
    data = {"image": [as_row(encode(rgb_noise(8, 8))) for _ in range(n)], "label": list(range(n)), "img": [None] * n, "labels": list(range(n))}
    return datasets.Dataset.from_dict({column: data[column] for column in columns})


def _saved_empty_dataset(num_shards: Optional[int]) -> str:
    folder = tempfile.mkdtemp(prefix="hf-sslviews-empty-")
    atexit.register(shutil.rmtree, folder, True)
    empty = datasets.Dataset.from_dict({"image": [], "label": []}, features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    empty.save_to_disk(folder, num_shards=num_shards)
    return folder


def _enqueue(size: int, batch: int, require_divisible: bool = False) -> Callable[[], None]:
    return lambda: KeyQueue(size, 4, require_divisible=require_divisible).enqueue(torch.randn(batch, 4))


def _identity_model(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.flatten(1)


ERROR_CASES = [
    # scales and ratios
    ErrorCase("scale_negative", lambda: ViewAugmentation(scale=(-0.1, 1.0)), ValueError, (r"scale must satisfy 0 < min <= max <= 1", r"\(-0.1, 1.0\)")),
    ErrorCase("scale_above_1", lambda: ViewAugmentation(scale=(0.5, 1.5)), ValueError, (r"scale must satisfy", r"fractions of the image area", r"1.5")),
    ErrorCase("scale_reversed", lambda: ViewAugmentation(scale=(0.9, 0.2)), ValueError, (r"scale must satisfy 0 < min <= max",)),
    ErrorCase("scale_nan", lambda: ViewAugmentation(scale=(float("nan"), 1.0)), ValueError, (r"scale must satisfy", r"nan")),
    ErrorCase("scale_zero_two_view", lambda: two_view_transform(size=32, scale=(0.0, 1.0)), ValueError, (r"scale must satisfy 0 < min",)),
    ErrorCase("aspect_ratio_negative", lambda: ViewAugmentation(ratio=(-1.0, 2.0)), ValueError, (r"ratio must satisfy 0 < min <= max", r"-1.0")),
    ErrorCase("aspect_ratio_reversed", lambda: ViewAugmentation(ratio=(4 / 3, 3 / 4)), ValueError, (r"ratio must satisfy 0 < min <= max",)),
    ErrorCase("probability_above_1", lambda: ViewAugmentation(flip_p=1.5), ValueError, (r"flip_p is a probability", r"\[0, 1\]", r"1.5")),
    ErrorCase("probability_negative", lambda: ViewAugmentation(solarize_p=-0.2), ValueError, (r"solarize_p is a probability", r"\[0, 1\]")),
    ErrorCase("view_size_zero", lambda: ViewAugmentation(size=0), ValueError, (r"size must be a positive number of pixels", r"got 0")),
    ErrorCase("aps_ratio_negative", lambda: APSViewTransform(size=32, patch_size=8, ratio=-0.25), ValueError, (r"ratio is the fraction of patches kept", r"\(0, 1\]")),
    ErrorCase("aps_ratio_above_1", lambda: APSViewTransform(size=32, patch_size=8, ratio=1.5), ValueError, (r"must lie in \(0, 1\]", r"1.5")),
    ErrorCase("aps_ratio_keeps_no_patch", lambda: APSViewTransform(size=32, patch_size=8, ratio=0.01), ValueError, (r"keeps no patch", r"raise ratio or the grid size")),
    ErrorCase("aps_too_many_chunks", lambda: APSViewTransform(size=32, patch_size=8, ratio=0.5, num_chunks=3), ValueError, (r"3 disjoint chunks", r"use num_chunks <= 2")),
    ErrorCase("aps_size_not_multiple_of_patch", lambda: APSViewTransform(size=30, patch_size=8), ValueError, (r"size \(30\) must be a positive multiple of patch_size \(8\)",)),
    ErrorCase("aps_scale_above_1", lambda: APSViewTransform(size=32, patch_size=8, scale=(0.2, 2.0)), ValueError, (r"scale must satisfy",)),
    ErrorCase("cutout_area_zero", lambda: MultiTaskViewTransform("cifar", cutout_area=(0.0, 0.4)), ValueError, (r"area_range must satisfy 0 < min <= max <= 1",)),
    ErrorCase("multitask_no_global_view", lambda: MultiTaskViewTransform("cifar", n_global=0), ValueError, (r"at least one global view", r"n_global=0")),
    ErrorCase("randaugment_probability", lambda: RandAugment(apply_p=2.0), ValueError, (r"apply_p is a probability", r"\[0, 1\]")),
    ErrorCase("randaugment_magnitude", lambda: RandAugment(magnitude_range=(0, 11)), ValueError, (r"magnitude_range must be integers with 0 <= min <= max <= 10",)),
    ErrorCase("randaugment_unknown_op", lambda: RandAugment(pool=["Rotate", "Explode"]), ValueError, (r"unknown \['Explode'\]", r"ops from")),
    ErrorCase("unknown_view_preset", lambda: CLSAViewTransform("huge"), ValueError, (r"unknown CLSA view set 'huge'", r"choose one of")),
    # configs
    ErrorCase("negative_temperature", lambda: MoCoV3Config(loss_temperature=-0.2), ValueError, (r"loss_temperature must be positive", r"-0.2")),
    ErrorCase("momentum_out_of_order", lambda: MoCoV3Config(momentum_base=0.999, momentum_final=0.9), ValueError, (r"0 <= momentum_base <= momentum_final <= 1",)),
    ErrorCase("unknown_backbone", lambda: MoCoV3Config(backbone="vit_tiny_patch16_22"), ValueError, (r"unknown backbone 'vit_tiny_patch16_22'", r"Close matches: \[.*vit_tiny_patch16_224")),
    ErrorCase("image_size_zero", lambda: MoCoV3Config(image_size=0), ValueError, (r"image_size must be a positive number of pixels",)),
    ErrorCase("queue_size_zero", lambda: CLSAConfig(backbone="resnet18", queue_size=0), ValueError, (r"queue_size must be positive",)),
    ErrorCase("config_int_field_fraction", lambda: MoCoV3Config(projector_dim=128.5), ValueError, (r"MoCoV3Config: projector_dim must be a whole number, got 128.5",)),
    ErrorCase("config_int_field_bool", lambda: MulanConfig(image_size=True), ValueError, (r"MulanConfig: image_size must be a whole number, got True",)),
    ErrorCase("mulan_all_task_weights_zero", lambda: MulanConfig(task_weights={"global": 0, "local": 0, "cutout": 0}), ValueError, (r"task_weights are all 0", r"identically zero", r"positive weight")),
    ErrorCase("repco_threshold_outside_cosine", lambda: RepCoConfig(patch_negative_threshold=5.0), ValueError, (r"patch_negative_threshold is a cosine similarity and must lie in \[-1, 1\], got 5.0",)),
    # the key queue
    ErrorCase("batch_does_not_divide_queue_when_required", _enqueue(16, 3, require_divisible=True), ValueError, (r"queue size \(16\) must be a multiple of the global batch size \(3", r"--dataloader_drop_last")),
    ErrorCase("batch_larger_than_queue", _enqueue(4, 8), ValueError, (r"cannot enqueue 8 keys \(one step.s keys from every process\) into a queue of 4", r"twice it for methods that enqueue both views")),
    # columns, labels, empty data
    ErrorCase("image_column_renamed_in_transform", lambda: two_view_transform(size=32, image_column="img")({"image": [None]}), ValueError, (r"image column 'img' not found", r"\['image'\]", r"--image_column_name")),
    ErrorCase("image_column_missing", lambda: check_columns(_small_dataset(("img", "label"))), ValueError, (r"image column 'image' not found", r"--image_column_name")),
    ErrorCase("prepare_for_views_missing_column", lambda: prepare_for_views(_small_dataset(("img", "label"))), ValueError, (r"image column 'image' not found",)),
    ErrorCase("labels_missing_for_eval", lambda: check_columns(_small_dataset(("image", "labels")), "image", "label"), ValueError, (r"label column 'label' not found", r"'labels'", r"--label_column_name")),
    ErrorCase("labels_missing_for_knn", lambda: extract_features(_identity_model, _small_dataset(("image",)), transform=lambda im: torch.zeros(3)), ValueError, (r"column 'label' not found", r"--label_column_name")),
    ErrorCase("no_decodable_image_for_knn", lambda: extract_features(_identity_model, datasets.Dataset.from_dict({"image": [as_row(b"x")], "label": [0]}), transform=lambda im: torch.zeros(3)), ValueError, (r"none of its 1 image\(s\) could be decoded",)),
    ErrorCase("empty_dataset", lambda: load_image_dataset(_saved_empty_dataset(1)), ValueError, (r"split 'train' is empty", r"check the path, the split name and any filters")),
    ErrorCase("empty_dataset_saved_without_shards", lambda: load_image_dataset(_saved_empty_dataset(None)), ValueError, (r"holds no data shards", r"Check that the dataset has examples")),
    ErrorCase("max_samples_zero", lambda: load_image_dataset("sample", max_samples=0), ValueError, (r"max_samples must be a positive number",)),
    ErrorCase("train_dir_not_a_folder", lambda: load_image_dataset(train_dir="/nonexistent/images"), ValueError, (r"is not a folder", r"pass a folder of images")),
    ErrorCase("empty_batch_to_collator", lambda: ViewCollator()([]), ValueError, (r"empty list of examples",)),
    ErrorCase("split_of_one_example", lambda: split_train_eval(_small_dataset(n=1)), ValueError, (r"cannot split a dataset of 1 example",)),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: case.name)
def test_error__catalogue(case):
    with pytest.raises(case.error) as info:
        case.call()
    for pattern in case.names:
        assert re.search(pattern, str(info.value)), f"{pattern!r} not in: {info.value}"


def test_error__names_are_unique_and_documented():
    from pathlib import Path

    names = [case.name for case in IMAGE_CASES] + [case.name for case in ERROR_CASES]
    assert len(names) == len(set(names))
    doc = (Path(__file__).parents[2] / "docs" / "bad_input.md").read_text()
    missing = [name for name in names if f"`{name}`" not in doc]
    assert not missing, f"cases not in docs/bad_input.md: {missing}"


def test_error__scale_given_as_one_number_names_the_fix():
    with pytest.raises(ValueError, match=r"scale must be a \(min, max\) pair"):
        ViewAugmentation(scale=0.5)


@pytest.mark.parametrize(
    "error",
    [
        __import__("struct").error("unpack requires a buffer of 4 bytes"),  # malformed EXIF in exif_transpose (an 872-byte JPEG)
        TypeError("'IFDRational' object is not subscriptable"),  # a damaged 16-bit TIFF tag
        KeyError(284),  # a bit-flipped TIFF header
        IndexError("tuple index out of range"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_decode_image__any_failure_of_one_file_is_a_counted_skip(error, monkeypatch):
    """Whatever PIL raises on one file, the run skips and counts that image and goes on."""
    from PIL import ImageOps

    from hf_sslviews.views import two_view_transform

    def broken(image, *args, **kwargs):
        raise error

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with pytest.raises(ImageDecodeError, match=type(error).__name__):
        decode_image(np.zeros((8, 8, 3), dtype=np.uint8))
    rows = two_view_transform(size=8, scale=(0.5, 1.0))({"image": [np.zeros((8, 8, 3), dtype=np.uint8)] * 2})
    assert rows["image_ok"] == [False, False] and rows["pixel_values_1"] == [None, None]


@pytest.mark.timeout(60)  # a regression blocks on the FIFO: fail instead of hanging the suite
def test_decode_image__a_fifo_named_in_a_path_column_is_a_counted_skip_not_a_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    for value in (str(tmp_path / "pipe.png"), {"path": str(tmp_path / "pipe.png"), "bytes": None}):
        with pytest.raises(ImageDecodeError, match="is not a regular file"):
            decode_image(value)
    out = two_view_transform(size=32)({"image": [str(tmp_path / "pipe.png")]})
    assert out["image_ok"] == [False] and "not a regular file" in out["image_error"][0]


def test_trainer__a_last_batch_of_one_image_is_not_fed_to_batchnorm(tiny_vit_kwargs, tmp_path, caplog):
    # 9 images, batch 8, drop_last off: the second batch holds one image and SimSiam's BatchNorm
    # heads died on it ("Expected more than 1 value per channel when training").
    rows = [as_row(encode(rgb_noise(12, 12))) for _ in range(9)]
    train = datasets.Dataset.from_dict({"image": rows}, features=datasets.Features({"image": datasets.Image(decode=False)}))
    args = _trainer_args(tmp_path, max_steps=2, dataloader_drop_last=False)
    trainer = SSLTrainer(model=_tiny_simsiam(tiny_vit_kwargs), args=args, train_dataset=train.with_transform(two_view_transform(size=32)), data_collator=ViewCollator())
    with caplog.at_level(logging.WARNING, logger="hf_sslviews.training.trainer"):
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 2 and losses[0] != 0.0 and losses[1] == 0.0
    assert trainer.images_cut_for_batchnorm == 1 and "1 batch(es) of a single image were not trained" in caplog.text
