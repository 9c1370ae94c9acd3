"""Streaming: a local Parquet dataset read with ``streaming=True`` trains through SSLTrainer."""

import datasets
import pytest
import torch

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.data.sources import load_image_dataset
from hf_sslviews.data.streaming import attach_views, configure_streaming
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset


@pytest.fixture
def parquet_dir(tmp_path):
    """Two Parquet files of 8 random RGB images each (two shards), in a ``train`` folder."""
    folder = tmp_path / "parquet" / "data"
    folder.mkdir(parents=True)
    for part in range(2):
        random_image_dataset(8, seed=part).cast_column("image", datasets.Image()).to_parquet(str(folder / f"train-{part}.parquet"))
    return tmp_path / "parquet"


def _args(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3, logging_steps=1,
                save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0)
    base.update(overrides)
    return SSLTrainingArguments(**base)


def test_streaming_views__streamed_parquet_trains_two_steps(parquet_dir, tmp_path, tiny_vit_kwargs):
    stream = load_image_dataset(dataset_name=str(parquet_dir), split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    args = _args(tmp_path)
    configure_streaming(args)
    train = attach_views(stream, two_view_transform(size=32, scale=(0.3, 1.0)), args.max_steps, world_size=args.world_size)
    assert isinstance(train, datasets.IterableDataset)
    torch.manual_seed(0)
    model = MoCoV3ForPreTraining(MoCoV3Config(**tiny_vit_kwargs, projector_hidden_dim=32, projector_dim=16))
    before = model.backbone.model.patch_embed.proj.weight.detach().clone()
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    assert trainer.state.global_step == 2
    assert trainer.images_seen == 8  # 2 steps x batch 4, decoded by the view transform
    assert not torch.equal(model.backbone.model.patch_embed.proj.weight, before)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logged)


def test_streaming_views__rows_are_view_tensors_without_source_columns(parquet_dir):
    stream = load_image_dataset(dataset_name=str(parquet_dir), split="train", streaming=True)
    train = attach_views(stream, two_view_transform(size=32, scale=(0.3, 1.0)), max_steps=1)
    row = next(iter(train))
    assert set(row) == {"pixel_values_1", "pixel_values_2", "image_ok", "image_error"}
    assert isinstance(row["pixel_values_1"], torch.Tensor) and row["pixel_values_1"].shape == (3, 32, 32)
    assert row["image_ok"] is True and row["image_error"] is None


@pytest.mark.parametrize("max_steps", [None, -1, 0])
def test_streaming_views__streaming_without_max_steps_raises(parquet_dir, max_steps):
    stream = load_image_dataset(dataset_name=str(parquet_dir), split="train", streaming=True)
    with pytest.raises(ValueError, match="--max_steps"):
        attach_views(stream, two_view_transform(size=32), max_steps)


def test_configure_streaming__without_max_steps_raises(tmp_path):
    with pytest.raises(ValueError, match="--max_steps"):
        configure_streaming(_args(tmp_path, max_steps=-1, num_train_epochs=1))


def test_configure_streaming__each_process_reads_its_own_batches(tmp_path):
    args = _args(tmp_path)
    assert args.accelerator_config.dispatch_batches is None
    configure_streaming(args)
    assert args.accelerator_config.dispatch_batches is False
    explicit = _args(tmp_path, accelerator_config={"dispatch_batches": True})
    configure_streaming(explicit)
    assert explicit.accelerator_config.dispatch_batches is True  # a user's choice is kept


def test_streaming_views__missing_image_column_is_named(parquet_dir):
    stream = load_image_dataset(dataset_name=str(parquet_dir), split="train", streaming=True).rename_column("image", "img")
    with pytest.raises(ValueError, match="image column 'image' not found"):
        attach_views(stream, two_view_transform(size=32), max_steps=2)


def test_streaming_views__map_style_dataset_gets_with_transform(parquet_dir):
    dataset = load_image_dataset(dataset_name=str(parquet_dir), split="train")
    train = attach_views(dataset, two_view_transform(size=32, scale=(0.3, 1.0)), max_steps=None)
    assert isinstance(train, datasets.Dataset) and len(train) == 16
    assert train[0]["pixel_values_2"].shape == (3, 32, 32)


def test_streaming_views__reshards_for_several_processes(tmp_path):
    # One file with several row groups: resharding gives each process its own part.
    folder = tmp_path / "one"
    folder.mkdir()
    random_image_dataset(8).cast_column("image", datasets.Image()).to_parquet(str(folder / "train.parquet"), batch_size=2)
    stream = datasets.load_dataset("parquet", data_files={"train": str(folder / "train.parquet")}, split="train", streaming=True)
    assert stream.num_shards == 1
    train = attach_views(stream, two_view_transform(size=32), max_steps=2, world_size=2)
    assert train.num_shards >= 2
    assert sum(1 for _ in train) == 8  # nothing lost by resharding
