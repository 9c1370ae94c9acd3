"""What every benchmark script records beside its numbers, and how it writes them.

Outside the installed package: the scripts next to it import it as ``harness`` (Python puts
a script's own folder first on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch


def machine_info() -> dict:
    """The machine a benchmark ran on: platform, CPUs, versions, load (timings on a shared box need it)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    return info


def write_report(report: dict, path: str | os.PathLike) -> Path:
    """Write a benchmark report as indented JSON (plain text), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def random_images(count: int, side: int, seed: int = 0) -> list:
    """``count`` RGB PIL images of ``side`` x ``side`` uniform noise, the same for a given seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(count)]


def collated_views(transform, images: list, device: str = "cpu") -> dict:
    """The batch a training step sees: ``transform``'s views of ``images``, collated, on ``device``."""
    from hf_sslviews.data.collator import ViewCollator

    rows = transform({"image": list(images)})
    batch = ViewCollator()([{key: rows[key][i] for key in rows} for i in range(len(images))])
    batch.pop("num_skipped_images", None)

    def to_device(value):
        if torch.is_tensor(value):
            return value.to(device)
        if isinstance(value, list):  # views of several sizes stay a list of tensors
            return [to_device(item) for item in value]
        return value

    return {key: to_device(value) for key, value in batch.items()}


def best_rate(fn, items: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs of ``fn`` (the least disturbed by other load)."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return items / best


def process_memory_mib(field: str) -> float | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process in MiB; ``None`` off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_memory() -> bool:
    """Reset this process's peak resident memory (``VmHWM``) to its current RSS (Linux >= 4.0).

    ``ru_maxrss`` cannot be reset, so without this the import and data peaks would hide the peak
    of the part being measured. Returns whether the reset worked.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False
