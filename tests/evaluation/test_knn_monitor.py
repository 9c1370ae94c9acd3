"""KNNMonitorCallback: kNN of the training backbone logged into log_history at the right steps."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.data.sources import load_image_dataset
from hf_sslviews.evaluation.features import extract_features
from hf_sslviews.evaluation.knn import knn_accuracy
from hf_sslviews.evaluation.monitor import KNNMonitorCallback, add_knn_monitor, eval_transform_for_config
from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labelled():
    return load_image_dataset("sample", split="train", max_samples=40), load_image_dataset("sample", split="test", max_samples=20)


def _byol(tiny_vit_kwargs):
    torch.manual_seed(0)
    return BYOLForPreTraining(BYOLConfig(**tiny_vit_kwargs, projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=32))


class LogRecorder(TrainerCallback):
    """Stands in for a report_to integration (TensorBoard): records what on_log receives."""

    def __init__(self):
        self.logged = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged.append((state.global_step, dict(logs)))


def _trainer(model, tmp_path, callbacks=None, **overrides):
    args = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=5, learning_rate=1e-3, logging_steps=2,
                save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    args.update(overrides)
    train = random_image_dataset(40).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    return SSLTrainer(model=model, args=SSLTrainingArguments(**args), train_dataset=train, data_collator=ViewCollator(), callbacks=callbacks)


def test_knn_monitor__logs_top1_top5_into_log_history_every_n_steps(tiny_vit_kwargs, tmp_path, labelled):
    model = _byol(tiny_vit_kwargs)
    recorder = LogRecorder()
    trainer = _trainer(model, tmp_path, callbacks=[recorder], gradient_accumulation_steps=2)
    monitor = add_knn_monitor(trainer, *labelled, every_n_steps=2, k=5, max_train_samples=30, max_test_samples=12)
    trainer.train()
    entries = [entry for entry in trainer.state.log_history if "knn_top1" in entry]
    assert [entry["step"] for entry in entries] == [2, 4]  # optimizer steps, not micro-batches (10 forwards)
    for entry in entries:
        assert isinstance(entry["knn_top1"], float) and isinstance(entry["knn_top5"], float)
        assert 0.0 <= entry["knn_top1"] <= entry["knn_top5"] <= 1.0 and not math.isnan(entry["knn_top1"])
        assert "epoch" in entry and "loss" not in entry  # an entry of its own, like eval metrics
    assert [h["step"] for h in monitor.history] == [2, 4]
    assert 0 < monitor.history[0]["train_seconds"] < monitor.history[1]["train_seconds"]
    # The training-loss log cadence is untouched by the monitor.
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [2, 4]
    # report_to integrations see the values too, at the same steps.
    assert [step for step, logs in recorder.logged if "knn_top1" in logs] == [2, 4]
    # What the monitor computes is the plain kNN of the model's backbone.
    final = monitor.evaluate(model)
    transform = eval_transform_for_config(model.config)
    train = extract_features(model.backbone, labelled[0].select(range(30)), transform=transform)
    test = extract_features(model.backbone, labelled[1].select(range(12)), transform=transform)
    expected = knn_accuracy(*train, *test, num_classes=10, k=5)
    assert final == {"knn_top1": expected["top1"], "knn_top5": expected["top5"]}


def test_knn_monitor__restores_each_module_mode(tiny_vit_kwargs, labelled):
    model = _byol(tiny_vit_kwargs).train()
    model.target_backbone.eval()  # a module deliberately in eval mode stays so
    before = {name: module.training for name, module in model.named_modules()}
    monitor = KNNMonitorCallback(*labelled, every_n_steps=1, k=3, max_train_samples=10, max_test_samples=5)
    seen = {}
    original_forward = model.backbone.forward

    def spy(pixel_values):
        seen["training"], seen["grad"], seen["inference"] = model.backbone.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        return original_forward(pixel_values)

    model.backbone.forward = spy
    scores = monitor.evaluate(model)
    assert seen == {"training": False, "grad": False, "inference": True}
    assert {name: module.training for name, module in model.named_modules()} == before
    assert set(scores) == {"knn_top1", "knn_top5"} and 0.0 <= scores["knn_top1"] <= 1.0


def test_knn_monitor__epoch_end_trigger_runs_once_per_step(tiny_vit_kwargs, tmp_path, labelled):
    model = _byol(tiny_vit_kwargs)
    trainer = _trainer(model, tmp_path, max_steps=-1, num_train_epochs=2, per_device_train_batch_size=20, logging_steps=100)
    # 40 images / 20 = 2 steps per epoch: the step trigger (every 2) and the epoch end coincide.
    add_knn_monitor(trainer, *labelled, every_n_steps=2, at_epoch_end=True, k=3, max_train_samples=10, max_test_samples=5)
    trainer.train()
    assert [entry["step"] for entry in trainer.state.log_history if "knn_top1" in entry] == [2, 4]


def test_knn_monitor__rejects_bad_setups(labelled, tiny_vit_kwargs, tmp_path):
    with pytest.raises(ValueError, match="would never run"):
        KNNMonitorCallback(*labelled, every_n_steps=0)
    with pytest.raises(ValueError, match="k=50 must be between 1 and the monitor's 10 training images"):
        KNNMonitorCallback(*labelled, k=50, max_train_samples=10)
    trainer = _trainer(_byol(tiny_vit_kwargs), tmp_path, max_steps=1)
    trainer.add_callback(KNNMonitorCallback(*labelled, every_n_steps=1, k=3, max_train_samples=10))
    with pytest.raises(ValueError, match="not attached to its Trainer"):
        trainer.train()
    with pytest.raises(ValueError, match="needs an <M>ForPreTraining model with a .backbone"):
        KNNMonitorCallback(*labelled, k=3, max_train_samples=10).evaluate(torch.nn.Linear(2, 2))


def test_knn_monitor__train_seconds_leave_out_the_monitor_own_time(tiny_vit_kwargs, tmp_path, labelled, monkeypatch):
    import time

    trainer = _trainer(_byol(tiny_vit_kwargs), tmp_path, max_steps=3)
    monitor = add_knn_monitor(trainer, *labelled, every_n_steps=1, k=5, max_train_samples=30, max_test_samples=12)
    evaluate = monitor.evaluate

    def slow_evaluate(model):
        time.sleep(1.0)  # a monitor run far slower than a training step of this tiny model
        return evaluate(model)

    monkeypatch.setattr(monitor, "evaluate", slow_evaluate)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    seconds = [entry["train_seconds"] for entry in monitor.history]
    assert len(seconds) == 3 and wall > 3.0
    # Three 1 s monitor runs happened; none of them is counted as training time.
    assert seconds == sorted(seconds) and seconds[-1] < wall - 2.5
