"""ViewCollator: stacks each view key of a list of examples into a batch."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..views.base import IMAGE_ERROR_KEY
from ..views.worker_memory import view_output

SKIPPED_REASONS_KEY = "skipped_image_reasons"


class ViewCollator:
    """Collate the rows of a view transform into model inputs.

    - A key whose values are tensors is stacked along a new batch dimension.
    - A key whose values are lists of tensors (views of different resolutions) becomes a list
      of stacked tensors, one per position, so each resolution keeps its own tensor.
    - Rows with ``image_ok=False`` (undecodable images) are dropped; their number goes out as
      ``num_skipped_images`` (an int64 scalar tensor) for the Trainer to count, and their
      reasons (``skipped_image_reasons``, one line each) for its summary.
    - Keys not produced by the view transform (other dataset columns) are dropped unless listed
      in ``keep_keys`` (e.g. ``("label",)`` for evaluation).
    """

    def __init__(self, keep_keys: Sequence[str] = ()):
        self.keep_keys = tuple(keep_keys)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("ViewCollator received an empty list of examples")
        good = [row for row in features if row.get("image_ok", True)]
        batch: dict[str, Any] = {"num_skipped_images": torch.tensor(len(features) - len(good), dtype=torch.int64)}
        reasons = [row[IMAGE_ERROR_KEY] for row in features if not row.get("image_ok", True) and row.get(IMAGE_ERROR_KEY)]
        if reasons:
            batch[SKIPPED_REASONS_KEY] = reasons
        if not good:
            return batch
        for key, first in good[0].items():
            if key in ("image_ok", IMAGE_ERROR_KEY):
                continue
            if isinstance(first, torch.Tensor):
                batch[key] = stack_rows([row[key] for row in good])
            elif isinstance(first, (list, tuple)) and first and isinstance(first[0], torch.Tensor):
                batch[key] = [stack_rows([row[key][i] for row in good]) for i in range(len(first))]
            elif key in self.keep_keys:
                batch[key] = torch.as_tensor([row[key] for row in good])
        return batch


def stack_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(rows)``, without the copy when the rows are consecutive rows of one tensor.

    The batched view transforms make each key's views of a whole batch as one tensor and hand
    out its rows; stacking them again would hold every view twice at the DataLoader worker's
    peak. A row that is not the next slice of the same storage (a skipped image, rows from
    separate calls) falls back to ``torch.stack``.
    """
    first = rows[0]
    if first.is_contiguous():
        step, start, storage = first.numel(), first.storage_offset(), first.untyped_storage().data_ptr()
        consecutive = all(
            row.untyped_storage().data_ptr() == storage and row.dtype == first.dtype and row.shape == first.shape
            and row.is_contiguous() and row.storage_offset() == start + index * step
            for index, row in enumerate(rows)
        )
        if consecutive:
            return first.as_strided((len(rows), *first.shape), (step, *first.stride()), start)
    # In a DataLoader worker the stacked batch is born in shared memory (as default_collate does):
    # in ordinary memory it would be copied there whole when the worker sends the batch.
    return torch.stack(rows, out=view_output((len(rows), *first.shape), first.dtype)) if first.device.type == "cpu" else torch.stack(rows)


def batch_rows(batch: dict[str, Any]) -> int:
    """Number of examples in a collated batch (0 when every image was skipped)."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
        if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            return value[0].shape[0]
    return 0


def keep_first_rows(batch: dict[str, Any], rows: int) -> dict[str, Any]:
    """The batch cut to its first ``rows`` examples (every per-example tensor and list of tensors).

    Used under data parallelism when skipped images left the processes with different batch
    sizes: the gathers of the contrastive losses need the same shape on every process, so each
    keeps the smallest batch. With ``rows == 0`` only the scalars stay, which SSLTrainer trains
    as an all-skipped batch (a zero loss that keeps the processes in step).
    """
    size = batch_rows(batch)
    if rows >= size:
        return batch
    cut: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == size:
            if rows:
                cut[key] = value[:rows]
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            if rows:
                cut[key] = [part[:rows] for part in value]
        else:
            cut[key] = value
    return cut
