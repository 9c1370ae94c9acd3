"""hf_sslviews: self-supervised view-construction methods for the Hugging Face stack.

Importing the package registers every method's config and model with ``AutoConfig`` and
``AutoModelForPreTraining``, so a pretraining checkpoint reloads with
``AutoModelForPreTraining.from_pretrained(dir)``.
"""

__version__ = "0.1.0"

from .methods import RECIPES, find_preset, get_recipe  # noqa: E402  (registers the Auto classes)

__all__ = ["RECIPES", "__version__", "find_preset", "get_recipe"]
