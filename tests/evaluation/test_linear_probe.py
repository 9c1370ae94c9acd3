"""Linear probe: solvers, weight-decay sweep, feature cache, top-k metric, the script end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_sslviews.evaluation.features import cached_features
from hf_sslviews.evaluation.linear_probe import fit_linear_probe, fit_linear_sgd, fit_logistic_regression_lbfgs, top1_top5
from hf_sslviews.evaluation.metrics import available_metrics, load_metric

from ..helpers import export_tiny_backbone, load_script

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def clusters(n_per_class, num_classes=4, dim=6, spread=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = 5.0 * torch.eye(num_classes, dim)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centers[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


# ---------------------------------------------------------------------------- solvers


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_fit_linear_probe__separable_clusters_score_100_percent(solver):
    train, train_labels = clusters(25, seed=0)
    test, test_labels = clusters(10, seed=1)
    kwargs = dict(epochs=20, batch_size=32) if solver == "sgd" else {}
    classifier, info = fit_linear_probe(train, train_labels, 4, solver=solver, weight_decays=[1e-3, 1e-2], **kwargs)
    assert top1_top5(classifier.logits(test), test_labels) == {"top1": 1.0, "top5": 1.0}
    # Every held-out score is perfect: the tie goes to the stronger regularisation.
    assert info["sweep"] == {"0.01": 1.0, "0.001": 1.0} and info["weight_decay"] == 0.01 and info["num_val"] == 20


def test_fit_logistic_regression_lbfgs__two_point_problem_matches_the_analytic_optimum():
    # Points x = -1 (class 0) and x = +1 (class 1). By symmetry b = 0 and W = [-a, a], and the
    # objective log(1 + exp(-2a)) + weight_decay * a^2 is minimal where sigmoid(-2a) = weight_decay * a.
    weight_decay = 0.1
    low, high = 0.0, 20.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if 1 / (1 + math.exp(2 * mid)) > weight_decay * mid else (low, mid)
    a = (low + high) / 2
    weight, bias = fit_logistic_regression_lbfgs(torch.tensor([[-1.0], [1.0]]), torch.tensor([0, 1]), 2, weight_decay)
    torch.testing.assert_close(weight, torch.tensor([[-a], [a]], dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias, torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)
    probability = torch.softmax(torch.tensor([[0.5]], dtype=torch.float64) @ weight.T + bias, dim=1)[0, 1]
    assert probability.item() == pytest.approx(1 / (1 + math.exp(-a)), abs=1e-6)  # P(class 1 | x = 0.5) = sigmoid(2a * 0.5)


def test_fit_logistic_regression_lbfgs__matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")  # sklearn is not a project dependency
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(150, 5, generator=generator, dtype=torch.float64)
    labels = (features @ torch.randn(5, 3, generator=generator, dtype=torch.float64) + torch.randn(150, 3, generator=generator, dtype=torch.float64)).argmax(dim=1)
    weight_decay = 0.05
    weight, bias = fit_logistic_regression_lbfgs(features, labels, 3, weight_decay)
    # sklearn minimises C * sum CE + ||W||^2 / 2, i.e. our mean CE + wd / 2 ||W||^2 with C = 1 / (wd * N).
    reference = linear_model.LogisticRegression(C=1 / (weight_decay * 150), tol=1e-10, max_iter=10_000).fit(features.numpy(), labels.numpy())
    torch.testing.assert_close(weight, torch.from_numpy(reference.coef_), atol=1e-4, rtol=0)
    torch.testing.assert_close(bias, torch.from_numpy(reference.intercept_), atol=1e-4, rtol=0)


def test_fit_linear_sgd__approaches_the_lbfgs_optimum_of_the_same_objective():
    features, labels = clusters(20, spread=2.0)
    features = (features - features.mean(0)) / features.std(0, unbiased=False)
    exact, exact_bias = fit_logistic_regression_lbfgs(features, labels, 4, 0.1)
    sgd, sgd_bias = fit_linear_sgd(features, labels, 4, 0.1, epochs=150, batch_size=80, learning_rate=0.5)
    torch.testing.assert_close(sgd.double(), exact, atol=0.02, rtol=0)
    torch.testing.assert_close(sgd_bias.double(), exact_bias, atol=0.02, rtol=0)


def test_fit_linear_probe__features_are_standardised_so_scale_does_not_matter():
    features, labels = clusters(15, spread=2.0)
    classifier, _ = fit_linear_probe(features, labels, 4, weight_decays=[1e-2])
    scaled, _ = fit_linear_probe(features * 1000 + 7, labels, 4, weight_decays=[1e-2])
    torch.testing.assert_close(scaled.logits(features * 1000 + 7), classifier.logits(features), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(solver="adam"), "solver must be one of"),
        (dict(weight_decays=[]), "weight_decays is empty"),
        (dict(weight_decays=[-1.0]), "weight_decay must be a finite number >= 0"),
        (dict(val_fraction=1.5), "val_fraction must lie in"),
        (dict(num_classes=2), r"labels must lie in \[0, 2\)"),
    ],
)
def test_fit_linear_probe__rejects_bad_arguments(kwargs, message):
    features, labels = clusters(5)
    arguments = dict(features=features, labels=labels, num_classes=4, weight_decays=[1e-3, 1e-2])
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit_linear_probe(**arguments)


# ---------------------------------------------------------------------------- cache and metric


def test_cached_features__extracts_once_per_key(tmp_path):
    calls = []

    def extract():
        calls.append(1)
        return torch.randn(4, 3), torch.tensor([0, 1, 2, 1])

    first = cached_features(tmp_path, "train", {"model": "a"}, extract)
    again = cached_features(tmp_path, "train", {"model": "a"}, extract)
    assert len(calls) == 1 and torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    cached_features(tmp_path, "train", {"model": "b"}, extract)  # another model: another file
    assert len(calls) == 2 and len(list(tmp_path.glob("train-*.safetensors"))) == 2
    cached_features(None, "train", {"model": "a"}, extract)  # no cache folder: always extract
    assert len(calls) == 3


def test_top_k_accuracy_metric__known_values():
    assert "top_k_accuracy" in available_metrics()
    top_k = load_metric("top_k_accuracy")
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]
    assert top_k.compute(predictions=scores, references=[2, 1, 2], k=1) == {"top_k_accuracy": pytest.approx(1 / 3)}
    assert top_k.compute(predictions=scores, references=[2, 1, 2], k=2) == {"top_k_accuracy": 1.0}
    # Row 3 ties classes 0 and 1 at 0.2: the lower index takes the second place, so label 1 misses.
    assert top_k.compute(predictions=scores, references=[0, 0, 1], k=2, normalize=False) == {"top_k_accuracy": 1}
    assert top_k.compute(predictions=scores, references=[0, 2, 1], k=5) == {"top_k_accuracy": 1.0}  # k >= C
    with pytest.raises(ValueError, match=r"references must lie in \[0, 3\)"):
        top_k.compute(predictions=scores, references=[0, 3, 1])


def test_top1_top5__through_the_shipped_metrics():
    scores = torch.eye(6)[[0, 1, 2, 3]] * 10 + torch.arange(6.0) * 0.1  # class 5, 4, 3, ... next after the peak
    assert top1_top5(scores, torch.tensor([0, 1, 5, 0])) == {"top1": 0.5, "top5": 0.75}


# ---------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def tiny_backbone_dir(tmp_path_factory):
    return export_tiny_backbone(tmp_path_factory.mktemp("backbone") / "backbone")


def test_run_linear_probe__end_to_end_subprocess_then_cached_in_process(tiny_backbone_dir, tmp_path, capsys):
    cache, output = tmp_path / "cache", tmp_path / "results" / "probe.json"
    flags = ["--model_name_or_path", str(tiny_backbone_dir), "--max_train_samples", "120", "--max_test_samples", "40",
             "--batch_size", "64", "--weight_decays", "1e-3", "1e-1", "--feature_cache", str(cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "scripts" / "run_linear_probe.py"), *flags, "--output_file", str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train (120) -> test (40)" in result.stdout and "top-5" in result.stdout
    saved = json.loads(output.read_text())
    assert (saved["num_train"], saved["num_val"], saved["num_test"], saved["feature_dim"], saved["num_classes"]) == (120, 24, 40, 48, 10)
    assert set(saved["sweep"]) == {"0.001", "0.1"} and saved["weight_decay"] in (1e-3, 1e-1)
    assert 0.0 <= saved["linear_probe"]["top1"] <= saved["linear_probe"]["top5"] <= 1.0
    assert len(list(cache.glob("*.safetensors"))) == 2

    # In process, from the cache: same features, same numbers; the floor gets features of its own.
    script = load_script("run_linear_probe")
    again = script.main(flags)
    assert again["linear_probe"] == pytest.approx(saved["linear_probe"]) and len(list(cache.glob("*.safetensors"))) == 2
    floor = script.main([*flags, "--random_init", "--solver", "sgd", "--epochs", "3"])
    assert "(random init)" in capsys.readouterr().out
    assert floor["solver"] == "sgd" and len(list(cache.glob("*.safetensors"))) == 4
