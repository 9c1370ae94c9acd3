"""Decoding and the contract every view transform follows.

A view transform is a callable for ``datasets.Dataset.with_transform``: it takes a batch dict
(column name -> list of values) and returns a dict of equal-length lists, one list per output
key. The output keys are the argument names of the matching ``<Method>ForPreTraining.forward``.

Images that cannot be decoded are not raised on: the row comes back with ``image_ok=False``
and ``None`` for every view, the :class:`~hf_sslviews.collator.ViewCollator` drops it and
counts it, and the Trainer reports the count (and stops if too many are bad).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as F

logger = logging.getLogger(__name__)

# Column holding each row's position in the dataset (added by ``hf_sslviews.data.prepare_for_views``);
# with it, views are seeded per (seed, epoch, row) instead of drawn from the running RNG stream.
SAMPLE_INDEX_COLUMN = "__sample_index__"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



class ImageDecodeError(ValueError):
    """An image value that cannot be turned into an RGB picture."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8 bits instead of clipping them.

    PIL's ``convert("L")`` on an ``I;16`` image clips at 255, which turns most 16-bit photos
    white; rescaling by the type's range keeps their content.
    """
    array = np.asarray(image)
    if image.mode == "F":
        # NaN / inf pixels (depth maps, masked data) become black instead of poisoning the range.
        finite = np.isfinite(array)
        array = np.where(finite, array, 0.0)
        low, high = (float(array[finite].min()), float(array[finite].max())) if finite.any() else (0.0, 0.0)
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        scaled = np.where(finite, scaled, 0.0)
    else:
        # I;16 variants hold 0..65535; mode "I" is 32-bit but in practice holds 16-bit data.
        scaled = array.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as 8-bit RGB, whatever its mode (L, LA, P, RGBA, CMYK, I;16, I, F, 1).

    The EXIF orientation is applied first so that phone photos are upright. Transparent
    pixels are composited over white rather than dropped to black.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _bomb_error(width: int, height: int) -> ImageDecodeError:
    limit = Image.MAX_IMAGE_PIXELS
    message = (
        f"image of {width}x{height} = {width * height} pixels exceeds PIL.Image.MAX_IMAGE_PIXELS ({limit}): "
        f"treated as a decompression bomb and skipped without decoding it. If such large images are "
        f"expected, raise the limit before training (PIL.Image.MAX_IMAGE_PIXELS = None, or a larger number)."
    )
    logger.warning(message)
    return ImageDecodeError(message)


def _array_image(value: Any) -> Image.Image:
    """A channels-last array (``HxW``, ``HxWx1``, ``HxWx3``, ``HxWx4``) as an image.

    ``datasets`` hands an ``Array3D`` / ``Array2D`` column over as nested lists (int64 once
    converted), a numpy or torch formatted column as arrays. Integers within 0..255 become
    uint8; other dtypes go to PIL as they are (16-bit and float modes, which ``to_rgb``
    rescales).
    """
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4 (channels last), got shape {list(array.shape)}")
    if array.dtype != np.uint8 and np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255:
        array = array.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _open(value: Any) -> Image.Image:
    """The lazily opened (header-only) image of one column value."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return Image.open(value["path"])
        raise ImageDecodeError("image value has neither 'bytes' nor 'path'")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, str):
        return Image.open(value)
    if isinstance(value, (np.ndarray, list, tuple, torch.Tensor)):
        return _array_image(value)
    if value is None:
        raise ImageDecodeError("image value is None (missing image)")
    raise ImageDecodeError(f"cannot decode an image from a value of type {type(value).__name__}")


def decode_image(value: Any) -> Image.Image:
    """Decode one value of an image column into an RGB ``PIL.Image``.

    Accepts what ``datasets`` may hand over: a ``PIL.Image``, a dict with ``bytes`` and/or
    ``path`` (an ``Image(decode=False)`` column), raw bytes, a file path, or a HWC/HW uint8
    array. Raises :class:`ImageDecodeError` naming the problem.

    Decompression bombs: an image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``
    (89,478,485 by default, about 9,459 x 9,459) is rejected from its header, before any pixel
    memory is allocated, with a logged warning; the view transforms then skip and count it like
    any undecodable image. PIL itself only warns between 1x and 2x the limit (and would decode,
    e.g. 300 MB for a 10,000 x 10,000 RGB image) and raises above 2x; here both are skips.
    Setting ``PIL.Image.MAX_IMAGE_PIXELS = None`` (or a larger number) lets large images through.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns at open between 1x and 2x the limit; the explicit check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(value)
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise _bomb_error(image.width, image.height)
            image.load()
            image = to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        # Above 2x the limit PIL raises at open, before the size is known to us.
        logger.warning("decompression bomb skipped: %s", error)
        raise ImageDecodeError(
            f"DecompressionBombError: {error} Skipped without decoding it; if such large images are expected, "
            f"raise the limit before training (PIL.Image.MAX_IMAGE_PIXELS = None, or a larger number)."
        ) from error
    except Exception as error:
        # Anything one file can make PIL raise is that file's fault, not the run's: besides the
        # usual OSError / ValueError, a malformed EXIF block raises struct.error in
        # exif_transpose, a damaged TIFF tag TypeError, a bit-flipped header KeyError or
        # IndexError. Each is a counted skip (ImageNet holds such files).
        raise ImageDecodeError(f"{type(error).__name__}: {error}") from error
    if image.width == 0 or image.height == 0:
        raise ImageDecodeError(f"image has zero size ({image.width}x{image.height})")
    return image


def pil_to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> ``uint8`` tensor of shape ``[3, H, W]`` (no copy of the pixel data)."""
    return F.pil_to_tensor(image)


