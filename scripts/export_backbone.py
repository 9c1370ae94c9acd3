#!/usr/bin/env python
"""Export the backbone of a saved pretraining model, with its model card, in timm's Hub format.

    python scripts/export_backbone.py --model_name_or_path outputs/aps_tiny                # -> outputs/aps_tiny/backbone
    python scripts/export_backbone.py --model_name_or_path out/checkpoint-1000 --output_dir out/backbone-1000 \\
        --hub_model_id org/aps-vit-small

``run_pretrain.py`` exports the final model itself; this script exports an intermediate
``checkpoint-N`` or re-exports a run. The model is loaded with ``AutoModelForPreTraining`` (after
``import hf_sslviews``); the card's preset, data set and kNN results come from the run's
``run_args.json`` / ``results.json`` (kNN results only for the run's final model: a checkpoint was not
the model the run evaluated). The folder loads with plain ``AutoModel`` / timm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hf_sslviews.publish.export import export_run_backbone
from hf_sslviews.runs.arguments import parse_flags_or_json


@dataclass
class ExportArguments:
    model_name_or_path: str = field(metadata={"help": "A run_pretrain.py --output_dir or one of its checkpoint-N folders (the full pretraining model)."})
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Backbone folder to write. An earlier export there is replaced; a folder holding anything else is refused. Default: <model_name_or_path>/backbone."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace --output_dir even when it holds files an export does not write: they are moved aside to <output_dir>.replaced-<time>, not deleted."}
    )
    hub_model_id: Optional[str] = field(
        default=None, metadata={"help": "Repo id the model card's snippets name, e.g. org/aps-vit-small. Default: the existing card's id, else <method>-<backbone>."}
    )


def main(argv: Optional[list[str]] = None) -> Path:
    (args,) = parse_flags_or_json((ExportArguments,), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output_dir = export_run_backbone(args.model_name_or_path, args.output_dir, repo_id=args.hub_model_id, overwrite=args.overwrite_output_dir)
    print(f"backbone exported to {output_dir}")
    return output_dir


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
