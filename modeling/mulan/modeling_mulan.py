"""MULAN: one predictor per view type on top of BYOL, SimSiam or MoCo v3 (arXiv 2602.05845).

Multi-crop destabilises predictor-based methods when one predictor serves every view type; MULAN
gives the global, local and cutout views a predictor each and treats them as three tasks sharing
one latent space. Targets are only the global views through the target network (EMA for BYOL and
MoCo v3, the online network under stop-gradient for SimSiam), with no predictor on the target side.

Batching [ours]: the views of one type have one size, so each type goes through the backbone in
one forward (DINO's multi-crop wrapper does the same). A ViT normalises per token, so this changes
nothing; in a ResNet, BatchNorm then sees the statistics of all views of that type together. The
projector and predictors run per view, so their BatchNorm statistics are those of ``B`` images of
one view, exactly as in the two-view baselines.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from timm.layers import DropPath
from torch import nn
from transformers.utils import ModelOutput

from ..common.backbone import TimmBackbone
from ..common.heads import build_mlp
from ..common.losses import byol_loss, info_nce_loss, negative_cosine_loss
from ..common.modeling_common import SSLPreTrainedModel
from ..common.momentum import frozen_copy
from .configuration_mulan import TASKS, MulanConfig


def mulan_pairs(n_global: int, n_local: int = 0, n_cutout: int = 0) -> list[tuple[str, int, int]]:
    """The loss terms of MULAN as ``(task, view_index, target_index)``.

    ``target_index`` is always a global view (the only targets). global_i meets every other
    global_j; every local and every cutout meets every global; locals never meet each other.
    With 2 globals: ``2`` global terms, ``2 * n_local`` local terms, ``2 * n_cutout`` cutout terms.

    Args:
        n_global: number of global views (at least 2).
        n_local: number of local views.
        n_cutout: number of cutout views.
    """
    if n_global < 2:
        raise ValueError(f"MULAN needs at least 2 global views (each global's target is another global), got {n_global}")
    if n_local < 0 or n_cutout < 0:
        raise ValueError(f"n_local and n_cutout must be non-negative, got {n_local}, {n_cutout}")
    pairs = [("global", i, j) for i in range(n_global) for j in range(n_global) if i != j]
    pairs += [("local", i, j) for i in range(n_local) for j in range(n_global)]
    pairs += [("cutout", i, j) for i in range(n_cutout) for j in range(n_global)]
    return pairs


def _drop_path_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, DropPath)]


def _has_active_drop_path(module: nn.Module) -> bool:
    return any(m.drop_prob > 0 for m in _drop_path_modules(module))


@contextlib.contextmanager
def drop_path_disabled(module: nn.Module) -> Iterator[None]:
    """Every timm ``DropPath`` of ``module`` at probability 0 inside the block, restored after."""
    layers = _drop_path_modules(module)
    saved = [m.drop_prob for m in layers]
    try:
        for m in layers:
            m.drop_prob = 0.0
        yield
    finally:
        for m, p in zip(layers, saved):
            m.drop_prob = p


@dataclass
class MulanPreTrainingOutput(ModelOutput):
    """Output of :class:`MulanForPreTraining`.

    Args:
        loss: scalar, ``sum_t task_weights[t] * <task>_loss`` over the tasks whose views were given.
        global_loss: scalar, mean of the global -> other global terms.
        local_loss: scalar, mean of the local -> global terms (``None`` without local views).
        cutout_loss: scalar, mean of the cutout -> global terms (``None`` without cutout views).
        global_embeddings: ``[B, n_global, D]`` backbone features of the global views.
        local_embeddings: ``[B, n_local, D]`` backbone features of the local views.
        cutout_embeddings: ``[B, n_cutout, D]`` backbone features of the cutout views.
    """

    loss: Optional[torch.FloatTensor] = None
    global_loss: Optional[torch.FloatTensor] = None
    local_loss: Optional[torch.FloatTensor] = None
    cutout_loss: Optional[torch.FloatTensor] = None
    global_embeddings: Optional[torch.FloatTensor] = None
    local_embeddings: Optional[torch.FloatTensor] = None
    cutout_embeddings: Optional[torch.FloatTensor] = None


def _build_projector(config: MulanConfig, in_dim: int) -> nn.Sequential:
    dims = [in_dim] + [config.projector_hidden_dim] * (config.projector_num_layers - 1) + [config.projector_dim]
    if config.framework == "byol":
        return build_mlp(dims, hidden_bias=True, last_bias=True)  # BYOL's projector keeps its biases
    return build_mlp(dims, last_norm="bn_noaffine")  # SimSiam, MoCo v3: BN (no affine) on the output


def _build_predictor(config: MulanConfig) -> nn.Sequential:
    dims = [config.projector_dim, config.predictor_hidden_dim, config.projector_dim]
    if config.framework == "mocov3":
        return build_mlp(dims, last_norm="bn_noaffine")  # MoCo v3: BN on the predictor output
    return build_mlp(dims, last_bias=True)  # Linear no-bias -> BN -> ReLU -> Linear with bias


def _check_views(name: str, views: Optional[torch.Tensor], batch_size: Optional[int] = None) -> Optional[torch.Tensor]:
    """``[B, n, 3, H, W]`` or ``None``; an empty view dimension counts as ``None``."""
    if views is None:
        return None
    if views.ndim != 5:
        raise ValueError(f"{name} must be [batch, n_views, channels, height, width], got shape {tuple(views.shape)}")
    if batch_size is not None and views.shape[0] != batch_size:
        raise ValueError(f"{name} has batch size {views.shape[0]} but global_pixel_values has {batch_size}")
    return views if views.shape[1] > 0 else None


class MulanPreTrainedModel(SSLPreTrainedModel):
    config_class = MulanConfig
    main_input_name = "global_pixel_values"


class MulanForPreTraining(MulanPreTrainedModel):
    """MULAN pretraining model; inputs are the views of
    :class:`~hf_sslviews.views.mulan.MultiTaskViewTransform`.

    Modules: ``backbone`` + ``projector`` (online), ``predictors`` (``nn.ModuleDict`` with keys
    ``"global"``, ``"local"``, ``"cutout"``, or a single ``"shared"`` one when
    ``config.shared_predictor``), and for BYOL / MoCo v3 ``target_backbone`` + ``target_projector``
    (EMA copies, no predictor).
    """

    momentum_pairs = (("target_backbone", "backbone"), ("target_projector", "projector"))

    def __init__(self, config: MulanConfig):
        super().__init__(config)
        self.backbone = TimmBackbone(config.backbone, config.backbone_kwargs)
        self.projector = _build_projector(config, self.backbone.num_features)
        keys = ("shared",) if config.shared_predictor else TASKS
        self.predictors = nn.ModuleDict({key: _build_predictor(config) for key in keys})
        # SimSiam's target is the online network itself under stop-gradient: nothing to average.
        if config.framework != "simsiam":
            self.target_backbone = self.backbone.make_target()  # no drop-path on the target
            self.target_projector = frozen_copy(self.projector)
        self.post_init()

    def predictor(self, task: str) -> nn.Module:
        """The predictor of view type ``task`` (the shared one in the ablation)."""
        return self.predictors["shared" if self.config.shared_predictor else task]

    @staticmethod
    def _backbone_per_view(backbone: TimmBackbone, views: torch.Tensor) -> torch.Tensor:
        """``[B, n, 3, H, W]`` -> ``[n, B, D]`` in one backbone forward (view-major)."""
        batch, n = views.shape[:2]
        features = backbone(views.transpose(0, 1).reshape(n * batch, *views.shape[2:]))
        return features.view(n, batch, -1)

    def _term_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        framework = self.config.framework
        if framework == "byol":
            return byol_loss(prediction, target)
        if framework == "simsiam":
            return negative_cosine_loss(prediction, target)
        return info_nce_loss(prediction, target, self.config.loss_temperature, True, self.config.gather_distributed)

    def _targets(self, global_pixel_values: torch.Tensor, online_projections: list[torch.Tensor]) -> list[torch.Tensor]:
        """One target ``[B, P]`` per global view, without gradient."""
        if not self.has_momentum_encoder:
            # SimSiam: sg(online network). The official target is a copy of the network without
            # drop-path, so with drop-path on the globals go through again with it off.
            if not (self.training and _has_active_drop_path(self.backbone)):
                return [z.detach() for z in online_projections]
            with torch.no_grad(), drop_path_disabled(self.backbone):
                features = self._backbone_per_view(self.backbone, global_pixel_values)
                return [self.projector(h) for h in features]
        with torch.no_grad():
            features = self._backbone_per_view(self.target_backbone, global_pixel_values)
            return [self.target_projector(h) for h in features]

    def forward(
        self,
        global_pixel_values: torch.Tensor,
        local_pixel_values: Optional[torch.Tensor] = None,
        cutout_pixel_values: Optional[torch.Tensor] = None,
        return_loss: bool = True,
        return_dict: Optional[bool] = None,
    ) -> MulanPreTrainingOutput:
        """
        Args:
            global_pixel_values: ``[B, n_global, 3, S, S]`` global views (``n_global >= 2``).
            local_pixel_values: ``[B, n_local, 3, s, s]`` local crops, or ``None``.
            cutout_pixel_values: ``[B, n_cutout, 3, S_c, S_c]`` cutout views, or ``None``.
            return_loss: compute the loss (lets the Trainer report ``eval_loss``).
        """
        if global_pixel_values is None or global_pixel_values.ndim != 5 or global_pixel_values.shape[1] < 2:
            shape = None if global_pixel_values is None else tuple(global_pixel_values.shape)
            raise ValueError(f"global_pixel_values must be [batch, n_global >= 2, 3, H, W] (the targets), got {shape}")
        batch = global_pixel_values.shape[0]
        views = {
            "global": global_pixel_values,
            "local": _check_views("local_pixel_values", local_pixel_values, batch),
            "cutout": _check_views("cutout_pixel_values", cutout_pixel_values, batch),
        }
        features, projections, predictions = {}, {}, {}
        for task, pixels in views.items():
            if pixels is None:
                continue
            features[task] = self._backbone_per_view(self.backbone, pixels)
            # Heads per view: each view's BatchNorm statistics come from its own B images.
            projections[task] = [self.projector(h) for h in features[task]]
            predictions[task] = [self.predictor(task)(z) for z in projections[task]]

        task_losses: dict[str, Optional[torch.Tensor]] = dict.fromkeys(TASKS)
        loss = None
        if return_loss:
            targets = self._targets(global_pixel_values, projections["global"])
            n_local = 0 if views["local"] is None else views["local"].shape[1]
            n_cutout = 0 if views["cutout"] is None else views["cutout"].shape[1]
            terms: dict[str, list[torch.Tensor]] = {task: [] for task in TASKS}
            for task, view, target in mulan_pairs(global_pixel_values.shape[1], n_local, n_cutout):
                terms[task].append(self._term_loss(predictions[task][view], targets[target]))
            # Each task's loss is the mean of its terms; the total is the weighted sum of tasks.
            for task, task_terms in terms.items():
                if task_terms:
                    task_losses[task] = torch.stack(task_terms).mean()
            weights = self.config.task_weights
            loss = sum(weights[task] * value for task, value in task_losses.items() if value is not None)

        def embeddings(task: str) -> Optional[torch.Tensor]:
            return features[task].transpose(0, 1) if task in features else None

        return MulanPreTrainingOutput(
            loss=loss,
            global_loss=task_losses["global"],
            local_loss=task_losses["local"],
            cutout_loss=task_losses["cutout"],
            global_embeddings=embeddings("global"),
            local_embeddings=embeddings("local"),
            cutout_embeddings=embeddings("cutout"),
        )


__all__ = ["MulanForPreTraining", "MulanPreTrainedModel", "MulanPreTrainingOutput", "mulan_pairs"]
