"""RepCo configuration ("Replenish sample views with better consistency", Neural Networks 168, 2023).

**Reconstruction**: the paper's code and method text are not public, only its abstract. The
global part is MoCo v2 (Chen, Fan, Girshick, He, arXiv 2003.04297) with its published defaults;
everything about the patch-level pairs is this library's choice (model_cards/repco.md, marked
**[ours]** below) and is documented in ``model_cards/repco.md``.
"""

from __future__ import annotations

from typing import Optional

from ..common.configuration_common import SSLConfig
from .pairs import NEGATIVE_RULES

SELECTION_FEATURES = ("backbone", "projection")


class RepCoConfig(SSLConfig):
    """Configuration of :class:`RepCoForPreTraining`.

    Global term (MoCo v2 defaults):

    Args:
        projector_hidden_dim: hidden width of the MoCo v2 head ``Linear-ReLU-Linear`` (2048).
        projector_dim: output width of the global head and of the queue's keys (128).
        queue_size: number of negative keys in the queue (65536, MoCo v2).
        loss_temperature: temperature of the global InfoNCE (0.2, MoCo v2). Not called
            ``temperature``: transformers reserves that name for generation settings.
        momentum_base: momentum of the key encoder at step 0 (0.999, MoCo v2).
        momentum_final: momentum at the last step; equal to ``momentum_base`` (MoCo v2's constant
            momentum) unless a cosine schedule is wanted.
        shuffle_bn_splits: MoCo's shuffle-BN for the key encoder
            (:func:`~hf_sslviews.modeling.common.shuffle_bn.shuffle_bn_forward`): under DDP the
            key batch is shuffled across processes (MoCo's scheme); on one process it is shuffled
            and encoded in this many sub-batches, so keys and queries get different BatchNorm
            statistics (8, as MoCo's single-GPU demo; as CLSA) **[ours]**. Ignored for backbones
            without BatchNorm (ViTs).

    Patch term (all **[ours]**, a reconstruction of the abstract):

    Args:
        dense_hidden_dim: hidden width of the dense head, a per-cell ``Linear-ReLU-Linear``
            (= DenseCL's two 1x1 convolutions), applied to every cell of the backbone's final
            feature grid (ResNet C5 map, ViT patch tokens) (2048, as DenseCL).
        dense_dim: per-cell embedding width (128, as DenseCL).
        patch_loss_weight: mu, weight of the patch loss in ``global + mu * patch`` (1.0: equal
            weighting, as DenseCL's ``0.5 * global + 0.5 * dense`` up to a factor 2). 0 turns the
            patch term off and does not build the dense head: plain (symmetrised) MoCo v2.
        patch_temperature: temperature of the multi-positive patch InfoNCE (0.2, as the global one).
        patch_far_distance: r_far, smallest Chebyshev grid distance of a positive cell (2: a
            positive is never a neighbour).
        patch_num_positives: positives per cell: the most similar cells at distance >= r_far (1).
        patch_positive_threshold: optional lowest cosine similarity of a positive (None: the most
            similar far cells are positives whatever their similarity).
        patch_negative_rule: ``"threshold"`` (neighbours at distance 1 whose similarity is below
            ``patch_negative_threshold``) or ``"least_similar"`` (the ``patch_num_negatives``
            least similar neighbours) ("threshold").
        patch_negative_threshold: cosine similarity below which a neighbour is a negative (0.5).
        patch_num_negatives: least similar neighbours used as negatives under ``"least_similar"`` (2).
        patch_selection_features: which momentum features the similarities that choose the pairs
            are computed on: ``"backbone"`` (the grid features before the dense head, as DenseCL
            matches on backbone features) or ``"projection"`` (the dense head's output) ("backbone").
        patch_loss_start_step: optimizer step from which the patch loss counts (0: from the
            start). Before it, the patch term is computed but weighted 0 (keeps every parameter
            in the graph for DDP). The model counts steps in a persistent buffer advanced by
            :meth:`RepCoForPreTraining.update_momentum`, which the MomentumCallback calls once per
            optimizer step, so the count survives checkpoints and resume.
        **kwargs: the backbone fields of :class:`SSLConfig`.

    Example:
        ```python
        >>> from hf_sslviews.modeling.repco import RepCoConfig, RepCoForPreTraining
        >>> config = RepCoConfig(backbone="resnet50", image_size=224)
        >>> model = RepCoForPreTraining(config)
        ```
    """

    model_type = "sslviews_repco"

    def __init__(
        self,
        projector_hidden_dim: int = 2048,
        projector_dim: int = 128,
        queue_size: int = 65536,
        loss_temperature: float = 0.2,
        momentum_base: float = 0.999,
        momentum_final: float = 0.999,
        shuffle_bn_splits: int = 8,
        dense_hidden_dim: int = 2048,
        dense_dim: int = 128,
        patch_loss_weight: float = 1.0,
        patch_temperature: float = 0.2,
        patch_far_distance: int = 2,
        patch_num_positives: int = 1,
        patch_positive_threshold: Optional[float] = None,
        patch_negative_rule: str = "threshold",
        patch_negative_threshold: float = 0.5,
        patch_num_negatives: int = 2,
        patch_selection_features: str = "backbone",
        patch_loss_start_step: int = 0,
        **kwargs,
    ):
        self._check_positive(
            projector_hidden_dim=projector_hidden_dim,
            projector_dim=projector_dim,
            queue_size=queue_size,
            loss_temperature=loss_temperature,
            shuffle_bn_splits=shuffle_bn_splits,
            dense_hidden_dim=dense_hidden_dim,
            dense_dim=dense_dim,
            patch_temperature=patch_temperature,
            patch_num_positives=patch_num_positives,
            patch_num_negatives=patch_num_negatives,
        )
        self._check_momentum(momentum_base, momentum_final)
        if patch_loss_weight < 0:
            raise ValueError(f"patch_loss_weight (mu) must be >= 0 (0 turns the patch loss off), got {patch_loss_weight}")
        if patch_far_distance < 2:
            raise ValueError(f"patch_far_distance (r_far) must be >= 2 so that positives are never adjacent cells, got {patch_far_distance}")
        if patch_negative_rule not in NEGATIVE_RULES:
            raise ValueError(f"patch_negative_rule must be one of {NEGATIVE_RULES}, got {patch_negative_rule!r}")
        if patch_selection_features not in SELECTION_FEATURES:
            raise ValueError(f"patch_selection_features must be one of {SELECTION_FEATURES}, got {patch_selection_features!r}")
        thresholds = {"patch_negative_threshold": patch_negative_threshold}
        if patch_positive_threshold is not None:
            thresholds["patch_positive_threshold"] = patch_positive_threshold
        self._check_number(**thresholds)
        for name, value in thresholds.items():
            if not -1 <= value <= 1:
                raise ValueError(f"{name} is a cosine similarity and must lie in [-1, 1], got {value}")
        if patch_loss_start_step < 0:
            raise ValueError(f"patch_loss_start_step must be >= 0, got {patch_loss_start_step}")
        self.projector_hidden_dim = projector_hidden_dim
        self.projector_dim = projector_dim
        self.queue_size = queue_size
        self.loss_temperature = loss_temperature
        self.momentum_base = momentum_base
        self.momentum_final = momentum_final
        self.shuffle_bn_splits = shuffle_bn_splits
        self.dense_hidden_dim = dense_hidden_dim
        self.dense_dim = dense_dim
        self.patch_loss_weight = patch_loss_weight
        self.patch_temperature = patch_temperature
        self.patch_far_distance = patch_far_distance
        self.patch_num_positives = patch_num_positives
        self.patch_positive_threshold = patch_positive_threshold
        self.patch_negative_rule = patch_negative_rule
        self.patch_negative_threshold = patch_negative_threshold
        self.patch_num_negatives = patch_num_negatives
        self.patch_selection_features = patch_selection_features
        self.patch_loss_start_step = patch_loss_start_step
        kwargs.setdefault("backbone", "resnet50")
        super().__init__(**kwargs)


__all__ = ["RepCoConfig"]
