"""What SSLTrainer relies on inside transformers' Trainer, checked so an upgrade fails here first.

SSLTrainer overrides private Trainer methods (safetensors-only state files, atomic checkpoints,
per-term logging, skipped-image counting) and public hooks (the APS resume path goes through
``get_resumed_dataloader``). A transformers release that renames one of them, or
changes its arguments, would otherwise silently bypass our override (the stock method runs:
pickled optimizer states, non-atomic checkpoints) or fail deep inside training. Each name here
must exist on ``transformers.Trainer`` with the arguments our override takes.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import Trainer

from hf_sslviews.training.trainer import SSLTrainer

# Private Trainer methods SSLTrainer overrides, and why each is needed.
PRIVATE_OVERRIDES = {
    "_prepare_inputs": "counts skipped images, keeps DDP processes in step, passes all-skipped batches",
    "_save_checkpoint": "atomic checkpoints and finite-weight check",
    "_save": "safetensors model and JSON arguments only",
    "_save_optimizer_and_scheduler": "optimizer / scheduler state as safetensors + JSON, no pickle",
    "_load_optimizer_and_scheduler": "reads that state back",
    "_save_rng_state": "RNG state without pickle",
    "_load_rng_state": "reads it back",
}
# Private Trainer members read or redirected from outside the class.
PRIVATE_USES = ("_get_output_dir",)


@pytest.mark.parametrize("name", sorted(PRIVATE_OVERRIDES))
def test_trainer__every_private_method_we_override_still_exists_with_our_arguments(name):
    assert hasattr(Trainer, name), f"transformers.Trainer has no {name} any more: SSLTrainer's override ({PRIVATE_OVERRIDES[name]}) would never run"
    stock = list(inspect.signature(getattr(Trainer, name)).parameters)
    ours = list(inspect.signature(getattr(SSLTrainer, name)).parameters)
    assert stock == ours, f"Trainer.{name} now takes {stock}; SSLTrainer's override takes {ours}"
    assert getattr(SSLTrainer, name) is not getattr(Trainer, name)


@pytest.mark.parametrize("name", PRIVATE_USES)
def test_trainer__private_members_we_use_still_exist(name):
    assert hasattr(Trainer, name), f"transformers.Trainer has no {name} any more (used by hf_sslviews.training.checkpoints)"


def test_trainer__resume_asks_get_resumed_dataloader_for_the_skipped_loader():
    # The hook SSLTrainer overrides so that APS's chunk loader is skipped by chunks. If the
    # Trainer stopped calling it, APS resume would skip loaded batches instead of chunks (the
    # exact-resume tests would then fail too; this names the cause).
    assert "get_resumed_dataloader" in vars(Trainer)
    assert list(inspect.signature(Trainer.get_resumed_dataloader).parameters) == list(inspect.signature(SSLTrainer.get_resumed_dataloader).parameters)
    assert "self.get_resumed_dataloader(" in inspect.getsource(Trainer)


def test_trainer__a_resumed_chunk_loader_continues_at_the_next_chunk():
    from hf_sslviews.training.repeated_batches import ChunkRepeatingLoader

    loader = ChunkRepeatingLoader(torch.utils.data.DataLoader([{"x": 0}, {"x": 1}, {"x": 2}], batch_size=1), chunks=4)
    resumed = SSLTrainer.get_resumed_dataloader(None, loader, 6)  # 1 whole batch + 2 chunks of the next
    assert [(int(batch["x"]), batch["chunk_index"]) for batch in resumed] == [(1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
    plain = torch.utils.data.DataLoader([{"x": 0}, {"x": 1}, {"x": 2}], batch_size=1)
    assert [int(batch["x"]) for batch in SSLTrainer.get_resumed_dataloader(None, plain, 2)] == [2]
