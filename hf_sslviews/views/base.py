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
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch

from .decode import ImageDecodeError, decode_image, pil_to_uint8_tensor

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
