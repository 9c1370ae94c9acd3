"""The generic multi-view transform: named groups of views of one image.

``MultiViewTransform({"pixel_values_1": aug1, "pixel_values_2": aug2})`` is the BYOL / MoCo v3
/ SimSiam pair; ``{"global_pixel_values": [g1, g2], "local_pixel_values": [l] * 4}`` is a
multi-crop set. A key mapped to one augmentation yields one ``[3, s, s]`` tensor per image; a key
mapped to a list yields ``[n, 3, s, s]`` (all views of one key share a size, so they stack).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence, Union

import torch

from .augment import CropBox, ViewAugmentation, decode_reduction
from .base import ViewTransform, planned_images
from .worker_memory import view_output

ViewGroup = Union[ViewAugmentation, Sequence[ViewAugmentation]]


class MultiViewTransform(ViewTransform):
    """``datasets`` transform producing named groups of random views per image.

    Input: a batch dict with an image column (PIL images, ``{"bytes", "path"}`` dicts, paths).
    Output: one list per key of ``views``, holding ``float32 [3, s, s]`` (single view) or
    ``float32 [n, 3, s, s]`` (a list of n views of one size), plus ``image_ok`` (bool).

    Args:
        views: output key -> a :class:`ViewAugmentation` or a list of them.
        image_column: name of the image column.
    """

    def __init__(self, views: Mapping[str, ViewGroup], image_column: str = "image"):
        super().__init__(image_column=image_column)
        if not views:
            raise ValueError("MultiViewTransform needs at least one view")
        for key, group in views.items():
            if not isinstance(group, ViewAugmentation):
                sizes = {aug.size for aug in group}
                if len(sizes) != 1:
                    raise ValueError(f"views of key {key!r} must share one size to stack, got sizes {sorted(sizes)}")
        self.views = dict(views)
        self.output_keys = tuple(self.views)

    def make_views(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for key, group in self.views.items():
            if isinstance(group, ViewAugmentation):
                out[key] = group(image)
            else:
                out[key] = torch.stack([aug(image) for aug in group])
        return out

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        return self.call_batched(batch, self._views_of)

    def _views_of(self, images: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each key's views of all images: ``[N, 3, s, s]`` or ``[N, n, 3, s, s]``."""
        groups = {key: [group] if isinstance(group, ViewAugmentation) else list(group) for key, group in self.views.items()}
        crops = crops_image_by_image(images, [aug for group in groups.values() for aug in group])
        if not crops[0]:
            return {}
        out, first = {}, 0
        for key, group in groups.items():
            views = finish_views(group, crops[first : first + len(group)], photometric=not self.photometric_on_device)
            out[key] = views[:, 0] if isinstance(self.views[key], ViewAugmentation) else views
            first += len(group)
        return out

    def deferred_photometric(self) -> dict[str, list[ViewAugmentation]]:
        """Output key -> the augmentation of each of its views, for the colour ops run on the device."""
        return {key: [group] if isinstance(group, ViewAugmentation) else list(group) for key, group in self.views.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_column={self.image_column!r}, views={self.views})"


def crops_image_by_image(images: Iterable[torch.Tensor], augs: Sequence[ViewAugmentation]) -> list[list[torch.Tensor]]:
    """The geometric half of every view: per augmentation, its ``uint8 [3, s, s]`` crop of each image.

    Image by image (every view of an image, then the next image), so that each decoded image can
    be dropped as soon as its crops are taken; with :class:`~hf_sslviews.views.base.DecodedImages`
    the crop boxes are drawn from the header first, and a JPEG whose crops all allow it is decoded
    at a reduced size (:func:`~hf_sslviews.views.augment.decode_reduction`).
    """
    crops: list[list[torch.Tensor]] = [[] for _ in augs]
    for image, scale, boxes in planned_images(images, plan_crops(augs)):
        for slot, (aug, box) in enumerate(zip(augs, boxes)):
            crops[slot].append(aug.crop(image, box, scale))
    return crops


def plan_crops(augs: Sequence[ViewAugmentation]) -> Callable[[int, int], tuple[list[CropBox], int]]:
    """``plan(height, width)``: every view's crop box, and the JPEG reduction they allow."""
    sizes = [aug.size for aug in augs]

    def plan(height: int, width: int) -> tuple[list[CropBox], int]:
        boxes = [aug.draw_geometry(height, width) for aug in augs]
        return boxes, decode_reduction(boxes, sizes)

    return plan


def finish_views(group: Sequence[ViewAugmentation], crops: Sequence[Sequence[torch.Tensor]], photometric: bool = True) -> torch.Tensor:
    """``[N, n, 3, s, s]``: view j of every image (``crops[j]``, ``uint8 [3, s, s]`` each) finished into slice ``[:, j]``.

    Consumes ``crops``: each list is emptied once stacked.

    The colour ops run batched across the images of each view and write straight into the output
    (in shared memory inside a DataLoader worker), so no second copy of the views is made. With
    ``photometric=False``: the ``uint8`` crops only (the colour ops are deferred to the device).
    """
    size = group[0].size
    out = view_output((len(crops[0]), len(group), 3, size, size), torch.float32 if photometric else torch.uint8)
    for index, aug in enumerate(group):
        stacked = torch.stack(crops[index])
        crops[index].clear()  # consumed: the separate crops are freed before the colour ops run
        if photometric:
            aug.photometric_normalize_crops(stacked, out=out[:, index])
        else:
            out[:, index] = stacked
    return out


def two_view_transform(size: int = 224, scale: tuple[float, float] = (0.08, 1.0), image_column: str = "image", **overrides) -> MultiViewTransform:
    """The asymmetric BYOL / MoCo v3 pair (view 1: blur p=1; view 2: blur p=0.1, solarize p=0.2).

    Output keys: ``pixel_values_1``, ``pixel_values_2`` (``float32 [3, size, size]``).
    """
    return MultiViewTransform(
        {
            "pixel_values_1": ViewAugmentation.from_settings("byol_view1", size=size, scale=scale, **overrides),
            "pixel_values_2": ViewAugmentation.from_settings("byol_view2", size=size, scale=scale, **overrides),
        },
        image_column=image_column,
    )
