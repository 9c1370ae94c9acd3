"""Weighted k-nearest-neighbour evaluation of a frozen backbone (the DINO protocol).

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO, 2021),
``eval_knn.py``: features are L2-normalised, each test feature retrieves its ``k`` most
cosine-similar training features, and each neighbour votes for its class with weight
``exp(similarity / T)`` (T = 0.07, k = 20 by default; 10, 100, 200 are also reported).

Features come from :mod:`hf_sslviews.evaluation.features`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .features import check_finite_features, extract_features
from .metrics import load_metric

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Weighted kNN
# --------------------------------------------------------------------------------------------


def weighted_knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Class scores of the DINO weighted kNN classifier.

    For each test feature: cosine similarity to every (L2-normalised) training feature, the
    ``k`` most similar neighbours, and per class the sum of ``exp(similarity / temperature)``
    over the neighbours of that class (DINO ``eval_knn.py``, ``knn_classifier``).

    Args:
        train_features: ``[N_train, D]``.
        train_labels: int ``[N_train]`` in ``[0, num_classes)``.
        test_features: ``[N_test, D]``.
        num_classes: number of classes ``C``.
        k: neighbours per test example, ``1 <= k <= N_train``.
        temperature: the vote temperature ``T > 0``.
        batch_size: test examples per similarity block (bounds memory at ``batch_size * N_train``).

    Returns:
        float32 ``[N_test, C]`` class scores; ``argmax`` is the prediction.
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"features must be [N, D] with one D, got train {tuple(train_features.shape)} and test {tuple(test_features.shape)}")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must have shape [{train_features.shape[0]}], got {tuple(train_labels.shape)}")
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of training features ({train_features.shape[0]}); lower --k or use more training samples")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if train_labels.numel() and (train_labels.min() < 0 or train_labels.max() >= num_classes):
        raise ValueError(f"train labels must lie in [0, {num_classes}), got [{int(train_labels.min())}, {int(train_labels.max())}]")
    check_finite_features(train_features, "training feature")
    check_finite_features(test_features, "test feature")
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    train_labels = train_labels.long().to(train.device)
    scores = []
    for start in range(0, test.shape[0], batch_size):
        similarity = test[start : start + batch_size] @ train.T  # [b, N_train]
        top_similarity, top_index = similarity.topk(k, dim=1)  # [b, k]
        weights = (top_similarity / temperature).exp()
        votes = torch.zeros(top_index.shape[0], num_classes, device=train.device)
        scores.append(votes.scatter_add_(1, train_labels[top_index], weights))
    return torch.cat(scores) if scores else torch.zeros(0, num_classes)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: Optional[int] = None,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the weighted kNN classifier (:func:`weighted_knn_predict`).

    Top-1 goes through the ``evaluate`` accuracy module shipped with hf_sslviews; top-5 counts
    the test examples whose label is among the 5 highest class scores (``min(5, C)`` when there
    are fewer classes).

    Args:
        train_features: ``[N_train, D]``.
        train_labels: int ``[N_train]``.
        test_features: ``[N_test, D]``.
        test_labels: int ``[N_test]``.
        num_classes: ``C``; inferred as ``max label + 1`` when ``None``.
        k: neighbours per test example.
        temperature: the vote temperature.
        batch_size: test examples per similarity block.

    Returns:
        ``{"top1": float, "top5": float}``, fractions in ``[0, 1]``.
    """
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError(f"test_labels must have shape [{test_features.shape[0]}], got {tuple(test_labels.shape)}")
    if test_features.shape[0] == 0:
        raise ValueError("no test features: cannot compute an accuracy over zero examples")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if test_labels.min() < 0 or test_labels.max() >= num_classes:
        # A test label outside the classes can never be predicted: the accuracy would be a silent 0.
        raise ValueError(
            f"test labels must lie in [0, {num_classes}), got [{int(test_labels.min())}, {int(test_labels.max())}]"
            + (" (-1 marks an unlabelled example: score on a labelled split)" if test_labels.min() < 0 else "")
        )
    scores = weighted_knn_predict(train_features, train_labels, test_features, num_classes, k, temperature, batch_size)
    test_labels = test_labels.long().to(scores.device)
    top1 = load_metric("accuracy").compute(predictions=scores.argmax(dim=1).tolist(), references=test_labels.tolist())["accuracy"]
    top5_index = scores.topk(min(5, num_classes), dim=1).indices
    top5 = (top5_index == test_labels[:, None]).any(dim=1).float().mean().item()
    return {"top1": float(top1), "top5": float(top5)}


def run_knn_evaluation(
    model: Callable,
    train_dataset,
    test_dataset,
    transform: Callable,
    ks: Sequence[int] = (20,),
    temperature: float = 0.07,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 256,
    num_classes: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Extract train and test features once, then score weighted kNN for every ``k``.

    Args:
        model: the frozen backbone (see :func:`extract_features`).
        train_dataset: the labelled neighbour bank.
        test_dataset: the labelled queries.
        transform: the evaluation transform (:func:`eval_transform_for`).
        ks: the neighbour counts to report.
        temperature: the vote temperature.
        image_column: the image column's name.
        label_column: the label column's name.
        batch_size: images per forward pass.
        num_classes: ``C``; taken from a ``ClassLabel`` feature or inferred from the labels.
        device: where to run the model.
        progress: show a progress bar per split during feature extraction.

    Returns:
        ``{"knn": {"k=20": {"top1", "top5"}, ...}, "num_train", "num_test", "feature_dim",
        "temperature"}``.
    """
    if num_classes is None:
        feature = (getattr(train_dataset, "features", None) or {}).get(label_column)
        num_classes = getattr(feature, "num_classes", None)
    train_features, train_labels = extract_features(model, train_dataset, image_column, label_column, batch_size, transform, device, "train features" if progress else None, split="train")
    test_features, test_labels = extract_features(model, test_dataset, image_column, label_column, batch_size, transform, device, "test features" if progress else None, split="test")
    results = {
        f"k={k}": knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes, k, temperature)
        for k in ks
    }
    return {
        "knn": results,
        "num_train": int(train_features.shape[0]),
        "num_test": int(test_features.shape[0]),
        "feature_dim": int(train_features.shape[1]),
        "temperature": temperature,
    }


__all__ = ["knn_accuracy", "run_knn_evaluation", "weighted_knn_predict"]
