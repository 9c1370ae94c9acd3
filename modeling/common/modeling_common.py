"""The base ``PreTrainedModel`` of every method: backbone access, weight init, checkpointing."""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedModel

from .configuration_common import SSLConfig
from .momentum import ema_update

logger = logging.getLogger(__name__)


class SSLPreTrainedModel(PreTrainedModel):
    """Base class: a timm backbone under ``self.backbone`` plus heads defined by each method.

    Subclasses set ``config_class`` and build ``self.backbone`` (a
    :class:`~hf_sslviews.modeling.common.backbone.TimmBackbone`). Methods with a momentum
    (EMA) target network list its parts in ``momentum_pairs`` as ``(target attribute, online
    attribute)``; :meth:`update_momentum`, which :class:`~hf_sslviews.training.callbacks.MomentumCallback`
    calls after each optimizer step, and :attr:`has_momentum_encoder` follow from that list. A
    target attribute set to ``None`` (a switched-off momentum encoder) is skipped.
    """

    config_class = SSLConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values_1"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    def _init_weights(self, module: nn.Module) -> None:
        # Deliberately empty: timm initialises its backbone in create_model (with the
        # architecture's own scheme) and the heads keep torch's default init, as in the papers'
        # code. transformers' generic normal(0, 0.02) would overwrite both.
        pass

    def post_init(self) -> None:
        """transformers' ``post_init``, after a check every method's model gets: the views fit the patch grid.

        A ViT whose patch does not divide ``image_size`` would fail at the first forward, deep in
        timm ("Input height (28) should be divisible by patch size (5)"), after data loading
        and the run folder were set up.
        """
        backbone = getattr(self, "backbone", None)
        if backbone is not None and backbone.is_vit:
            patch, size = backbone.patch_size, int(self.config.image_size)
            if size % patch:
                divisors = [d for d in range(2, size + 1) if size % d == 0 and d <= 32]
                raise ValueError(
                    f"image_size {size} is not a multiple of the ViT's patch size {patch} ({self.config.backbone}, "
                    f"backbone_kwargs {self.config.backbone_kwargs}): choose a patch_size that divides it (one of "
                    f"{divisors}), or an image_size that is a multiple of {patch}"
                )
        super().post_init()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """Route ``--gradient_checkpointing`` to timm's own block-level checkpointing."""
        self.backbone.model.set_grad_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.model.set_grad_checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone.model, "grad_checkpointing", False))

    momentum_pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, with a missing target network made a copy of the online one.

        transformers materialises tensors missing from the checkpoint uninitialised (this
        class's ``_init_weights`` leaves timm's and torch's own init alone), so a checkpoint
        saved without its ``target_*`` tensors loaded with NaN / garbage targets. A target
        network starts as a copy of the online network (as at construction), so that is what
        a missing one becomes, with a warning. Other missing tensors keep ``from_pretrained``'s
        report; :func:`hf_sslviews.publish.loading.load_pretraining_model` refuses them.
        """
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if isinstance(model, SSLPreTrainedModel):
            model._copy_missing_targets(set(info.get("missing_keys") or ()))
        return (model, info) if want_info else model

    @torch.no_grad()
    def _copy_missing_targets(self, missing: set[str]) -> None:
        copied = []
        state = self.state_dict(keep_vars=True)
        for target, online in self.momentum_pairs:
            prefix = f"{target}."
            for key in sorted(name for name in missing if name.startswith(prefix)):
                source = f"{online}.{key[len(prefix):]}"
                if source in state and source not in missing:
                    state[key].copy_(state[source])
                    copied.append(key)
        if copied:
            logger.warning(
                "%d target-network tensors were missing from the checkpoint (e.g. %s): they start as copies of the online "
                "network, as at construction. Resume from a complete checkpoint to continue the same run.", len(copied), copied[0],
            )

    def _momentum_modules(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs = [(getattr(self, target, None), getattr(self, online, None)) for target, online in self.momentum_pairs]
        return [(target, online) for target, online in pairs if target is not None and online is not None]

    @property
    def has_momentum_encoder(self) -> bool:
        return bool(self._momentum_modules())

    @torch.no_grad()
    def update_momentum(self, momentum: float) -> None:
        """EMA step of every target part: ``target = m * target + (1 - m) * online``."""
        for target, online in self._momentum_modules():
            ema_update(target, online, momentum)
