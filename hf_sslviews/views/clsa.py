"""CLSA views: a key view, weak views and RandAugment-strengthened views at several resolutions.

Paper: Wang & Qi, "Contrastive Learning with Stronger Augmentations", arXiv 2104.07713
(model_cards/clsa.md); settings from the official code (``Multi_FixTransform.py``,
``cmd/run_single.sh``, ``cmd/run_multi.sh``).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import torch

from .augment import VIEW_SETTINGS, ViewAugmentation
from .base import IMAGENET_MEAN, IMAGENET_STD, ViewTransform
from .randaugment import OpDraw, RandAugment
from .worker_memory import view_output

_MULTI_SCALES = ((0.2, 1.0), (0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429))

# Each preset: key view (size, scale), weak views and strong views as ((size, scale), ...).
# Only the crops the loss uses are listed (the official code builds a weak and a strong
# transform per size and picks with --pick_weak / --pick_strong; we make just those).
CLSA_SETTINGS: dict[str, dict] = {
    # CLSA-Single: weak 224 (0.2, 1) + strong 96 (0.086, 0.429).
    "single": dict(key=(224, (0.2, 1.0)), weak=((224, (0.2, 1.0)),), strong=((96, (0.086, 0.429)),)),
    # CLSA-Multi: weak and strong at 224/192/160/128/96.
    "multi": dict(
        key=(224, (0.2, 1.0)),
        weak=tuple(zip((224, 192, 160, 128, 96), _MULTI_SCALES)),
        strong=tuple(zip((224, 192, 160, 128, 96), _MULTI_SCALES)),
    ),
    # 32 px data [ours]: sides scaled by 32/224 and rounded to multiples of 4 (so a patch-4
    # ViT takes every crop): 224->32, 192->28, 160->24, 128->20, 96->16 (13.7 exactly).
    # Crop scales are area fractions and stay the paper's.
    "single_cifar": dict(key=(32, (0.2, 1.0)), weak=((32, (0.2, 1.0)),), strong=((16, (0.086, 0.429)),)),
    "multi_cifar": dict(
        key=(32, (0.2, 1.0)),
        weak=tuple(zip((32, 28, 24, 20, 16), _MULTI_SCALES)),
        strong=tuple(zip((32, 28, 24, 20, 16), _MULTI_SCALES)),
    ),
}

RANDAUGMENT_STAGES = ("after_photometric", "after_geometric")
# ViewAugmentation arguments a CLSA preset may override for every view (crop sizes and scales
# have their own arguments).
PHOTOMETRIC_OVERRIDES = frozenset({"jitter", "jitter_p", "grayscale_p", "blur_p", "blur_sigma", "flip_p"})


class StrongViewAugmentation(ViewAugmentation):
    """A view made stronger by RandAugment: CLSA's strong view, usable wherever a view is.

    Input: ``uint8 [3, H, W]``. Output: normalised ``float32 [3, size, size]``.

    Args:
        randaugment: the RandAugment sampler.
        stage: ``"after_photometric"`` (the official code: after the whole MoCo v2 pipeline,
            whose last op is the flip) or ``"after_geometric"`` (right after crop and flip).
        **view_kwargs: the :class:`ViewAugmentation` it strengthens (crop, flip, jitter,
            grayscale, blur), e.g. ``VIEW_SETTINGS["mocov2"]`` with a size and scale.
    """

    def __init__(self, randaugment: RandAugment, stage: str = "after_photometric", **view_kwargs):
        if stage not in RANDAUGMENT_STAGES:
            raise ValueError(f"randaugment_stage must be one of {RANDAUGMENT_STAGES}, got {stage!r}")
        super().__init__(**view_kwargs)
        self.randaugment = randaugment
        self.stage = stage

    def with_ops(self, image: torch.Tensor) -> tuple[torch.Tensor, list[OpDraw]]:
        """The strong view and the RandAugment ops applied to it (for visualisation)."""
        crop, _ = self.geometric(image)
        if self.stage == "after_geometric":
            crop, ops = self.randaugment.augment(crop)
            crop = self.photometric(crop)
        else:
            crop = self.photometric(crop)
            crop, ops = self.randaugment.augment(crop)
        return self.normalize(crop), ops

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.with_ops(image)[0]

    def batch_views(self, images: Sequence[torch.Tensor], out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One strong view of each image, ``float32 [N, 3, size, size]``, written into ``out`` when given.

        Image by image: RandAugment's ops are drawn and applied per ``uint8`` crop.
        """
        if out is None:
            out = view_output((len(images), 3, self.size, self.size), torch.float32)
        for index, image in enumerate(images):
            out[index] = self(image)
        return out

    def __repr__(self) -> str:
        return f"{super().__repr__()} + {self.randaugment} ({self.stage})"


