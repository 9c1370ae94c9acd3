"""timm backbone adapter: one feature vector per image, for any timm model.

Three forwards, all on the same timm model so that the export is timm's own weights:

- :meth:`TimmBackbone.forward` -> ``[B, D]`` pooled features (CLS token for ViTs, global pool
  for CNNs), exactly what the exported model returns as ``pooler_output``.
- :meth:`TimmBackbone.forward_tokens` -> ``[B, D]`` for a ViT fed only a subset of its patch
  tokens (APS): position embeddings are added **before** the tokens are dropped, so each kept
  token still knows where it came from; no mask tokens are inserted.
- :meth:`TimmBackbone.forward_dense` -> ``[B, D, h, w]`` one feature per cell of the final grid
  (RepCo).

The two pooled forwards run the last ViT block for the CLS token only where that is exact
(``vit_readout.py``); ``allow_cls_readout = False`` runs timm's own forward instead.

ViTs are built with ``dynamic_img_size=True`` so that crops of other sizes (96 px local crops)
interpolate the position embedding (bicubic, as DINO) instead of failing timm's size assertion.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional

import timm
import torch
from torch import nn

from .vit_readout import cls_readout_forward, supports_cls_readout


def _unknown_backbone_error(name: str) -> ValueError:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close matches: {close}." if close else " List names with timm.list_models('*vit*')."
    return ValueError(f"unknown backbone {name!r}: not a timm model name.{hint}")


def check_backbone_name(name: str) -> None:
    """Raise a ``ValueError`` with close matches when ``name`` is not a timm architecture."""
    if not timm.is_model(name):
        raise _unknown_backbone_error(name)


def create_timm_model(name: str, model_kwargs: Optional[dict[str, Any]] = None) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0, **model_kwargs)``.

    ViT-style models get ``dynamic_img_size=True`` unless the caller set it; models that do not
    accept the argument are built without it.
    """
    check_backbone_name(name)
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("num_classes", 0)
    if "dynamic_img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)
        except TypeError:
            pass  # CNNs and other families without the argument
    return timm.create_model(name, pretrained=False, **kwargs)


class TimmBackbone(nn.Module):
    """A timm model used as an SSL backbone.

    Args:
        name: timm architecture name, e.g. ``"vit_small_patch16_224"`` or ``"resnet18"``.
        model_kwargs: keyword arguments of ``timm.create_model`` (``img_size``, ``patch_size``,
            ``depth``, ``drop_path_rate``, ...). ``num_classes`` is forced to 0.
    """

    def __init__(self, name: str, model_kwargs: Optional[dict[str, Any]] = None):
        super().__init__()
        if model_kwargs and model_kwargs.get("num_classes", 0) != 0:
            raise ValueError("backbone_kwargs must not set num_classes: the backbone has no classifier head (it is forced to 0)")
        self.name = name
        self.model_kwargs = dict(model_kwargs or {})
        self.model = create_timm_model(name, self.model_kwargs)
        # False runs timm's full forward everywhere (the reference the fast path is tested against).
        self.allow_cls_readout = True

    @property
    def num_features(self) -> int:
        return self.model.num_features

    @property
    def is_vit(self) -> bool:
        """Whether the model follows timm's VisionTransformer stages (needed for token subsets)."""
        return all(hasattr(self.model, attr) for attr in ("patch_embed", "_pos_embed", "blocks", "norm", "num_prefix_tokens"))

    @property
    def patch_size(self) -> int:
        if not self.is_vit:
            raise ValueError(f"{self.name} is not a ViT: it has no patch size")
        return int(self.model.patch_embed.patch_size[0])

    @property
    def cls_readout(self) -> bool:
        """Whether the pooled forwards compute the last ViT block for the CLS token only.

        True for timm ViTs pooled by their CLS token with plain blocks (see ``vit_readout.py``):
        the same features and gradients, about 10/12 of one block cheaper.
        """
        return self.allow_cls_readout and supports_cls_readout(self.model)

    def make_target(self) -> "TimmBackbone":
        """A frozen copy for a momentum / target network, without drop-path.

        Drop-path belongs to the online encoder only (PatchMix, MULAN); the target copy is built
        with ``drop_path_rate=0`` and given the online weights.
        """
        kwargs = {k: v for k, v in self.model_kwargs.items() if k not in ("drop_path_rate",)}
        target = TimmBackbone(self.name, kwargs)
        target.load_state_dict(self.state_dict())
        for param in target.parameters():
            param.requires_grad_(False)
        return target

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> pooled features ``[B, D]``."""
        if not self.cls_readout:
            return self.model.forward_head(self.model.forward_features(pixel_values), pre_logits=True)
        vit = self.model
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(pixel_values))))
        return cls_readout_forward(vit, tokens)

    def forward_tokens(self, pixel_values: torch.Tensor, token_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ViT forward over a subset of patch tokens.

        Args:
            pixel_values: ``[B, 3, H, W]``.
            token_indices: ``int64 [B, n]`` row-major patch indices to keep, or ``None`` for all.

        Returns:
            Pooled features ``[B, D]``.
        """
        if token_indices is None:
            return self.forward(pixel_values)
        if not self.is_vit:
            raise ValueError(f"token-subset forward needs a ViT backbone; {self.name} is not one")
        vit = self.model
        x = vit._pos_embed(vit.patch_embed(pixel_values))  # position added before dropping tokens
        prefix = vit.num_prefix_tokens
        patches = x[:, prefix:]
        if token_indices.max() >= patches.shape[1] or token_indices.min() < 0:
            raise ValueError(f"token_indices must lie in [0, {patches.shape[1]}), got [{int(token_indices.min())}, {int(token_indices.max())}]")
        kept = patches.gather(1, token_indices.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        x = torch.cat([x[:, :prefix], kept], dim=1)
        x = vit.norm_pre(x)
        if self.cls_readout:
            return cls_readout_forward(vit, x)
        if getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled():
            from timm.models._manipulate import checkpoint_seq

            x = checkpoint_seq(vit.blocks, x)
        else:
            x = vit.blocks(x)
        return vit.forward_head(vit.norm(x), pre_logits=True)

    def forward_dense(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, D, h, w]``: the final feature grid (ViT patch tokens or CNN map)."""
        features = self.model.forward_features(pixel_values)
        if not self.is_vit:
            return features
        patches = features[:, self.model.num_prefix_tokens:]
        grid_h = pixel_values.shape[-2] // self.patch_size
        grid_w = pixel_values.shape[-1] // self.patch_size
        return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[-1], grid_h, grid_w)
