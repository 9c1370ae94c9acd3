"""RepCo: MoCo v2 plus patch-level pairs replenished from the same image (a reconstruction).

RepCo (Neural Networks 168, 2023) has no public code or method text; its abstract says random
crops can give semantically inconsistent positives and adds, within one image, "similar but
distant" patches as extra positives and "dissimilar but adjacent" patches as extra negatives.
This module is the reconstruction described in model_cards/repco.md (all patch-level choices are this
library's, see :class:`RepCoConfig` and ``model_cards/repco.md``):

- global term: symmetrised MoCo v2, ``(L(q1, k2) + L(q2, k1)) / 2`` with
  ``L(q, k) = CE([q.k | q.queue] / tau, 0)``, keys from the momentum encoder (shuffle-BN),
  the queue fed with both views' keys;
- patch term, for each view ``v`` separately ("from the same image"): query cells are the online
  dense embeddings of ``v``; their positives / negatives are chosen on the momentum features of
  the *same* view ``v`` (no gradient) and taken from the momentum dense embeddings of ``v``;
  multi-positive InfoNCE over cells (:func:`~.pairs.multi_positive_info_nce`), averaged over the
  two views;
- ``loss = global + mu * patch``, ``mu`` 0 until ``patch_loss_start_step`` optimizer steps.
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
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from ..common.queue import KeyQueue
from ..common.shuffle_bn import has_batch_norm, shuffle_bn_forward
from .configuration_repco import RepCoConfig
from .pairs import multi_positive_info_nce, select_patch_pairs


@dataclass
class RepCoPreTrainingOutput(ModelOutput):
    """Output of :class:`RepCoForPreTraining`.

    Args:
        loss: scalar total loss ``global_loss + mu * patch_loss`` (mu is 0 before
            ``patch_loss_start_step``).
        global_loss: symmetrised MoCo v2 InfoNCE against the queue (mean of both directions).
        patch_loss: multi-positive patch InfoNCE, mean over both views (0 when the patch term is
            off or no cell had both a positive and a negative).
        patch_valid_fraction: fraction of cells (both views) that had at least one positive and
            one negative, i.e. that entered ``patch_loss`` (a monitor for the selection rules).
        embeddings_1: ``[B, D]`` pooled backbone features of view 1.
        embeddings_2: ``[B, D]`` pooled backbone features of view 2.
        dense_embeddings_1: ``[B, h*w, dense_dim]`` online dense embeddings of view 1 (row-major
            cells of the backbone's final grid); ``None`` when the patch term is off.
        dense_embeddings_2: the same for view 2.
    """

    loss: Optional[torch.FloatTensor] = None
    global_loss: Optional[torch.FloatTensor] = None
    patch_loss: Optional[torch.FloatTensor] = None
    patch_valid_fraction: Optional[torch.FloatTensor] = None
    embeddings_1: Optional[torch.FloatTensor] = None
    embeddings_2: Optional[torch.FloatTensor] = None
    dense_embeddings_1: Optional[torch.FloatTensor] = None
    dense_embeddings_2: Optional[torch.FloatTensor] = None


def pooled_and_cells(backbone: TimmBackbone, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """One trunk pass giving both the pooled feature and the final feature grid.

    ``TimmBackbone.forward`` and ``forward_dense`` would each run the trunk; RepCo needs both.

    Returns:
        ``(pooled [B, D], cells [B, h*w, D], (h, w))``: the pooled output exactly as
        ``backbone(pixel_values)`` (CLS token / global pool), and the grid as
        ``backbone.forward_dense`` (ViT patch tokens / CNN map), row-major.
    """
    model = backbone.model
    features = model.forward_features(pixel_values)
    pooled = model.forward_head(features, pre_logits=True)
    if backbone.is_vit:
        cells = features[:, model.num_prefix_tokens:]
        grid = (pixel_values.shape[-2] // backbone.patch_size, pixel_values.shape[-1] // backbone.patch_size)
    else:
        grid = (features.shape[-2], features.shape[-1])
        cells = features.flatten(2).transpose(1, 2)
    return pooled, cells, grid


def moco_queue_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: ``CE([q.k_+ | q.queue] / tau, 0)`` (He et al. 2020, Algorithm 1).

    Args:
        query: ``[N, D]`` unit-norm queries (gradient flows).
        key: ``[N, D]`` unit-norm positive keys (no gradient).
        queue: ``[K, D]`` unit-norm negatives (a detached copy: the queue is overwritten after).
        temperature: tau.
    """
    positive = (query * key).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, query @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))


class RepCoPreTrainedModel(SSLPreTrainedModel):
    config_class = RepCoConfig


