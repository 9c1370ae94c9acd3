"""Trainer state (optimizer, scheduler, RNG, arguments) as safetensors + JSON, never pickles.

The stock Trainer writes ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` and
``training_args.bin`` with ``torch.save``. This library writes every file as safetensors or plain
text, so a nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) is split
into its tensors (``<name>.safetensors``) and a JSON skeleton (``<name>.json``) that says where
each tensor goes. Loading reads JSON and safetensors only: nothing executable can hide in it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic import write_text_atomic


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        # Optimizer states are keyed by parameter index: keep the keys' types.
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a safetensors/JSON state; only tensors, arrays, numbers, strings and containers")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state(state: Any, directory: str | os.PathLike, name: str) -> None:
    """Write ``state`` as ``<directory>/<name>.json`` (+ ``<name>.safetensors`` if it holds tensors)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors)
    if tensors:
        tmp = directory / f".{name}.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, directory / f"{name}.safetensors")
    write_text_atomic(directory / f"{name}.json", json.dumps(skeleton))


def has_state(directory: str | os.PathLike, name: str) -> bool:
    return (Path(directory) / f"{name}.json").is_file()


def load_state(directory: str | os.PathLike, name: str, device: str | torch.device = "cpu") -> Any:
    """Read what :func:`save_state` wrote."""
    directory = Path(directory)
    skeleton = json.loads((directory / f"{name}.json").read_text())
    weights = directory / f"{name}.safetensors"
    device = torch.device(device)
    # Under CPU DDP the Trainer's device is "cpu:<rank>", which safetensors refuses.
    target = "cpu" if device.type == "cpu" else str(device)
    tensors = load_file(str(weights), device=target) if weights.is_file() else {}
    return _decode(skeleton, tensors)


def check_resumable(checkpoint: str | os.PathLike, model: torch.nn.Module) -> None:
    """Refuse a checkpoint that lacks state the run needs, naming the missing part.

    Resuming from a folder without its optimizer state, or whose weights lack the target
    network, would otherwise start silently from fresh moments or fresh targets and give another
    run than the interrupted one (a loss of 1.758 instead of 1.496 after resume). Truncated files
    are named too.

    Raises:
        ValueError: a missing or unreadable ``trainer_state.json``, ``model.safetensors``,
            optimizer or scheduler state, or weights missing from ``model.safetensors``.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(checkpoint)
    fix = "resume from an earlier complete checkpoint-N, or start without --resume_from_checkpoint"
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / 'trainer_state.json'} is missing or unreadable ({error}): {fix}") from error
    weights = folder / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as handle:
            saved = set(handle.keys())
    except (OSError, SafetensorError) as error:
        raise ValueError(f"{weights} is missing or unreadable ({type(error).__name__}: {error}): {fix}") from error
    missing = sorted(set(model.state_dict()) - saved)
    if missing:
        parts = sorted({name.split(".")[0] for name in missing})
        raise ValueError(f"{weights} lacks {len(missing)} of the model's tensors (in {', '.join(parts)}; first: {missing[0]}): {fix}")
    for name in ("optimizer", "scheduler"):
        try:
            load_state(folder, name)
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            raise ValueError(f"the {name} state of {folder} ({name}.json / {name}.safetensors) is missing or unreadable ({type(error).__name__}: {error}): {fix}") from error

