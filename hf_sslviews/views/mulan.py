"""MULAN views: two global views, local crops and cutout views, one group per predictor.

Paper: De Plaen et al., "Self-Supervised Learning with a Multi-Task Latent Space Objective",
arXiv 2602.05845 (model_cards/mulan.md).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch

from .augment import ViewAugmentation
from .base import IMAGENET_MEAN, IMAGENET_STD, ViewTransform, planned_images
from .multi_view import finish_views, plan_crops


def cutout_box(
    height: int,
    width: int,
    area_range: tuple[float, float] = (0.2, 0.4),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """Draw a cutout rectangle ``(top, left, h, w)`` inside a ``height x width`` image.

    The area is ``U(area_range)`` of the image, the aspect ratio ``w / h`` log-uniform in
    ``aspect_range``; sides are rounded to whole pixels and clamped to the image, and the
    position is uniform over the places where the whole rectangle fits (so the drawn area is
    the area removed [ours: the published description does not say whether the box may leave the crop]).
    Randomness from torch's RNG.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cutout needs a non-empty image, got {height}x{width}")
    if not (0 < area_range[0] <= area_range[1] <= 1):
        raise ValueError(f"area_range must satisfy 0 < min <= max <= 1, got {tuple(area_range)}")
    if not (0 < aspect_range[0] <= aspect_range[1]):
        raise ValueError(f"aspect_range must satisfy 0 < min <= max, got {tuple(aspect_range)}")
    area = height * width * torch.empty(()).uniform_(area_range[0], area_range[1]).item()
    aspect = math.exp(torch.empty(()).uniform_(math.log(aspect_range[0]), math.log(aspect_range[1])).item())
    h = min(height, max(1, int(round(math.sqrt(area / aspect)))))
    w = min(width, max(1, int(round(math.sqrt(area * aspect)))))
    top = int(torch.randint(0, height - h + 1, ()).item())
    left = int(torch.randint(0, width - w + 1, ()).item())
    return top, left, h, w


def apply_cutout(img: torch.Tensor, box: tuple[int, int, int, int], fill: Union[float, Sequence[float]]) -> torch.Tensor:
    """A copy of ``img`` (``[..., C, H, W]``) with ``box`` = ``(top, left, h, w)`` set to ``fill``.

    ``fill`` is one value or one per channel, in the image's own units (0..255 for ``uint8``).
    """
    top, left, h, w = box
    out = img.clone()
    value = torch.as_tensor(fill, dtype=torch.float32)
    if value.ndim == 1:
        if value.numel() != img.shape[-3]:
            raise ValueError(f"fill has {value.numel()} values but the image has {img.shape[-3]} channels")
        value = value[:, None, None]
    if not img.dtype.is_floating_point:
        value = value.round()
    out[..., top : top + h, left : left + w] = value.to(img.dtype)
    return out


# Sizes of the views: (global, local, cutout) sides in pixels.
MULTITASK_SETTINGS: dict[str, dict] = {
    "imagenet": dict(global_size=224, local_size=96, cutout_size=224),
    # 32 px data [ours]: globals and cutouts at the image size, locals at half of it
    # (96/224 * 32 = 13.7 rounded up to 16, a multiple of a patch-4 ViT's patch).
    "cifar": dict(global_size=32, local_size=16, cutout_size=32),
}


