"""Class labels: checked where they enter, and carried next to the views for the online probe.

Every script that scores on labels (kNN, linear probe, fine-tuning, the online probe) needs class
indices: whole numbers >= 0. What else a label column can hold turns into a wrong number without
a word if it is passed on: ``-1`` (``ClassLabel``'s "no label", e.g. a test split published
without its labels) scores 0% as if the backbone were useless, ``0.7`` truncates to class 0, ``None``
crashes deep in torch. :func:`class_index` and :func:`check_label_column` refuse them with the
column, the value and the fix; :func:`encode_string_labels` turns string class names into one
``ClassLabel`` shared by both splits.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional

import datasets
import numpy as np
import torch

from ..views.base import ViewTransform

_UNLABELLED_FIX = "Score on a labelled split (--test_split), or hold out part of the training split with --train_val_split 0.1."


def _where(column: str, split: Optional[str]) -> str:
    return f"label column {column!r}" + (f" of split {split!r}" if split else "")


def class_index(value: Any, column: str = "label", split: Optional[str] = None) -> int:
    """``value`` as a class index, or a ``ValueError`` naming the column, the value and the fix.

    Accepts Python and numpy integers, and floats that hold a whole number (``2.0``: Arrow often
    stores labels as floats); refuses ``None``, negative numbers, fractions, non-finite floats,
    strings and anything else.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if value is None:
        raise ValueError(f"{_where(column, split)} holds None: the example has no class label. {_UNLABELLED_FIX}")
    if isinstance(value, (str, bytes)):
        raise ValueError(
            f"{_where(column, split)} holds the string {value!r}, not a class index. The evaluation scripts encode "
            f"string class names themselves; in your own code call dataset.class_encode_column({column!r}) first."
        )
    if isinstance(value, (numbers.Integral, np.integer)):
        index = int(value)
    elif isinstance(value, (numbers.Real, np.floating)) and math.isfinite(float(value)) and float(value).is_integer():
        index = int(value)
    else:
        raise ValueError(
            f"{_where(column, split)} holds {value!r}, which is not a class index (a whole number >= 0): the "
            f"column looks like a regression target or a soft label. Map it to classes 0..C-1 first."
        )
    if index < 0:
        raise ValueError(
            f"{_where(column, split)} holds {index}: a negative label marks an unlabelled example (ClassLabel's -1, "
            f"e.g. a test split published without its labels). {_UNLABELLED_FIX}"
        )
    return index


def _label_values(dataset: datasets.Dataset, column: str):
    """The label column of the dataset's rows as an Arrow array (a ``select`` or split is respected:
    ``dataset.data`` would be the whole underlying table)."""
    return dataset.select_columns([column]).with_format("arrow")[:][column]


def check_label_column(dataset, column: str = "label", split: Optional[str] = None) -> None:
    """Check every label of a map-style dataset before any work is done; ``ValueError`` on the first bad one.

    Reads only the label column (one Arrow column: fast even for millions of rows). A streaming
    dataset cannot be read ahead: its labels are checked one by one as they arrive.
    """
    if not isinstance(dataset, datasets.Dataset) or column not in (dataset.column_names or []):
        return
    import pyarrow as pa
    import pyarrow.compute as pc

    values = _label_values(dataset, column)
    if values.null_count:
        class_index(None, column, split)
    if pa.types.is_integer(values.type):
        if len(values) and pc.min(values).as_py() < 0:
            class_index(pc.min(values).as_py(), column, split)
        return
    if pa.types.is_floating(values.type):
        array = values.to_numpy()
        bad = ~np.isfinite(array) | (array != np.floor(array)) | (array < 0)
        if bad.any():
            class_index(float(array[np.argmax(bad)]), column, split)
        return
    first = values[0].as_py() if len(values) else 0
    class_index(first, column, split)  # strings and other types: the message names the fix


def encode_string_labels(train, test, column: str = "label"):
    """``(train, test)`` with a string label column cast to one ``ClassLabel`` shared by both splits.

    The class names are the sorted union of the two splits' values, so class ``i`` means the same
    name on both sides (``class_encode_column`` per split would number each split on its own). Any
    other column type is returned unchanged.
    """
    def is_string(dataset) -> bool:
        feature = (getattr(dataset, "features", None) or {}).get(column)
        return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")

    if not (is_string(train) and is_string(test)) or not all(isinstance(d, datasets.Dataset) for d in (train, test)):
        return train, test
    for dataset, split in ((train, "train"), (test, "test")):
        if _label_values(dataset, column).null_count:
            class_index(None, column, split)
    names = sorted(set(train.unique(column)) | set(test.unique(column)))
    label = datasets.ClassLabel(names=names)
    return train.cast_column(column, label), test.cast_column(column, label)


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
        out["labels"] = [torch.tensor(class_index(label, self.label_column), dtype=torch.int64) for label in batch[self.label_column]]
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


__all__ = ["WithLabels", "check_label_column", "class_index", "encode_string_labels"]
