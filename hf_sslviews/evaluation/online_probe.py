"""Online linear probe: a linear classifier trained on detached backbone features while pretraining runs.

solo-learn and lightly train such a head next to every method: each training batch's labels
reach a ``Linear(D, classes)`` fed the backbone features of the batch's first view, *detached*,
so the representation never learns from labels; its cross-entropy and batch accuracy are logged
as training goes, and its accuracy on held-out images is a second learning curve beside the kNN
monitor's, closer to the final linear probe.

Here the head has its own AdamW (constant rate, no weight decay), so it is not part of the model,
its checkpoints or its export, and a run with the probe trains the model exactly as a run without
it (tested). The labels come from the dataset through :class:`~hf_sslviews.data.labels.WithLabels`;
:class:`~hf_sslviews.training.trainer.SSLTrainer` takes them out of the batch before the model's
forward. Under data parallelism each process trains its own head on its own shard and the logged
numbers are averaged over processes; a resumed run starts a new head (the probe is a monitor, not
state of the model).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

# The output fields that carry the backbone features of the training views, first match wins:
# two-view methods, APS, PatchMix and RepCo give ``embeddings_1``; MULAN ``global_embeddings``
# [B, n_global, D]; CLSA ``weak_embeddings`` (one [B, D] tensor per resolution).
FEATURE_FIELDS = ("embeddings_1", "global_embeddings", "weak_embeddings")


def training_features(outputs: Mapping[str, Any]) -> torch.Tensor:
    """``[B, D]`` backbone features of each image's first training view, from a ``<M>ForPreTraining`` output."""
    for name in FEATURE_FIELDS:
        value = outputs.get(name)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = value[0]
        return value[:, 0] if value.ndim == 3 else value
    raise ValueError(
        f"the online linear probe needs backbone features in the model output (one of {FEATURE_FIELDS}); "
        f"this output has {sorted(key for key, value in outputs.items() if value is not None)}"
    )


class OnlineLinearProbe(nn.Module):
    """``Linear(num_features, num_classes)`` trained on detached features, one AdamW step per training batch.

    Args:
        num_features: width of the backbone features (``model.backbone.num_features``).
        num_classes: number of classes of the labels.
        learning_rate: AdamW learning rate of the head, constant (1e-3: a few hundred steps bring
            it close to a converged probe on fixed features).
        seed: seed of the head's initialisation, drawn from a private generator so that adding the
            probe leaves the global RNG (data order, views) of the run untouched.
    """

    def __init__(self, num_features: int, num_classes: int, learning_rate: float = 1e-3, seed: int = 0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"the online linear probe needs at least 2 classes, got num_classes={num_classes}")
        if learning_rate <= 0:
            raise ValueError(f"the online linear probe's learning_rate must be positive, got {learning_rate}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(num_features, num_classes)
        self.num_classes = num_classes
        self.learning_rate = learning_rate
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._sums: Optional[torch.Tensor] = None  # [loss * n, correct, n] since the last log, on the device

    def train_step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """One AdamW step of the head on ``features`` (detached here) and ``labels``."""
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"online linear probe: labels must lie in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
        if self.head.weight.device != features.device:
            self.to(features.device)
        if self._optimizer is None:
            self._optimizer = torch.optim.AdamW(self.head.parameters(), lr=self.learning_rate, weight_decay=0.0)
        self.head.train()
        with torch.enable_grad(), torch.autocast(device_type=features.device.type, enabled=False):
            logits = self.head(features.detach().float())
            loss = F.cross_entropy(logits, labels)
            loss.backward()
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        batch = torch.stack([loss.detach() * len(labels), (logits.detach().argmax(1) == labels).sum().float(), torch.tensor(float(len(labels)), device=logits.device)])
        self._sums = batch if self._sums is None else self._sums + batch

    def observe(self, outputs: Mapping[str, Any], labels: torch.Tensor) -> None:
        """One step on a training batch: the model's ``outputs`` (their backbone features) and the batch's ``labels``.

        What :class:`~hf_sslviews.training.trainer.SSLTrainer` calls after each forward; the
        trainer knows nothing of features or heads.
        """
        self.train_step(training_features(outputs), labels)

    def pop_train_sums(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """``[loss x images, correct, images]`` since the last call (zeros if none), then reset.

        Sums, not means, so that processes of a data-parallel run add up before dividing (and a
        process without batches in the window still takes part in the reduction).
        """
        sums, self._sums = self._sums, None
        return sums if sums is not None else torch.zeros(3, device=device if device is not None else self.head.weight.device)

    @staticmethod
    def metrics_from_sums(sums: torch.Tensor) -> Optional[dict[str, float]]:
        """``{"online_linear_loss", "online_linear_train_top1"}``: means over the images of ``sums``; ``None`` for no images."""
        loss, correct, images = sums.tolist()
        if images == 0:
            return None
        return {"online_linear_loss": loss / images, "online_linear_train_top1": correct / images}

    @torch.no_grad()
    def top1(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy of the head on ``features`` / ``labels`` (e.g. the kNN monitor's test images)."""
        features = features.to(self.head.weight.device, torch.float32)
        return float((self.head(features).argmax(1) == labels.to(features.device)).float().mean())


def add_online_linear_probe(trainer, num_classes: int, learning_rate: float = 1e-3) -> OnlineLinearProbe:
    """Train an :class:`OnlineLinearProbe` in ``trainer`` (an ``SSLTrainer``) on its batches' labels; returns it.

    The training set must carry labels: its view transform wrapped in
    :class:`~hf_sslviews.data.labels.WithLabels`. The probe's loss and batch accuracy are logged with
    the training loss (``online_linear_loss``, ``online_linear_train_top1``); a kNN monitor of the
    same trainer also logs its accuracy on the monitor's test images (``online_linear_top1``).

    Example::

        train = prepare_for_views(dataset).with_transform(WithLabels(views, "label"))
        trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
        add_online_linear_probe(trainer, num_classes=10)
        add_knn_monitor(trainer, labelled_train, labelled_test, every_n_steps=200)
    """
    from ..data.labels import WithLabels
    from ..data.streaming import attached_transform

    if not isinstance(attached_transform(trainer.train_dataset), WithLabels):
        raise ValueError(
            "the online linear probe needs labels in the training batches: attach the views as "
            "dataset.with_transform(WithLabels(views, label_column)) (hf_sslviews.data.labels), or "
            "attach_views(dataset, WithLabels(views, label_column), ...) for a streaming dataset"
        )
    probe = OnlineLinearProbe(trainer.model.backbone.num_features, num_classes, learning_rate, seed=trainer.args.seed)
    trainer.online_probe = probe
    return probe


__all__ = ["FEATURE_FIELDS", "OnlineLinearProbe", "add_online_linear_probe", "training_features"]
