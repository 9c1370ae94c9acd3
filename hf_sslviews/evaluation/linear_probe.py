"""Linear probe of a frozen backbone: a linear classifier trained on cached features.

The backbone runs once over the train and test splits (:func:`~hf_sslviews.evaluation.features.extract_features`,
optionally cached as safetensors); everything after that works on the feature tensors only:

- features are standardised with the training set's per-dimension mean and std;
- ``solver="lbfgs"`` (the default, for sets that fit in memory): multinomial logistic regression
  ``mean cross-entropy + weight_decay / 2 * ||W||^2`` (bias not penalised), minimised full batch
  with ``torch.optim.LBFGS`` (strong-Wolfe line search) -- the objective of scikit-learn's
  ``LogisticRegression(C=1 / (weight_decay * N))``, the protocol of e.g. SimCLR / BYOL's small-set
  linear evaluations;
- ``solver="sgd"``: the same linear layer trained by SGD with momentum 0.9 and a cosine learning
  rate over a few epochs of the cached features (no batch norm), as in MoCo v3 / DINO;
- the L2 strength is picked by a small sweep: fit on ``1 - val_fraction`` of the training set,
  score top-1 on the held-out rest, keep the best (ties: the stronger regularisation), then refit
  on the whole training set;
- top-1 and top-5 on the test set go through the ``evaluate`` modules shipped with hf_sslviews.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .features import cached_features, check_finite_features, extract_features
from .metrics import load_metric

logger = logging.getLogger(__name__)

DEFAULT_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SOLVERS = ("lbfgs", "sgd")


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


@dataclass
class LinearClassifier:
    """A linear classifier over standardised features: ``logits = ((x - mean) / std) @ weight.T + bias``.

    Attributes:
        weight: ``[C, D]``.
        bias: ``[C]``.
        mean: ``[D]`` training-set feature mean.
        std: ``[D]`` training-set feature std (floored at 1e-6).
        weight_decay: the L2 strength it was trained with.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    weight_decay: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` raw features -> ``[N, C]`` float32 logits."""
        standardized = (features.to(self.mean) - self.mean) / self.std
        return (standardized @ self.weight.T + self.bias).float()


def standardization(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std ``[D]`` of ``[N, D]`` features; constant dimensions get std 1e-6 -> no blow-up to inf."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(1e-6)
    return mean, std


def _check_inputs(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float) -> None:
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [N, D] tensor, got shape {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape [{features.shape[0]}], got {tuple(labels.shape)}")
    check_finite_features(features, "training feature")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    if weight_decay < 0 or not math.isfinite(weight_decay):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")


def fit_logistic_regression_lbfgs(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 1000,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, full batch, L-BFGS with strong-Wolfe line search.

    Minimises ``mean_i CE(x_i W^T + b, y_i) + weight_decay / 2 * ||W||_F^2`` (the bias is not
    penalised), which is scikit-learn's ``LogisticRegression(C=1 / (weight_decay * N))``. The
    objective is strictly convex for ``weight_decay > 0``, so the result does not depend on the
    (zero) initialisation.

    Args:
        features: ``[N, D]`` (already standardised).
        labels: int ``[N]`` in ``[0, num_classes)``.
        num_classes: ``C``.
        weight_decay: the L2 strength ``>= 0``.
        max_iter: L-BFGS iterations at most.
        dtype: the optimisation dtype; float64 by default (the sets this solver is for are small).

    Returns:
        ``weight [C, D]`` and ``bias [C]`` in ``dtype``, on the features' device.
    """
    _check_inputs(features, labels, num_classes, weight_decay)
    x, y = features.to(dtype), labels.long().to(features.device)
    weight = torch.zeros(num_classes, x.shape[1], dtype=dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9 if dtype == torch.float64 else 1e-6, tolerance_change=1e-12 if dtype == torch.float64 else 1e-9,
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_linear_sgd(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    epochs: int = 50,
    batch_size: int = 256,
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same linear layer trained by mini-batch SGD with momentum and a cosine learning rate.

    No batch norm: features are standardised once beforehand instead. ``weight_decay`` is SGD's
    coupled L2 term on the weight only (it adds the gradient of ``weight_decay / 2 * ||W||^2``), so
    both solvers minimise the same objective. The learning rate decays from ``learning_rate`` to
    0 over all steps (``CosineAnnealingLR``), as in MoCo v3's linear probe.

    Args:
        features: ``[N, D]`` (already standardised).
        labels: int ``[N]``.
        num_classes: ``C``.
        weight_decay: the L2 strength ``>= 0``.
        epochs: passes over the cached features.
        batch_size: examples per step.
        learning_rate: the peak learning rate.
        momentum: SGD momentum.
        seed: seeds the example order.

    Returns:
        ``weight [C, D]`` and ``bias [C]`` (float32).
    """
    _check_inputs(features, labels, num_classes, weight_decay)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    x, y = features.float(), labels.long().to(features.device)
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.SGD(
        [{"params": [weight], "weight_decay": weight_decay}, {"params": [bias], "weight_decay": 0.0}], lr=learning_rate, momentum=momentum
    )
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            for start in range(0, x.shape[0], batch_size):
                index = order[start : start + batch_size]
                loss = F.cross_entropy(x[index] @ weight.T + bias, y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
    return weight.detach(), bias.detach()


def _fit(solver: str, features, labels, num_classes, weight_decay, solver_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    if solver == "lbfgs":
        return fit_logistic_regression_lbfgs(features, labels, num_classes, weight_decay, **solver_kwargs)
    return fit_linear_sgd(features, labels, num_classes, weight_decay, **solver_kwargs)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    solver: str = "lbfgs",
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    seed: int = 0,
    **solver_kwargs,
) -> tuple[LinearClassifier, dict[str, Any]]:
    """Standardise, pick the L2 strength on a held-out part of train, refit on all of train.

    Args:
        features: ``[N, D]`` training features (raw backbone output).
        labels: int ``[N]``.
        num_classes: ``C``.
        solver: ``"lbfgs"`` or ``"sgd"``.
        weight_decays: the L2 strengths to try; with one value there is no sweep.
        val_fraction: the held-out fraction of train for the sweep, in ``(0, 1)``.
        seed: seeds the held-out split (and the SGD order).
        **solver_kwargs: passed to :func:`fit_logistic_regression_lbfgs` or :func:`fit_linear_sgd`.

    Returns:
        The refitted :class:`LinearClassifier` and ``{"weight_decay": chosen, "sweep": {str(wd): val top-1},
        "num_val": ...}``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    weight_decays = sorted({float(wd) for wd in weight_decays}, reverse=True)  # strongest first: ties keep it
    if not weight_decays:
        raise ValueError("weight_decays is empty; give at least one L2 strength, e.g. --weight_decays 1e-4")
    if solver == "sgd":
        solver_kwargs.setdefault("seed", seed)
    check_finite_features(features, "training feature")  # before standardising spreads one NaN to every row
    mean, std = standardization(features.double() if solver == "lbfgs" else features.float())
    standardized = (features.to(mean) - mean) / std
    info: dict[str, Any] = {"sweep": {}, "num_val": 0}
    chosen = weight_decays[0]
    if len(weight_decays) > 1:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1) for a weight-decay sweep, got {val_fraction}")
        num_val = int(round(val_fraction * features.shape[0]))
        if num_val < 1 or num_val >= features.shape[0]:
            raise ValueError(f"{features.shape[0]} training examples are too few for a {val_fraction} held-out split; give one --weight_decays value or more data")
        order = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed)).to(features.device)
        val_index, fit_index = order[:num_val], order[num_val:]
        best = -1.0
        for weight_decay in weight_decays:
            weight, bias = _fit(solver, standardized[fit_index], labels[fit_index], num_classes, weight_decay, solver_kwargs)
            predictions = (standardized[val_index].to(weight) @ weight.T + bias).argmax(dim=1)
            accuracy = (predictions.cpu() == labels[val_index].cpu()).double().mean().item()
            info["sweep"][repr(weight_decay)] = accuracy
            logger.info("linear probe sweep: weight_decay %g -> held-out top-1 %.4f", weight_decay, accuracy)
            if accuracy > best:
                best, chosen = accuracy, weight_decay
        info["num_val"] = num_val
    weight, bias = _fit(solver, standardized, labels, num_classes, chosen, solver_kwargs)
    info["weight_decay"] = chosen
    return LinearClassifier(weight=weight, bias=bias, mean=mean.to(weight), std=std.to(weight), weight_decay=chosen), info


# --------------------------------------------------------------------------------------------
# Metrics and the whole evaluation
# --------------------------------------------------------------------------------------------


def top1_top5(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 (shipped ``accuracy``) and top-5 (shipped ``top_k_accuracy``, ``min(5, C)``) of ``[N, C]`` scores."""
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    references = labels.long().tolist()
    top1 = load_metric("accuracy").compute(predictions=scores.argmax(dim=1).tolist(), references=references)["accuracy"]
    top5 = load_metric("top_k_accuracy").compute(predictions=scores.float().tolist(), references=references, k=5)["top_k_accuracy"]
    return {"top1": float(top1), "top5": float(top5)}


def run_linear_probe(
    model: Callable,
    train_dataset,
    test_dataset,
    transform: Callable,
    solver: str = "lbfgs",
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    seed: int = 0,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 256,
    num_classes: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    feature_cache: Union[str, Path, None] = None,
    cache_key: Optional[Mapping[str, Any]] = None,
    solver_kwargs: Optional[Mapping[str, Any]] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Extract (or load cached) train and test features once, fit the probe, score the test set.

    Args:
        model: the frozen backbone (see :func:`~hf_sslviews.evaluation.features.extract_features`).
        train_dataset: labelled training images.
        test_dataset: labelled test images.
        transform: the evaluation transform (:func:`~hf_sslviews.evaluation.features.eval_transform_for`).
        solver: ``"lbfgs"`` or ``"sgd"``.
        weight_decays: L2 strengths swept on a held-out part of train.
        val_fraction: the held-out fraction.
        seed: seeds the held-out split and SGD.
        image_column: the image column's name.
        label_column: the label column's name.
        batch_size: images per forward pass.
        num_classes: ``C``; taken from a ``ClassLabel`` feature or inferred from the labels.
        device: where the backbone and the classifier run.
        feature_cache: a folder caching the features as safetensors, or ``None``.
        cache_key: what the features depend on besides the split (model, weights, dataset, caps);
            required with ``feature_cache``.
        solver_kwargs: passed on to the solver (``max_iter``; ``epochs``, ``batch_size``, ``learning_rate``).
        progress: show a progress bar per split during feature extraction.

    Returns:
        ``{"linear_probe": {"top1", "top5"}, "train_top1", "weight_decay", "sweep", "solver",
        "num_train", "num_val", "num_test", "feature_dim", "num_classes"}``.
    """
    if feature_cache is not None and cache_key is None:
        raise ValueError("a feature cache needs a cache_key describing the model and data the features come from")
    if num_classes is None:
        feature = (getattr(train_dataset, "features", None) or {}).get(label_column)
        num_classes = getattr(feature, "num_classes", None)
    features = {}
    for name, dataset in (("train", train_dataset), ("test", test_dataset)):
        key = {**(cache_key or {}), "split_role": name, "transform": repr(transform)}
        features[name] = cached_features(
            feature_cache, name, key,
            lambda dataset=dataset, name=name: extract_features(model, dataset, image_column, label_column, batch_size, transform, device, f"{name} features" if progress else None, split=name),
        )
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    check_finite_features(test_x, "test feature")
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    if test_y.numel() and (test_y.min() < 0 or test_y.max() >= num_classes):
        raise ValueError(f"test labels must lie in [0, {num_classes}), got [{int(test_y.min())}, {int(test_y.max())}]")
    classifier_device = torch.device(device) if device is not None else torch.device("cpu")
    classifier, info = fit_linear_probe(
        train_x.to(classifier_device), train_y.to(classifier_device), num_classes, solver=solver,
        weight_decays=weight_decays, val_fraction=val_fraction, seed=seed, **dict(solver_kwargs or {}),
    )
    test_scores = classifier.logits(test_x.to(classifier_device)).cpu()
    train_top1 = (classifier.logits(train_x.to(classifier_device)).argmax(dim=1).cpu() == train_y).double().mean().item()
    return {
        "linear_probe": top1_top5(test_scores, test_y),
        "train_top1": train_top1,
        "weight_decay": info["weight_decay"],
        "sweep": info["sweep"],
        "solver": solver,
        "num_train": int(train_x.shape[0]),
        "num_val": info["num_val"],
        "num_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "num_classes": int(num_classes),
    }


__all__ = [
    "DEFAULT_WEIGHT_DECAYS",
    "LinearClassifier",
    "fit_linear_probe",
    "fit_linear_sgd",
    "fit_logistic_regression_lbfgs",
    "run_linear_probe",
    "standardization",
    "top1_top5",
]
