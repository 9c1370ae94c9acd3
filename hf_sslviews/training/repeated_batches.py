"""Several optimizer steps per loaded batch (APS: one step per patch chunk, same augmented images).

APS splits every view-1 patch grid into K disjoint chunks and trains one optimizer step per chunk
on the same augmented pair, so one data epoch is K times the optimizer steps. Doing this in the
data loader (rather than in the model or an inner loop) keeps the Trainer's own accounting true:
``len(dataloader)`` is K times the batches, so ``max_steps``, the learning-rate schedule,
logging, checkpoints and resume all count optimizer steps. A run resumed mid-epoch skips what it
trained by chunks (:func:`skip_first_batches`, which
:meth:`~hf_sslviews.training.trainer.SSLTrainer.get_resumed_dataloader` returns).
"""

from __future__ import annotations

from typing import Any, Iterator

from accelerate import skip_first_batches as accelerate_skip_first_batches


class ChunkRepeatingLoader:
    """Yields every batch of ``loader`` ``chunks`` times, adding ``chunk_index`` 0..chunks-1.

    The batch object is reused, so the K steps see the very same augmented images. Every other
    attribute (``dataset``, ``batch_sampler``, ``set_epoch``, ...) is the wrapped loader's.

    Args:
        loader: the Trainer's prepared training ``DataLoader``.
        chunks: optimizer steps per loaded batch (K).
        start_chunk: chunk to start the first batch at (used when resuming mid-batch).
    """

    def __init__(self, loader, chunks: int, start_chunk: int = 0):
        if chunks < 1:
            raise ValueError(f"chunks per batch must be at least 1, got {chunks}")
        self.loader = loader
        self.chunks = chunks
        self.start_chunk = start_chunk

    def __len__(self) -> int:
        return len(self.loader) * self.chunks - self.start_chunk

    def __iter__(self) -> Iterator[dict[str, Any]]:
        first = self.start_chunk
        for batch in self.loader:
            for chunk in range(first, self.chunks):
                yield {**batch, "chunk_index": chunk}
            first = 0

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def skip_first_batches(self, num_batches: int) -> "ChunkRepeatingLoader":
        """The loader after ``num_batches`` yielded batches (what a resumed run must skip).

        Whole loaded batches are skipped in the wrapped loader; a partly used batch is loaded
        again and continues at the next chunk. Its views are the same ones when they are seeded
        per row (``hf_sslviews.data.sources.prepare_for_views``; see ``ViewTransform``).
        """
        whole, partial = divmod(num_batches, self.chunks)
        inner = skip_first_batches(self.loader, whole) if whole else self.loader
        return ChunkRepeatingLoader(inner, self.chunks, start_chunk=partial)


def skip_first_batches(dataloader, num_batches: int = 0):
    """``dataloader`` without its first ``num_batches`` batches, as a resumed run needs it.

    A :class:`ChunkRepeatingLoader` skips by chunks (accelerate's function would rebuild a plain
    loader from it and lose the chunk steps); a wrapper that changes batches but not their count
    (it defines ``with_loader``) skips inside; any other loader goes to accelerate's
    ``skip_first_batches``, which is what the stock Trainer uses.
    """
    if isinstance(dataloader, ChunkRepeatingLoader):
        return dataloader.skip_first_batches(num_batches)
    if hasattr(dataloader, "with_loader"):
        return dataloader.with_loader(skip_first_batches(dataloader.loader, num_batches))
    return accelerate_skip_first_batches(dataloader, num_batches)
