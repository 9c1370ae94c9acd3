"""Start pretraining from existing backbone weights (domain-adaptive pretraining).

Three spellings reach the same place:

- ``--backbone hf-hub:org/name``: a timm-format Hub repo (an export of this library, or any of
  ``timm/...``); its ``config.json`` gives the architecture and ``model_args``.
- ``--backbone local-dir:/path/to/folder``: the same from a local folder (an ``export_backbone``
  output, or ``save_for_hf``), which is also how it is tested offline.
- ``--backbone_kwargs '{"pretrained": true}'``: timm's own pretrained weights of a timm name.

The weights are a property of the *run*, not of the model: the config keeps the plain timm
architecture and its arguments, plus ``base_model`` (where the weights came from, for the model
card), so a saved pretraining checkpoint reloads with ``from_pretrained`` without downloading
anything again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import timm
from timm.models import _hub as timm_hub

from ..safetensors_files import check_safetensors_files

logger = logging.getLogger(__name__)

SOURCE_PREFIXES = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class StartingWeights:
    """Where the backbone's first weights come from.

    Attributes:
        source: what ``timm.create_model(source, pretrained=True)`` loads (``hf-hub:...``,
            ``local-dir:...`` or a timm name).
        architecture: the timm architecture name the config records.
        model_args: the architecture's ``timm.create_model`` arguments the source defines.
        base_model: the Hub id of the weights, for the card's ``base_model:`` (``None`` for a
            local folder, which has no id others could resolve).
    """

    source: str
    architecture: str
    model_args: dict
    base_model: Optional[str]


def starting_weights(backbone: str, backbone_kwargs: Optional[dict[str, Any]]) -> Optional[StartingWeights]:
    """The starting weights a ``--backbone`` / ``--backbone_kwargs`` pair asks for, or ``None`` for a random start."""
    kwargs = dict(backbone_kwargs or {})
    if backbone.startswith("hf-hub:"):
        repo_id = backbone.removeprefix("hf-hub:")
        pretrained_cfg, architecture, model_args = timm_hub.load_model_config_from_hf(repo_id)
        return StartingWeights(backbone, architecture, dict(model_args or {}), repo_id)
    if backbone.startswith("local-dir:"):
        check_safetensors_files(backbone.removeprefix("local-dir:"))
        pretrained_cfg, architecture, model_args = timm_hub.load_model_config_from_path(backbone.removeprefix("local-dir:"))
        return StartingWeights(backbone, architecture, dict(model_args or {}), None)
    if kwargs.get("pretrained"):
        if not timm.is_model_pretrained(backbone):
            raise ValueError(f"timm has no pretrained weights for {backbone!r}; pick a name from timm.list_models({backbone.split('_')[0] + '*'!r}, pretrained=True)")
        cfg = timm.models.get_pretrained_cfg(backbone)
        return StartingWeights(backbone, backbone, {}, getattr(cfg, "hf_hub_id", None) if cfg is not None else None)
    return None


def load_starting_weights(model, weights: StartingWeights) -> None:
    """Copy ``weights`` into ``model``'s backbone, and into its target network if it has one.

    The timm model is built from the source with the config's own arguments (so a ``img_size``
    or ``drop_path_rate`` the run chose still applies; timm resamples position embeddings to a
    new image size), and its state must fit the backbone exactly.
    """
    model_args = {key: value for key, value in (model.config.backbone_kwargs or {}).items() if key != "pretrained"}
    source = timm.create_model(weights.source, pretrained=True, num_classes=0, **model_args)
    missing, unexpected = model.backbone.model.load_state_dict(source.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights of {weights.source} do not fit the backbone {model.config.backbone} {model_args}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}; drop the --backbone_kwargs that change the architecture"
        )
    if getattr(model, "has_momentum_encoder", False):
        model.update_momentum(0.0)  # the target network starts as a copy of the online one, as at a random start
    logger.info("backbone initialised from %s", weights.source)


__all__ = ["SOURCE_PREFIXES", "StartingWeights", "load_starting_weights", "starting_weights"]
