"""The output folder of a run: writable before training starts, never shared by two runs.

Two failures this prevents, both found after hours of training:

- a read-only or missing-permission folder is discovered at the first checkpoint or at the end,
  when every step has been paid for: the folder is probed with a file before training;
- a second run pointed at the first run's folder mixes the two: ``--resume_from_checkpoint
  last`` then resumes run A's ``checkpoint-8`` as if it were run B's. Each run writes its
  identity (method, model config, data) to ``run_identity.json``; a new run refuses a folder
  holding another run unless ``--overwrite_output_dir``, and a resumed run must match it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from ..atomic import write_text_atomic

IDENTITY_FILE = "run_identity.json"
# Keys of a config that do not change what is trained.
_VOLATILE_CONFIG_KEYS = ("transformers_version", "architectures", "dtype", "torch_dtype")


def run_identity(method: str, config, data: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the method, its model config, the training data."""
    fields = {key: value for key, value in config.to_diff_dict().items() if key not in _VOLATILE_CONFIG_KEYS and not key.startswith("_")}
    return {"method": method, "config": json.loads(json.dumps(fields, default=str)), "data": data}


def _occupant(folder: Path) -> Optional[str]:
    """What in ``folder`` belongs to an earlier run, or ``None`` when it holds none."""
    if (folder / IDENTITY_FILE).exists():
        return IDENTITY_FILE
    for path in sorted(folder.glob("checkpoint-*")):
        if path.is_dir():
            return path.name
    if (folder / "model.safetensors").exists():
        return "model.safetensors"
    return None


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def prepare_output_dir(output_dir: str | os.PathLike, identity: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Check ``output_dir`` is writable and not another run's; record this run's identity there.

    Args:
        output_dir: the run's ``--output_dir`` (created if missing).
        identity: :func:`run_identity` of this run.
        resume: the run continues from a checkpoint (``--resume_from_checkpoint``).
        overwrite: ``--overwrite_output_dir``: an earlier run's checkpoints and identity are removed.

    Raises:
        ValueError: the folder cannot be written, holds another run, or (when resuming) holds a run
            with another method, config or data; each message names the fix.
    """
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_text("probe")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--output_dir {folder} cannot be written ({type(error).__name__}: {error}); pick a writable folder before training starts") from error
    occupant = _occupant(folder)
    previous_file = folder / IDENTITY_FILE
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else None
    if resume:
        if previous is not None and previous != identity:
            changes = "; ".join(_differences(previous, identity)[:6])
            raise ValueError(
                f"--resume_from_checkpoint: {folder} holds another run ({changes}). Resume with the arguments of that run, "
                f"or start this one in another --output_dir."
            )
    elif occupant is not None:
        if not overwrite:
            raise ValueError(
                f"--output_dir {folder} already holds a run ({occupant}). Pass --resume_from_checkpoint last to continue it, "
                f"--overwrite_output_dir to replace it, or another --output_dir."
            )
        for path in folder.glob("checkpoint-*"):
            if path.is_dir():
                shutil.rmtree(path)
    write_text_atomic(previous_file, json.dumps(identity, indent=2, sort_keys=True) + "\n")


def check_checkpoint_method(checkpoint: str | os.PathLike, model_type: str) -> None:
    """A checkpoint of another method cannot be resumed into this one: say so before loading it."""
    config_file = Path(checkpoint) / "config.json"
    if not config_file.is_file():
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: no config.json there; it is not a checkpoint-N folder of a run")
    saved = json.loads(config_file.read_text()).get("model_type")
    if saved != model_type:
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} holds a {saved} model, but this run builds a {model_type}; "
            f"resume with the --method / --preset that wrote it"
        )


__all__ = ["IDENTITY_FILE", "check_checkpoint_method", "prepare_output_dir", "run_identity"]
