"""The registry of methods: ``--method`` names, their presets, and Auto-class registration.

Each method lives in its own module here and adds itself with :func:`register_recipe`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForPreTraining

from .base import MethodRecipe, Preset

RECIPES: dict[str, MethodRecipe] = {}


def register_recipe(recipe: MethodRecipe) -> MethodRecipe:
    """Add a method and register its config and model with transformers' Auto classes."""
    RECIPES[recipe.name] = recipe
    model_type = recipe.config_class.model_type
    try:
        AutoConfig.register(model_type, recipe.config_class)
        AutoModelForPreTraining.register(recipe.config_class, recipe.model_class)
    except ValueError:
        pass  # already registered (module reloaded)
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