def missing_column_error(column: str, batch: Mapping[str, Any]) -> ValueError:
    return ValueError(
        f"image column {column!r} not found; the dataset has columns {sorted(batch)}. "
        f"Pass the right one with --image_column_name (or image_column=...)."
    )


def view_seed(seed: int, epoch: int, key: Sequence[int]) -> int:
    """A 63-bit seed from ``(seed, epoch, row indices)``, well mixed (blake2b)."""
    digest = hashlib.blake2b(repr((int(seed), int(epoch), tuple(int(k) for k in key))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ViewTransform:
    """Base class of every view transform: decode, make views, mark undecodable rows.

    Subclasses implement :meth:`make_views` on one ``uint8 [3, H, W]`` image and list their
    output keys in :attr:`output_keys`.

    Reproducible views: when the batch carries the row positions (:data:`SAMPLE_INDEX_COLUMN`,
    added by :func:`hf_sslviews.data.prepare_for_views`) and :attr:`seed` is set (the
    :class:`~hf_sslviews.trainer.SSLTrainer` sets it to ``--seed`` and :attr:`epoch` at every
    epoch), each image's views are drawn from torch's RNG seeded with ``(seed, epoch, row)``
    (with ``(seed, epoch, rows of the batch)`` for transforms that make a batch's views at once)
    inside ``torch.random.fork_rng``. The views of a row then do not depend on the order of
    loading, on DataLoader workers or on prefetching, so a resumed run remakes exactly the views
    the interrupted one would have made. Without it, views come from the running RNG stream.

    Args:
        image_column: name of the column holding the images.
    """

    output_keys: tuple[str, ...] = ()
    seed: Optional[int] = None

    def __init__(self, image_column: str = "image"):
        self.image_column = image_column
        self._shared_epoch()

    def _shared_epoch(self) -> torch.Tensor:
        # A 0-d tensor in shared memory: DataLoader workers, persistent ones included, map the
        # same page, so an epoch set here after they started still reaches them.
        shared = self.__dict__.get("_epoch")
        if shared is None:
            shared = self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        return shared

    @property
    def epoch(self) -> int:
        """The epoch in the view seed; set by :class:`~hf_sslviews.callbacks.ViewEpochCallback`."""
        return int(self._shared_epoch().item())

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._shared_epoch().fill_(int(value))

    @contextlib.contextmanager
    def seeded(self, batch: Mapping[str, list], rows: Sequence[int]) -> Iterator[None]:
        """Seed torch's RNG for the rows ``rows`` of ``batch`` (no-op when not reproducible)."""
        indices = batch.get(SAMPLE_INDEX_COLUMN)
        if self.seed is None or indices is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(self.seed, self.epoch, [indices[row] for row in rows]))
            yield

    def make_views(self, image: torch.Tensor) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def call_batched(self, batch: Mapping[str, list], views_of: Callable[[list[torch.Tensor]], dict[str, torch.Tensor]]) -> dict[str, list]:
        """``__call__`` with the views of all decodable images of the batch made at once.

        ``views_of`` maps a list of ``uint8 [3, H, W]`` images to ``key -> tensor [N, ...]``; rows
        of undecodable images get ``None`` and ``image_ok=False``, as in the per-image path.
        Batching across images lets the photometric ops of small crops run as a few batched ops
        instead of 10 to 20 tiny ones per crop (see ``ViewAugmentation.photometric_normalize_crops``).
        """
        if self.image_column not in batch:
            raise missing_column_error(self.image_column, batch)
        images: list[Optional[torch.Tensor]] = []
        for value in batch[self.image_column]:
            try:
                images.append(pil_to_uint8_tensor(decode_image(value)))
            except ImageDecodeError:
                images.append(None)
        good = [image for image in images if image is not None]
        # The views of the whole batch are made at once, so the batch's rows seed them together.
        with self.seeded(batch, range(len(images))):
            views = views_of(good) if good else {}
        out: dict[str, list] = {key: [] for key in self.output_keys}
        row = 0
        for image in images:
            for key in self.output_keys:
                out[key].append(None if image is None else views[key][row])
            row += image is not None
        out["image_ok"] = [image is not None for image in images]
        return out

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise missing_column_error(self.image_column, batch)
        out: dict[str, list] = {key: [] for key in self.output_keys}
        out["image_ok"] = []
        for row, value in enumerate(batch[self.image_column]):
            try:
                image = pil_to_uint8_tensor(decode_image(value))
                with self.seeded(batch, [row]):
                    views = self.make_views(image)
            except ImageDecodeError:
                views = None
            for key in self.output_keys:
                out[key].append(None if views is None else views[key])
            out["image_ok"].append(views is not None)
        return out