class RepCoForPreTraining(RepCoPreTrainedModel):
    """RepCo pretraining model (reconstruction; see the module docstring).

    Inputs are the MoCo v2 pair of views (``pixel_values_1``, ``pixel_values_2``). The key
    encoder (backbone, global head, dense head) is an EMA of the online one, updated by
    :class:`~hf_sslviews.training.callbacks.MomentumCallback` after every optimizer step; the same call
    advances the ``optimizer_steps`` buffer that gates the patch loss's warm-up.

    Works with any timm backbone whose final features form a grid: CNNs (the C5 map) and ViTs
    (the patch tokens).
    """

    uses_shuffle_bn = True  # MoCo v2 keys: per-process BatchNorm statistics on shuffled sub-batches
    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"), ("target_dense_head", "dense_head"))

    def __init__(self, config: RepCoConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        width = self.backbone.num_features
        self.projector = build_mocov2_head(width, config.projector_hidden_dim, config.projector_dim)
        self.target_backbone = self.backbone.make_target()
        self.target_projector = frozen_copy(self.projector)
        # mu = 0 is plain symmetrised MoCo v2: no dense head at all (no parameters, no compute).
        self.patch_enabled = config.patch_loss_weight > 0
        if self.patch_enabled:
            self.dense_head = build_mocov2_head(width, config.dense_hidden_dim, config.dense_dim)
            self.target_dense_head = frozen_copy(self.dense_head)
        else:
            self.dense_head = self.target_dense_head = None
        self.queue = KeyQueue(config.queue_size, config.projector_dim)
        # Optimizer steps taken (advanced by update_momentum); persistent, so resume keeps it.
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.long))
        self.post_init()

    @torch.no_grad()
    def update_momentum(self, momentum: float) -> None:
        """EMA step of the key encoder; also counts one optimizer step (patch-loss warm-up)."""
        super().update_momentum(momentum)
        self.optimizer_steps += 1

    @property
    def patch_loss_active(self) -> bool:
        """Whether the patch loss counts now (``mu > 0`` and the warm-up is over)."""
        return self.patch_enabled and int(self.optimizer_steps) >= self.config.patch_loss_start_step

    def _packed_key_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # shuffle_bn_forward shuffles and un-shuffles one tensor per image: pack the pooled
        # feature in front of the cells (both have the backbone's width).
        pooled, cells, _ = pooled_and_cells(self.target_backbone, pixel_values)
        return torch.cat([pooled.unsqueeze(1), cells], dim=1)

    @torch.no_grad()
    def encode_keys(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Momentum-encoder features of one view, through shuffle-BN.

        Returns:
            ``(pooled [B, D], cells [B, h*w, D])`` backbone features, no gradient.
        """
        splits = self.config.shuffle_bn_splits if has_batch_norm(self.target_backbone) else 1
        packed = shuffle_bn_forward(self._packed_key_features, pixel_values, num_splits=splits)
        return packed[:, 0], packed[:, 1:]

    def _patch_loss(self, cells: torch.Tensor, key_cells: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch InfoNCE of one view: online cells against momentum cells of the same view."""
        config = self.config
        query = self.dense_head(cells)
        with torch.no_grad():
            keys = self.target_dense_head(key_cells)
            selection = key_cells if config.patch_selection_features == "backbone" else keys
            pos_mask, neg_mask = select_patch_pairs(
                selection,
                grid,
                r_far=config.patch_far_distance,
                num_positives=config.patch_num_positives,
                negative_rule=config.patch_negative_rule,
                negative_threshold=config.patch_negative_threshold,
                num_negatives=config.patch_num_negatives,
                positive_threshold=config.patch_positive_threshold,
            )
        loss, valid = multi_positive_info_nce(query, keys, pos_mask, neg_mask, config.patch_temperature)
        return loss, valid, query

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> RepCoPreTrainingOutput:
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` first MoCo v2 views.
            pixel_values_2: ``[B, 3, H, W]`` second MoCo v2 views.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``). The queue is
                fed only in training mode, so evaluation does not change the negatives.
            return_dict: accepted for API compatibility; the output is always a
                :class:`RepCoPreTrainingOutput`.
        """
        config = self.config
        h1, cells_1, grid = pooled_and_cells(self.backbone, pixel_values_1)
        h2, cells_2, _ = pooled_and_cells(self.backbone, pixel_values_2)
        out = RepCoPreTrainingOutput(embeddings_1=h1, embeddings_2=h2)
        if not return_loss:
            if self.patch_enabled:
                out.dense_embeddings_1, out.dense_embeddings_2 = self.dense_head(cells_1), self.dense_head(cells_2)
            return out

        q1 = F.normalize(self.projector(h1), dim=1)
        q2 = F.normalize(self.projector(h2), dim=1)
        with torch.no_grad():
            key_h1, key_cells_1 = self.encode_keys(pixel_values_1)
            key_h2, key_cells_2 = self.encode_keys(pixel_values_2)
            k1 = F.normalize(self.target_projector(key_h1), dim=1)
            k2 = F.normalize(self.target_projector(key_h2), dim=1)
        # MoCo v2 (arXiv 2003.04297) with tau 0.2, symmetrised: each view queries the other's key.
        queue = self.queue.queue.detach().clone().to(q1.dtype)
        tau = config.loss_temperature
        global_loss = (moco_queue_loss(q1, k2, queue, tau) + moco_queue_loss(q2, k1, queue, tau)) / 2

        if self.patch_enabled:
            # [ours] pairs within each view, chosen on that view's momentum features (no grad).
            patch_1, valid_1, z1 = self._patch_loss(cells_1, key_cells_1, grid)
            patch_2, valid_2, z2 = self._patch_loss(cells_2, key_cells_2, grid)
            patch_loss = (patch_1 + patch_2) / 2
            valid_fraction = torch.cat([valid_1, valid_2]).float().mean()
            # Before the warm-up ends the term is still computed (weight 0), so every parameter
            # stays in the graph and DDP needs no find_unused_parameters.
            weight = config.patch_loss_weight if self.patch_loss_active else 0.0
            out.dense_embeddings_1, out.dense_embeddings_2 = z1, z2
        else:
            patch_loss = global_loss.new_zeros(())
            valid_fraction = global_loss.new_zeros(())
            weight = 0.0

        if self.training:
            keys = torch.cat([k1, k2], dim=0)
            self.queue.enqueue(distributed.gather(keys) if config.gather_distributed else keys)
        out.loss = global_loss + weight * patch_loss
        out.global_loss = global_loss
        out.patch_loss = patch_loss
        out.patch_valid_fraction = valid_fraction
        return out


__all__ = ["RepCoForPreTraining", "RepCoPreTrainedModel", "RepCoPreTrainingOutput"]