class MultiTaskViewTransform(ViewTransform):
    """``datasets`` transform producing MULAN's global, local and cutout views.

    Input: a batch dict with an image column (PIL images, ``{"bytes", "path"}`` dicts, paths).

    Output keys (per example; the collator stacks them into ``[B, n, 3, s, s]``):

    - ``global_pixel_values``: ``float32 [2, 3, S, S]`` (global_1, global_2).
    - ``local_pixel_values``: ``float32 [n_local, 3, s, s]``; **omitted** when ``n_local == 0``
      (the model's argument then defaults to ``None``), so no empty tensor reaches the model.
    - ``cutout_pixel_values``: ``float32 [n_cutout, 3, S_c, S_c]``; omitted when ``n_cutout == 0``.
    - ``image_ok``: ``bool``.

    Augmentations (all bicubic, flip p=0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale
    p=0.2, normalise):

    - global_1: RandomResizedCrop(scale (0.25, 1)), blur p=1.0.
    - global_2: the same crop settings, blur p=0.1, solarize p=0.2.
    - local: RandomResizedCrop(scale (0.08, 0.25)), blur p=0.5.
    - cutout: RandomResizedCrop(scale (0.25, 1)) -> flip -> one rectangle of area U(0.2, 0.4)
      of the crop, aspect log-uniform in [3/4, 4/3], filled with the dataset mean pixel (so ~0
      after normalising, up to uint8 rounding) -> colour jitter and the rest. Blur p=0.5 and no
      solarize for cutout views are [ours]: the published description does not give them.

    Args:
        sizes: "imagenet" (224 / 96 / 224) or "cifar" (32 / 16 / 32); the sides below override it.
            ``preset=`` is its former name, still accepted.
        n_global: number of global views (MULAN: 2); they alternate global_1 / global_2 settings.
        n_local: number of local crops (MULAN: 2 or 4).
        n_cutout: number of cutout views (MULAN: 1).
        global_size, local_size, cutout_size: view sides in pixels (``None``: from ``sizes``).
        global_scale, local_scale, cutout_scale: crop area ranges.
        cutout_area, cutout_aspect: the rectangle's area fraction and aspect ranges.
        cutout_blur_p: blur probability of cutout views.
        jitter: colour jitter strengths (brightness, contrast, saturation, hue) of every view.
        jitter_p: colour jitter probability of every view (0 turns jitter off, e.g. in tests).
        grayscale_p: grayscale probability of every view.
        solarize_p: solarize probability of global_2 (grey images on black: 0).
        mean, std: normalisation statistics; ``mean`` is also the cutout fill.
        image_column: name of the image column.
    """

    def __init__(
        self,
        sizes: str = "imagenet",
        *,
        n_global: int = 2,
        n_local: int = 2,
        n_cutout: int = 1,
        global_size: int | None = None,
        local_size: int | None = None,
        cutout_size: int | None = None,
        global_scale: tuple[float, float] = (0.25, 1.0),
        local_scale: tuple[float, float] = (0.08, 0.25),
        cutout_scale: tuple[float, float] = (0.25, 1.0),
        cutout_area: tuple[float, float] = (0.2, 0.4),
        cutout_aspect: tuple[float, float] = (3 / 4, 4 / 3),
        cutout_blur_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        solarize_p: float = 0.2,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        image_column: str = "image",
        preset: Optional[str] = None,
    ):
        super().__init__(image_column=image_column)
        sizes = preset if preset is not None else sizes  # preset: the former name of sizes
        if sizes not in MULTITASK_SETTINGS:
            raise ValueError(f"unknown MULAN view sizes {sizes!r}; choose one of {sorted(MULTITASK_SETTINGS)}")
        for name, count in (("n_global", n_global), ("n_local", n_local), ("n_cutout", n_cutout)):
            if int(count) != count or count < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {count}")
        if n_global < 1:
            raise ValueError(f"MULAN needs at least one global view (the targets), got n_global={n_global}")
        sides = MULTITASK_SETTINGS[sizes]
        global_size = sides["global_size"] if global_size is None else global_size
        local_size = sides["local_size"] if local_size is None else local_size
        cutout_size = sides["cutout_size"] if cutout_size is None else cutout_size
        # Validate the rectangle's ranges now rather than at the first image.
        cutout_box(8, 8, cutout_area, cutout_aspect)

        common = dict(jitter=tuple(jitter), jitter_p=jitter_p, grayscale_p=grayscale_p, flip_p=0.5, interpolation="bicubic", mean=mean, std=std)
        global_settings = (dict(blur_p=1.0, solarize_p=0.0), dict(blur_p=0.1, solarize_p=solarize_p))
        self.global_views = [
            ViewAugmentation(size=global_size, scale=global_scale, **common, **global_settings[i % 2]) for i in range(n_global)
        ]
        self.local_views = [ViewAugmentation(size=local_size, scale=local_scale, blur_p=0.5, **common) for _ in range(n_local)]
        self.cutout_views = [ViewAugmentation(size=cutout_size, scale=cutout_scale, blur_p=cutout_blur_p, **common) for _ in range(n_cutout)]
        self.cutout_area = tuple(cutout_area)
        self.cutout_aspect = tuple(cutout_aspect)
        # The dataset mean as a uint8 pixel: the cutout is filled before the colour ops.
        self.fill = [round(255 * m) for m in mean]
        keys = ["global_pixel_values"]
        if n_local:
            keys.append("local_pixel_values")
        if n_cutout:
            keys.append("cutout_pixel_values")
        self.output_keys = tuple(keys)

    def cutout_view(self, image: torch.Tensor, index: int = 0) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """One cutout view of a ``uint8 [3, H, W]`` image and its rectangle ``(top, left, h, w)``
        in the view's pixels."""
        aug = self.cutout_views[index]
        crop, _ = aug.geometric(image)
        box = cutout_box(aug.size, aug.size, self.cutout_area, self.cutout_aspect)
        # Before the colour jitter, as MULAN does: the hole is jittered with the rest.
        crop = apply_cutout(crop, box, self.fill)
        return aug.normalize(aug.photometric(crop)), box

    def make_views(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"global_pixel_values": torch.stack([aug(image) for aug in self.global_views])}
        if self.local_views:
            out["local_pixel_values"] = torch.stack([aug(image) for aug in self.local_views])
        if self.cutout_views:
            out["cutout_pixel_values"] = torch.stack([self.cutout_view(image, i)[0] for i in range(len(self.cutout_views))])
        return out

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        return self.call_batched(batch, self._views_of)

    def _views_of(self, images: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """All views of the images, each view type batched across them: ``[N, n, 3, s, s]``."""
        views = self.global_views + self.local_views + self.cutout_views
        crops: list[list[torch.Tensor]] = [[] for _ in views]
        first_cutout = len(self.global_views) + len(self.local_views)
        # Image by image: each decoded image is dropped once its crops are taken, and a JPEG whose
        # crops all allow it is decoded at a reduced size (crops_image_by_image).
        for image, scale, boxes in planned_images(images, plan_crops(views)):
            for slot, (aug, box) in enumerate(zip(views, boxes)):
                crop = aug.crop(image, box, scale)
                if slot >= first_cutout:
                    # Before the colour jitter, as MULAN does: the hole is jittered with the rest.
                    crop = apply_cutout(crop, cutout_box(aug.size, aug.size, self.cutout_area, self.cutout_aspect), self.fill)
                crops[slot].append(crop)
        if not crops[0]:
            return {}
        photometric = not self.photometric_on_device
        out, first = {}, 0
        for key, group in zip(("global_pixel_values", "local_pixel_values", "cutout_pixel_values"), (self.global_views, self.local_views, self.cutout_views)):
            if group:
                out[key] = finish_views(group, crops[first : first + len(group)], photometric)
                first += len(group)
        return out

    def deferred_photometric(self) -> dict[str, list[ViewAugmentation]]:
        """Output key -> the augmentation of each of its views, for the colour ops run on the device."""
        plan = {"global_pixel_values": list(self.global_views), "local_pixel_values": list(self.local_views), "cutout_pixel_values": list(self.cutout_views)}
        return {key: plan[key] for key in self.output_keys}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_global={len(self.global_views)}, n_local={len(self.local_views)}, "
            f"n_cutout={len(self.cutout_views)}, sizes=({self.global_views[0].size}, "
            f"{self.local_views[0].size if self.local_views else None}, "
            f"{self.cutout_views[0].size if self.cutout_views else None}), image_column={self.image_column!r})"
        )
