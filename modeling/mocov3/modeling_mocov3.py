"""MoCo v3: a predictor on the online branch, an EMA target, symmetric InfoNCE over gathered keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput

from ..common.attached_ddm import attached_ddm_loss
from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp, mlp_dims
from ..common.losses import info_nce_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from .configuration_mocov3 import MoCoV3Config


@dataclass
class MoCoV3PreTrainingOutput(ModelOutput):
    """Output of :class:`MoCoV3ForPreTraining`.

    Args:
        loss: scalar total loss, ``contrastive_loss + ddm_weight * ddm_loss``.
        contrastive_loss: ``ctr(q1, k2) + ctr(q2, k1)``.
        ddm_loss: CLSA's distribution-divergence term on the strong views (when ``ddm_weight > 0``).
        embeddings_1: ``[B, D]`` backbone features of view 1.
        embeddings_2: ``[B, D]`` backbone features of view 2.
    """

    loss: Optional[torch.FloatTensor] = None
    contrastive_loss: Optional[torch.FloatTensor] = None
    ddm_loss: Optional[torch.FloatTensor] = None
    embeddings_1: Optional[torch.FloatTensor] = None
    embeddings_2: Optional[torch.FloatTensor] = None


class MoCoV3PreTrainedModel(SSLPreTrainedModel):
    config_class = MoCoV3Config


class MoCoV3ForPreTraining(MoCoV3PreTrainedModel):
    """MoCo v3 pretraining model.

    Inputs are the two views of :func:`~hf_sslviews.views.two_view_transform`.
    """

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: MoCoV3Config):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        dims = mlp_dims(self.backbone.num_features, config.projector_hidden_dim, config.projector_dim, config.projector_num_layers)
        self.projector = build_mlp(dims, last_norm="bn_noaffine")
        pred_dims = mlp_dims(config.projector_dim, config.projector_hidden_dim, config.projector_dim, config.predictor_num_layers)
        self.predictor = build_mlp(pred_dims, last_norm="bn_noaffine" if config.predictor_last_bn else "none")
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
    ) -> MoCoV3PreTrainingOutput:
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` first views.
            pixel_values_2: ``[B, 3, H, W]`` second views.
            strong_pixel_values: ``[B, n, 3, h, w]`` strongly augmented views, used by the DDM
                term when ``config.ddm_weight > 0``.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        h1, h2 = self.backbone(pixel_values_1), self.backbone(pixel_values_2)
        q1, q2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        if not return_loss:
            return MoCoV3PreTrainingOutput(embeddings_1=h1, embeddings_2=h2)
        with torch.no_grad():
            k1 = self.target_projector(self.target_backbone(pixel_values_1))
            k2 = self.target_projector(self.target_backbone(pixel_values_2))
        config = self.config
        tau, gather = config.loss_temperature, config.gather_distributed
        # Symmetric InfoNCE, each scaled by 2*tau (moco/builder.py).
        contrastive = info_nce_loss(q1, k2, tau, True, gather) + info_nce_loss(q2, k1, tau, True, gather)
        ddm = attached_ddm_loss(self, strong_pixel_values, [q1, q2], [k1, k2])
        loss = contrastive if ddm is None else contrastive + config.ddm_weight * ddm
        return MoCoV3PreTrainingOutput(loss=loss, contrastive_loss=contrastive, ddm_loss=ddm, embeddings_1=h1, embeddings_2=h2)


__all__ = ["MoCoV3ForPreTraining", "MoCoV3PreTrainedModel", "MoCoV3PreTrainingOutput"]
