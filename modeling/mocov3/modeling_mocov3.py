"""MoCo v3: a predictor on the online branch, an EMA target, symmetric InfoNCE over gathered keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput

from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp, mlp_dims
from ..common.losses import info_nce_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from ..common.momentum_pair import MomentumPairMixin
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


class MoCoV3ForPreTraining(MomentumPairMixin, MoCoV3PreTrainedModel):
    """MoCo v3 pretraining model; inputs are the two views of :func:`~hf_sslviews.views.two_view_transform`.

    ``forward(pixel_values_1, pixel_values_2, strong_pixel_values=None)``
    (:class:`~hf_sslviews.modeling.common.momentum_pair.MomentumPairMixin`) returns a
    :class:`MoCoV3PreTrainingOutput`.
    """

    output_class = MoCoV3PreTrainingOutput
    pair_loss_name = "contrastive_loss"

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

    def pair_loss(self, predictions, targets):
        """Symmetric InfoNCE of the queries against the other view's momentum keys, each scaled by 2*tau (moco/builder.py)."""
        (q1, q2), (k1, k2) = predictions, targets
        tau, gather = self.config.loss_temperature, self.config.gather_distributed
        return info_nce_loss(q1, k2, tau, True, gather) + info_nce_loss(q2, k1, tau, True, gather)


__all__ = ["MoCoV3ForPreTraining", "MoCoV3PreTrainedModel", "MoCoV3PreTrainingOutput"]
