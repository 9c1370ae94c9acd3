"""hf_sslviews: self-supervised view-construction methods for the Hugging Face stack.

Importing the package registers every method's config and model with ``AutoConfig`` and
``AutoModelForPreTraining`` (:mod:`hf_sslviews.modeling`), so a pretraining checkpoint reloads with
``AutoModelForPreTraining.from_pretrained(dir)``. The method registry (``RECIPES``: presets and
view builders) is imported on first use, so loading a checkpoint imports no view or data code.
"""

__version__ = "0.1.0"

from . import modeling  # noqa: E402, F401  (registers the Auto classes)

_METHOD_REGISTRY = ("RECIPES", "find_preset", "get_recipe")


def __getattr__(name: str):
    if name in _METHOD_REGISTRY:
        from . import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'hf_sslviews' has no attribute {name!r}")


__all__ = ["RECIPES", "__version__", "find_preset", "get_recipe"]
