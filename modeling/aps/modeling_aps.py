"""APS: a ViT over asymmetrically sampled patch subsets, symmetric InfoNCE against stop-gradient keys.

Per optimizer step (model_cards/aps.md), with ``k`` the chunk of the repeated-batch schedule::

    h1 = vit(x1[kept patches of chunk k of view 1])      h2 = vit(x2[... of view 2])
    z1, z2 = projector(h1), projector(h2)
    p1, p2 = predictor(z1), predictor(z2)
    loss = CE(nrm(p1) @ gather(nrm(sg z2)).T / tau, arange(N) + rank * N) + (1 <-> 2)

The keys ``sg z`` come from the same encoder (the released code has no momentum encoder); with
``use_momentum_encoder`` they come from an EMA copy of backbone and projector instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from transformers.utils import ModelOutput

from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp
from ..common.losses import info_nce_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from .configuration_aps import APSConfig


@dataclass
class APSPreTrainingOutput(ModelOutput):
    """Output of :class:`APSForPreTraining`.

    Args:
        loss: scalar total loss, ``ctr(p1, sg z2) + ctr(p2, sg z1)``.
        contrastive_loss: the same sum, logged as a term.
        embeddings_1: ``[B, D]`` backbone (CLS) features of view 1's kept patches.
        embeddings_2: ``[B, D]`` backbone (CLS) features of view 2's kept patches.
    """

    loss: Optional[torch.FloatTensor] = None
    contrastive_loss: Optional[torch.FloatTensor] = None
    embeddings_1: Optional[torch.FloatTensor] = None
    embeddings_2: Optional[torch.FloatTensor] = None


def select_chunk(token_indices: torch.Tensor, chunk_index: Union[int, torch.Tensor] = 0) -> torch.Tensor:
    """The patch indices of one chunk per image.

    Args:
        token_indices: ``int64 [B, K, n]`` (K chunks per image) or ``[B, n]`` (one chunk).
        chunk_index: the chunk to use: an int, a 0-d tensor, or a ``[B]`` tensor (one per image).

    Returns:
        ``int64 [B, n]``.

    Raises:
        ValueError: wrong rank of ``token_indices`` or ``chunk_index`` outside ``0..K-1``.
    """
    if token_indices.ndim == 2:
        return token_indices
    if token_indices.ndim != 3:
        raise ValueError(f"token_indices must have shape [B, K, n] or [B, n], got {tuple(token_indices.shape)}")
    batch, num_chunks = token_indices.shape[:2]
    if isinstance(chunk_index, int):  # the Trainer's usual case: no tensor, no device sync
        if not 0 <= chunk_index < num_chunks:
            raise ValueError(f"chunk_index must lie in 0..{num_chunks - 1} (the views made {num_chunks} chunks), got {chunk_index}")
        return token_indices[:, chunk_index]
    index = torch.as_tensor(chunk_index, device=token_indices.device).long().reshape(-1)
    if index.numel() not in (1, batch):
        raise ValueError(f"chunk_index must be one integer or one per image ({batch}), got {index.numel()} values")
    if int(index.min()) < 0 or int(index.max()) >= num_chunks:
        raise ValueError(f"chunk_index must lie in 0..{num_chunks - 1} (the views made {num_chunks} chunks), got {index.tolist()}")
    if index.numel() == 1:
        return token_indices[:, int(index)]
    return token_indices[torch.arange(batch, device=token_indices.device), index]


class APSPreTrainedModel(SSLPreTrainedModel):
    config_class = APSConfig


class APSForPreTraining(APSPreTrainedModel):
    """APS pretraining model.

    Inputs are the outputs of :class:`~hf_sslviews.views.aps.APSViewTransform`, collated, plus
    the ``chunk_index`` the Trainer's repeated-batch schedule adds (each loaded batch is used for
    ``K`` optimizer steps, one per chunk).

    Raises:
        ValueError: if the backbone is not a timm ViT (APS feeds a subset of patch tokens).
    """

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: APSConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        if not self.backbone.is_vit:
            raise ValueError(
                f"APS needs a Vision Transformer backbone (it feeds the encoder a subset of patch tokens), "
                f"but {config.backbone!r} is not one; use a timm ViT such as 'vit_small_patch16_224' "
                f"(CIFAR: backbone_kwargs={{'img_size': 32, 'patch_size': 2}})"
            )
        dim, hidden, out = self.backbone.num_features, config.projector_hidden_dim, config.projector_dim
        self.projector = build_mlp([dim, hidden, hidden, out], last_norm="bn_noaffine")
        pred_hidden = config.predictor_hidden_dim
        self.predictor = build_mlp([out, pred_hidden, pred_hidden, out], last_norm="bn_noaffine")
        if config.use_momentum_encoder:
            self.target_backbone = self.backbone.make_target()
            self.target_projector = frozen_copy(self.projector)
        self.post_init()

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        token_indices_1: torch.Tensor,
        token_indices_2: torch.Tensor,
        chunk_index: Union[int, torch.Tensor] = 0,
        crop_boxes: Optional[torch.Tensor] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> APSPreTrainingOutput:
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` view-1 crops (sparse sampling).
            pixel_values_2: ``[B, 3, H, W]`` view-2 crops (selective sampling).
            token_indices_1: ``int64 [B, K, n]`` (or ``[B, n]``) row-major patch indices kept in view 1.
            token_indices_2: ``int64 [B, K, n]`` (or ``[B, n]``) patch indices kept in view 2.
            chunk_index: which of the K chunks this step uses (int, 0-d or ``[B]`` tensor); the
                Trainer's repeated-batch schedule sets it, 0 otherwise.
            crop_boxes: ``float32 [B, 2, 5]`` crop boxes; accepted for visualisation, unused.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        tokens_1 = select_chunk(token_indices_1, chunk_index)
        tokens_2 = select_chunk(token_indices_2, chunk_index)
        h1 = self.backbone.forward_tokens(pixel_values_1, tokens_1)
        h2 = self.backbone.forward_tokens(pixel_values_2, tokens_2)
        z1, z2 = self.projector(h1), self.projector(h2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = None
        if return_loss:
            if self.config.use_momentum_encoder:
                with torch.no_grad():
                    k1 = self.target_projector(self.target_backbone.forward_tokens(pixel_values_1, tokens_1))
                    k2 = self.target_projector(self.target_backbone.forward_tokens(pixel_values_2, tokens_2))
            else:
                # Stop-gradient keys from the same forward pass (the released code has no
                # momentum encoder). Detach explicitly: on one process gather() returns its input.
                k1, k2 = z1.detach(), z2.detach()
            tau, gather = self.config.loss_temperature, self.config.gather_distributed
            # Symmetric InfoNCE at tau = 0.1 without MoCo v3's 2*tau factor (model_cards/aps.md).
            loss = info_nce_loss(p1, k2, tau, False, gather) + info_nce_loss(p2, k1, tau, False, gather)
        return APSPreTrainingOutput(loss=loss, contrastive_loss=loss, embeddings_1=h1, embeddings_2=h2)


__all__ = ["APSForPreTraining", "APSPreTrainedModel", "APSPreTrainingOutput", "select_chunk"]