class CLSAViewTransform(ViewTransform):
    """``datasets`` transform producing CLSA's key, weak and strong views.

    Input: a batch dict with an image column (PIL images, ``{"bytes", "path"}`` dicts, paths).

    Output keys (per example; :class:`~hf_sslviews.data.collator.ViewCollator` turns each list into a
    list of per-resolution batches ``[B, 3, s, s]``):

    - ``key_pixel_values``: ``float32 [3, S, S]``, the momentum encoder's view.
    - ``weak_pixel_values``: list over resolutions of ``float32 [3, s, s]``.
    - ``strong_pixel_values``: list over resolutions of ``float32 [3, s, s]``; omitted with no
      strong views (``strong=()``: the MoCo v2 base CLSA is measured against).
    - ``image_ok``: ``bool``.

    Augmentations: every view is MoCo v2's pipeline (RandomResizedCrop, flip,
    ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, Gaussian blur sigma in [0.1, 2]
    p=0.5, normalise). A strong view adds :class:`~hf_sslviews.views.randaugment.RandAugment`
    (5 ops with replacement, p=0.5 each, v in 1..9). Every view is an independent crop (weak_i
    and strong_i included, as in the official code).

    Where RandAugment goes (``randaugment_stage``): the official code inserts it after
    ``RandomHorizontalFlip``, which in MoCo v2's pipeline comes *after* jitter, grayscale and
    blur; so the default ``"after_photometric"`` is crop/flip -> photometric -> RandAugment ->
    normalise, the official order (flip commutes with the pixel-wise and symmetric ops).
    ``"after_geometric"`` puts it right after crop/flip, before the colour ops.

    Args:
        view_set: a key of :data:`CLSA_SETTINGS` ("single", "multi", "single_cifar", "multi_cifar");
            ``preset=`` is its former name, still accepted.
        key: ``(size, (min_scale, max_scale))`` of the key view; overrides the view set's.
        weak: sequence of ``(size, (min_scale, max_scale))`` for the weak views; overrides the view set's.
        strong: the same for the strong views; overrides the view set's. ``()`` makes no strong
            views: MoCo v2's key and weak views only (the baseline of the CLSA paper).
        num_ops, apply_p, magnitude_range, pool: :class:`RandAugment` arguments.
        randaugment_stage: ``"after_photometric"`` (official) or ``"after_geometric"``.
        interpolation: crop resize interpolation; "bilinear" is torchvision's
            RandomResizedCrop default, which the official code uses.
        mean, std: normalisation statistics.
        image_column: name of the image column.
        **photometric: overrides of MoCo v2's photometric settings for every view (``jitter``,
            ``jitter_p``, ``grayscale_p``, ``blur_p``, ``blur_sigma``, ``flip_p``), e.g.
            ``jitter=(0.4, 0.4, 0, 0), grayscale_p=0`` for grey images.
    """

    def __init__(
        self,
        view_set: str = "single",
        *,
        key: Optional[tuple[int, tuple[float, float]]] = None,
        weak: Optional[Sequence[tuple[int, tuple[float, float]]]] = None,
        strong: Optional[Sequence[tuple[int, tuple[float, float]]]] = None,
        num_ops: int = 5,
        apply_p: float = 0.5,
        magnitude_range: tuple[int, int] = (1, 9),
        pool="official",
        randaugment_stage: str = "after_photometric",
        interpolation: str = "bilinear",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        image_column: str = "image",
        **photometric,
    ):
        super().__init__(image_column=image_column)
        view_set = photometric.pop("preset", view_set)  # the former name of view_set
        unknown = sorted(set(photometric) - PHOTOMETRIC_OVERRIDES)
        if unknown:
            raise ValueError(f"unknown CLSA view argument(s) {unknown}; the photometric ones are {sorted(PHOTOMETRIC_OVERRIDES)}")
        if view_set not in CLSA_SETTINGS:
            raise ValueError(f"unknown CLSA view set {view_set!r}; choose one of {sorted(CLSA_SETTINGS)}")
        if randaugment_stage not in RANDAUGMENT_STAGES:
            raise ValueError(f"randaugment_stage must be one of {RANDAUGMENT_STAGES}, got {randaugment_stage!r}")
        settings = CLSA_SETTINGS[view_set]
        key = settings["key"] if key is None else key
        weak = settings["weak"] if weak is None else tuple(weak)
        strong = settings["strong"] if strong is None else tuple(strong)
        if not weak:
            raise ValueError("CLSA needs at least one weak view (the query of the contrastive term), got none")

        def settings(size: int, scale: tuple[float, float]) -> dict:
            return {**VIEW_SETTINGS["mocov2"], **photometric, "size": size, "scale": tuple(scale), "interpolation": interpolation, "mean": mean, "std": std}

        def view(size: int, scale: tuple[float, float]) -> ViewAugmentation:
            return ViewAugmentation(**settings(size, scale))

        self.key_view = view(*key)
        self.weak_views = [view(*spec) for spec in weak]
        self.randaugment = RandAugment(num_ops=num_ops, apply_p=apply_p, magnitude_range=magnitude_range, pool=pool)
        self.randaugment_stage = randaugment_stage
        self.strong_views = [StrongViewAugmentation(self.randaugment, randaugment_stage, **settings(*spec)) for spec in strong]
        self.output_keys = ("key_pixel_values", "weak_pixel_values") + (("strong_pixel_values",) if self.strong_views else ())

    def strong_view(self, image: torch.Tensor, index: int = 0) -> tuple[torch.Tensor, list[OpDraw]]:
        """One strong view of a ``uint8 [3, H, W]`` image at resolution ``index``, with the
        RandAugment ops applied to it (for visualisation)."""
        return self.strong_views[index].with_ops(image)

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        return self.call_batched(batch, self._views_of)

    def _views_of(self, images: Iterable[torch.Tensor]) -> dict[str, object]:
        """Each view of all images: the key and weak views with their colour ops batched across the
        images, the strong views image by image; every one written once, into the batch's memory."""
        images = list(images)  # every view set below walks the images again
        if not images:
            return {}
        views = {"key_pixel_values": self.key_view.batch_views(images), "weak_pixel_values": [aug.batch_views(images) for aug in self.weak_views]}
        if self.strong_views:
            views["strong_pixel_values"] = [aug.batch_views(images) for aug in self.strong_views]
        return views

    def make_views(self, image: torch.Tensor) -> dict[str, object]:
        views = {"key_pixel_values": self.key_view(image), "weak_pixel_values": [aug(image) for aug in self.weak_views]}
        if self.strong_views:
            views["strong_pixel_values"] = [aug(image) for aug in self.strong_views]
        return views

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self.key_view.size}, weak={[a.size for a in self.weak_views]}, "
            f"strong={[a.size for a in self.strong_views]}, randaugment={self.randaugment}, "
            f"randaugment_stage={self.randaugment_stage!r}, image_column={self.image_column!r})"
        )
