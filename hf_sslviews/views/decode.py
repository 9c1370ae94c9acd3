"""Any image a dataset can hold -> an RGB ``PIL.Image`` or a ``uint8 [3, H, W]`` tensor.

Bytes, paths, ``PIL`` images, ``datasets`` Image dicts and arrays (``Array3D`` / ``Array2D`` columns,
nested lists, numpy, torch) are decoded the same way for training views, evaluation and the
scripts; 16-bit, palette, RGBA, CMYK and EXIF-rotated images become 8-bit RGB. A file that cannot
be decoded raises :class:`ImageDecodeError`, which the view transforms count as a skip.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import warnings
from typing import Any, Mapping, Optional

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as F

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # torchvision's image decoding is deprecated since 0.29 and will go: PIL then decodes everything
    decode_jpeg = None

logger = logging.getLogger(__name__)


class ImageDecodeError(ValueError):
    """An image value that cannot be turned into an RGB picture."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8 bits instead of clipping them.

    PIL's ``convert("L")`` on an ``I;16`` image clips at 255, which turns most 16-bit photos
    white; rescaling by the type's range keeps their content. Float images, and 32-bit integer
    images whose values leave 0..65535 (signed data), are scaled by their own min..max.
    """
    array = np.asarray(image)
    if image.mode == "F":
        # NaN / inf pixels (depth maps, masked data) become black instead of poisoning the range.
        finite = np.isfinite(array)
        array = np.where(finite, array, 0.0)
        low, high = (float(array[finite].min()), float(array[finite].max())) if finite.any() else (0.0, 0.0)
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        scaled = np.where(finite, scaled, 0.0)
    elif image.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
        # Signed or wider than 16-bit data (scientific images): its own range, like a float
        # image; dividing by 257 would clip every negative pixel to black and most others to white.
        low, high = float(array.min()), float(array.max())
        scaled = (array.astype(np.float64) - low) / (high - low) * 255.0 if high > low else np.zeros(array.shape)
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
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first (a torch image tensor): unambiguous, since the last side is no channel count
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4 (channels last) or 3xHxW, got shape {list(array.shape)}")
    if np.issubdtype(array.dtype, np.floating) and array.size:
        array = _float_array_to_uint8(array)
    if array.dtype != np.uint8 and np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255:
        array = array.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _float_array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (the torch / matplotlib convention) or [0, 255] as ``uint8``.

    A single-channel float array outside both ranges stays float (PIL mode ``F``, which
    :func:`to_rgb` scales by its own range, as for a float TIFF); a colour one outside them cannot
    be read without guessing its normalisation, and is refused with its range.
    """
    finite = np.isfinite(array)
    low, high = (float(array[finite].min()), float(array[finite].max())) if finite.any() else (0.0, 0.0)
    if finite.all() and low >= 0 and high <= 1:
        return np.round(array * 255).astype(np.uint8)
    if finite.all() and low >= 0 and high <= 255:
        return np.round(array).astype(np.uint8)
    if array.ndim == 2:
        return array.astype(np.float32)
    raise ImageDecodeError(
        f"a float colour image array must hold values in [0, 1] or [0, 255], got [{low:.3g}, {high:.3g}]"
        + ("" if finite.all() else " and NaN / inf") + "; undo its normalisation or store uint8 pixels"
    )


def _open_file(path: str) -> Image.Image:
    """``Image.open(path)`` for regular files only: opening a FIFO named in a path column blocks
    the DataLoader worker forever (and a device or socket fails obscurely)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ImageDecodeError(f"{path!r} is not a regular file (a FIFO, socket or device): reading it would block or fail")
    return Image.open(path)


def _open(value: Any) -> Image.Image:
    """The lazily opened (header-only) image of one column value."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return _open_file(value["path"])
        raise ImageDecodeError("image value has neither 'bytes' nor 'path'")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, str):
        return _open_file(value)
    if isinstance(value, (np.ndarray, list, tuple, torch.Tensor)):
        return _array_image(value)
    if value is None:
        raise ImageDecodeError("image value is None (missing image)")
    raise ImageDecodeError(f"cannot decode an image from a value of type {type(value).__name__}")


def describe_bad_image(value: Any, error: Exception) -> str:
    """One line for the bad-image summary: what the value was (a path, bytes, an array's shape and
    type) and why it failed. ``16 of 16 images could not be decoded`` alone does not say that the
    paths are relative, or the arrays channels-first."""
    if isinstance(value, Mapping):
        value = value.get("path") or value.get("bytes")
    if isinstance(value, str):
        what = f"path {value!r}"
        if not os.path.isabs(value) and not os.path.exists(value):
            what += f" (relative: read from the working folder {os.getcwd()})"
    elif isinstance(value, (bytes, bytearray)):
        what = f"{len(value)} bytes"
    elif hasattr(value, "shape") or isinstance(value, (list, tuple)):
        array = np.asarray(value, dtype=object) if isinstance(value, (list, tuple)) else value
        what = f"array of shape {list(getattr(array, 'shape', []))}" + (f" ({value.dtype})" if hasattr(value, "dtype") else "")
    else:
        what = type(value).__name__
    return f"{what}: {error}"[:300]


