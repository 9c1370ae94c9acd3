"""K optimizer steps per loaded batch (APS) through the stock Trainer loop, including resume."""

import pytest
import torch
from torch import nn

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.training.repeated_batches import ChunkRepeatingLoader
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
from hf_sslviews.views import two_view_transform

from ..helpers import random_image_dataset


class ChunkRecorder(nn.Module):
    """Records which chunk and which images each training step saw."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[int, float]] = []

    def forward(self, pixel_values_1, pixel_values_2, chunk_index=0, return_loss=True):
        if self.training:
            self.seen.append((int(chunk_index), float(pixel_values_1.sum())))
        return {"loss": (self.weight * pixel_values_1.mean()).abs().squeeze()}


def _trainer(tmp_path, chunks, **overrides):
    args = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=0.1,
        steps_per_batch=chunks, save_strategy="no", report_to="none", use_cpu=True, logging_steps=1, seed=0,
    )
    args.update(overrides)
    dataset = random_image_dataset(8).with_transform(two_view_transform(size=16))
    return SSLTrainer(model=ChunkRecorder(), args=SSLTrainingArguments(**args), train_dataset=dataset, data_collator=ViewCollator())


def test_repeated_batches__each_batch_gives_k_optimizer_steps_on_the_same_images(tmp_path):
    trainer = _trainer(tmp_path, chunks=3)
    trainer.train()
    seen = trainer.model.seen
    assert trainer.state.global_step == 6  # 2 loaded batches x 3 chunks, from the Trainer's own epoch length
    assert [chunk for chunk, _ in seen] == [0, 1, 2, 0, 1, 2]
    assert seen[0][1] == seen[1][1] == seen[2][1]  # same augmented images for the 3 chunks
    assert seen[3][1] == seen[4][1] == seen[5][1]
    assert seen[0][1] != seen[3][1]
    assert trainer.images_seen == 8  # repeated batches are counted once


def test_repeated_batches__one_chunk_turns_reuse_off(tmp_path):
    trainer = _trainer(tmp_path, chunks=1)
    trainer.train()
    assert trainer.state.global_step == 2
    assert [chunk for chunk, _ in trainer.model.seen] == [0, 0]


def test_repeated_batches__resume_mid_batch_continues_at_the_next_chunk(tmp_path):
    first = _trainer(tmp_path, chunks=3, save_strategy="steps", save_steps=4)
    first.train()
    resumed = _trainer(tmp_path, chunks=3)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert resumed.state.global_step == 6
    # Step 4 was chunk 0 of batch 2; the resumed run does its chunks 1 and 2.
    assert [chunk for chunk, _ in resumed.model.seen] == [1, 2]


def test_chunk_repeating_loader__length_and_skip_arithmetic():
    loader = ChunkRepeatingLoader([{"x": 1}, {"x": 2}, {"x": 3}], chunks=4)
    assert len(loader) == 12
    items = [(b["x"], b["chunk_index"]) for b in loader]
    assert items[:5] == [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0)]
    partial = ChunkRepeatingLoader([{"x": 2}, {"x": 3}], chunks=4, start_chunk=3)
    assert [(b["x"], b["chunk_index"]) for b in partial][:2] == [(2, 3), (3, 0)]
    assert len(partial) == 5


def test_repeated_batches__the_former_flag_name_still_sets_the_steps(tmp_path):
    common = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", max_steps=1)
    assert SSLTrainingArguments(**common, aps_chunks_per_batch=2).steps_per_batch == 2
    assert SSLTrainingArguments(**common, aps_chunks_per_batch=2, steps_per_batch=2).steps_per_batch == 2
    with pytest.raises(ValueError, match="disagree"):
        SSLTrainingArguments(**common, aps_chunks_per_batch=2, steps_per_batch=3)
