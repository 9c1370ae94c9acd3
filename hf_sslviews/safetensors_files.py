"""A damaged safetensors file named as such, before a loader trips over it.

``safetensors`` reports a tampered, truncated or oversized header as ``SafetensorError: Error
while deserializing header: header too large``, raised from inside ``from_pretrained`` with no
file name. Opening each file's header first (cheap: the header only, the tensors are not read)
turns that into an error naming the file and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import safe_open


def check_safetensors_files(folder: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming the first ``*.safetensors`` file of ``folder`` whose header cannot be read.

    A Hub id or a path that is not a local folder is left alone (the Hub's own checks apply).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # noqa: BLE001 - SafetensorError is no ValueError; OSError for unreadable files
            raise ValueError(
                f"{path} is not a readable safetensors file ({type(error).__name__}: {error}): it is damaged or was not "
                f"written whole. Download it again, restore it from the run that wrote it, or export it again."
            ) from error


__all__ = ["check_safetensors_files"]
