"""The views' colour ops on the training device (``--photometric_on_device``).

On a GPU node the DataLoader workers, not the model, limit SSL pretraining, and most of a view's
CPU time is its colour ops (jitter, grayscale, blur, solarize, normalise). With this option the
view transform hands out ``uint8`` crops (decode, crop, flip, cutout: the geometric half) and the
colour half runs on the collated batch, on the device the batch was moved to, with the very same
function the CPU path uses for small crops (:meth:`ViewAugmentation.photometric_normalize_batch`):
the same ops, probabilities and factor ranges, drawn per view from torch's CPU generator.

The wrapper sits inside the APS repeated-batch loader, so the K optimizer steps of one loaded
batch still see the very same augmented images.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch

from ..views.augment import ViewAugmentation


def finish_views(batch: dict[str, Any], plan: Mapping[str, Sequence[ViewAugmentation]]) -> dict[str, Any]:
    """Apply each view's colour ops to the ``uint8`` crops of a collated batch.

    Args:
        batch: a collated batch; ``batch[key]`` is ``uint8 [B, 3, s, s]`` (one view per image) or
            ``uint8 [B, n, 3, s, s]`` (n views), on any device.
        plan: key -> the augmentation of each of its views (``ViewTransform.deferred_photometric()``).

    Returns:
        The batch with those keys as normalised ``float32`` views, on the same device.
    """
    finished = dict(batch)
    for key, augmentations in plan.items():
        crops = batch.get(key)
        if not isinstance(crops, torch.Tensor) or crops.dtype != torch.uint8:
            continue  # absent, or finished already (an evaluation set with views of its own)
        if crops.dim() == 4:
            finished[key] = augmentations[0].photometric_normalize_batch(crops)
        else:
            views = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
            for index, augmentation in enumerate(augmentations):
                views[:, index] = augmentation.photometric_normalize_batch(crops[:, index])
            finished[key] = views
    return finished


class DevicePhotometricLoader:
    """Yields the batches of ``loader`` with :func:`finish_views` applied (other attributes: the loader's)."""

    def __init__(self, loader, plan: Mapping[str, Sequence[ViewAugmentation]]):
        self.loader = loader
        self.plan = dict(plan)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield finish_views(batch, self.plan)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def with_loader(self, loader) -> "DevicePhotometricLoader":
        """The same wrapper around another loader (used when a resumed run skips batches)."""
        return DevicePhotometricLoader(loader, self.plan)
