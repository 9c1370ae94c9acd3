"""The contract every view transform follows.

A view transform is a callable for ``datasets.Dataset.with_transform``: it takes a batch dict
(column name -> list of values) and returns a dict of equal-length lists, one list per output
key. The output keys are the argument names of the matching ``<Method>ForPreTraining.forward``.

Images that cannot be decoded are not raised on: the row comes back with ``image_ok=False``
and ``None`` for every view, the :class:`~hf_sslviews.data.collator.ViewCollator` drops it and
counts it, and the Trainer reports the count (and stops if too many are bad).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import torch

from .decode import ImageDecodeError, decode_image, describe_bad_image, load_uint8_tensor, open_image, oriented_size, pil_to_uint8_tensor
from .worker_memory import keep_freed_memory_in_worker

logger = logging.getLogger(__name__)

# Column holding each row's position in the dataset (added by ``hf_sslviews.data.sources.prepare_for_views``);
# with it, views are seeded per (seed, epoch, row) instead of drawn from the running RNG stream.
SAMPLE_INDEX_COLUMN = "__sample_index__"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    added by :func:`hf_sslviews.data.sources.prepare_for_views`) and :attr:`seed` is set (the
    :class:`~hf_sslviews.training.trainer.SSLTrainer` sets it to ``--seed`` and :attr:`epoch` at every
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
    # Set by SSLTrainer for --photometric_on_device, on transforms that define deferred_photometric():
    # the views are then uint8 crops and the colour ops run on the training device after collation.
    photometric_on_device: bool = False
    # Decode a JPEG at 1/4 or 1/8 of its size when every crop of the image allows it
    # (``augment.decode_reduction``; at 1/2 libjpeg-turbo's whole decode is as fast):
    # camera-sized photos decode several times faster. False: always whole.
    reduced_decoding: bool = True

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
        """The epoch in the view seed; set by :class:`~hf_sslviews.training.callbacks.ViewEpochCallback`."""
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

    def call_batched(self, batch: Mapping[str, list], views_of: Callable[[Iterable[torch.Tensor]], dict[str, Any]]) -> dict[str, list]:
        """``__call__`` with the views of all decodable images of the batch made at once.

        ``views_of`` takes the batch's images as :class:`DecodedImages` (``uint8 [3, H, W]``
        tensors, decoded one at a time as it iterates them, once) and returns ``key -> tensor
        [N, ...]`` (or a list of such tensors, one per resolution, handed out as a list per row)
        for the N decodable ones; ``{}`` when there are none. Rows of undecodable images get
        ``None`` and ``image_ok=False``, as in the per-image path. Batching across images lets the
        photometric ops of small crops run as a few batched ops instead of 10 to 20 tiny ones per
        crop (see ``ViewAugmentation.photometric_normalize_crops``); cropping each image as it is
        decoded keeps one decoded image in memory instead of the batch's.
        """
        if self.image_column not in batch:
            raise missing_column_error(self.image_column, batch)
        keep_freed_memory_in_worker()
        images = DecodedImages(batch[self.image_column], reduced_decoding=self.reduced_decoding)
        # The views of the whole batch are made at once, so the batch's rows seed them together.
        with self.seeded(batch, range(len(images))):
            views = views_of(images)
        ok = images.ok
        out: dict[str, list] = {key: [] for key in self.output_keys}
        out[IMAGE_ERROR_KEY] = images.errors
        row = 0
        for good in ok:
            for key in self.output_keys:
                value = views.get(key)
                if not good:
                    out[key].append(None)
                elif isinstance(value, list):  # views at several resolutions: one tensor per resolution
                    out[key].append([tensor[row] for tensor in value])
                else:
                    out[key].append(value[row])
            row += good
        out["image_ok"] = ok
        return out

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise missing_column_error(self.image_column, batch)
        keep_freed_memory_in_worker()
        out: dict[str, list] = {key: [] for key in self.output_keys}
        out["image_ok"], out[IMAGE_ERROR_KEY] = [], []
        for row, value in enumerate(batch[self.image_column]):
            error = None
            try:
                image = pil_to_uint8_tensor(decode_image(value))
                with self.seeded(batch, [row]):
                    views = self.make_views(image)
            except ImageDecodeError as decode_error:
                views, error = None, describe_bad_image(value, decode_error)
            for key in self.output_keys:
                out[key].append(None if views is None else views[key])
            out["image_ok"].append(views is not None)
            out[IMAGE_ERROR_KEY].append(error)
        return out


IMAGE_ERROR_KEY = "image_error"  # per row: why the image did not decode (None where it did)


class DecodedImages:
    """The images of a batch column as ``uint8 [3, H, W]`` tensors, decoded one at a time as they are iterated.

    Iterate it once: the undecodable values are skipped (and counted by the caller through
    :attr:`ok`). A transform that takes its crops from each image as it comes holds one decoded
    image or two at a time (0.6 MB each for a 500 x 375 photo) instead of the whole batch's.
    """

    def __init__(self, values: Sequence[Any], reduced_decoding: bool = True):
        self.values = values
        self.reduced_decoding = reduced_decoding
        self._ok: list[bool] = []
        self.errors: list[Optional[str]] = []  # per value: why it did not decode (None where it did)
        self._started = False

    def __len__(self) -> int:
        """The number of values (decodable or not)."""
        return len(self.values)

    def __iter__(self) -> Iterator[torch.Tensor]:
        # Whole images, no plan: decoded_with with nothing drawn and no reduction.
        for image, _, _ in self.decoded_with(lambda height, width: (None, 1)):
            yield image

    def decoded_with(self, plan: Callable[[int, int], tuple[Any, int]]) -> Iterator[tuple[torch.Tensor, tuple[float, float], Any]]:
        """Iterate with each image's views planned from its header before its pixels are decoded.

        ``plan(height, width)`` (the size once EXIF-oriented) returns ``(state, reduce)``: whatever
        the transform drew (its crop boxes) and the JPEG reduction they allow
        (:func:`~hf_sslviews.views.augment.decode_reduction`). Yields ``(image, scale, state)``
        per decodable value: ``image`` ``uint8 [3, h, w]``, possibly reduced, and ``scale``
        ``(h / height, w / width)``, with which ``ViewAugmentation.crop`` maps the boxes onto it.
        """
        if self._started:
            raise RuntimeError("DecodedImages is iterated once; keep the crops (or list(images)) to use the images again")
        self._started = True
        for value in self.values:
            try:
                source = open_image(value)
                height, width = oriented_size(source)
                state, reduce = plan(height, width)
                image = load_uint8_tensor(source, value, reduce if self.reduced_decoding else 1)
            except ImageDecodeError as error:
                self._ok.append(False)
                self.errors.append(describe_bad_image(value, error))
                continue
            self._ok.append(True)
            self.errors.append(None)
            yield image, (image.shape[1] / height, image.shape[2] / width), state

    @property
    def ok(self) -> list[bool]:
        """Per value, whether it decoded; complete once the iteration has run (unvisited values are decoded now)."""
        if not self._started:
            for _ in self:
                pass
        if len(self._ok) != len(self.values):
            raise RuntimeError("a view transform stopped iterating DecodedImages before the end of the batch")
        return self._ok


def planned_images(images: Iterable[torch.Tensor], plan: Callable[[int, int], tuple[Any, int]]) -> Iterator[tuple[torch.Tensor, tuple[float, float], Any]]:
    """``(image, scale, state)`` per image: :meth:`DecodedImages.decoded_with` for a batch being
    decoded; for images already decoded (a list, a generator of tensors), ``plan`` on each one's
    size and ``scale`` (1, 1)."""
    if isinstance(images, DecodedImages):
        yield from images.decoded_with(plan)
        return
    for image in images:
        state, _ = plan(*image.shape[-2:])
        yield image, (1.0, 1.0), state
