"""The base config every method config extends: the backbone and the images it sees."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable, Optional, Sequence

from transformers import PretrainedConfig

from .backbone import check_backbone_name

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_INTEGER_ANNOTATIONS = frozenset({"int", "Optional[int]", "int | None"})


def check_integer_arguments(init: Callable) -> Callable:
    """Wrap a config's ``__init__`` so that its ``int`` arguments hold whole numbers.

    JSON (``config.json``, ``--config_overrides``) has one number type: ``"projector_dim": 128.5``
    would otherwise be stored, then crash deep in torch (or be truncated by an ``int()``), and
    ``true`` would pass as 1. Whole floats (``128.0``) become ints; anything else is refused
    with the argument's name.
    """
    signature = inspect.signature(init)
    integers = [name for name, parameter in signature.parameters.items() if str(parameter.annotation) in _INTEGER_ANNOTATIONS]

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        bound = signature.bind_partial(self, *args, **kwargs)
        for name in integers:
            if name not in bound.arguments or bound.arguments[name] is None:
                continue
            value = bound.arguments[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
                raise ValueError(f"{type(self).__name__}: {name} must be a whole number, got {value!r} ({type(value).__name__})")
            bound.arguments[name] = int(value)
        return init(*bound.args, **bound.kwargs)

    return checked


class SSLConfig(PretrainedConfig):
    """Fields shared by every method.

    Args:
        backbone: timm architecture name (``timm.list_models()``), e.g. ``"vit_small_patch16_224"``.
        backbone_kwargs: keyword arguments of ``timm.create_model`` (JSON data only), e.g.
            ``{"img_size": 32, "patch_size": 4, "drop_path_rate": 0.1}``.
        image_size: side of the training views in pixels; the exported backbone's input size.
        image_mean: normalisation mean the views used (recorded in the export).
        image_std: normalisation std the views used (recorded in the export).
        gather_distributed: gather keys across processes in the losses (labels offset by
            ``rank * N``); leave on, it is a no-op on one process.
        base_model: the Hub id of the weights the backbone started from (``--backbone
            hf-hub:org/name``), recorded for the model card; ``None`` for a random start. The
            model never loads it itself: the run did, once.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = check_integer_arguments(cls.__dict__["__init__"])

    def __init__(
        self,
        backbone: str = "vit_small_patch16_224",
        backbone_kwargs: Optional[dict[str, Any]] = None,
        image_size: int = 224,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        gather_distributed: bool = True,
        base_model: Optional[str] = None,
        **kwargs,
    ):
        check_backbone_name(backbone)
        if backbone_kwargs is not None and not isinstance(backbone_kwargs, dict):
            raise ValueError(f"backbone_kwargs must be a dict of timm.create_model arguments, got {type(backbone_kwargs).__name__}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean and image_std need 3 values (RGB) and std > 0, got {list(image_mean)}, {list(image_std)}")
        self.backbone = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.image_size = int(image_size)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.gather_distributed = gather_distributed
        self.base_model = base_model
        super().__init__(**kwargs)

    def export_data_config(self) -> dict:
        """timm's data config of the exported backbone: what evaluation resizes, crops and normalises with.

        Bicubic, ``crop_pct=1`` (the views' full image is the input, no border cut), the views'
        normalisation. One source for the export and the kNN monitor, so the monitor sees exactly
        what ``run_knn_eval.py`` on the export will see.
        """
        size = int(self.image_size)
        return {
            "input_size": (3, size, size), "mean": tuple(self.image_mean), "std": tuple(self.image_std),
            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
        }

    @staticmethod
    def _check_number(**values: float) -> None:
        """A real, finite number: JSON's ``true`` would pass as 1 and ``NaN`` every comparison."""
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")

    @classmethod
    def _check_positive(cls, **values: float) -> None:
        cls._check_number(**values)
        for name, value in values.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    @classmethod
    def _check_ddm(cls, weight: float, temperature: float) -> None:
        cls._check_number(ddm_weight=weight, ddm_temperature=temperature)
        if weight < 0:
            raise ValueError(f"ddm_weight must be >= 0 (0 turns the DDM term off), got {weight}")
        if temperature <= 0:
            raise ValueError(f"ddm_temperature must be positive, got {temperature}")

    @classmethod
    def _check_momentum(cls, base: float, final: float) -> None:
        cls._check_number(momentum_base=base, momentum_final=final)
        if not (0 <= base <= final <= 1):
            raise ValueError(f"momentum must satisfy 0 <= momentum_base <= momentum_final <= 1, got {base}, {final}")


SSLConfig.__init__ = check_integer_arguments(SSLConfig.__init__)
