"""How the DataLoader workers that make views use memory: allocator settings, shared outputs.

Outputs: a view tensor that goes into the batch is allocated in shared memory inside a worker
(:func:`view_output`), as ``default_collate`` does, because a worker sends its batch to the main
process through shared memory: a tensor in ordinary memory would be copied there whole (38 MB a
batch for the 224 px pair at batch 32), holding the batch twice at the worker's peak.

Allocator: glibc's settings for these workers.

Making a batch of views allocates and frees float tensors of 0.2 to 40 MB dozens of times (one
224 px crop is 0.6 MB; a chunk of crops 7 MB). With glibc's defaults each such block goes back
to the kernel when freed (blocks above the dynamic mmap threshold are unmapped; free memory above
128 kB at the top of the heap is trimmed), so the next allocation of the same size faults all its
pages in again and the kernel zeroes them. Measured on this project's 224 px BYOL / MoCo v3 pair
(one process, one thread, 2-core Xeon): 0.254 s a batch of 32 images with the defaults, 0.158 s
with the settings below; the hue rotation alone went from 2.3 to 0.4 ms a crop.

The settings keep freed blocks in the worker's heap for reuse: blocks up to 32 MB (glibc's
largest mmap threshold on 64-bit) come from the heap, up to 128 MB of free memory is kept at its
top, and the heap grows by at least 64 MB at a time (address space, not memory, until touched).
A worker's peak memory stays that of its largest batch (``benchmarks/data_loading.py`` records it).

They are applied once per DataLoader worker process, by the view transforms themselves (a
``datasets`` transform runs in the worker), never in the main process. They are skipped when
the environment already sets glibc's ``MALLOC_*`` variables (the user's choice wins), on a libc
without ``mallopt`` (macOS, musl), and when ``HF_SSLVIEWS_WORKER_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Optional, Sequence

import torch
from torch.utils.data import get_worker_info

logger = logging.getLogger(__name__)

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

WORKER_MALLOC_SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 128 << 20, M_TOP_PAD: 64 << 20}
OPT_OUT_VARIABLE = "HF_SSLVIEWS_WORKER_MALLOC"

# (pid, whether the settings are in force): decided once per process.
_decision: Optional[tuple[int, bool]] = None


def _mallopt():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "mallopt", None)
    except OSError:
        return None


def keep_freed_memory_in_worker() -> bool:
    """Apply :data:`WORKER_MALLOC_SETTINGS` once in this DataLoader worker; True when they are in force.

    A no-op (False) outside a DataLoader worker, when opted out or pre-empted by ``MALLOC_*``
    environment variables, or where the C library has no ``mallopt``.
    """
    global _decision
    pid = os.getpid()
    if _decision is not None and _decision[0] == pid:
        return _decision[1]
    if get_worker_info() is None:
        return False
    _decision = (pid, _apply())
    return _decision[1]


def _apply() -> bool:
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0" or any(key.startswith("MALLOC_") for key in os.environ):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    applied = all(mallopt(ctypes.c_int(option), ctypes.c_int(value)) == 1 for option, value in WORKER_MALLOC_SETTINGS.items())
    if not applied:
        logger.debug("mallopt refused the worker allocator settings; glibc's defaults stay in force")
    return applied


def view_output(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor for views that go into the batch; in shared memory inside a DataLoader worker."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=dtype)
    numel = 1
    for side in shape:
        numel *= int(side)
    # What default_collate does in a worker: a storage born in shared memory is sent without a copy.
    storage = torch.UntypedStorage._new_shared(numel * torch.empty((), dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage, 0, tuple(shape))
