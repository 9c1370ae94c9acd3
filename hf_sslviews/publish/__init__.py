"""Publishing a run: the timm-format backbone export, model cards, Hub upload, the strict checkpoint loader."""

from .cards import render_model_card
from .export import export_backbone, export_run_backbone
from .hub import push_run
from .loading import load_pretraining_model

__all__ = ["export_backbone", "export_run_backbone", "load_pretraining_model", "push_run", "render_model_card"]
