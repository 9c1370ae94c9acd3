"""The registry of methods: ``--method`` names, their presets and view builders.

Each method lives in its own module here and adds itself with :func:`register_recipe`. The Auto
classes are registered by :mod:`hf_sslviews.modeling` (loading a checkpoint needs no recipe).
"""

from __future__ import annotations

from ..modeling import PRETRAINING_MODELS
from .base import MethodRecipe, Preset

RECIPES: dict[str, MethodRecipe] = {}


def register_recipe(recipe: MethodRecipe) -> MethodRecipe:
    """Add a method: its name, presets and views, for the config and model ``modeling`` registered."""
    registered = PRETRAINING_MODELS.get(recipe.config_class.model_type)
    if registered != (recipe.config_class, recipe.model_class):
        raise ValueError(
            f"method {recipe.name!r}: {recipe.config_class.__name__} / {recipe.model_class.__name__} are not the classes "
            f"hf_sslviews.modeling registered for {recipe.config_class.model_type!r} ({registered}); "
            f"export them from modeling/{recipe.name}/__init__.py"
        )
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(method: str) -> MethodRecipe:
    if method not in RECIPES:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(RECIPES)} (--method)")
    return RECIPES[method]


def find_preset(name: str) -> tuple[MethodRecipe, Preset]:
    """The method and preset for a preset name (preset names are unique across methods)."""
    for recipe in RECIPES.values():
        if name in recipe.presets:
            return recipe, recipe.presets[name]
    names = sorted(p for r in RECIPES.values() for p in r.presets)
    raise ValueError(f"unknown preset {name!r}; choose one of {names} (--preset)")


def _discover() -> None:
    """Import every module of this package: each method module registers itself.

    No hand-kept list: a ninth method is its module here (and its ``modeling/<m>/`` folder,
    its card and its tests).
    """
    import importlib
    import pkgutil

    for module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


_discover()

__all__ = ["RECIPES", "MethodRecipe", "Preset", "find_preset", "get_recipe", "register_recipe"]
