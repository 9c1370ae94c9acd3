"""The asymmetric momentum pair shared by BYOL and MoCo v3: online predictions, target projections.

Both methods run each view through ``backbone -> projector -> predictor`` and, without gradient,
through the EMA target's ``target_backbone -> target_projector``; they differ only in the loss
that compares a view's prediction with the other view's target.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .attached_ddm import attached_ddm_loss


class MomentumPairPass(NamedTuple):
    """What one forward of the pair computes.

    Attributes:
        embeddings: ``(h1, h2)``, ``[B, D]`` backbone features of each view.
        predictions: ``(p1, p2)``, ``predictor(projector(h))`` of each view.
        targets: ``(z1, z2)``, the target network's projections of each view (no gradient); None
            when the loss is not computed.
    """

    embeddings: tuple[torch.Tensor, torch.Tensor]
    predictions: tuple[torch.Tensor, torch.Tensor]
    targets: Optional[tuple[torch.Tensor, torch.Tensor]]


def momentum_pair_pass(model, pixel_values_1: torch.Tensor, pixel_values_2: torch.Tensor, with_targets: bool = True) -> MomentumPairPass:
    """Run both views through ``model``'s online branch and, if ``with_targets``, its target branch.

    ``model`` has ``backbone``, ``projector``, ``predictor``, ``target_backbone`` and
    ``target_projector`` (a ``momentum_pairs`` model).
    """
    h1, h2 = model.backbone(pixel_values_1), model.backbone(pixel_values_2)
    p1, p2 = model.predictor(model.projector(h1)), model.predictor(model.projector(h2))
    if not with_targets:
        return MomentumPairPass((h1, h2), (p1, p2), None)
    with torch.no_grad():
        z1 = model.target_projector(model.target_backbone(pixel_values_1))
        z2 = model.target_projector(model.target_backbone(pixel_values_2))
    return MomentumPairPass((h1, h2), (p1, p2), (z1, z2))


class MomentumPairMixin:
    """The forward of a momentum pair model; the model defines its heads and :meth:`pair_loss`.

    A subclass sets ``output_class`` (its ``ModelOutput``) and ``pair_loss_name`` (the output field
    of its own term: ``"regression_loss"``, ``"contrastive_loss"``), builds ``backbone``,
    ``projector``, ``predictor``, ``target_backbone`` and ``target_projector``, and writes its loss
    as ``pair_loss(predictions, targets)``. CLSA's DDM term is added when ``config.ddm_weight > 0``.
    """

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))
    output_class: type
    pair_loss_name: str

    def pair_loss(self, predictions: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        strong_pixel_values: Optional[torch.Tensor] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ):
        """
        Args:
            pixel_values_1: ``[B, 3, H, W]`` first views.
            pixel_values_2: ``[B, 3, H, W]`` second views.
            strong_pixel_values: ``[B, n, 3, h, w]`` strongly augmented views, used by the DDM
                term when ``config.ddm_weight > 0``.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        views = momentum_pair_pass(self, pixel_values_1, pixel_values_2, with_targets=return_loss)
        h1, h2 = views.embeddings
        if not return_loss:
            return self.output_class(embeddings_1=h1, embeddings_2=h2)
        pair = self.pair_loss(views.predictions, views.targets)
        ddm = attached_ddm_loss(self, strong_pixel_values, list(views.predictions), list(views.targets))
        loss = pair if ddm is None else pair + self.config.ddm_weight * ddm
        return self.output_class(loss=loss, ddm_loss=ddm, embeddings_1=h1, embeddings_2=h2, **{self.pair_loss_name: pair})


__all__ = ["MomentumPairMixin", "MomentumPairPass", "momentum_pair_pass"]
