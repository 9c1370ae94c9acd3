"""The Trainer side: SSLTrainer and its arguments, schedules as callbacks, APS's repeated batches, safe checkpoints."""

from .trainer import SSLTrainer, SSLTrainingArguments

__all__ = ["SSLTrainer", "SSLTrainingArguments"]
