"""Attach views to a training split, streaming or not: what the Trainer iterates.

``with_transform`` does not exist for a ``datasets.IterableDataset``; its lazy ``map`` does the
same job: the view transform runs on each batch of examples as they are read, and the tensors it
returns pass through unchanged (no Arrow encoding without ``features``), so
:class:`~hf_sslviews.data.collator.ViewCollator` receives exactly what it gets from a map-style
dataset with ``with_transform``.

Several processes. The Trainer hands a ``datasets.IterableDataset`` to accelerate, which already
splits it across processes: with ``dispatch_batches=False`` each process keeps its own
``dataset.shard(world_size, rank)`` (when there are at least ``world_size`` shards) or every
``world_size``-th batch (``IterableDatasetShard``); with accelerate's default for iterable datasets
(``dispatch_batches=True``) process 0 reads, decodes and makes the views of every batch and sends
slices to the others. Calling ``datasets.distributed.split_dataset_by_node`` as well would split
twice (each process would see a quarter of the data on two processes, or rank 0 only its half
under dispatching), so :func:`attach_views` does not, and :func:`configure_streaming`
chooses ``dispatch_batches=False``: each process reads its own files and makes its own views,
which is what scales. :func:`split_for_process` is there for loops without the Trainer.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Union

import datasets

from .sources import check_columns, prepare_for_views

logger = logging.getLogger(__name__)

AnyDataset = Union[datasets.Dataset, datasets.IterableDataset]


def _require_max_steps(max_steps: Optional[int]) -> None:
    if max_steps is None or max_steps <= 0:
        raise ValueError(
            f"a streaming dataset has no length, so the Trainer cannot turn epochs into steps: pass --max_steps "
            f"(a positive number of optimizer steps) with --streaming, got max_steps={max_steps}"
        )


def attach_views(
    dataset: AnyDataset,
    transform: Callable[[dict], dict],
    max_steps: Optional[int],
    image_column: str = "image",
    world_size: int = 1,
    shuffle_buffer_size: Optional[int] = None,
    seed: int = 0,
    map_batch_size: int = 64,
) -> AnyDataset:
    """Attach ``transform`` (a view transform) to a dataset the Trainer can iterate.

    A map-style ``datasets.Dataset`` gets the usual ``with_transform`` (nothing streams; epochs
    work as usual). A ``datasets.IterableDataset`` is prepared for views (image column left
    undecoded, see :func:`~hf_sslviews.data.sources.prepare_for_views`), optionally shuffled with a
    buffer, re-sharded by Parquet row groups when it has fewer shards than processes (so that each
    process reads its own part instead of every process reading everything), and mapped lazily
    through ``transform``.

    Args:
        dataset: the training split, streaming or not.
        transform: a view transform (``batch dict -> dict of lists of tensors``).
        max_steps: the run's ``--max_steps``; required (positive) for a streaming dataset, whose
            length is unknown.
        image_column: the column holding the images.
        world_size: number of training processes (``TrainingArguments.world_size``).
        shuffle_buffer_size: shuffle a streaming dataset through a buffer of this many examples
            (``IterableDataset.shuffle``); ``None`` keeps the stream's order.
        seed: seed of that shuffle (the Trainer calls ``set_epoch``, which reshuffles each epoch).
        map_batch_size: examples per call of ``transform`` on a streaming dataset.

    Returns:
        A ``datasets.Dataset`` with the transform attached, or a ``datasets.IterableDataset``
        yielding view rows.

    Raises:
        ValueError: a streaming dataset without a positive ``max_steps``, a missing image column.
    """
    if not isinstance(dataset, datasets.IterableDataset):
        return prepare_for_views(dataset, image_column).with_transform(transform)
    _require_max_steps(max_steps)
    check_columns(dataset, image_column)
    dataset = prepare_for_views(dataset, image_column)
    if world_size > 1 and dataset.num_shards < world_size:
        try:
            dataset = dataset.reshard()
        except NotImplementedError:  # a format that cannot be split further: accelerate falls back
            pass
        if dataset.num_shards < world_size:
            logger.warning(
                "the streaming dataset has %d shard(s) for %d processes: every process will read the whole stream and "
                "keep every %d-th batch. Store it as several Parquet files (or row groups) to give each process its own.",
                dataset.num_shards, world_size, world_size,
            )
    if shuffle_buffer_size:
        dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    columns = dataset.column_names  # None when the source does not declare its features
    mapped = dataset.map(transform, batched=True, batch_size=map_batch_size, remove_columns=columns)
    # What with_transform records for a map-style dataset: the Trainer reads the views' settings
    # (APS's chunks per batch) from it.
    mapped.view_transform = transform
    return mapped


def attached_transform(dataset) -> Optional[Callable]:
    """The transform ``attach_views`` (or ``with_transform``) gave a dataset, or ``None``."""
    transform = (getattr(dataset, "format", None) or {}).get("format_kwargs", {}).get("transform")
    return transform if transform is not None else getattr(dataset, "view_transform", None)


def configure_streaming(training_args) -> None:
    """Check and adjust ``TrainingArguments`` for a streaming training set (before the Trainer is built).

    - ``max_steps`` must be positive (a stream has no length).
    - ``accelerator_config.dispatch_batches = False`` unless the user set it: each process reads its
      own shards and makes its own views, instead of process 0 doing it for all (accelerate's default
      for iterable datasets, a bottleneck, and it concatenates per-process batches, which the
      collator's scalar ``num_skipped_images`` does not survive).
    """
    _require_max_steps(training_args.max_steps)
    config = training_args.accelerator_config
    if getattr(config, "dispatch_batches", None) is None:
        config.dispatch_batches = False


def split_for_process(dataset: datasets.IterableDataset, rank: int, world_size: int) -> datasets.IterableDataset:
    """This process's part of a stream, for a training loop *without* the Trainer.

    ``datasets.distributed.split_dataset_by_node``: whole shards per process when their number
    divides evenly, otherwise every ``world_size``-th example. Do not use it on a dataset given to
    the Trainer: accelerate splits that one itself (module docstring).
    """
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


__all__ = ["configure_streaming", "split_for_process", "attach_views"]
