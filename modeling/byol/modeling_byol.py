"""BYOL: an online network with a predictor regresses an EMA target's projection of the other view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput

from ..common.attached_ddm import attached_ddm_loss
from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp
from ..common.losses import byol_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
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


class BYOLForPreTraining(BYOLPreTrainedModel):
    """BYOL pretraining model; inputs are the two views of :func:`~hf_sslviews.views.two_view_transform`."""

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: BYOLConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        dims = [self.backbone.num_features, config.projector_hidden_dim, config.projector_dim]
        self.projector = build_mlp(dims, hidden_bias=True, last_bias=True)
        self.predictor = build_mlp([config.projector_dim, config.projector_hidden_dim, config.projector_dim], hidden_bias=True, last_bias=True)
        self.target_backbone = self.backbone.make_target()
        self.target_projector = frozen_copy(self.projector)
        self.post_init()

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        strong_pixel_values: Optional[torch.Tensor] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> BYOLPreTrainingOutput:
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` first views.
            pixel_values_2: ``[B, 3, H, W]`` second views.
            strong_pixel_values: ``[B, n, 3, h, w]`` strongly augmented views, used by the DDM
                term when ``config.ddm_weight > 0``.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        h1, h2 = self.backbone(pixel_values_1), self.backbone(pixel_values_2)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        if not return_loss:
            return BYOLPreTrainingOutput(embeddings_1=h1, embeddings_2=h2)
        with torch.no_grad():
            z1 = self.target_projector(self.target_backbone(pixel_values_1))
            z2 = self.target_projector(self.target_backbone(pixel_values_2))
        regression = byol_loss(p1, z2) + byol_loss(p2, z1)
        ddm = attached_ddm_loss(self, strong_pixel_values, [p1, p2], [z1, z2])
        loss = regression if ddm is None else regression + self.config.ddm_weight * ddm
        return BYOLPreTrainingOutput(loss=loss, regression_loss=regression, ddm_loss=ddm, embeddings_1=h1, embeddings_2=h2)


__all__ = ["BYOLForPreTraining", "BYOLPreTrainedModel", "BYOLPreTrainingOutput"]
