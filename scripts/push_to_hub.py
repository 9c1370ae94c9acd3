#!/usr/bin/env python
"""Push an existing run_pretrain.py output folder to the Hugging Face Hub.

    python scripts/push_to_hub.py --output_dir outputs/aps_tiny --hub_model_id org/aps-vit-tiny
    python scripts/push_to_hub.py --output_dir out --hub_model_id org/aps-vit-small \\
        --pretraining_hub_model_id org/aps-vit-small-pretraining      # also the full checkpoint
    python scripts/push_to_hub.py --output_dir out --hub_model_id org/aps-vit-small --dry_run_dir staged

``--hub_model_id`` receives the exported backbone (``<output_dir>/backbone``: config.json,
model.safetensors and its model card, re-rendered for that repo id), never the heads. The full
pretraining model goes to its own repo only with ``--pretraining_hub_model_id``; intermediate
``checkpoint-*`` folders, optimizer states and pickles are never uploaded. ``--dry_run_dir``
writes ``<dry_run_dir>/backbone`` (and ``<dry_run_dir>/pretraining``), exactly the folders that
would be uploaded, and uploads nothing. Arguments can also come from a JSON file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hf_sslviews.publish.hub import push_run
from hf_sslviews.runs.arguments import parse_flags_or_json


@dataclass
class PushArguments:
    output_dir: str = field(metadata={"help": "A run_pretrain.py --output_dir (its backbone/ folder is pushed), or an exported backbone folder."})
    hub_model_id: str = field(metadata={"help": "Repo of the backbone, e.g. org/aps-vit-small (created if missing)."})
    pretraining_hub_model_id: Optional[str] = field(
        default=None, metadata={"help": "Also push the full pretraining model (heads, target network) to this second repo, e.g. org/aps-vit-small-pretraining."}
    )
    private: bool = field(default=False, metadata={"help": "Create the repos private (an existing repo keeps its visibility)."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token with write access. Default: $HF_TOKEN or the token cached by `hf auth login`."})
    dry_run_dir: Optional[str] = field(
        default=None, metadata={"help": "Upload nothing: write <dry_run_dir>/backbone (and <dry_run_dir>/pretraining), exactly what each repo would receive."}
    )
    revision: Optional[str] = field(default=None, metadata={"help": "Branch to push to (created if missing). Default: main."})


def main(argv: Optional[list[str]] = None) -> dict:
    (args,) = parse_flags_or_json((PushArguments,), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pushed = push_run(
        args.output_dir, args.hub_model_id, pretraining_hub_model_id=args.pretraining_hub_model_id,
        token=args.hub_token, private=args.private, revision=args.revision, dry_run_dir=args.dry_run_dir,
    )
    for kind, result in pushed.items():
        where = f"dry run, nothing uploaded: {result}" if isinstance(result, Path) else getattr(result, "commit_url", result)
        print(f"{kind}: {where}")
    return pushed


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
