"""APS configuration (Shen et al., "Asymmetric Patch Sampling for Contrastive Learning", arXiv 2306.02854, Pattern Recognition 2025)."""

from __future__ import annotations

from ..common.configuration_common import SSLConfig


class APSConfig(SSLConfig):
    """Configuration of :class:`APSForPreTraining`.

    Defaults are the paper's (model_cards/aps.md): a ViT fed only the sampled patch tokens,
    a 3-layer projector and a 3-layer predictor, symmetric InfoNCE at temperature 0.1 against
    keys made by the same encoder under stop-gradient.

    Args:
        projector_hidden_dim: hidden width of the projector,
            ``Linear(D, 512, no bias)-BN-ReLU-Linear(512, 512)-BN-ReLU-Linear(512, 128)-BN(affine=False)`` (512).
        projector_dim: output width of the projector and of the predictor (128).
        predictor_hidden_dim: hidden width of the predictor, same shape as the projector:
            ``128 -> 512 -> 512 -> 128`` with a last BatchNorm without affine (512).
        loss_temperature: InfoNCE temperature tau (0.1). The loss is **not** multiplied by
            ``2 * tau`` (unlike MoCo v3). Not called ``temperature``: transformers reserves that
            name for generation settings.
        use_momentum_encoder: make the keys with an EMA copy of backbone and projector instead of
            the online encoder under stop-gradient. Off by default, as in the released code; an
            option for ablations.
        momentum_base: EMA momentum at step 0, raised to ``momentum_final`` with a cosine
            schedule (used only when ``use_momentum_encoder``; 0.99).
        momentum_final: EMA momentum at the last step (used only when ``use_momentum_encoder``; 1.0).
        **kwargs: the backbone fields of :class:`SSLConfig` (the backbone must be a timm ViT).

    Example:
        ```python
        >>> from hf_sslviews.modeling.aps import APSConfig, APSForPreTraining
        >>> config = APSConfig(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 2}, image_size=32)
        >>> model = APSForPreTraining(config)
        ```
    """

    model_type = "sslviews_aps"

    def __init__(
        self,
        projector_hidden_dim: int = 512,
        projector_dim: int = 128,
        predictor_hidden_dim: int = 512,
        loss_temperature: float = 0.1,
        use_momentum_encoder: bool = False,
        momentum_base: float = 0.99,
        momentum_final: float = 1.0,
        **kwargs,
    ):
        self._check_positive(
            loss_temperature=loss_temperature,
            projector_hidden_dim=projector_hidden_dim,
            projector_dim=projector_dim,
            predictor_hidden_dim=predictor_hidden_dim,
        )
        self._check_momentum(momentum_base, momentum_final)
        self.projector_hidden_dim = int(projector_hidden_dim)
        self.projector_dim = int(projector_dim)
        self.predictor_hidden_dim = int(predictor_hidden_dim)
        self.loss_temperature = float(loss_temperature)
        self.use_momentum_encoder = bool(use_momentum_encoder)
        self.momentum_base = float(momentum_base)
        self.momentum_final = float(momentum_final)
        super().__init__(**kwargs)


__all__ = ["APSConfig"]
