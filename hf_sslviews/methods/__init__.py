"""The registry of methods: ``--method`` names, their presets and view builders.

Each method lives in its own module here and adds itself with :func:`register_recipe`. The Auto
classes are registered by :mod:`hf_sslviews.modeling` (loading a checkpoint needs no recipe).
"""

from __future__ import annotations

from ..modeling import MODEL_TYPE_PREFIX, PRETRAINING_MODELS
from .base import MethodRecipe, Preset

RECIPES: dict[str, MethodRecipe] = {}


def register_recipe(recipe: MethodRecipe) -> MethodRecipe:
    """Add a method: its name, presets and views, for the config and model ``modeling`` registered.

    Refused, naming the fix: a name that is not its config's ``model_type`` without the
    ``sslviews_`` prefix (checkpoints and exports find their method by that rule), classes other
    than the ones ``hf_sslviews.modeling`` registered, a method without a card, a name taken.
    """
    expected_type = f"{MODEL_TYPE_PREFIX}{recipe.name}"
    if recipe.config_class.model_type != expected_type:
        raise ValueError(
            f"method {recipe.name!r}: {recipe.config_class.__name__}.model_type is {recipe.config_class.model_type!r}; a method "
            f"named {recipe.name!r} needs model_type {expected_type!r} (rename the method or the model_type)"
        )
    if recipe.name in RECIPES:
        raise ValueError(f"method {recipe.name!r} is registered twice (by {RECIPES[recipe.name].config_class.__module__} and {recipe.config_class.__module__})")
    recipe.card  # noqa: B018 -- raises, naming the missing model_cards/<name>.md
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
