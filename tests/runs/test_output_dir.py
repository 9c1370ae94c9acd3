"""The run folder guard: writable before training, never shared by two runs, resumed only by its own run."""

import json

import pytest

from hf_sslviews.modeling.byol import BYOLConfig
from hf_sslviews.modeling.mocov3 import MoCoV3Config
from hf_sslviews.runs.output_dir import IDENTITY_FILE, check_checkpoint_method, prepare_output_dir, run_identity

KWARGS = dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1}, image_size=32)
DATA = {"dataset_name": "sample", "train_split": "train"}


def _identity(method="byol", **config):
    config_class = {"byol": BYOLConfig, "mocov3": MoCoV3Config}[method]
    return run_identity(method, config_class(**KWARGS, **config), DATA)


def test_prepare_output_dir__a_fresh_folder_gets_the_run_identity(tmp_path):
    prepare_output_dir(tmp_path / "run", _identity(), resume=False, overwrite=False)
    saved = json.loads((tmp_path / "run" / IDENTITY_FILE).read_text())
    assert saved["method"] == "byol" and saved["config"]["backbone_kwargs"]["depth"] == 1 and saved["data"] == DATA


def test_prepare_output_dir__another_run_is_refused_unless_overwritten(tmp_path):
    folder = tmp_path / "run"
    prepare_output_dir(folder, _identity(), resume=False, overwrite=False)
    (folder / "checkpoint-8").mkdir()
    with pytest.raises(ValueError, match="already holds a run .*--resume_from_checkpoint last.*--overwrite_output_dir"):
        prepare_output_dir(folder, _identity("mocov3"), resume=False, overwrite=False)
    prepare_output_dir(folder, _identity("mocov3"), resume=False, overwrite=True)
    assert not (folder / "checkpoint-8").exists()  # run A's checkpoints cannot be resumed as run B's
    assert json.loads((folder / IDENTITY_FILE).read_text())["method"] == "mocov3"


def test_prepare_output_dir__resume_must_be_the_same_run(tmp_path):
    folder = tmp_path / "run"
    prepare_output_dir(folder, _identity(projector_dim=16), resume=False, overwrite=False)
    prepare_output_dir(folder, _identity(projector_dim=16), resume=True, overwrite=False)  # the same run continues
    with pytest.raises(ValueError, match="holds another run .*projector_dim: 16 there, 32 now"):
        prepare_output_dir(folder, _identity(projector_dim=32), resume=True, overwrite=False)


def test_prepare_output_dir__a_read_only_file_system_fails_before_training(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def read_only(self, *args, **kwargs):  # what a read-only mount answers (root included)
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(ValueError, match="cannot be written .*Read-only file system"):
        prepare_output_dir(tmp_path / "run", _identity(), resume=False, overwrite=False)


def test_prepare_output_dir__a_file_in_the_way_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        prepare_output_dir(blocker / "run", _identity(), resume=False, overwrite=False)


def test_check_checkpoint_method__another_method_names_the_fix(tmp_path):
    MoCoV3Config(**KWARGS).save_pretrained(tmp_path)
    check_checkpoint_method(tmp_path, "sslviews_mocov3")
    with pytest.raises(ValueError, match="holds a sslviews_mocov3 model, but this run builds a sslviews_byol"):
        check_checkpoint_method(tmp_path, "sslviews_byol")


class _Args:
    """The training arguments a run's identity reads."""

    def __init__(self, **changes):
        self.__dict__.update(dict(per_device_train_batch_size=8, gradient_accumulation_steps=1, world_size=1, seed=0, learning_rate=1e-3,
                                  weight_decay=0.05, lr_scheduler_type="cosine", optim="adamw_torch", optim_recipe="default"), **changes)


def test_prepare_output_dir__resume_with_another_batch_size_is_refused(tmp_path):
    # It was accepted, and the card then stated one batch size for the whole run.
    folder = tmp_path / "run"
    config = BYOLConfig(**KWARGS)
    prepare_output_dir(folder, run_identity("byol", config, DATA, _Args()), resume=False, overwrite=False)
    prepare_output_dir(folder, run_identity("byol", config, DATA, _Args()), resume=True, overwrite=False)
    with pytest.raises(ValueError, match="holds another run .*training.per_device_train_batch_size: 8 there, 16 now"):
        prepare_output_dir(folder, run_identity("byol", config, DATA, _Args(per_device_train_batch_size=16)), resume=True, overwrite=False)


def test_prepare_output_dir__a_folder_recorded_without_training_arguments_still_resumes(tmp_path):
    folder = tmp_path / "run"
    config = BYOLConfig(**KWARGS)
    prepare_output_dir(folder, run_identity("byol", config, DATA), resume=False, overwrite=False)  # an older record
    prepare_output_dir(folder, run_identity("byol", config, DATA, _Args()), resume=True, overwrite=False)


def test_check_resumed_run__a_checkpoint_of_another_folder_must_be_the_same_run(tmp_path):
    from hf_sslviews.runs.output_dir import check_resumed_run

    config = BYOLConfig(**KWARGS)
    prepare_output_dir(tmp_path / "runA", run_identity("byol", config, DATA, _Args()), resume=False, overwrite=False)
    (tmp_path / "runA" / "checkpoint-4").mkdir()
    check_resumed_run(tmp_path / "runA" / "checkpoint-4", run_identity("byol", config, DATA, _Args()))
    with pytest.raises(ValueError, match="belongs to another run .*seed: 0 there, 3 now"):
        check_resumed_run(tmp_path / "runA" / "checkpoint-4", run_identity("byol", config, DATA, _Args(seed=3)))


def test_check_checkpoint_method__an_export_folder_is_named_as_such_with_the_flag_that_uses_it(tmp_path):
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "config.json").write_text(json.dumps({"model_type": "timm_wrapper"}))
    with pytest.raises(ValueError, match=r"is an exported backbone, not a checkpoint.*--backbone local-dir:"):
        check_checkpoint_method(tmp_path / "backbone", "sslviews_byol")


def test_prepare_output_dir__a_run_without_checkpoints_is_not_offered_a_resume(tmp_path):
    # Re-running the quick start after an interrupted first run: it saved no checkpoint.
    folder = tmp_path / "run"
    prepare_output_dir(folder, _identity(), resume=False, overwrite=False)
    with pytest.raises(ValueError, match="already holds a run .*It saved no checkpoint to resume from: pass --overwrite_output_dir") as caught:
        prepare_output_dir(folder, _identity(), resume=False, overwrite=False)
    assert "--resume_from_checkpoint" not in str(caught.value)
