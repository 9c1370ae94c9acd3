"""kNN monitor: weighted-kNN accuracy of the backbone being pretrained, logged like any metric.

Every ``every_n_steps`` optimizer steps (and/or at each epoch end) :class:`KNNMonitorCallback` runs
the ``<M>ForPreTraining``'s own backbone (``model.backbone(x)``: the pooled CLS / global-pool
feature) over a small labelled train/test pair, scores the DINO weighted kNN
(:func:`~hf_sslviews.evaluation.knn.knn_accuracy`) and logs ``knn_top1`` / ``knn_top5`` through the
Trainer's ``log``, so they land in ``trainer.state.log_history`` at that step and reach every
``report_to`` integration (TensorBoard, W&B, ...) like ``eval_loss`` does.

Why ``trainer.log`` and not ``on_log``: in transformers 5.x ``Trainer.log`` appends a *copy* of the
logs to ``state.log_history`` before the callbacks' ``on_log`` run, and the integrations' callbacks
come before user callbacks, so values added to ``logs`` in ``on_log`` reach neither. A callback has
no handle on its Trainer, hence :meth:`KNNMonitorCallback.attach` / :func:`add_knn_monitor`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from transformers import TrainerCallback

from .features import NonFiniteFeaturesError, eval_transform_for, extract_features
from .knn import knn_accuracy

logger = logging.getLogger(__name__)


def eval_transform_for_config(config) -> Callable:
    """The evaluation transform an export of this pretraining config gets: resize, centre crop, normalise.

    The data config is the one the export writes (``config.export_data_config()``), so the monitor
    sees exactly what ``run_knn_eval.py`` on the exported backbone will see.
    """
    return eval_transform_for(config.export_data_config())


def _first(dataset, limit: Optional[int]):
    if limit is None:
        return dataset
    if hasattr(dataset, "select"):
        return dataset.select(range(min(limit, len(dataset))))
    return dataset.take(limit)  # IterableDataset


class KNNMonitorCallback(TrainerCallback):
    """Weighted kNN of the training model's backbone, logged as ``knn_top1`` / ``knn_top5``.

    The backbone runs in eval mode under ``torch.inference_mode()``; every module's train/eval
    flag is restored afterwards (the target network of BYOL / MoCo stays as it was). Features of the
    labelled train split are recomputed at every run (the backbone changes), so keep the caps small:
    the cost is one forward pass over ``max_train_samples + max_test_samples`` images.

    Args:
        train_dataset: labelled images forming the neighbour bank (a ``datasets.Dataset``; decoded or
            undecoded image column, any mode).
        test_dataset: labelled images to classify.
        every_n_steps: run after every ``every_n_steps`` optimizer steps (``state.global_step``); 0
            turns the step trigger off.
        at_epoch_end: also run at the end of every epoch (once per step: not again if the step
            trigger just ran).
        k: neighbours (DINO: 20; at most ``max_train_samples``).
        temperature: vote temperature T (DINO: 0.07).
        max_train_samples: use the first N training images (the bank); ``None`` for all.
        max_test_samples: use the first N test images; ``None`` for all.
        image_column: the image column's name.
        label_column: the label column's name.
        batch_size: images per forward pass.
        transform: ``PIL.Image -> float32 [3, H, W]``; default: :func:`eval_transform_for_config` of
            the model's config, built at the first run.
        metric_prefix: logged names are ``<prefix>_top1`` / ``<prefix>_top5``.

    When the trainer has an online linear probe (:func:`~hf_sslviews.evaluation.online_probe.add_online_linear_probe`),
    its top-1 on the same test images is logged too, as ``online_linear_top1``.

    Attributes:
        history: ``[{"step", "train_seconds", "knn_top1", "knn_top5"}]`` (and ``online_linear_top1``), one entry per run;
            ``train_seconds`` is the wall time since training began, less the runs of every
            monitor (:func:`monitors_seconds`), so curves of several methods can be compared
            against training time.
        monitor_seconds: the time its own runs took.
    """

    def __init__(
        self,
        train_dataset,
        test_dataset,
        every_n_steps: int = 500,
        at_epoch_end: bool = False,
        k: int = 20,
        temperature: float = 0.07,
        max_train_samples: Optional[int] = 2000,
        max_test_samples: Optional[int] = 1000,
        image_column: str = "image",
        label_column: str = "label",
        batch_size: int = 256,
        transform: Optional[Callable] = None,
        metric_prefix: str = "knn",
    ):
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0 turns the step trigger off), got {every_n_steps}")
        if every_n_steps == 0 and not at_epoch_end:
            raise ValueError("the kNN monitor would never run: give every_n_steps > 0 or at_epoch_end=True")
        self.train_dataset = _first(train_dataset, max_train_samples)
        self.test_dataset = _first(test_dataset, max_test_samples)
        num_train = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        if num_train is not None and not 1 <= k <= num_train:
            raise ValueError(f"k={k} must be between 1 and the monitor's {num_train} training images; lower k or raise max_train_samples")
        feature = (getattr(self.train_dataset, "features", None) or {}).get(label_column)
        self.num_classes = getattr(feature, "num_classes", None)
        self.every_n_steps = every_n_steps
        self.at_epoch_end = at_epoch_end
        self.k = k
        self.temperature = temperature
        self.image_column = image_column
        self.label_column = label_column
        self.batch_size = batch_size
        self.transform = transform
        self.metric_prefix = metric_prefix
        self.history: list[dict[str, float]] = []
        self._trainer = None
        self._last_step: Optional[int] = None
        self._train_start: Optional[float] = None
        self.monitor_seconds = 0.0

    def attach(self, trainer) -> "KNNMonitorCallback":
        """Give the callback its Trainer (needed to log through ``trainer.log``); returns ``self``."""
        self._trainer = trainer
        return self

    # -- triggers -------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if self._trainer is None:
            raise ValueError(
                "KNNMonitorCallback is not attached to its Trainer, so it cannot log; use "
                "add_knn_monitor(trainer, ...) or trainer.add_callback(monitor.attach(trainer))"
            )
        self._train_start, self.monitor_seconds = time.perf_counter(), 0.0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._run(state, control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.at_epoch_end:
            self._run(state, control, model)

    # -- the evaluation -------------------------------------------------------------------
    def evaluate(self, model) -> dict[str, float]:
        """kNN top-1 / top-5 of ``model.backbone`` now; the modules' train/eval flags are restored."""
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise ValueError(f"the kNN monitor needs an <M>ForPreTraining model with a .backbone, got a {type(model).__name__}")
        if self.transform is None:
            self.transform = eval_transform_for_config(model.config)
        modes = [(module, module.training) for module in model.modules()]
        parameter = next(backbone.parameters())
        try:
            features = [
                extract_features(backbone, dataset, self.image_column, self.label_column, self.batch_size, self.transform, parameter.device)
                for dataset in (self.train_dataset, self.test_dataset)
            ]
        finally:
            for module, training in modes:
                module.training = training
        scores = knn_accuracy(*features[0], *features[1], num_classes=self.num_classes, k=self.k, temperature=self.temperature)
        metrics = {f"{self.metric_prefix}_top1": scores["top1"], f"{self.metric_prefix}_top5": scores["top5"]}
        # The trainer's online linear probe (if any) on the same test images: a second curve.
        probe = getattr(self._trainer, "online_probe", None)
        if probe is not None:
            metrics["online_linear_top1"] = probe.top1(*features[1])
        return metrics

    def _run(self, state, control, model) -> None:
        if model is None or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        started = time.perf_counter()
        train_seconds = started - self._train_start - monitors_seconds(self._trainer) if self._train_start is not None else None
        try:
            metrics = self.evaluate(model)
        except NonFiniteFeaturesError as error:
            # A diverged run: no kNN number is meaningful, and stopping the training is the user's call.
            self.monitor_seconds += time.perf_counter() - started
            logger.warning("step %d: kNN monitor skipped: %s", state.global_step, error)
            return
        self.monitor_seconds += time.perf_counter() - started
        self.history.append({"step": state.global_step, "train_seconds": train_seconds, **metrics})
        logger.info("step %d: kNN (k=%d) %s", state.global_step, self.k, metrics)
        # The callback handler's on_log clears control.should_log; the flow callback may just have
        # set it for the training-loss log of this step, which must still happen.
        should_log = control.should_log
        self._trainer.log(dict(metrics))
        control.should_log = self._trainer.control.should_log = should_log


def monitors_seconds(trainer) -> float:
    """Seconds the trainer's monitors (every callback with a ``monitor_seconds``) have spent so far.

    Training time is wall time less this, so that curves and equal-time budgets do not count the
    measuring.
    """
    callbacks = getattr(getattr(trainer, "callback_handler", None), "callbacks", [])
    return sum(getattr(callback, "monitor_seconds", 0.0) for callback in callbacks)


def add_knn_monitor(trainer, train_dataset, test_dataset, **kwargs: Any) -> KNNMonitorCallback:
    """Create a :class:`KNNMonitorCallback`, attach it to ``trainer`` and add it; returns it.

    Example::

        trainer = SSLTrainer(model=model, args=args, train_dataset=views, data_collator=ViewCollator())
        add_knn_monitor(trainer, labelled_train, labelled_test, every_n_steps=200, max_train_samples=2000)
        trainer.train()   # log_history gets {"knn_top1", "knn_top5", "step": 200, ...} every 200 steps
    """
    monitor = KNNMonitorCallback(train_dataset, test_dataset, **kwargs).attach(trainer)
    trainer.add_callback(monitor)
    return monitor


__all__ = ["KNNMonitorCallback", "add_knn_monitor", "eval_transform_for_config", "monitors_seconds"]
