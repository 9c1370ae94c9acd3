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


# Training arguments a resumed run must keep: changing one mid-run gives a model that neither
# setting describes, and a card that states one value for the whole run. Not max_steps /
# num_train_epochs: extending a finished run is a resume that means what it says.
RESUME_INVARIANT_ARGUMENTS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "world_size", "seed",
    "learning_rate", "weight_decay", "lr_scheduler_type", "optim", "optim_recipe",
)


def run_identity(method: str, config, data: dict[str, Any], training_args: Any = None) -> dict[str, Any]:
    """What makes two runs the same run: the method, its model config, the training data and the
    training arguments of :data:`RESUME_INVARIANT_ARGUMENTS` (batch, seed, optimiser)."""
    fields = {key: value for key, value in config.to_diff_dict().items() if key not in _VOLATILE_CONFIG_KEYS and not key.startswith("_")}
    identity = {"method": method, "config": json.loads(json.dumps(fields, default=str)), "data": data}
    if training_args is not None:
        identity["training"] = json.loads(json.dumps({name: getattr(training_args, name, None) for name in RESUME_INVARIANT_ARGUMENTS}, default=str))
    return identity


def _identity_changes(previous: dict, identity: dict) -> str:
    """What differs between a recorded run identity and this run's, ``""`` when nothing does.

    ``identity`` is compared on what ``previous`` records: a run folder written before the training
    arguments were part of the identity still resumes."""
    if "training" not in previous:
        identity = {key: value for key, value in identity.items() if key != "training"}
    else:
        identity = {**identity, "training": {key: identity.get("training", {}).get(key) for key in previous["training"]}}
    return "; ".join(_differences(previous, identity)[:6])


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
        changes = _identity_changes(previous, identity) if previous is not None else ""
        if changes:
            raise ValueError(
                f"--resume_from_checkpoint: {folder} holds another run ({changes}). Resume with the arguments of that run, "
                f"or start this one in another --output_dir."
            )
    elif occupant is not None:
        if not overwrite:
            checkpoints = any(path.is_dir() for path in folder.glob("checkpoint-*"))
            resume_hint = "Pass --resume_from_checkpoint last to continue it, " if checkpoints else "It saved no checkpoint to resume from: pass "
            raise ValueError(
                f"--output_dir {folder} already holds a run ({occupant}). {resume_hint}"
                "--overwrite_output_dir to replace it, or another --output_dir."
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
    if saved == "timm_wrapper":
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} is an exported backbone, not a checkpoint: it has no heads, optimizer or "
            f"step to resume. Resume from a run's checkpoint-N folder, or start a new run from these weights with "
            f"--backbone local-dir:{checkpoint}"
        )
    if saved != model_type:
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} holds a {saved} model, but this run builds a {model_type}; "
            f"resume with the --method / --preset that wrote it"
        )


def check_resumed_run(checkpoint: str | os.PathLike, identity: dict[str, Any]) -> None:
    """A checkpoint of another run's folder must come from a run like this one (see :func:`run_identity`)."""
    identity_file = Path(checkpoint).parent / IDENTITY_FILE
    if not identity_file.is_file():
        return
    changes = _identity_changes(json.loads(identity_file.read_text()), identity)
    if changes:
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} belongs to another run ({changes}). Resume with the arguments of that run, "
            f"or start this one without --resume_from_checkpoint."
        )


__all__ = ["IDENTITY_FILE", "check_resumed_run", "RESUME_INVARIANT_ARGUMENTS", "check_checkpoint_method", "prepare_output_dir", "run_identity"]
