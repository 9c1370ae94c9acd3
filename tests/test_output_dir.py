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
