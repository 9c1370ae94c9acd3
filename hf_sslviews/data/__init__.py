"""Image data for pretraining: sources (Hub, folder, embedded sample, Debian Fashion-MNIST), streaming, the collator."""

from .collator import ViewCollator
from .sources import load_image_dataset, prepare_for_views

__all__ = ["ViewCollator", "load_image_dataset", "prepare_for_views"]
