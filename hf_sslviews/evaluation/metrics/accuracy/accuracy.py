"""Top-1 and top-k accuracy as one ``evaluate`` metric module, shipped inside hf_sslviews.

Loaded by path, so it works offline (no Hub download)::

    from hf_sslviews.evaluation.metrics import load_metric
    accuracy = load_metric("accuracy")
    accuracy.compute(predictions=[0, 1, 2], references=[0, 1, 1])  # {'accuracy': 0.666...}
    top_k = load_metric("top_k_accuracy")  # this module's "top_k" configuration
    top_k.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 1], k=2)  # {'top_k_accuracy': 1.0}
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy of class predictions. The default configuration takes predicted class indices:
Accuracy = (number of correct predictions) / (number of examples), with `sample_weight` the
weighted fraction. The "top_k" configuration takes one row of class scores per example and
counts an example when its reference class is among the k highest scores (logits,
probabilities or vote counts: only their order matters; k >= the number of classes counts every
example; ties go to the lower class index). Used by hf_sslviews' kNN, linear-probe and
fine-tuning evaluations.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: default configuration, `list` of `int` (a predicted class index per example);
        "top_k", `list` of `list` of `float` (a row of C class scores per example).
    references (`list` of `int`): true class indices, one per example.
    normalize (`bool`): if True (default), return the fraction correct; if False, the count.
    sample_weight (`list` of `float`): default configuration only, optional per-example weights.
    k (`int`): "top_k" only, how many of the highest-scoring classes count as a hit (default 5).

Returns:
    accuracy, or top_k_accuracy for "top_k" (`float` or `int`): in [0, 1] when normalize=True,
    else the number correct.

Examples:
    >>> accuracy = evaluate.load("hf_sslviews/evaluation/metrics/accuracy")
    >>> accuracy.compute(predictions=[0, 1, 2, 0], references=[0, 1, 1, 0])
    {'accuracy': 0.75}
    >>> top_k = evaluate.load("hf_sslviews/evaluation/metrics/accuracy", "top_k")
    >>> top_k.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 1], k=2)
    {'top_k_accuracy': 1.0}
"""

_CITATION = """
@software{hf_sslviews,
  title = {hf_sslviews: self-supervised view-construction methods for the Hugging Face stack},
  year = {2025},
}
"""

TOP_K = "top_k"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Classification accuracy: top-1 over class indices, or top-k over class scores (config ``"top_k"``)."""

    def _info(self):
        predictions = datasets.List(datasets.Value("float32")) if self.config_name == TOP_K else datasets.Value("int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": predictions, "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None, k=5):
        if self.config_name == TOP_K:
            return {"top_k_accuracy": _top_k(predictions, references, k, normalize)}
        return {"accuracy": _top_1(predictions, references, normalize, sample_weight)}


def _top_1(predictions, references, normalize, sample_weight):
    predictions = np.asarray(predictions, dtype=np.int64)
    references = np.asarray(references, dtype=np.int64)
    if predictions.size == 0:
        raise ValueError("accuracy of zero examples is undefined; pass at least one prediction")
    correct = (predictions == references).astype(np.float64)
    weights = np.ones_like(correct) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != correct.shape:
        raise ValueError(f"sample_weight has shape {weights.shape}, expected {correct.shape} (one weight per example)")
    total = float((correct * weights).sum())
    if normalize:
        return total / float(weights.sum())
    return total if sample_weight is not None else int(total)


def _top_k(predictions, references, k, normalize):
    scores = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.int64)
    if scores.size == 0:
        raise ValueError("top-k accuracy of zero examples is undefined; pass at least one row of scores")
    if scores.ndim != 2:
        raise ValueError(f"predictions must be one row of class scores per example (all rows of one length), got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_classes = scores.shape[1]
    if references.min() < 0 or references.max() >= num_classes:
        raise ValueError(f"references must lie in [0, {num_classes}) (one score per class), got [{references.min()}, {references.max()}]")
    top = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, num_classes)]
    hits = (top == references[:, None]).any(axis=1)
    return float(hits.mean()) if normalize else int(hits.sum())
