"""The models, in transformers' layout; installed and imported as ``hf_sslviews.modeling``.

Importing this package registers every method's config and pretraining model with
``AutoConfig`` / ``AutoModelForPreTraining``, so a checkpoint reloads with
``AutoModelForPreTraining.from_pretrained(dir)`` without importing any view, data or training code.
Method folders are found, not listed: a folder ``<m>/`` whose package exports one
``PretrainedConfig`` subclass and its ``<M>ForPreTraining`` model is registered. The folder's
name is the method's name, and its config's ``model_type`` is ``"sslviews_<m>"``: the rule by
which a checkpoint or an export finds its method (:func:`method_of`), checked here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from transformers import AutoConfig, AutoModelForPreTraining, PretrainedConfig, PreTrainedModel

MODEL_TYPE_PREFIX = "sslviews_"

# model_type -> (config class, pretraining model class), filled by _register_methods().
PRETRAINING_MODELS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {}


def _method_classes(package) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    configs = [obj for obj in vars(package).values() if inspect.isclass(obj) and issubclass(obj, PretrainedConfig) and obj.__module__.startswith(package.__name__)]
    if len(configs) != 1:
        raise TypeError(f"{package.__name__} must export exactly one PretrainedConfig subclass, found {[c.__name__ for c in configs]}")
    models = [
        obj for name, obj in vars(package).items()
        if inspect.isclass(obj) and issubclass(obj, PreTrainedModel) and name.endswith("ForPreTraining") and obj.config_class is configs[0]
    ]
    if len(models) != 1:
        raise TypeError(f"{package.__name__} must export exactly one <M>ForPreTraining model of {configs[0].__name__}, found {[m.__name__ for m in models]}")
    return configs[0], models[0]


def _register_methods() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if not info.ispkg or info.name == "common":
            continue
        config_class, model_class = _method_classes(importlib.import_module(f"{__name__}.{info.name}"))
        if config_class.model_type != f"{MODEL_TYPE_PREFIX}{info.name}":
            raise TypeError(
                f"{config_class.__name__}.model_type is {config_class.model_type!r}; the config of modeling/{info.name}/ must "
                f"have model_type {MODEL_TYPE_PREFIX + info.name!r} (a method's name is its model_type without {MODEL_TYPE_PREFIX!r})"
            )
        PRETRAINING_MODELS[config_class.model_type] = (config_class, model_class)
        try:
            AutoConfig.register(config_class.model_type, config_class)
            AutoModelForPreTraining.register(config_class, model_class)
        except ValueError:
            pass  # already registered (module reloaded)


def is_method_model_type(model_type) -> bool:
    """Whether a ``config.json``'s ``model_type`` names an hf_sslviews pretraining model."""
    return isinstance(model_type, str) and model_type.startswith(MODEL_TYPE_PREFIX)


def method_of(model_type: str) -> str:
    """The method name of a pretraining ``model_type``: ``"sslviews_aps"`` -> ``"aps"``."""
    return str(model_type).removeprefix(MODEL_TYPE_PREFIX)


_register_methods()

__all__ = ["MODEL_TYPE_PREFIX", "PRETRAINING_MODELS", "is_method_model_type", "method_of"]
