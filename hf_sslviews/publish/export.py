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

from timm.models._hub import save_for_hf

from .. import __version__
from ..atomic import atomic_directory


def _clean_config(config: dict) -> dict:
    # transformers' TimmWrapperModel passes num_classes=0 itself: a num_classes inside
    # model_args makes it fail with "got multiple values for keyword argument 'num_classes'".
    config.get("model_args", {}).pop("num_classes", None)
    pretrained_cfg = config.get("pretrained_cfg", {})
    # The source architecture's pretrained tag and license describe weights we did not use.
    pretrained_cfg.pop("tag", None)
    pretrained_cfg["license"] = "apache-2.0"
    return config


def export_backbone(model, output_dir: str | os.PathLike, model_card: Optional[str] = None) -> Path:
    """Write ``model``'s backbone to ``output_dir`` in timm's Hub format, atomically.

    Args:
        model: an ``<M>ForPreTraining`` (anything with ``.backbone.model`` and an
            :class:`~hf_sslviews.modeling.common.SSLConfig` ``.config``).
        output_dir: destination folder (replaced whole if it exists).
        model_card: optional README.md text written next to the weights.

    Returns:
        The path of the exported folder.
    """
    config = model.config
    timm_model = model.backbone.model
    data_config = dict(
        input_size=(3, config.image_size, config.image_size),
        mean=tuple(config.image_mean),
        std=tuple(config.image_std),
        interpolation="bicubic",
        crop_pct=1.0,
        crop_mode="center",
    )
    was_training = timm_model.training
    timm_model.eval()
    try:
        with atomic_directory(output_dir) as tmp:
            save_for_hf(timm_model, str(tmp), safe_serialization=True, data_config=data_config)
            config_path = tmp / "config.json"
            exported = _clean_config(json.loads(config_path.read_text()))
            exported["hf_sslviews"] = {"version": __version__, "method": config.model_type.removeprefix("sslviews_")}
            config_path.write_text(json.dumps(exported, indent=2) + "\n")
            if model_card is not None:
                (tmp / "README.md").write_text(model_card)
    finally:
        timm_model.train(was_training)
    return Path(output_dir)
