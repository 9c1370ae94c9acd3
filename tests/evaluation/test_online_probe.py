"""The online linear probe: learns from detached features, never changes how the model trains, logs its curve."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.data.labels import WithLabels
from hf_sslviews.data.sources import load_image_dataset, prepare_for_views
from hf_sslviews.evaluation.monitor import add_knn_monitor
from hf_sslviews.evaluation.online_probe import OnlineLinearProbe, add_online_linear_probe, training_features
from hf_sslviews.modeling.simsiam import SimSiamConfig, SimSiamForPreTraining
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Three classes, each a Gaussian blob around its own centre in 8-d: linearly separable.
    centres = torch.tensor([[3.0] + [0.0] * 7, [0.0, 3.0] + [0.0] * 6, [0.0, 0.0, 3.0] + [0.0] * 5])
    labels = torch.randint(0, 3, (n,), generator=generator)
    return centres[labels] + 0.5 * torch.randn(n, 8, generator=generator), labels


def test_probe__learns_a_separable_task_and_no_gradient_reaches_the_features():
    generator = torch.Generator().manual_seed(0)
    probe = OnlineLinearProbe(8, 3, learning_rate=1e-2)
    before = probe.top1(*_blobs(500, generator))
    losses = []
    for _ in range(200):
        features, labels = _blobs(64, generator)
        features.requires_grad_(True)
        probe.train_step(features, labels)
        assert features.grad is None  # detached: the backbone never learns from labels
        losses.append(probe.metrics_from_sums(probe.pop_train_sums())["online_linear_loss"])
    assert probe.top1(*_blobs(500, generator)) > 0.97 > before
    assert sum(losses[-20:]) / 20 < 0.2 * sum(losses[:5]) / 5


def test_probe__train_metrics_are_the_means_over_the_batches_since_the_last_log():
    # Each batch is scored by the head as it was before that batch's step; the logged numbers
    # are means over images (a batch of 4 and one of 6 weigh 4 and 6), reset at every log.
    generator = torch.Generator().manual_seed(1)
    probe = OnlineLinearProbe(8, 3)
    losses, correct = [], []
    for size in (4, 6):
        features, labels = _blobs(size, generator)
        logits = probe.head(features).detach()
        losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item())
        correct.append((logits.argmax(1) == labels).sum().item())
        probe.train_step(features, labels)
    metrics = probe.metrics_from_sums(probe.pop_train_sums())
    assert metrics["online_linear_loss"] == pytest.approx(sum(losses) / 10, rel=1e-5)
    assert metrics["online_linear_train_top1"] == pytest.approx(sum(correct) / 10)
    assert probe.metrics_from_sums(probe.pop_train_sums()) is None  # reset at every log


def test_probe__its_initialisation_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    OnlineLinearProbe(16, 10, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_probe__bad_settings_and_labels_are_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        OnlineLinearProbe(8, 1)
    with pytest.raises(ValueError, match="must be positive"):
        OnlineLinearProbe(8, 3, learning_rate=0.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        OnlineLinearProbe(8, 3).train_step(torch.randn(2, 8), torch.tensor([0, 3]))


def test_training_features__the_first_training_view_of_every_output_kind():
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.equal(training_features({"loss": None, "embeddings_1": a, "embeddings_2": b}), a)  # two views, APS, PatchMix, RepCo
    assert torch.equal(training_features({"global_embeddings": torch.stack([a, b], 1)}), a)  # MULAN [B, n_global, D]
    assert torch.equal(training_features({"weak_embeddings": (b, a)}), b)  # CLSA, one tensor per resolution
    with pytest.raises(ValueError, match="needs backbone features"):
        training_features({"loss": torch.tensor(0.0), "embeddings_1": None})


def test_with_labels__labels_follow_their_rows_and_drop_with_undecodable_images():
    dataset = prepare_for_views(random_image_dataset(6, size=32, bad=2, num_classes=4))  # labels 0, 1, 2, 3, 0, 1, 2, 3; the last two bad
    views = two_view_transform(size=32)
    labelled = WithLabels(views, "label")
    rows = [dataset.with_transform(labelled)[i] for i in range(len(dataset))]
    batch = ViewCollator()(rows)
    assert batch["labels"].tolist() == [0, 1, 2, 3, 0, 1] and batch["pixel_values_1"].shape[0] == 6
    assert int(batch["num_skipped_images"]) == 2
    labelled.seed = 7  # settings reach the wrapped transform (the Trainer seeds the views this way)
    assert views.seed == 7 and labelled.output_keys == views.output_keys
    with pytest.raises(ValueError, match="column 'target' not found"):
        WithLabels(views, "target")(dataset[:2])


def _simsiam(tiny_vit_kwargs):
    torch.manual_seed(0)
    return SimSiamForPreTraining(SimSiamConfig(**tiny_vit_kwargs, projector_dim=16, predictor_hidden_dim=4))


def _train(tiny_vit_kwargs, tmp_path, probe: bool):
    train = prepare_for_views(load_image_dataset("sample", split="train", max_samples=64))
    views = two_view_transform(size=32, scale=(0.3, 1.0))
    args = SSLTrainingArguments(output_dir=str(tmp_path / f"probe_{probe}"), per_device_train_batch_size=8, max_steps=6, learning_rate=1e-3, logging_steps=3,
                                save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = SSLTrainer(model=_simsiam(tiny_vit_kwargs), args=args, train_dataset=train.with_transform(WithLabels(views, "label") if probe else views), data_collator=ViewCollator())
    if probe:
        add_online_linear_probe(trainer, num_classes=10)
        add_knn_monitor(trainer, load_image_dataset("sample", split="train", max_samples=30), load_image_dataset("sample", split="test", max_samples=12),
                        every_n_steps=3, k=5, max_train_samples=30, max_test_samples=12)
    trainer.train()
    return trainer


def test_trainer__the_probe_logs_its_curve_and_the_model_trains_exactly_as_without_it(tiny_vit_kwargs, tmp_path):
    with_probe = _train(tiny_vit_kwargs, tmp_path, probe=True)
    without = _train(tiny_vit_kwargs, tmp_path, probe=False)
    for (name, a), (_, b) in zip(with_probe.model.state_dict().items(), without.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(name.startswith("online") or "head.weight" == name for name in with_probe.model.state_dict())  # not part of the model
    history = with_probe.state.log_history
    train_logs = [entry for entry in history if "online_linear_loss" in entry]
    assert [entry["step"] for entry in train_logs] == [3, 6]
    assert all(0.0 <= entry["online_linear_train_top1"] <= 1.0 and entry["online_linear_loss"] > 0 for entry in train_logs)
    curve = [entry for entry in history if "online_linear_top1" in entry]
    assert [entry["step"] for entry in curve] == [3, 6] and all("knn_top1" in entry for entry in curve)
    assert with_probe.online_probe.head.weight.abs().sum() > 0


def test_add_online_linear_probe__refuses_a_training_set_without_labels(tiny_vit_kwargs, tmp_path):
    train = prepare_for_views(random_image_dataset(8, size=32)).with_transform(two_view_transform(size=32))
    args = SSLTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1)
    trainer = SSLTrainer(model=_simsiam(tiny_vit_kwargs), args=args, train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(ValueError, match="WithLabels"):
        add_online_linear_probe(trainer, num_classes=2)


def test_run_pretrain__online_linear_probe_flag_end_to_end(tmp_path):
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    flags = ["--preset", "simsiam_tiny", "--dataset_name", "sample", "--max_train_samples", "64", "--per_device_train_batch_size", "16", "--max_steps", "2",
             "--report_to", "none", "--knn_eval", "False", "--save_strategy", "no", "--online_linear_probe", "True", "--knn_monitor_steps", "2",
             "--knn_monitor_max_train_samples", "40", "--knn_monitor_max_test_samples", "20", "--disable_tqdm", "True"]
    run_pretraining(*parse_args([*flags, "--output_dir", str(tmp_path / "run")]))
    curve = json.loads((tmp_path / "run" / "results.json").read_text())["knn_monitor"]
    assert [point["step"] for point in curve] == [2] and 0.0 <= curve[0]["online_linear_top1"] <= 1.0


def test_run_pretrain__online_linear_probe_needs_a_class_label_column():
    from hf_sslviews.runs.arguments import DataArguments
    from hf_sslviews.runs.pretrain import _probe_classes

    labelled = random_image_dataset(4, size=32, num_classes=3)
    assert _probe_classes(labelled, DataArguments()) == 3
    with pytest.raises(ValueError, match="'label' is a Value feature, not a ClassLabel"):
        _probe_classes(labelled.cast_column("label", datasets.Value("int64")), DataArguments())
    with pytest.raises(ValueError, match="'target' is missing"):
        _probe_classes(labelled, DataArguments(label_column_name="target"))
