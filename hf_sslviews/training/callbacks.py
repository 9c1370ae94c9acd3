"""Trainer callbacks: schedules that run between optimizer steps."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from ..modeling.common.momentum import cosine_momentum, cosine_schedule


class MomentumCallback(TrainerCallback):
    """Updates a model's target network after every optimizer step.

    The momentum follows BYOL's cosine schedule from ``config.momentum_base`` at step 0 to
    ``config.momentum_final`` at ``max_steps``, driven by the Trainer's optimizer-step counter,
    so gradient accumulation, evaluation and resume do not disturb it (an update inside
    ``forward`` would run once per micro-batch and during evaluation too).

    Attributes:
        num_updates: updates made in this process (for tests and logging).
        last_momentum: the momentum of the latest update.
    """

    def __init__(self):
        self.num_updates = 0
        self.last_momentum: float | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or not getattr(model, "has_momentum_encoder", False):
            return
        config = model.config
        momentum = cosine_momentum(state.global_step, state.max_steps, config.momentum_base, config.momentum_final)
        model.update_momentum(momentum)
        self.num_updates += 1
        self.last_momentum = momentum


class WeightDecayScheduleCallback(TrainerCallback):
    """Cosine weight-decay schedule (DINO, PatchMix: 0.04 -> 0.4), set before every optimizer step.

    Only parameter groups that had weight decay at the start (``weight_decay > 0``) follow the
    schedule; the no-decay groups (biases, norms, position embeddings) stay at 0.

    Args:
        start: weight decay at step 0 (normally ``TrainingArguments.weight_decay``).
        end: weight decay at the last step.
    """

    def __init__(self, start: float, end: float):
        self.start = start
        self.end = end
        self.current = start

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is None:
            return
        self.current = cosine_schedule(state.global_step, state.max_steps, self.start, self.end)
        for group in optimizer.param_groups:
            if group.get("initial_weight_decay", group["weight_decay"]) > 0:
                group.setdefault("initial_weight_decay", group["weight_decay"])
                group["weight_decay"] = self.current


class ViewEpochCallback(TrainerCallback):
    """Tells a seeded view transform the epoch, so each epoch draws new views of every row.

    Views are seeded per ``(seed, epoch, row)`` (see ``ViewTransform``); the epoch is set at each
    epoch's start, before the Trainer creates that epoch's data iterator. The transform keeps it
    in shared memory, so ``dataloader_persistent_workers`` see each new epoch too.
    """

    def __init__(self, views):
        self.views = views

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is a float sum of fractions: 0.9999999 at the start of epoch 1.
        self.views.epoch = int(math.floor(state.epoch + 1e-6))
