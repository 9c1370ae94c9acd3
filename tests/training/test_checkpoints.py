"""Checkpoints whole or not at all: a crash mid-save leaves no ``checkpoint-N``, the previous one survives."""

import json

import pytest
import torch
from transformers.trainer_utils import get_last_checkpoint

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.training.checkpoints import save_checkpoint_atomically, staging_dir
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset


class AtomicSSLTrainer(SSLTrainer):
    """SSLTrainer with the ``_save_checkpoint`` override the lead adds to ``hf_sslviews/training/trainer.py``."""

    def _save_checkpoint(self, model, trial):
        self._check_finite()
        save_checkpoint_atomically(self, super(SSLTrainer, self)._save_checkpoint, model, trial)


def _trainer(tmp_path, tiny_vit_kwargs, eval_dataset=None, **overrides):
    torch.manual_seed(0)
    model = MoCoV3ForPreTraining(MoCoV3Config(**tiny_vit_kwargs, projector_hidden_dim=32, projector_dim=16))
    args = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=3, save_strategy="steps", save_steps=1,
                learning_rate=1e-3, report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0)
    args.update(overrides)
    train = random_image_dataset(16).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    return AtomicSSLTrainer(model=model, args=SSLTrainingArguments(**args), train_dataset=train, eval_dataset=eval_dataset, data_collator=ViewCollator())


def _fail_at_step(monkeypatch, trainer, step):
    original = SSLTrainer._save_optimizer_and_scheduler

    def save(self, output_dir):
        if self.state.global_step == step:
            raise OSError("disk full (injected)")  # after the model files are written: a half checkpoint
        return original(self, output_dir)

    monkeypatch.setattr(SSLTrainer, "_save_optimizer_and_scheduler", save)


def test_save_checkpoint_atomically__crash_mid_save_leaves_no_checkpoint_and_keeps_previous(tmp_path, tiny_vit_kwargs, monkeypatch):
    trainer = _trainer(tmp_path, tiny_vit_kwargs, save_total_limit=1)
    _fail_at_step(monkeypatch, trainer, 2)
    with pytest.raises(OSError, match="injected"):
        trainer.train()
    out = tmp_path / "out"
    assert not (out / "checkpoint-2").exists()
    assert not staging_dir(out, 2).exists()  # the staging folder is cleaned up
    previous = out / "checkpoint-1"
    assert {"model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json", "trainer_state.json"} <= {p.name for p in previous.iterdir()}
    assert json.loads((previous / "trainer_state.json").read_text())["global_step"] == 1
    assert get_last_checkpoint(str(out)) == str(previous)


def test_save_checkpoint_atomically__half_written_staging_folder_is_invisible(tmp_path, tiny_vit_kwargs, monkeypatch):
    # A hard kill cannot run cleanup code: simulate the leftover of one and check nothing picks it up.
    trainer = _trainer(tmp_path, tiny_vit_kwargs, max_steps=1)
    trainer.train()
    out = tmp_path / "out"
    leftover = staging_dir(out, 7) / "checkpoint-7"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("{}")
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-1")


def test_save_checkpoint_atomically__rotation_keeps_the_newest_complete_checkpoint(tmp_path, tiny_vit_kwargs):
    trainer = _trainer(tmp_path, tiny_vit_kwargs, save_total_limit=2)
    trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-2", "checkpoint-3"]
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-3")
    assert "_get_output_dir" not in trainer.__dict__  # the redirect was undone


def test_save_checkpoint_atomically__resume_from_last_checkpoint(tmp_path, tiny_vit_kwargs):
    _trainer(tmp_path, tiny_vit_kwargs, max_steps=2).train()
    resumed = _trainer(tmp_path, tiny_vit_kwargs, max_steps=3)
    resumed.train(resume_from_checkpoint=get_last_checkpoint(str(tmp_path / "out")))
    assert resumed.state.global_step == 3
    assert (tmp_path / "out" / "checkpoint-3" / "model.safetensors").is_file()


def test_save_checkpoint_atomically__best_checkpoint_path_is_the_final_folder(tmp_path, tiny_vit_kwargs):
    evaluation = random_image_dataset(8, seed=1).with_transform(two_view_transform(size=32, scale=(0.3, 1.0)))
    trainer = _trainer(
        tmp_path, tiny_vit_kwargs, eval_dataset=evaluation, max_steps=2, eval_strategy="steps", eval_steps=1, load_best_model_at_end=True,
        metric_for_best_model="loss", greater_is_better=False, save_total_limit=2,
    )
    trainer.train()
    out = tmp_path / "out"
    best = trainer.state.best_model_checkpoint
    assert best is not None and ".tmp" not in best and best.startswith(str(out / "checkpoint-"))
    # The stock code recorded the best folder while it was still staged; both the live state and
    # every trainer_state.json on disk must name the final folder.
    for step in (1, 2):
        saved = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["best_model_checkpoint"]
        assert saved is None or (".tmp" not in saved and saved.startswith(str(out / "checkpoint-")))
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["best_model_checkpoint"] == best


def test_claim_folder__what_may_be_replaced(tmp_path):
    from hf_sslviews.atomic import ForeignFolderError, atomic_directory, claim_folder, is_own_output

    export = tmp_path / "export"
    export.mkdir()
    for name in ("config.json", "model.safetensors", "README.md", ".README.md.tmp-12"):
        (export / name).write_text("x")
    dry_run = tmp_path / "dry"
    (dry_run / "backbone").mkdir(parents=True)
    (dry_run / "backbone" / "config.json").write_text("{}")
    assert is_own_output(export) and is_own_output(dry_run) and claim_folder(tmp_path / "missing") is None and claim_folder(export) is None
    (dry_run / "backbone" / "notes.txt").write_text("mine")
    assert not is_own_output(dry_run)
    with pytest.raises(ForeignFolderError, match=r"holds files this command did not write \(backbone/\) and would be replaced whole\. Choose another folder\.$"):
        claim_folder(dry_run, flag=None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ForeignFolderError, match="a file, not a folder"):
        claim_folder(tmp_path / "file")
    # A failing write into a foreign folder never starts: nothing is created next to it.
    with pytest.raises(ForeignFolderError):
        with atomic_directory(dry_run):
            raise AssertionError("not reached")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dry", "export", "file"]
