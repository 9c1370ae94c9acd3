"""Export the backbone of a pretraining model in timm's Hub format.

The exported folder (``config.json`` + ``model.safetensors``) loads, in a process that never
imports hf_sslviews, with ``AutoModel`` / ``AutoModelForImageClassification`` /
``AutoImageProcessor`` / ``pipeline("image-feature-extraction")`` (as transformers'
``TimmWrapperModel``) and with ``timm.create_model("local-dir:...", pretrained=True)`` or
``"hf-hub:org/name"``. Heads and target networks are not exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from huggingface_hub import ModelCard
from timm.models._hub import save_for_hf

from .. import __version__
from ..atomic import atomic_directory, claim_folder
from ..modeling import method_of
from .cards import card_repo_id, default_repo_id, render_run_card
from .loading import load_pretraining_model
from .run_folder import check_not_inside, is_pretraining_folder


def _clean_config(config: dict) -> dict:
    # transformers' TimmWrapperModel passes num_classes=0 itself: a num_classes inside
    # model_args makes it fail with "got multiple values for keyword argument 'num_classes'".
    config.get("model_args", {}).pop("num_classes", None)
    pretrained_cfg = config.get("pretrained_cfg", {})
    # The source architecture's pretrained tag and license describe weights we did not use.
    pretrained_cfg.pop("tag", None)
    pretrained_cfg["license"] = "apache-2.0"
    return config


def export_backbone(model, output_dir: str | os.PathLike, model_card: Optional[str] = None, overwrite: bool = False) -> Path:
    """Write ``model``'s backbone to ``output_dir`` in timm's Hub format, atomically.

    Args:
        model: an ``<M>ForPreTraining`` (anything with ``.backbone.model`` and an
            :class:`~hf_sslviews.modeling.common.SSLConfig` ``.config``).
        output_dir: destination folder, replaced whole when it holds an earlier export (or nothing);
            a folder with anything else is refused, or moved aside with ``overwrite``.
        model_card: optional README.md text written next to the weights.
        overwrite: move a folder that is not an export aside (``<name>.replaced-<time>``) instead of refusing.

    Returns:
        The path of the exported folder.
    """
    config = model.config
    timm_model = model.backbone.model
    data_config = config.export_data_config()
    was_training = timm_model.training
    timm_model.eval()
    try:
        with atomic_directory(output_dir, force=overwrite) as tmp:
            save_for_hf(timm_model, str(tmp), safe_serialization=True, data_config=data_config)
            config_path = tmp / "config.json"
            exported = _clean_config(json.loads(config_path.read_text()))
            exported["hf_sslviews"] = {"version": __version__, "method": method_of(config.model_type)}
            config_path.write_text(json.dumps(exported, indent=2) + "\n")
            if model_card is not None:
                (tmp / "README.md").write_text(model_card)
    finally:
        timm_model.train(was_training)
    return Path(output_dir)


def export_run_backbone(model_name_or_path: str | os.PathLike, output_dir: Optional[str | os.PathLike] = None, repo_id: Optional[str] = None,
                        overwrite: bool = False) -> Path:
    """Export the backbone of a saved run (or ``checkpoint-N``) with a rendered model card.

    Args:
        model_name_or_path: a ``run_pretrain.py`` output folder or one of its ``checkpoint-N``.
        output_dir: the backbone folder to write (an earlier export there is replaced; anything else
            refused unless ``overwrite``); default ``<model_name_or_path>/backbone``.
        repo_id: the repo id the card names; default: the id of the card already in ``output_dir``,
            else ``<method>-<backbone>``.
    """
    source = Path(model_name_or_path)
    output_dir = Path(output_dir) if output_dir is not None else source / "backbone"
    check_not_inside(output_dir, source)
    claim_folder(output_dir, force=overwrite)  # before minutes of loading: refuse a folder of the user's at once
    if not is_pretraining_folder(source):
        raise FileNotFoundError(f"{source} holds no hf_sslviews pretraining model (config.json with an sslviews_* model_type)")
    # Strict: an edited config.json or weights missing a part would export a partly random backbone.
    model = load_pretraining_model(source).eval()
    existing = (output_dir / "README.md").read_text() if (output_dir / "README.md").is_file() else None
    repo_id = repo_id or (card_repo_id(ModelCard(existing)) if existing else None) or default_repo_id(model.config)
    # A card in a backbone folder elsewhere may describe another run: keep its budget line only when it is this run's.
    same_run = existing is not None and output_dir.resolve() == (source / "backbone").resolve()
    card = render_run_card(model, source, repo_id, existing_card=existing if same_run else None)
    return export_backbone(model, output_dir, model_card=str(card), overwrite=overwrite)
