"""BYOL: an online network with a predictor regresses an EMA target's projection of the other view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput

from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp
from ..common.losses import byol_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from ..common.momentum_pair import MomentumPairMixin
from .configuration_byol import BYOLConfig


@dataclass
class BYOLPreTrainingOutput(ModelOutput):
    """Output of :class:`BYOLForPreTraining`.

    Args:
        loss: scalar, ``regression_loss + ddm_weight * ddm_loss``.
        regression_loss: ``L(p1, z2') + L(p2, z1')`` with ``L = 2 - 2 cos`` (paper eq. 2, symmetrised).
        ddm_loss: CLSA's distribution-divergence term on the strong views (when ``ddm_weight > 0``).
        embeddings_1: ``[B, D]`` backbone features of view 1.
        embeddings_2: ``[B, D]`` backbone features of view 2.
    """

    loss: Optional[torch.FloatTensor] = None
    regression_loss: Optional[torch.FloatTensor] = None
    ddm_loss: Optional[torch.FloatTensor] = None
    embeddings_1: Optional[torch.FloatTensor] = None
    embeddings_2: Optional[torch.FloatTensor] = None


class BYOLPreTrainedModel(SSLPreTrainedModel):
    config_class = BYOLConfig


class BYOLForPreTraining(MomentumPairMixin, BYOLPreTrainedModel):
    """BYOL pretraining model; inputs are the two views of :func:`~hf_sslviews.views.two_view_transform`.

    ``forward(pixel_values_1, pixel_values_2, strong_pixel_values=None)``
    (:class:`~hf_sslviews.modeling.common.momentum_pair.MomentumPairMixin`) returns a
    :class:`BYOLPreTrainingOutput`.
    """

    output_class = BYOLPreTrainingOutput
    pair_loss_name = "regression_loss"

    def __init__(self, config: BYOLConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        dims = [self.backbone.num_features, config.projector_hidden_dim, config.projector_dim]
        self.projector = build_mlp(dims, hidden_bias=True, last_bias=True)
        self.predictor = build_mlp([config.projector_dim, config.projector_hidden_dim, config.projector_dim], hidden_bias=True, last_bias=True)
        self.target_backbone = self.backbone.make_target()
        self.target_projector = frozen_copy(self.projector)
        self.post_init()

    def pair_loss(self, predictions, targets):
        """Each view's prediction regresses the other view's target: ``L(p1, z2') + L(p2, z1')``."""
        (p1, p2), (z1, z2) = predictions, targets
        return byol_loss(p1, z2) + byol_loss(p2, z1)


__all__ = ["BYOLForPreTraining", "BYOLPreTrainedModel", "BYOLPreTrainingOutput"]
