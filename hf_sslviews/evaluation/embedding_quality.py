"""Label-free quality of an embedding: RankMe, alignment and uniformity.

Most pretraining data has no labels, so a kNN monitor cannot say whether a run learns. Three
measures need none:

- :func:`rankme` (Garrido et al., "RankMe", ICML 2023): the effective rank of the features, the
  exponential of the entropy of the normalised singular values. A collapsed encoder (every image
  on one point, or on a low-dimensional subspace) has a RankMe near 1 (or near that dimension);
  across runs of one setup, higher RankMe went with better downstream accuracy in that paper.
- :func:`alignment` and :func:`uniformity` (Wang & Isola, ICML 2020): how close two augmentations
  of one image land (``E ||f(x) - f(x+)||^2`` on the unit sphere; lower is better) and how evenly
  the images spread over the sphere (``log E exp(-2 ||f(x) - f(y)||^2)``; lower is better). A
  collapsed encoder aligns perfectly (0) and is not uniform at all (0, the maximum).

:class:`EmbeddingQualityMonitor` logs the three on a fixed set of training images during
pretraining (``rankme``, ``alignment``, ``uniformity`` in ``log_history`` and every ``report_to``
integration) and warns when the effective rank collapses.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from transformers import TrainerCallback

from .features import embed

logger = logging.getLogger(__name__)


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of ``[N, D]`` features: ``exp(-sum_k p_k log p_k)``, ``p = sigma / ||sigma||_1 + eps``.

    Between 1 (one direction) and ``min(N, D)`` (every singular value equal). The features are used
    as they are (not centred or normalised), as in the paper.
    """
    if features.ndim != 2 or min(features.shape) == 0:
        raise ValueError(f"features must be a non-empty [N, D] tensor, got shape {tuple(features.shape)}")
    singular = torch.linalg.svdvals(features.double())
    p = singular / singular.sum().clamp_min(torch.finfo(torch.float64).tiny) + eps
    return math.exp(-(p * p.log()).sum().item())


def alignment(first: torch.Tensor, second: torch.Tensor) -> float:
    """Mean squared distance ``E ||f(x) - f(x+)||^2`` of L2-normalised positive pairs ``[N, D]``, ``[N, D]`` (in [0, 4])."""
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"alignment needs two [N, D] tensors of one shape, got {tuple(first.shape)} and {tuple(second.shape)}")
    a, b = F.normalize(first.double(), dim=1), F.normalize(second.double(), dim=1)
    return (a - b).pow(2).sum(dim=1).mean().item()


