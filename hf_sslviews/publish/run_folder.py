"""What a ``run_pretrain.py`` output folder holds: its kinds of folder, and the run's record.

Shared by the pretraining job (which writes the record), the export, the card rendering and the Hub
staging (which read it): a backbone folder (timm's Hub format), a full pretraining model (an
``sslviews_*`` config), a ``checkpoint-N`` inside a run, and :class:`RunRecord`, the run's
arguments (``run_args.json``) and results (``results.json``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..atomic import write_text_atomic
from ..modeling import is_method_model_type

CHECKPOINT_NAME = re.compile(r"checkpoint-\d+")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def is_backbone_folder(path: Path) -> bool:
    config = read_json(path / "config.json")
    return "architecture" in config and "model_type" not in config


def is_pretraining_folder(path: Path) -> bool:
    return is_method_model_type(read_json(path / "config.json").get("model_type"))


def check_not_inside(staging_dir: Path, output_dir: Path) -> None:
    """Refuse a folder to be written (staged, dry-run, export) that is the run folder or holds it."""
    staging, source = staging_dir.resolve(), output_dir.resolve()
    if staging == source or staging in source.parents:
        raise ValueError(f"the staging / dry-run folder {staging_dir} would replace the run folder {output_dir}: pick another folder")


ARGUMENTS_FILE = "run_args.json"
RESULTS_FILE = "results.json"


@dataclass
class RunRecord:
    """A run's script arguments and results, as its output folder keeps them.

    Attributes:
        arguments: ``{"model": ..., "data": ..., "eval": ...}``, the script's argument dataclasses as dicts.
        results: ``{"method", "preset", "train": metrics, "knn": ..., "knn_monitor": ..., "backbone_dir"}``.
    """

    arguments: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "RunRecord":
        """The record of a run folder, or of a ``checkpoint-N`` in one: the run's arguments, and no
        results (a checkpoint is not the model the run evaluated)."""
        folder = Path(folder)
        if CHECKPOINT_NAME.fullmatch(folder.name) and not (folder / ARGUMENTS_FILE).exists():
            return cls(arguments=read_json(folder.parent / ARGUMENTS_FILE))
        return cls(arguments=read_json(folder / ARGUMENTS_FILE), results=read_json(folder / RESULTS_FILE))

    def write(self, folder: str | os.PathLike) -> None:
        """Write both files, each whole or not at all."""
        write_text_atomic(Path(folder) / ARGUMENTS_FILE, json.dumps(self.arguments, indent=2, default=str) + "\n")
        write_text_atomic(Path(folder) / RESULTS_FILE, json.dumps(self.results, indent=2, default=str) + "\n")

    @property
    def data(self) -> dict[str, Any]:
        return self.arguments.get("data", {})

    @property
    def preset(self) -> Optional[str]:
        return self.arguments.get("model", {}).get("preset") or self.results.get("preset")

    @property
    def knn(self) -> Optional[dict]:
        return self.results.get("knn")

    @property
    def knn_k(self) -> int:
        return self.arguments.get("eval", {}).get("knn_k", 20)
