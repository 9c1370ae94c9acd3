"""The Trainer's state files as safetensors and JSON: one mixin over transformers' private methods.

The stock Trainer pickles ``TrainingArguments`` (``training_args.bin``), the optimizer and
scheduler states and the RNG state (``torch.save``). :class:`SafetensorsStateMixin` replaces
those private methods so a run writes safetensors and JSON only, and reads them back on resume;
sharded optimizers (FSDP, DeepSpeed) keep their own formats. These are the overrides a
transformers upgrade can break: ``tests/training/test_transformers_contract.py`` checks that every one
still exists on ``transformers.Trainer`` with the arguments used here.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from transformers import PreTrainedModel, TrainingArguments
from transformers.trainer_pt_utils import set_rng_state_for_device

from ..atomic import write_text_atomic
from .safetensors_state import has_state, load_state, save_state


class SafetensorsStateMixin:
    """Mixed in before ``transformers.Trainer``: model, arguments, optimizer, scheduler and RNG
    state as safetensors + JSON."""

    def _save(self, output_dir: Optional[str] = None, state_dict: Optional[dict] = None) -> None:
        """The model with ``save_pretrained`` (safetensors) and the arguments as JSON.

        The stock method pickles ``TrainingArguments`` into ``training_args.bin``.
        """
        if not isinstance(self.model, PreTrainedModel) or self.is_distributed_loading_by_transformers:
            super()._save(output_dir, state_dict)
            _replace_pickled_arguments(output_dir or self.args.output_dir, self.args)
            return
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=True)
        write_text_atomic(Path(output_dir) / "training_args.json", self.args.to_json_string())

    def _plain_state_files(self) -> bool:
        # Sharded optimizers (FSDP, DeepSpeed) keep their own checkpoint formats.
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self._plain_state_files():
            return super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            save_state(self.optimizer.state_dict(), output_dir, "optimizer")
            save_state(self.lr_scheduler.state_dict(), output_dir, "scheduler")

    def _load_optimizer_and_scheduler(self, checkpoint: Optional[str]) -> None:
        if checkpoint is None or not has_state(checkpoint, "optimizer"):
            return super()._load_optimizer_and_scheduler(checkpoint)
        self.optimizer.load_state_dict(load_state(checkpoint, "optimizer", device=self.args.device))
        self.lr_scheduler.load_state_dict(load_state(checkpoint, "scheduler"))

    def _rng_state_name(self) -> str:
        return "rng_state" if self.args.world_size <= 1 else f"rng_state_{self.args.process_index}"

    def _save_rng_state(self, output_dir: str) -> None:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
        if torch.cuda.is_available():
            distributed = self.args.parallel_mode.value == "distributed"
            state["cuda"] = torch.cuda.random.get_rng_state_all() if distributed else torch.cuda.random.get_rng_state()
        save_state(state, output_dir, self._rng_state_name())

    def _load_rng_state(self, checkpoint: Optional[str]) -> None:
        if checkpoint is None or not has_state(checkpoint, self._rng_state_name()):
            return super()._load_rng_state(checkpoint)
        state = load_state(checkpoint, self._rng_state_name())
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.random.set_rng_state(state["cpu"])
        if torch.cuda.is_available() and "cuda" in state:
            set_rng_state_for_device("CUDA", torch.cuda, state, self.args.parallel_mode.value == "distributed")


def _replace_pickled_arguments(output_dir: str, args: TrainingArguments) -> None:
    pickled = Path(output_dir) / "training_args.bin"
    if pickled.exists():
        pickled.unlink()
    if Path(output_dir).is_dir():
        write_text_atomic(Path(output_dir) / "training_args.json", args.to_json_string())


__all__ = ["SafetensorsStateMixin"]
