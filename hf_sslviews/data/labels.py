"""Class labels carried next to the views, for the online linear probe."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..views.base import ViewTransform


class WithLabels:
    """A view transform whose rows also carry the row's class label as ``labels`` (an int64 scalar tensor).

    The :class:`~hf_sslviews.data.collator.ViewCollator` stacks them into ``[B]`` and drops them with
    their undecodable images; :class:`~hf_sslviews.training.trainer.SSLTrainer` takes them out of the
    batch before the model's forward (no method sees a label) and trains its online linear probe
    on them. Attributes read and set are those of the wrapped transform (``seed``, ``epoch``, ...),
    which the Trainer finds through :attr:`views`.

    Args:
        views: the method's view transform.
        label_column: the dataset column holding the integer class labels.
    """

    def __init__(self, views: ViewTransform, label_column: str = "label"):
        self.views = views
        self.label_column = label_column

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        if self.label_column not in batch:
            raise ValueError(
                f"the online linear probe needs labels: column {self.label_column!r} not found among {sorted(batch)}. "
                "Pass the right one with --label_column_name, or leave --online_linear_probe off."
            )
        out = self.views(batch)
        out["labels"] = [torch.tensor(int(label), dtype=torch.int64) for label in batch[self.label_column]]
        return out

    _OWN = ("views", "label_column")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this wrapper does not have: the view transform's settings.
        if name in self._OWN:
            raise AttributeError(name)
        return getattr(self.views, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings (seed, epoch, reduced_decoding, ...) go to the views, which read them.
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.views, name, value)


__all__ = ["WithLabels"]
