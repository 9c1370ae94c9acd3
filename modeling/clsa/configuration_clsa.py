"""CLSA configuration (Wang & Qi, "Contrastive Learning with Stronger Augmentations", TPAMI 2022, arXiv 2104.07713)."""

from __future__ import annotations

from typing import Optional

from ..common.configuration_common import SSLConfig

DDM_PAIRINGS = ("all", "index")


class CLSAConfig(SSLConfig):
    """Configuration of :class:`CLSAForPreTraining`: MoCo v2 plus the DDM loss.

    Defaults are the paper's ImageNet ResNet-50 recipe (section 4.1 and the official code).

    Args:
        projector_hidden_dim: hidden width of MoCo v2's head ``Linear-ReLU-Linear``; ``None``
            uses the backbone width (2048 for ResNet-50, as MoCo v2's ``dim_mlp``).
        projector_dim: key / query width (128).
        queue_size: number of past keys kept as negatives, ``K`` (65536). Must be a multiple
            of the global batch size (checked at the first enqueue).
        loss_temperature: temperature of the contrastive and DDM softmaxes (0.2). Not called
            ``temperature``: transformers reserves that name for generation settings.
        ddm_weight: beta, the weight of the DDM term (1.0; the official code's ``--alpha``).
        ddm_pairing: which (weak, strong) pairs the DDM term sums over: ``"all"`` (every
            strong view against every weak view's target, ``sum_i sum_j``, model_cards/clsa.md) or
            ``"index"`` (strong view ``i`` against weak view ``i`` only).
        momentum_base: momentum of the key encoder (0.999, MoCo v2); constant unless
            ``momentum_final`` differs (then BYOL's cosine schedule).
        momentum_final: momentum at the last step (0.999).
        shuffle_bn_splits: on one process, key batches are shuffled and encoded in this many
            sub-batches so keys and queries get different BN statistics (8, as MoCo's
            single-GPU demo) **[ours]**; ignored under DDP (real shuffle-BN across processes)
            and for encoders without BatchNorm.
        **kwargs: the backbone fields of :class:`SSLConfig` (default ``resnet50`` at 224 px).

    Example:
        ```python
        >>> from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining
        >>> config = CLSAConfig(backbone="resnet18", projector_dim=64, queue_size=1024)
        >>> model = CLSAForPreTraining(config)
        ```
    """

    model_type = "sslviews_clsa"

    def __init__(
        self,
        projector_hidden_dim: Optional[int] = None,
        projector_dim: int = 128,
        queue_size: int = 65536,
        loss_temperature: float = 0.2,
        ddm_weight: float = 1.0,
        ddm_pairing: str = "all",
        momentum_base: float = 0.999,
        momentum_final: float = 0.999,
        shuffle_bn_splits: int = 8,
        **kwargs,
    ):
        kwargs.setdefault("backbone", "resnet50")
        self._check_positive(loss_temperature=loss_temperature, projector_dim=projector_dim, queue_size=queue_size, shuffle_bn_splits=shuffle_bn_splits)
        if projector_hidden_dim is not None:
            self._check_positive(projector_hidden_dim=projector_hidden_dim)
        if ddm_weight < 0:
            raise ValueError(f"ddm_weight must be >= 0 (0 turns DDM off, giving MoCo v2), got {ddm_weight}")
        if ddm_pairing not in DDM_PAIRINGS:
            raise ValueError(f"ddm_pairing must be one of {DDM_PAIRINGS}, got {ddm_pairing!r}")
        self._check_momentum(momentum_base, momentum_final)
        self.projector_hidden_dim = projector_hidden_dim
        self.projector_dim = projector_dim
        self.queue_size = queue_size
        self.loss_temperature = loss_temperature
        self.ddm_weight = ddm_weight
        self.ddm_pairing = ddm_pairing
        self.momentum_base = momentum_base
        self.momentum_final = momentum_final
        self.shuffle_bn_splits = shuffle_bn_splits
        super().__init__(**kwargs)


__all__ = ["CLSAConfig"]
