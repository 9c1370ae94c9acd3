"""What a method is to the scripts: its config and model classes, its views, its presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..model_cards import MethodCard, method_card
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
        config_class: the ``<M>Config``.
        model_class: the ``<M>ForPreTraining``.
        build_views: ``(config, image_column, **view_kwargs) -> ViewTransform`` whose output keys
            are the model's ``forward`` arguments.
        presets: preset name -> :class:`Preset`; the first one is the small CPU default.

    Its title, card text and citation are the method's card, ``model_cards/<name>.md``
    (:func:`hf_sslviews.model_cards.method_card`): one copy, read by the scripts and the cards.
    """

    name: str
    config_class: type
    model_class: type
    build_views: Callable[..., ViewTransform]
    presets: dict[str, Preset]

    @property
    def card(self) -> MethodCard:
        card = method_card(self.name)
        if card is None:
            raise ValueError(f"method {self.name!r} has no card: add model_cards/{self.name}.md (title, method text, citation)")
        return card

    @property
    def title(self) -> str:
        """The method's name as people write it (``"MoCo v3"``)."""
        return self.card.title

    @property
    def citation(self) -> str:
        """The paper's BibTeX."""
        return self.card.citation

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))
