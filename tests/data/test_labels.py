"""Labels checked where they enter: no evaluation scores a label that is not a class index.

Each case was a silent wrong number with exit 0 before the check: a test split of ``-1`` labels
scored 0%, ``0.7`` / ``1.7`` were truncated to classes 0 / 1, one NaN feature turned the linear
probe's weights to NaN. Here every one ends in an error naming the column, the split and the fix,
and string class names are encoded consistently across the two splits.
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from hf_sslviews.data.labels import check_label_column, class_index, encode_string_labels
from hf_sslviews.evaluation.features import NonFiniteFeaturesError
from hf_sslviews.evaluation.finetune import ClassificationTransform, class_labels
from hf_sslviews.evaluation.knn import knn_accuracy, weighted_knn_predict
from hf_sslviews.evaluation.linear_probe import fit_linear_probe

from ..helpers import export_tiny_backbone, load_script, random_image_dataset


@pytest.mark.parametrize("value, expected", [(3, 3), (np.int64(2), 2), (2.0, 2), (np.float32(1.0), 1), (torch.tensor(4), 4), (True, 1)])
def test_class_index__accepts_whole_numbers(value, expected):
    assert class_index(value) == expected


@pytest.mark.parametrize("value, message", [
    (None, "holds None: the example has no class label"),
    (-1, "negative label marks an unlabelled example"),
    (0.7, "not a class index"),
    (float("nan"), "not a class index"),
    (float("inf"), "not a class index"),
    ("cat", "class_encode_column"),
])
def test_class_index__refuses_what_is_not_a_class_and_names_column_split_and_fix(value, message):
    with pytest.raises(ValueError, match=message) as caught:
        class_index(value, "target", "test")
    assert "'target' of split 'test'" in str(caught.value)


def _with_labels(labels, feature=None) -> datasets.Dataset:
    images = random_image_dataset(len(labels)).remove_columns("label")
    return images.add_column("label", labels, feature=feature)


@pytest.mark.parametrize("labels, message", [
    ([0, 1, -1, 1], "holds -1"),
    ([0.0, 0.7, 1.7, 1.0], "holds 0.7"),
    ([0, None, 1, 1], "holds None"),
])
def test_check_label_column__finds_the_bad_label_before_any_work(labels, message):
    with pytest.raises(ValueError, match=message):
        check_label_column(_with_labels(labels), "label", "test")


def test_check_label_column__passes_integers_and_whole_floats():
    check_label_column(_with_labels([0, 1, 2, 1]))
    check_label_column(_with_labels([0.0, 1.0, 2.0, 1.0]))


def test_encode_string_labels__one_class_numbering_for_both_splits():
    # Encoded per split, "dog" would be 0 in test (its only class) and 1 in train.
    train, test = encode_string_labels(_with_labels(["cat", "dog", "cat", "emu"]), _with_labels(["dog", "dog", "fox", "dog"]))
    names = ["cat", "dog", "emu", "fox"]
    assert train.features["label"].names == names and test.features["label"].names == names
    assert train["label"] == [0, 1, 0, 2] and test["label"] == [1, 1, 3, 1]


def test_knn_accuracy__refuses_unlabelled_test_split_instead_of_scoring_zero():
    features = torch.eye(4)
    with pytest.raises(ValueError, match=r"-1 marks an unlabelled example"):
        knn_accuracy(features, torch.tensor([0, 1, 0, 1]), features, torch.tensor([-1, -1, -1, -1]), num_classes=2, k=2)


def test_probes_refuse_non_finite_features():
    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 2
    poisoned = features.clone()
    poisoned[7, 3] = float("nan")
    with pytest.raises(NonFiniteFeaturesError, match=r"1 of 40 training feature rows are not finite.*row 7"):
        fit_linear_probe(poisoned, labels, 2, weight_decays=[1e-4])
    with pytest.raises(NonFiniteFeaturesError, match="test feature"):
        weighted_knn_predict(features, labels, poisoned, num_classes=2, k=3)
    poisoned[7, 3] = float("inf")
    with pytest.raises(NonFiniteFeaturesError):
        knn_accuracy(poisoned, labels, features, labels, k=3)


def test_finetune_labels__fractions_refused_and_head_covers_every_split():
    transform = ClassificationTransform(lambda image: torch.zeros(3, 4, 4), training=True)
    rows = random_image_dataset(2)[:2]
    with pytest.raises(ValueError, match="holds 1.7"):
        transform({**rows, "label": [0.0, 1.7]})
    assert transform({**rows, "label": [0.0, 1.0]})["labels"] == [0, 1]
    train, test = _with_labels([0, 1, 1, 0]), _with_labels([0, 2, 1, 2])
    assert class_labels(train, "label", test)[0] == 3  # class 2 only in test still gets a head output


def test_knn_script__test_split_without_labels_is_refused_with_its_name(tmp_path):
    backbone = export_tiny_backbone(tmp_path / "backbone")
    data = datasets.DatasetDict({
        "train": random_image_dataset(8, size=32),
        "test": _with_labels([-1] * 4, datasets.ClassLabel(names=["a", "b"])),
    })
    data.save_to_disk(str(tmp_path / "data"))
    knn = load_script("run_knn_eval")
    with pytest.raises(ValueError, match=r"split 'test' holds -1.*--train_val_split"):
        knn.main(["--model_name_or_path", str(backbone), "--dataset_name", str(tmp_path / "data"), "--k", "2"])


def test_knn_script__string_labels_are_encoded_and_scored(tmp_path):
    backbone = export_tiny_backbone(tmp_path / "backbone")
    train = random_image_dataset(8, size=32)
    names = ["cat", "dog"]
    strings = lambda data: data.cast_column("label", datasets.Value("int64")).map(lambda row: {"label": names[row["label"]]})  # noqa: E731
    datasets.DatasetDict({"train": strings(train), "test": strings(train)}).save_to_disk(str(tmp_path / "data"))
    knn = load_script("run_knn_eval")
    results = knn.main(["--model_name_or_path", str(backbone), "--dataset_name", str(tmp_path / "data"), "--k", "1"])
    # The test images are the training images: their own nearest neighbour, with the same class.
    assert results["knn"]["k=1"]["top1"] == 1.0