def decode_image(value: Any, reduce: int = 1) -> Image.Image:
    """Decode one value of an image column into an RGB ``PIL.Image``.

    Accepts what ``datasets`` may hand over: a ``PIL.Image``, a dict with ``bytes`` and/or
    ``path`` (an ``Image(decode=False)`` column), raw bytes, a file path, or a HWC/HW uint8
    array. Raises :class:`ImageDecodeError` naming the problem.

    ``reduce`` (1, 2, 4 or 8): a JPEG is decoded at about ``1 / reduce`` of its size through
    libjpeg's scaled IDCT (PIL's ``draft``), several times faster than decoding it whole; other
    formats, and already decoded images, come at full size. See :func:`open_image` for deciding
    it from the header first.

    Decompression bombs: an image with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``
    (89,478,485 by default, about 9,459 x 9,459) is rejected from its header, before any pixel
    memory is allocated, with a logged warning; the view transforms then skip and count it like
    any undecodable image. PIL itself only warns between 1x and 2x the limit (and would decode,
    e.g. 300 MB for a 10,000 x 10,000 RGB image) and raises above 2x; here both are skips.
    Setting ``PIL.Image.MAX_IMAGE_PIXELS = None`` (or a larger number) lets large images through.
    """
    return load_rgb(open_image(value), reduce)


def open_image(value: Any) -> Image.Image:
    """The image of one column value with only its header read (size, mode, EXIF); bombs refused.

    Pass it to :func:`load_rgb` to decode it, after choosing a reduction from :func:`oriented_size`.
    """
    with _as_decode_errors():
        with warnings.catch_warnings():
            # PIL warns at open between 1x and 2x the limit; the explicit check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(value)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and image.width * image.height > limit:
            raise _bomb_error(image.width, image.height)
    if image.width == 0 or image.height == 0:
        raise ImageDecodeError(f"image has zero size ({image.width}x{image.height})")
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of an opened image once its EXIF orientation is applied (as :func:`to_rgb` does)."""
    with _as_decode_errors():
        orientation = image.getexif().get(0x0112, 1)
    # Orientations 5 to 8 are transposes (90 or 270 degree turns, with or without a mirror).
    return (image.width, image.height) if orientation in (5, 6, 7, 8) else (image.height, image.width)


def load_rgb(image: Image.Image, reduce: int = 1) -> Image.Image:
    """Decode an image from :func:`open_image` into 8-bit RGB, a JPEG at about ``1 / reduce`` of its size."""
    with _as_decode_errors():
        if reduce > 1:
            # draft() picks the largest of 1/2, 1/4, 1/8 not above min(width // asked width, height //
            # asked height); asking for (width // reduce, height // reduce) gives exactly ``reduce``
            # (width // (width // r) < 2r) wherever the image has r pixels a side. A no-op but for JPEGs.
            image.draft(None, (max(1, image.width // reduce), max(1, image.height // reduce)))
        image.load()
        image = to_rgb(image)
    if image.width == 0 or image.height == 0:
        raise ImageDecodeError(f"image has zero size ({image.width}x{image.height})")
    return image


@contextlib.contextmanager
def _as_decode_errors():
    """Anything one file makes PIL raise becomes an :class:`ImageDecodeError` (a counted skip)."""
    try:
        yield
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


def load_uint8_tensor(image: Image.Image, value: Any, reduce: int = 1) -> torch.Tensor:
    """:func:`load_rgb` of an image from :func:`open_image` as a ``uint8 [3, H, W]`` tensor.

    A baseline RGB or greyscale JPEG decoded whole (or asked at half size, which is no faster through
    PIL) goes through torchvision's libjpeg-turbo binding
    straight into a tensor: the same pixels as PIL (tested bit-identical, EXIF orientation
    included) in about two thirds of the time (0.62 against 0.95 ms for a 500 x 375 photo), with
    no copy out of PIL; where torchvision no longer decodes images, PIL does. ``value`` is the column value ``image`` was opened from (its bytes or path
    are read again); anything else, or any failure there, takes PIL's path, errors included.
    """
    # At half size PIL's scaled decode takes as long as this whole decode (measured on 2000 x 1500
    # photos: 145 against 146 views a second for the pair), so a 2x reduction decodes whole here.
    if decode_jpeg is not None and reduce <= 2 and image.format == "JPEG" and image.mode in ("RGB", "L"):
        data = _encoded_bytes(value)
        if data is not None:
            try:
                with warnings.catch_warnings():
                    # Deprecated since torchvision 0.29 in favour of torchcodec (not a dependency here);
                    # the import above falls back to PIL once it is gone.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    decoded = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, apply_exif_orientation=True)
            except Exception:  # noqa: BLE001 - PIL decodes it, or raises the error users see
                decoded = None
            if decoded is not None and decoded.shape[0] == 3 and decoded.shape[1] > 0 and decoded.shape[2] > 0:
                image.close()
                return decoded
    return pil_to_uint8_tensor(load_rgb(image, reduce))


def _encoded_bytes(value: Any) -> Optional[bytes]:
    """The encoded file of a column value (bytes, path, ``datasets`` dict), or None for decoded values."""
    if isinstance(value, Mapping):
        value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            with open(value, "rb") as handle:
                return handle.read()
        except OSError:
            return None
    return None


def pil_to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> ``uint8`` tensor of shape ``[3, H, W]`` (no copy of the pixel data)."""
    return F.pil_to_tensor(image)
