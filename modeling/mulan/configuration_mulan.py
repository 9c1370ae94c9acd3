"""MULAN configuration (De Plaen, Jha, Van Gool, Tuytelaars, Proesmans, "Self-Supervised Learning
with a Multi-Task Latent Space Objective", arXiv 2602.05845)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..common.configuration_common import SSLConfig

FRAMEWORKS = ("byol", "simsiam", "mocov3")
TASKS = ("global", "local", "cutout")

# Heads of each framework (model_cards/mulan.md): projector D -> hidden ... -> out, predictor
# out -> predictor_hidden -> out.
FRAMEWORK_HEADS: dict[str, dict[str, int]] = {
    # BYOL: projector 2048-4096-256, predictor 256-4096-256.
    "byol": dict(projector_num_layers=2, projector_hidden_dim=4096, projector_dim=256, predictor_hidden_dim=4096),
    # SimSiam: projector 2048-2048-2048-2048 (last BN non-affine), predictor 2048-512-2048.
    "simsiam": dict(projector_num_layers=3, projector_hidden_dim=2048, projector_dim=2048, predictor_hidden_dim=512),
    # MoCo v3: projector and predictor -> 4096 -> 256 with BN on outputs.
    "mocov3": dict(projector_num_layers=2, projector_hidden_dim=4096, projector_dim=256, predictor_hidden_dim=4096),
}

# Task weights of the total loss: 1/1/1 for BYOL and MoCo v3, 1/3 each for SimSiam.
FRAMEWORK_TASK_WEIGHTS: dict[str, dict[str, float]] = {
    "byol": {"global": 1.0, "local": 1.0, "cutout": 1.0},
    "simsiam": {"global": 1 / 3, "local": 1 / 3, "cutout": 1 / 3},
    "mocov3": {"global": 1.0, "local": 1.0, "cutout": 1.0},
}


class MulanConfig(SSLConfig):
    """Configuration of :class:`MulanForPreTraining`.

    MULAN gives each view type (global, local, cutout) its own predictor on top of one of three
    predictor-based frameworks; targets are the two global views through the target network.
    Head widths left at ``None`` take the chosen framework's paper values (model_cards/mulan.md).

    Args:
        framework: ``"byol"`` (EMA target, ``2 - 2cos``), ``"simsiam"`` (target = online network
            under stop-gradient, ``-cos``) or ``"mocov3"`` (EMA target, InfoNCE on gathered keys).
        shared_predictor: one predictor for every view type (the paper's ablation, i.e. plain
            multi-crop BYOL / SimSiam / MoCo v3) instead of one per view type.
        projector_num_layers: Linear layers of the projector (BYOL 2, SimSiam 3, MoCo v3 2).
        projector_hidden_dim: hidden width of the projector (BYOL 4096, SimSiam 2048, MoCo v3 4096).
        projector_dim: output width of projector and predictors (BYOL 256, SimSiam 2048, MoCo v3 256).
        predictor_hidden_dim: hidden width of each predictor (BYOL 4096, SimSiam 512, MoCo v3 4096).
        task_weights: ``{"global": w, "local": w, "cutout": w}``; the total loss is
            ``sum_t w_t * mean(terms of t)``. ``None``: 1/1/1 (BYOL, MoCo v3), 1/3 each (SimSiam).
        loss_temperature: InfoNCE temperature of the MoCo v3 framework (0.2 ViT, 1.0 ResNet in
            MoCo v3). Not called ``temperature``: transformers reserves that name.
        momentum_base: EMA momentum of the target network at step 0 (0.996 ResNet, 0.998 ViT),
            raised to ``momentum_final`` by a cosine schedule. Unused by SimSiam.
        momentum_final: momentum at the last step (1.0).
        **kwargs: the backbone fields of :class:`SSLConfig`.

    Example:
        ```python
        >>> from hf_sslviews.modeling.mulan import MulanConfig, MulanForPreTraining
        >>> config = MulanConfig(framework="byol", backbone="vit_tiny_patch16_224",
        ...     backbone_kwargs={"img_size": 32, "patch_size": 4, "depth": 2}, image_size=32,
        ...     projector_hidden_dim=256, projector_dim=64, predictor_hidden_dim=256)
        >>> model = MulanForPreTraining(config)
        ```
    """

    model_type = "sslviews_mulan"

    def __init__(
        self,
        framework: str = "byol",
        shared_predictor: bool = False,
        projector_num_layers: Optional[int] = None,
        projector_hidden_dim: Optional[int] = None,
        projector_dim: Optional[int] = None,
        predictor_hidden_dim: Optional[int] = None,
        task_weights: Optional[Mapping[str, float]] = None,
        loss_temperature: float = 0.2,
        momentum_base: float = 0.996,
        momentum_final: float = 1.0,
        **kwargs: Any,
    ):
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
        heads = FRAMEWORK_HEADS[framework]
        projector_num_layers = heads["projector_num_layers"] if projector_num_layers is None else projector_num_layers
        projector_hidden_dim = heads["projector_hidden_dim"] if projector_hidden_dim is None else projector_hidden_dim
        projector_dim = heads["projector_dim"] if projector_dim is None else projector_dim
        predictor_hidden_dim = heads["predictor_hidden_dim"] if predictor_hidden_dim is None else predictor_hidden_dim
        if projector_num_layers < 1:
            raise ValueError(f"projector_num_layers must be at least 1, got {projector_num_layers}")
        self._check_positive(
            projector_hidden_dim=projector_hidden_dim, projector_dim=projector_dim, predictor_hidden_dim=predictor_hidden_dim, loss_temperature=loss_temperature
        )
        self._check_momentum(momentum_base, momentum_final)
        weights = dict(FRAMEWORK_TASK_WEIGHTS[framework] if task_weights is None else task_weights)
        if set(weights) != set(TASKS):
            raise ValueError(f"task_weights needs exactly the keys {list(TASKS)}, got {sorted(weights)}")
        self._check_number(**{f"task_weights[{task!r}]": weight for task, weight in weights.items()})
        if any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"task_weights must be non-negative, got {weights}")
        if not any(float(w) > 0 for w in weights.values()):
            raise ValueError(f"task_weights are all 0 ({weights}): the loss would be identically zero and nothing would train; give at least one task a positive weight")
        self.framework = framework
        self.shared_predictor = bool(shared_predictor)
        self.projector_num_layers = int(projector_num_layers)
        self.projector_hidden_dim = int(projector_hidden_dim)
        self.projector_dim = int(projector_dim)
        self.predictor_hidden_dim = int(predictor_hidden_dim)
        self.task_weights = {task: float(weights[task]) for task in TASKS}
        self.loss_temperature = loss_temperature
        self.momentum_base = momentum_base
        self.momentum_final = momentum_final
        super().__init__(**kwargs)


__all__ = ["FRAMEWORKS", "MulanConfig", "TASKS"]