def uniformity(features: torch.Tensor, t: float = 2.0) -> float:
    """``log E_{x != y} exp(-t ||f(x) - f(y)||^2)`` over distinct pairs of L2-normalised ``[N, D]`` features (in [-4t, 0])."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"uniformity needs [N, D] features with N >= 2, got shape {tuple(features.shape)}")
    x = F.normalize(features.double(), dim=1)
    squared = torch.pdist(x).pow(2)
    return (torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())).item()


def embedding_quality(clean: torch.Tensor, first_view: torch.Tensor, second_view: torch.Tensor) -> dict[str, float]:
    """``rankme`` and ``uniformity`` of the clean images' features, ``alignment`` of the two views'."""
    return {"rankme": rankme(clean), "alignment": alignment(first_view, second_view), "uniformity": uniformity(clean)}


class EmbeddingQualityMonitor(TrainerCallback):
    """Logs ``rankme``, ``alignment`` and ``uniformity`` of the training model's backbone; no labels.

    A fixed set of images (the first ``num_images`` of the dataset given) is transformed once: the
    evaluation transform (``clean``) and two augmentations of each image (a random resized crop of
    40-100% of the evaluation image and a horizontal flip, drawn once with ``seed``: the positive
    pairs). The measures are therefore comparable from step to step and from run to run on the
    same data. The backbone runs in eval mode under ``torch.inference_mode()``; train/eval flags
    are restored.

    Args:
        images: the images (PIL, any mode), e.g. ``dataset["image"][:2048]``.
        transform: ``PIL.Image -> float32 [3, H, W]`` evaluation transform of the model.
        every_n_steps: run after every N optimizer steps (0: only at the end of training).
        batch_size: images per forward pass.
        seed: seeds the augmentations of the positive pairs.
        collapse_fraction: warn when RankMe falls under this fraction of its first value (or under 2).

    Attributes:
        history: ``[{"step", "rankme", "alignment", "uniformity"}]``, one entry per run.
        monitor_seconds: the time its runs took (training time excludes it).
    """

    def __init__(self, images: list, transform: Callable, every_n_steps: int = 0, batch_size: int = 256, seed: int = 0, collapse_fraction: float = 0.25):
        if every_n_steps < 0 or not 0 < collapse_fraction < 1:
            raise ValueError(f"every_n_steps must be >= 0 and collapse_fraction in (0, 1), got {every_n_steps}, {collapse_fraction}")
        from ..views.decode import ImageDecodeError, decode_image

        decoded = []
        for image in images:
            try:
                decoded.append(transform(decode_image(image)))
            except ImageDecodeError as error:  # the training views skip and count such images too
                logger.debug("embedding-quality monitor: skipping an undecodable image: %s", error)
        #: images the monitor could not decode (left out of its fixed set)
        self.num_skipped = len(images) - len(decoded)
        if len(decoded) < 2:
            raise ValueError(f"the embedding-quality monitor needs at least 2 decodable images, got {len(decoded)} of {len(images)}")
        clean = torch.stack(decoded)
        size = clean.shape[-2:]
        augment = v2.Compose([v2.RandomResizedCrop(size, scale=(0.4, 1.0), antialias=True), v2.RandomHorizontalFlip()])
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            views = [torch.stack([augment(image) for image in clean]) for _ in range(2)]
        finally:
            torch.random.set_rng_state(state)  # the training run's own randomness is left as it was
        self.batches = {"clean": clean, "first_view": views[0], "second_view": views[1]}
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.collapse_fraction = collapse_fraction
        self.history: list[dict[str, float]] = []
        self.monitor_seconds = 0.0  # excluded from training time (hf_sslviews.evaluation.monitor.monitors_seconds)
        self._trainer = None
        self._last_step: Optional[int] = None
        self._warned = False

    def attach(self, trainer) -> "EmbeddingQualityMonitor":
        self._trainer = trainer
        return self

    def evaluate(self, model) -> dict[str, float]:
        """The three measures of ``model.backbone`` now."""
        backbone = getattr(model, "backbone", model)
        modes = [(module, module.training) for module in backbone.modules()]
        parameter = next(backbone.parameters())
        try:
            backbone.eval()
            with torch.inference_mode():
                features = {
                    name: torch.cat([embed(backbone, batch.to(parameter.device, parameter.dtype)).float().cpu() for batch in images.split(self.batch_size)])
                    for name, images in self.batches.items()
                }
        finally:
            for module, training in modes:
                module.training = training
        return embedding_quality(features["clean"], features["first_view"], features["second_view"])

    def _run(self, state, model) -> None:
        if model is None or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        started = time.perf_counter()
        metrics = self.evaluate(model)
        self.monitor_seconds += time.perf_counter() - started
        self.history.append({"step": state.global_step, **metrics})
        first = self.history[0]["rankme"]
        if not self._warned and len(self.history) > 1 and (metrics["rankme"] < 2 or metrics["rankme"] < self.collapse_fraction * first):
            self._warned = True
            logger.warning(
                "the embedding is collapsing: RankMe %.1f at step %d, against %.1f at step %d (alignment %.3f, uniformity %.3f). "
                "Check the learning rate, the predictor (BYOL / SimSiam) or the temperature before training further.",
                metrics["rankme"], state.global_step, first, self.history[0]["step"], metrics["alignment"], metrics["uniformity"],
            )
        if self._trainer is not None:
            self._trainer.log(dict(metrics))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            should_log = control.should_log
            self._run(state, model)
            control.should_log = should_log  # the training-loss log of this step must still happen

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._run(state, model)


def add_embedding_quality_monitor(trainer, images: list, transform: Callable, **kwargs: Any) -> EmbeddingQualityMonitor:
    """Create an :class:`EmbeddingQualityMonitor`, attach it to ``trainer`` and add it; returns it."""
    monitor = EmbeddingQualityMonitor(images, transform, **kwargs).attach(trainer)
    trainer.add_callback(monitor)
    return monitor


__all__ = ["EmbeddingQualityMonitor", "add_embedding_quality_monitor", "alignment", "embedding_quality", "rankme", "uniformity"]
