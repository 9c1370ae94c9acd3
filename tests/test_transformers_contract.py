"""What SSLTrainer relies on inside transformers' Trainer, checked so an upgrade fails here first.

SSLTrainer overrides private Trainer methods (safetensors-only state files, atomic checkpoints,
per-term logging, skipped-image counting) and the APS resume path goes through the module-level
``transformers.trainer.skip_first_batches``. A transformers release that renames one of them, or
changes its arguments, would otherwise silently bypass our override (the stock method runs:
pickled optimizer states, non-atomic checkpoints) or fail deep inside training. Each name here
must exist on ``transformers.Trainer`` with the arguments our override takes.
"""

from __future__ import annotations

import inspect

import accelerate
import pytest
import torch
import transformers.trainer as hf_trainer
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


def test_trainer__resume_goes_through_the_module_level_skip_first_batches():
    # The Trainer calls this module-level name when it resumes mid-epoch; SSLTrainer.train routes
    # its APS chunk loader through it. If the Trainer stopped using the name, APS resume would skip
    # loaded batches instead of chunks.
    assert "skip_first_batches(" in inspect.getsource(hf_trainer.Trainer)
    assert hf_trainer.skip_first_batches is accelerate.skip_first_batches


def test_trainer__chunk_routing_is_scoped_to_ssltrainer_train():
    from hf_sslviews.training.repeated_batches import ChunkRepeatingLoader, chunk_aware_resume

    stock = hf_trainer.skip_first_batches
    loader = ChunkRepeatingLoader(torch.utils.data.DataLoader([{"x": 0}, {"x": 1}, {"x": 2}], batch_size=1), chunks=4)
    with chunk_aware_resume():
        resumed = hf_trainer.skip_first_batches(loader, 6)  # 1 whole batch + 2 chunks of the next
        assert [(int(batch["x"]), batch["chunk_index"]) for batch in resumed] == [(1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
        with pytest.raises(RuntimeError):
            with chunk_aware_resume():
                raise RuntimeError("a failed train() restores the name too")
    assert hf_trainer.skip_first_batches is stock
