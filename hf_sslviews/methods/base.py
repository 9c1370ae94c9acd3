"""What a method is to the scripts: its config and model classes, its views, its presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..views.base import ViewTransform


@dataclass(frozen=True)
class Preset:
    """A named recipe: config fields, view arguments and training flags.

    Attributes:
        description: one line: what it reproduces (paper, table) or what it is for.
        config: ``<M>Config`` fields.
        views: keyword arguments of the method's view builder.
        training: script / ``TrainingArguments`` flags (``{"learning_rate": 1e-3}``). They are
            placed before the user's flags, so any flag given explicitly wins.
    """

    description: str
    config: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRecipe:
    """Everything the scripts need to know about one method.

    Attributes:
        name: the ``--method`` value.
        title: the method's name as people write it (model cards, logs): ``"MoCo v3"``.
        config_class: the ``<M>Config``.
        model_class: the ``<M>ForPreTraining``.
        build_views: ``(config, image_column, **view_kwargs) -> ViewTransform`` whose output keys
            are the model's ``forward`` arguments.
        presets: preset name -> :class:`Preset`; the first one is the small CPU default.
        citation: BibTeX of the paper (for model cards).

    The model card's method section is ``model_cards/<name>.md``.
    """

    name: str
    config_class: type
    model_class: type
    build_views: Callable[..., ViewTransform]
    presets: dict[str, Preset]
    citation: str = ""
    title: str = ""

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))
