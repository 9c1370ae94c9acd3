"""PatchMix configuration (Shen et al., "Inter-Instance Similarity Modeling for Contrastive Learning", arXiv 2306.12243)."""

from __future__ import annotations

from typing import Sequence, Union

from ..common.configuration_common import SSLConfig


class PatchMixConfig(SSLConfig):
    """Configuration of :class:`PatchMixForPreTraining`.

    Defaults are the paper's ViT-S recipe (model_cards/patchmix.md). The backbone must be a ViT
    (timm ``VisionTransformer`` family): mixing moves whole patches.

    Args:
        projector_num_layers: Linear layers of the projector (3: D -> 4096 -> 4096 -> 256, no
            bias, BN + ReLU between, last BN without affine).
        projector_hidden_dim: hidden width of projector and predictor (4096).
        projector_dim: output width of projector and predictor (256).
        predictor_num_layers: Linear layers of the predictor (2: 256 -> 4096 -> 256, last BN
            without affine).
        loss_temperature: soft-target cross-entropy temperature tau (0.2). Not called
            ``temperature``: transformers reserves that name for generation settings.
        num_groups: ``m``, the number of images mixed into one (2); a list ``[2, 3, ...]`` draws
            one value per forward call, uniformly.
        label_smoothing: smoothing of the origin -> origin (identity) targets (0.1).
        mix_origin_weight: weight of the mix -> origin term (0.5).
        mix_mix_weight: weight of the mix -> mix term (0.5).
        local_mix_origin_weight: weight of each local crop's mix -> origin term against each
            global key (1.0, as in the official code).
        local_mix_mix_weight: weight of each local crop's mix -> mix term (0: the official code
            has none; 0.5 is the global form applied to local crops, this library's earlier
            choice).
        use_momentum_encoder: keys from an EMA copy of backbone and projector (ViT-S/B recipes).
            ``False`` (ViT-T recipe) takes keys from the online encoder under stop-gradient.
        momentum_base: EMA momentum at step 0 (0.996), raised per optimizer step with a cosine
            schedule to ``momentum_final`` (1.0). (The original updates it per epoch.)
        momentum_final: momentum at the last step.
        **kwargs: the backbone fields of :class:`SSLConfig`. ``backbone_kwargs`` defaults to
            ``{"drop_path_rate": 0.1}`` (drop-path on the online encoder only).

    Example:
        ```python
        >>> from hf_sslviews.modeling.patchmix import PatchMixConfig, PatchMixForPreTraining
        >>> config = PatchMixConfig(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 4, "depth": 2}, image_size=32)
        >>> model = PatchMixForPreTraining(config)
        ```
    """

    model_type = "sslviews_patchmix"

    def __init__(
        self,
        projector_num_layers: int = 3,
        projector_hidden_dim: int = 4096,
        projector_dim: int = 256,
        predictor_num_layers: int = 2,
        loss_temperature: float = 0.2,
        num_groups: Union[int, Sequence[int]] = 2,
        label_smoothing: float = 0.1,
        mix_origin_weight: float = 0.5,
        mix_mix_weight: float = 0.5,
        local_mix_origin_weight: float = 1.0,
        local_mix_mix_weight: float = 0.0,
        use_momentum_encoder: bool = True,
        momentum_base: float = 0.996,
        momentum_final: float = 1.0,
        **kwargs,
    ):
        self._check_positive(loss_temperature=loss_temperature, projector_hidden_dim=projector_hidden_dim, projector_dim=projector_dim)
        self._check_momentum(momentum_base, momentum_final)
        if projector_num_layers < 1 or predictor_num_layers < 1:
            raise ValueError(f"projector_num_layers and predictor_num_layers must be at least 1, got {projector_num_layers}, {predictor_num_layers}")
        groups = [num_groups] if isinstance(num_groups, int) else list(num_groups)
        if not groups or any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in groups):
            raise ValueError(f"num_groups must be a positive int or a non-empty list of them (images mixed into one), got {num_groups!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self._check_number(mix_origin_weight=mix_origin_weight, mix_mix_weight=mix_mix_weight, local_mix_origin_weight=local_mix_origin_weight, local_mix_mix_weight=local_mix_mix_weight)
        if min(mix_origin_weight, mix_mix_weight, local_mix_origin_weight, local_mix_mix_weight) < 0:
            raise ValueError(
                f"the mix term weights must be >= 0, got mix_origin_weight={mix_origin_weight}, mix_mix_weight={mix_mix_weight}, "
                f"local_mix_origin_weight={local_mix_origin_weight}, local_mix_mix_weight={local_mix_mix_weight}"
            )
        if kwargs.get("backbone_kwargs") is None:
            kwargs["backbone_kwargs"] = {"drop_path_rate": 0.1}
        self.projector_num_layers = projector_num_layers
        self.projector_hidden_dim = projector_hidden_dim
        self.projector_dim = projector_dim
        self.predictor_num_layers = predictor_num_layers
        self.loss_temperature = loss_temperature
        self.num_groups = num_groups if isinstance(num_groups, int) else groups
        self.label_smoothing = label_smoothing
        self.mix_origin_weight = mix_origin_weight
        self.mix_mix_weight = mix_mix_weight
        self.local_mix_origin_weight = local_mix_origin_weight
        self.local_mix_mix_weight = local_mix_mix_weight
        self.use_momentum_encoder = use_momentum_encoder
        self.momentum_base = momentum_base
        self.momentum_final = momentum_final
        super().__init__(**kwargs)

    @property
    def num_groups_choices(self) -> list[int]:
        """``num_groups`` as a list (one entry when it is a single int)."""
        return [self.num_groups] if isinstance(self.num_groups, int) else list(self.num_groups)


__all__ = ["PatchMixConfig"]
