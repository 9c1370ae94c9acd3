"""CLSA: MoCo v2 with a queue, plus DDM between strongly and weakly augmented views.

Wang & Qi, "Contrastive Learning with Stronger Augmentations", TPAMI 2022 (arXiv 2104.07713),
model_cards/clsa.md. Per image: one key view (momentum encoder), weak views (plain MoCo v2
positives) and strong views (RandAugment on top; matched in distribution only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from ..common import distributed
from ..common.backbone import TimmBackbone
from ..common.heads import build_mocov2_head
from ..common.losses.distribution_divergence import ddm_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from ..common.queue import KeyQueue
from ..common.shuffle_bn import has_batch_norm, shuffle_bn_forward
from ..common.view_inputs import Views, split_views
from .configuration_clsa import CLSAConfig


@dataclass
class CLSAPreTrainingOutput(ModelOutput):
    """Output of :class:`CLSAForPreTraining`.

    Args:
        loss: scalar total ``sum_i L_C(weak_i) + ddm_weight * sum_(i,j) L_D(strong_j | weak_i)``.
        contrastive_loss: the contrastive sum over weak views.
        ddm_loss: the DDM sum (before ``ddm_weight``); 0 without strong views.
        weak_embeddings: tuple over resolutions of ``[B, D]`` backbone features of the weak views.
        strong_embeddings: tuple over resolutions of ``[B, D]`` backbone features of the strong views.
        key_embeddings: ``[B, projector_dim]`` normalised keys of the momentum encoder (when the
            loss is computed).
    """

    loss: Optional[torch.FloatTensor] = None
    contrastive_loss: Optional[torch.FloatTensor] = None
    ddm_loss: Optional[torch.FloatTensor] = None
    weak_embeddings: Optional[tuple[torch.FloatTensor, ...]] = None
    strong_embeddings: Optional[tuple[torch.FloatTensor, ...]] = None
    key_embeddings: Optional[torch.FloatTensor] = None


class CLSAPreTrainedModel(SSLPreTrainedModel):
    config_class = CLSAConfig
    main_input_name = "key_pixel_values"


class CLSAForPreTraining(CLSAPreTrainedModel):
    """CLSA pretraining model (CLSA-Single or CLSA-Multi, set by the views).

    Inputs are the views of :class:`~hf_sslviews.views.clsa.CLSAViewTransform`. The key
    encoder is an EMA of the online one, updated by
    :class:`~hf_sslviews.training.callbacks.MomentumCallback` after every optimizer step, i.e. before the
    next key pass (MoCo v2 updates at the start of ``forward``: the same sequence of weights).
    """

    uses_shuffle_bn = True  # MoCo v2 keys: per-process BatchNorm statistics on shuffled sub-batches
    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: CLSAConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        width = self.backbone.num_features
        hidden = config.projector_hidden_dim or width
        self.projector = build_mocov2_head(width, hidden, config.projector_dim)
        self.target_backbone = self.backbone.make_target()
        self.target_projector = frozen_copy(self.projector)
        self.queue = KeyQueue(config.queue_size, config.projector_dim)
        self.post_init()

    def _query(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(pixel_values)
        return features, F.normalize(self.projector(features), dim=1)

    def _key_encoder(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(pixel_values))

    @torch.no_grad()
    def encode_keys(self, key_pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, projector_dim]`` normalised keys, through shuffle-BN."""
        splits = self.config.shuffle_bn_splits if has_batch_norm(self.target_backbone) or has_batch_norm(self.target_projector) else 1
        return F.normalize(shuffle_bn_forward(self._key_encoder, key_pixel_values, num_splits=splits), dim=1)

    def forward(
        self,
        key_pixel_values: torch.Tensor,
        weak_pixel_values: Views,
        strong_pixel_values: Optional[Views] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> CLSAPreTrainingOutput:
        """
        Args:
            key_pixel_values: ``[N, 3, S, S]`` key views (momentum encoder).
            weak_pixel_values: list over resolutions of ``[N, 3, s, s]`` weak views (or one tensor).
            strong_pixel_values: list over resolutions of ``[N, 3, s, s]`` strong views (or one
                tensor, or ``None`` for MoCo v2 alone).
            return_loss: compute the loss (lets the Trainer report ``eval_loss``). The queue is
                updated only in training mode, so evaluation leaves it as it was.
        """
        weak, strong = split_views(weak_pixel_values, "weak_pixel_values"), split_views(strong_pixel_values, "strong_pixel_values")
        if not weak:
            raise ValueError("CLSA needs at least one weak view (weak_pixel_values)")
        # One forward per resolution: each gets its own BN statistics (paper, section 3.3).
        weak_h, weak_q = zip(*(self._query(x) for x in weak))
        strong_h, strong_q = zip(*(self._query(x) for x in strong)) if strong else ((), ())
        loss = contrastive = divergence = keys = None
        if return_loss:
            config = self.config
            keys = self.encode_keys(key_pixel_values)
            all_keys = distributed.gather(keys) if config.gather_distributed else keys
            bank = self.queue.bank(all_keys)  # [gathered batch keys ; queue]
            tau, n = config.loss_temperature, keys.shape[0]
            # Labels point at this process's own keys in the gathered batch (global rank; the
            # official code used the local GPU index, wrong on several nodes). The other batch
            # keys are extra negatives next to the queue.
            labels = torch.arange(n, device=keys.device) + (distributed.label_offset(n) if config.gather_distributed else 0)
            contrastive = sum(F.cross_entropy(q @ bank.T / tau, labels) for q in weak_q)
            if config.ddm_pairing == "index":
                if len(strong_q) > len(weak_q):
                    raise ValueError(f"ddm_pairing='index' needs a weak view per strong view, got {len(weak_q)} weak and {len(strong_q)} strong")
                pairs = list(zip(strong_q, weak_q))
            else:
                pairs = [(s, w) for w in weak_q for s in strong_q]
            # L = sum_i L_C + beta * sum_i sum_j L_D: sums over views, not means (model_cards/clsa.md).
            divergence = sum((ddm_loss(s, w, bank, tau) for s, w in pairs), keys.new_zeros(()))
            loss = contrastive + config.ddm_weight * divergence
            if self.training:
                self.queue.enqueue(all_keys)
        return CLSAPreTrainingOutput(
            loss=loss,
            contrastive_loss=contrastive,
            ddm_loss=divergence,
            weak_embeddings=tuple(weak_h),
            strong_embeddings=tuple(strong_h),
            key_embeddings=keys,
        )


__all__ = ["CLSAForPreTraining", "CLSAPreTrainedModel", "CLSAPreTrainingOutput"]
