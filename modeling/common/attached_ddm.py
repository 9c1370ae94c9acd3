"""CLSA's distribution-divergence term attached to a two-view objective without a queue.

CLSA (TPAMI, Sec. 4.5) shows the DDM term helps MoCo and BYOL as well: the strong views' queries
match the weak views' similarity distributions over the batch keys. MoCo v3 and BYOL share this
code; CLSA itself uses its memory bank (``queue_ddm_loss``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .losses import batch_keys_ddm_loss
from .losses.distribution_divergence import missing_strong_views_error
from .view_inputs import split_views


def attached_ddm_loss(
    model: torch.nn.Module,
    strong_pixel_values: Optional[torch.Tensor],
    weak_queries: Sequence[torch.Tensor],
    keys: Sequence[torch.Tensor],
) -> Optional[torch.Tensor]:
    """The DDM term of ``model`` (``None`` when ``config.ddm_weight`` is 0), unweighted.

    Args:
        model: a two-view model with ``backbone``, ``projector``, ``predictor`` and a config with
            ``ddm_weight``, ``ddm_temperature``, ``gather_distributed``.
        strong_pixel_values: ``[B, n, 3, h, w]`` strongly augmented views (or a list of ``[B, 3, h, w]``).
        weak_queries: ``[B, D]`` predictor outputs of the weak views (targets, no gradient taken).
        keys: ``[B, D]`` target-network keys of the weak views.

    Raises:
        ValueError: ``ddm_weight > 0`` and no strong views were given.
    """
    config = model.config
    if config.ddm_weight <= 0:
        return None
    if strong_pixel_values is None:
        raise missing_strong_views_error()
    strong = [model.predictor(model.projector(model.backbone(x))) for x in split_views(strong_pixel_values, "strong_pixel_values")]
    return batch_keys_ddm_loss(strong, weak_queries, keys, config.ddm_temperature, config.gather_distributed)
