"""PatchMix: contrastive learning with patch-mixed images and soft inter-instance targets.

Per batch (model_cards/patchmix.md): mix patches of ``m`` images into one image at unchanged
positions (:func:`~.mixing.patch_mix`), and train the online encoder to match soft targets that
say how much of each image a (mixed) image contains (:func:`~.mixing.patchmix_targets`):

    loss = SCE(q(x1), k(x2), T_id)
         + 0.5 * SCE(q(mix(x2)), k(x1), T_mix)
         + 0.5 * SCE(q(mix(x2)), k(mix(x1)), T_mm)
         [+ local-crop terms, averaged over local crops]

with ``q = predictor(projector(backbone))`` online, ``k`` the momentum (or stop-gradient) key
encoder, keys gathered over all processes, tau = 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from transformers.utils import ModelOutput

from ..common import distributed
from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp, mlp_dims
from ..common.losses.soft_target_cross_entropy import soft_target_cross_entropy
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from ..common.view_inputs import split_views
from .configuration_patchmix import PatchMixConfig
from .mixing import PatchMixTargets, patch_mix, patchmix_targets


@dataclass
class PatchMixPreTrainingOutput(ModelOutput):
    """Output of :class:`PatchMixForPreTraining`.

    Args:
        loss: scalar total loss, ``id + 0.5 * mix_origin + 0.5 * mix_mix (+ local)``.
        id_loss: scalar ``SCE(q(x1), k(x2), T_id)`` (origin -> origin, label-smoothed).
        mix_origin_loss: scalar ``SCE(q(mix(x2)), k(x1), T_mix)``, unweighted; ``None`` when both mix weights are 0.
        mix_mix_loss: scalar ``SCE(q(mix(x2)), k(mix(x1)), T_mm)``, unweighted; ``None`` when both mix weights are 0.
        local_loss: scalar weighted sum of the local-crop terms, averaged over local crops
            (``None`` without local crops).
        embeddings_1: ``[B, D]`` online backbone features (CLS token) of view 1.
        embeddings_2: ``[B, D]`` key-encoder backbone features of view 2 (no gradient).
    """

    loss: Optional[torch.FloatTensor] = None
    id_loss: Optional[torch.FloatTensor] = None
    mix_origin_loss: Optional[torch.FloatTensor] = None
    mix_mix_loss: Optional[torch.FloatTensor] = None
    local_loss: Optional[torch.FloatTensor] = None
    embeddings_1: Optional[torch.FloatTensor] = None
    embeddings_2: Optional[torch.FloatTensor] = None


class PatchMixPreTrainedModel(SSLPreTrainedModel):
    config_class = PatchMixConfig


class PatchMixForPreTraining(PatchMixPreTrainedModel):
    """PatchMix pretraining model (ViT backbones only).

    Inputs are the asymmetric two views of the ``patchmix`` recipe, optionally with local crops.
    The exported model is the backbone; its feature is the CLS token (kNN / linear probe).
    """

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: PatchMixConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        if not self.backbone.is_vit:
            raise ValueError(f"PatchMix mixes ViT patches and needs a ViT backbone (e.g. 'vit_small_patch16_224'), got {config.backbone!r}")
        dims = mlp_dims(self.backbone.num_features, config.projector_hidden_dim, config.projector_dim, config.projector_num_layers)
        self.projector = build_mlp(dims, last_norm="bn_noaffine")
        pred_dims = mlp_dims(config.projector_dim, config.projector_hidden_dim, config.projector_dim, config.predictor_num_layers)
        self.predictor = build_mlp(pred_dims, last_norm="bn_noaffine")
        if config.use_momentum_encoder:
            # make_target drops drop-path: it belongs to the online encoder only.
            self.target_backbone = self.backbone.make_target()
            self.target_projector = frozen_copy(self.projector)
        self.post_init()

    # -- randomness (one method each, so tests can fix them) ------------------------------
    def sample_num_groups(self) -> int:
        """``m`` for this call: the configured value, or a uniform draw from the list."""
        choices = self.config.num_groups_choices
        if len(choices) == 1:
            return choices[0]
        return choices[int(torch.randint(len(choices), (1,)).item())]

    def sample_permutation(self, num_patches: int, device: torch.device) -> torch.Tensor:
        """One random order of the patch positions, shared by the batch (one per view)."""
        return torch.randperm(num_patches, device=device)

    # -- branches -------------------------------------------------------------------------
    def _query(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(pixel_values)
        return features, self.predictor(self.projector(features))

    @torch.no_grad()
    def _key(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.use_momentum_encoder:
            features = self.target_backbone(pixel_values)
            return features, self.target_projector(features)
        # ViT-T recipe: no momentum encoder, keys from the online encoder under stop-gradient.
        features = self.backbone(pixel_values)
        return features, self.projector(features)

    def _mix(self, pixel_values: torch.Tensor, num_groups: int) -> torch.Tensor:
        patch_size = self.backbone.patch_size
        num_patches = (pixel_values.shape[-2] // patch_size) * (pixel_values.shape[-1] // patch_size)
        mixed, _ = patch_mix(pixel_values, patch_size, num_groups, self.sample_permutation(num_patches, pixel_values.device))
        return mixed

    def _targets(self, batch_size: int, num_groups: int, device: torch.device) -> PatchMixTargets:
        gather = self.config.gather_distributed
        rank, world = (distributed.rank(), distributed.world_size()) if gather else (0, 1)
        return patchmix_targets(batch_size, num_groups, rank, world, self.config.label_smoothing, device)

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        local_pixel_values: Union[torch.Tensor, Sequence[torch.Tensor], None] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> PatchMixPreTrainingOutput:
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` first global views (blur p=1).
            pixel_values_2: ``[B, 3, H, W]`` second global views (blur p=0.1, solarize p=0.2).
            local_pixel_values: optional local crops ``[B, L, 3, s, s]`` (as collated from the
                views), ``[B, 3, s, s]``, or a list of those; ``s`` a multiple of the patch size.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        h1, q1 = self._query(pixel_values_1)
        if not return_loss:
            h2, _ = self._key(pixel_values_2)
            return PatchMixPreTrainingOutput(embeddings_1=h1, embeddings_2=h2)

        config = self.config
        tau, gather = config.loss_temperature, config.gather_distributed
        num_groups = self.sample_num_groups()
        h2, k2 = self._key(pixel_values_2)
        targets = self._targets(pixel_values_1.shape[0], num_groups, pixel_values_1.device)
        # The loss of model_cards/patchmix.md: one direction (x1 -> x2), mix terms weighted 0.5 each.
        id_loss = soft_target_cross_entropy(q1, k2, targets.identity, tau, gather)
        loss, mix_origin_loss, mix_mix_loss = id_loss, None, None
        # With both mix weights at 0 (the instance-discrimination baseline of the paper) no mixed
        # image is made or encoded: the baseline costs what it would cost on its own.
        mixing = config.mix_origin_weight > 0 or config.mix_mix_weight > 0
        if mixing:
            # Independent permutations per view, the same pairing (g takes group j from g + j).
            mixed_1 = self._mix(pixel_values_1, num_groups)
            mixed_2 = self._mix(pixel_values_2, num_groups)
            _, q_mix = self._query(mixed_2)
            _, k1 = self._key(pixel_values_1)
            _, k_mix1 = self._key(mixed_1)
            mix_origin_loss = soft_target_cross_entropy(q_mix, k1, targets.mix_origin, tau, gather)
            mix_mix_loss = soft_target_cross_entropy(q_mix, k_mix1, targets.mix_mix, tau, gather)
            loss = loss + config.mix_origin_weight * mix_origin_loss + config.mix_mix_weight * mix_mix_loss

        local_loss = None
        crops = split_views(local_pixel_values, "local_pixel_values")
        if crops:
            # Each local crop against both global views' keys: the identity term, plus (mixing)
            # local_mix_origin_weight x mix->origin and local_mix_mix_weight x mix->mix; the
            # official code uses 1.0 and 0 (no local mix->mix). Summed over the two global
            # views, averaged over crops.
            origin_weight, mix_weight = config.local_mix_origin_weight, config.local_mix_mix_weight
            local_mixing = mixing and (origin_weight > 0 or mix_weight > 0)
            if not mixing:
                _, k1 = self._key(pixel_values_1)
            if local_mixing and mix_weight > 0:
                _, k_mix2 = self._key(mixed_2)
            total = 0.0
            for crop in crops:
                _, q_local = self._query(crop)
                for key in (k1, k2):
                    total = total + soft_target_cross_entropy(q_local, key, targets.identity, tau, gather)
                if local_mixing:
                    _, q_local_mix = self._query(self._mix(crop, num_groups))
                    for key in (k1, k2):
                        total = total + origin_weight * soft_target_cross_entropy(q_local_mix, key, targets.mix_origin, tau, gather)
                    if mix_weight > 0:
                        for mixed_key in (k_mix1, k_mix2):
                            total = total + mix_weight * soft_target_cross_entropy(q_local_mix, mixed_key, targets.mix_mix, tau, gather)
            local_loss = total / len(crops)
            loss = loss + local_loss

        return PatchMixPreTrainingOutput(
            loss=loss,
            id_loss=id_loss,
            mix_origin_loss=mix_origin_loss,
            mix_mix_loss=mix_mix_loss,
            local_loss=local_loss,
            embeddings_1=h1,
            embeddings_2=h2,
        )


__all__ = ["PatchMixForPreTraining", "PatchMixPreTrainedModel", "PatchMixPreTrainingOutput"]
