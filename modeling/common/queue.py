"""A first-in first-out queue of past keys (MoCo's memory bank), kept in the checkpoint.

The queue and its pointer are registered as persistent buffers, so ``save_pretrained`` writes
them into ``model.safetensors`` and a Trainer checkpoint carries them: a resumed run goes on
with the same negatives instead of a fresh random queue.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """``K`` keys of width ``D``, oldest overwritten first.

    MoCo (He et al., 2020, Algorithm 1) keeps ``K`` past keys as negatives and replaces the
    oldest batch with the newest after each forward. The queue starts as random unit vectors
    (MoCo's ``randn`` then ``normalize``).

    Args:
        size: number of keys ``K`` (65536 in MoCo v2 and CLSA).
        dim: key width ``D`` (128).
        require_divisible: raise a ``ValueError`` unless ``size`` is a multiple of the number of
            keys enqueued at once (the global batch), as MoCo's code asserts. Off by default: a
            batch that runs past the end wraps around to the start, so the queue always holds
            exactly the ``K`` most recent keys (MoCo's assert only serves its slice writes), and a
            batch shortened by skipped images, or trimmed to keep processes in step, is
            enqueued like any other.

    Buffers:
        queue: ``float [K, D]`` unit-norm keys.
        queue_ptr: ``int64 []`` row where the next batch goes.
    """

    def __init__(self, size: int, dim: int, require_divisible: bool = False):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"a key queue needs a positive size and width, got size={size}, dim={dim}")
        self.size = int(size)
        self.dim = int(dim)
        self.require_divisible = require_divisible
        self.register_buffer("queue", F.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def bank(self, keys: torch.Tensor) -> torch.Tensor:
        """``[B + K, D]``: the current keys first, then the queue (a copy, safe to enqueue after).

        Args:
            keys: ``[B, D]`` keys of the (gathered) batch.
        """
        return torch.cat([keys, self.queue.detach().to(keys.dtype)], dim=0)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (``[B, D]``, gathered from every process) over the oldest entries.

        Raises:
            ValueError: the keys have the wrong width, ``B > K``, or ``K % B != 0`` while
                ``require_divisible``.
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be [B, {self.dim}], got {list(keys.shape)}")
        batch = keys.shape[0]
        if batch > self.size:
            raise ValueError(
                f"cannot enqueue {batch} keys (one step's keys from every process) into a queue of {self.size}: "
                "make queue_size at least as large as the keys of one step (the global batch, or twice it for methods "
                "that enqueue both views, such as RepCo)"
            )
        if self.require_divisible and self.size % batch != 0:
            raise ValueError(
                f"the queue size ({self.size}) must be a multiple of the global batch size ({batch} keys enqueued this step), "
                "as in MoCo. Change queue_size or the batch size, keep --dataloader_drop_last on so the last batch of an epoch "
                "is not smaller, or build the queue with require_divisible=False (the default), which wraps around."
            )
        ptr = int(self.queue_ptr)
        rows = (ptr + torch.arange(batch, device=self.queue.device)) % self.size
        self.queue[rows] = keys.detach().to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + batch) % self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, require_divisible={self.require_divisible}"


__all__ = ["KeyQueue"]
