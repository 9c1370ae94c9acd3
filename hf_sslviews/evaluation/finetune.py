"""Pieces for fine-tuning an exported backbone with the stock ``transformers.Trainer``.

``scripts/run_finetune.py`` loads the export with ``AutoModelForImageClassification`` (a
``TimmWrapperForImageClassification`` with a fresh linear head) and trains it with the plain
``Trainer``; this module holds what that needs and the Trainer does not have:

- :func:`class_labels`: ``num_labels`` / ``id2label`` / ``label2id`` from a ``ClassLabel`` column;
- :func:`train_transform_for`: timm's training transform (random resized crop, flip, colour jitter,
  optional RandAugment ``rand-m9-mstd0.5-inc1`` and random erasing) from the export's data config;
- :func:`pad_crop_transform_for`: the small-image recipe (the evaluation geometry, then pad, random
  crop back and flip), for 28-32 px images where a random resized crop destroys too much;
- :class:`ClassificationTransform`: a ``with_transform`` callable producing ``pixel_values`` and
  ``labels``;
- :class:`ClassificationCollator`: stacks examples and, for training batches only, applies timm's
  ``Mixup`` / CutMix or label smoothing, turning labels into soft targets ``[B, C]``;
- :func:`soft_target_cross_entropy`: the Trainer's ``compute_loss_func`` for hard or soft targets,
  normalised by the Trainer's ``num_items_in_batch`` so gradient accumulation and DDP are exact;
- :func:`compute_classification_metrics`: ``compute_metrics`` through the shipped metric modules.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import timm.data
import torch
import torch.nn.functional as F
from timm.data import auto_augment as timm_auto_augment
from timm.data.mixup import Mixup, mixup_target
from torchvision.transforms import InterpolationMode, v2

from ..data.labels import check_label_column, class_index
from ..views.decode import ImageDecodeError, decode_image
from .features import pretrained_cfg_of
from .linear_probe import top1_top5

logger = logging.getLogger(__name__)

TRAIN_AUGMENTATIONS = ("random_resized_crop", "pad_crop")
RANDAUGMENT_POLICY = "rand-m9-mstd0.5-inc1"  # DeiT / timm's ImageNet fine-tuning recipe
AUGMENTED_KEY = "augmented"  # marks examples made by a training transform: only their batches get mixed


def class_labels(dataset, label_column: str = "label", *others) -> tuple[int, dict[int, str], dict[str, int]]:
    """``num_labels``, ``id2label`` and ``label2id`` of a labelled dataset.

    A ``ClassLabel`` column gives its names; a plain integer column gives names ``"0"``, ``"1"``, ...
    up to the largest value of ``dataset`` and of ``others`` (the evaluation split: a class that only
    it holds still needs an output of the head). Labels that are not class indices are refused
    (:func:`~hf_sslviews.data.labels.check_label_column`).

    Args:
        dataset: a ``datasets.Dataset``.
        label_column: the label column's name.
        others: further splits of the same data.

    Returns:
        ``(num_labels, id2label, label2id)``.
    """
    columns = getattr(dataset, "column_names", None) or []
    if label_column not in columns:
        raise ValueError(f"column {label_column!r} not found; the dataset has columns {sorted(columns)}. Pass the right one with --label_column_name.")
    check_label_column(dataset, label_column)
    feature = dataset.features[label_column]
    names = list(getattr(feature, "names", None) or [])
    if not names:
        values = [value for split in (dataset, *others) for value in split.unique(label_column)]
        if not values:
            raise ValueError(f"column {label_column!r} holds no labels")
        names = [str(i) for i in range(int(max(values)) + 1)]
    id2label = dict(enumerate(names))
    return len(names), id2label, {name: i for i, name in id2label.items()}


def train_transform_for(
    model_dir_or_pretrained_cfg: Any,
    randaugment: bool = False,
    re_prob: float = 0.0,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    color_jitter: Optional[float] = 0.4,
) -> Callable:
    """timm's training transform for a backbone's data config (size, mean, std, interpolation).

    Args:
        model_dir_or_pretrained_cfg: what :func:`~hf_sslviews.evaluation.features.eval_transform_for` takes.
        randaugment: add RandAugment ``rand-m9-mstd0.5-inc1`` (DeiT's fine-tuning policy).
        re_prob: random-erasing probability (DeiT: 0.25), per-pixel noise fill.
        scale: the random resized crop's area range.
        hflip: horizontal flip probability.
        color_jitter: colour-jitter strength (ignored by timm when RandAugment is on).

    Returns:
        A callable ``PIL.Image (RGB) -> float32 [3, H, W]``.
    """
    data_config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg_of(model_dir_or_pretrained_cfg))
    transform = timm.data.create_transform(
        **data_config, is_training=True, scale=tuple(scale), hflip=hflip, color_jitter=color_jitter,
        auto_augment=RANDAUGMENT_POLICY if randaugment else None, re_prob=re_prob, re_mode="pixel",
    )
    return clamp_posterize_bits(transform)


def pad_crop_transform_for(model_dir_or_pretrained_cfg: Any, padding: int = 2, hflip: float = 0.5) -> Callable:
    """The small-image training transform: the evaluation geometry, then pad, random crop, flip.

    The image is resized and centre-cropped exactly as the evaluation transform does it (so train
    and test objects have one scale), padded by ``padding`` black pixels on every side and cropped
    back to the input size at a random offset (a shift of up to ``padding`` pixels), flipped, and
    normalised. This is the CIFAR / Fashion-MNIST recipe: at 28-32 px a random resized crop of
    8-100% of the area (timm's ImageNet default) leaves a few pixels of the object.

    Args:
        model_dir_or_pretrained_cfg: what :func:`~hf_sslviews.evaluation.features.eval_transform_for` takes.
        padding: pixels added on each side before the random crop (>= 0).
        hflip: horizontal flip probability.

    Returns:
        A callable ``PIL.Image (RGB) -> float32 [3, H, W]``.
    """
    if padding < 0 or not 0 <= hflip <= 1:
        raise ValueError(f"padding must be >= 0 and hflip in [0, 1], got padding={padding}, hflip={hflip}")
    data_config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg_of(model_dir_or_pretrained_cfg))
    height, width = data_config["input_size"][-2:]
    interpolation = InterpolationMode(data_config.get("interpolation", "bicubic"))
    # timm's evaluation resize: the shorter side for a square input (aspect kept), both sides otherwise.
    resize = tuple(math.floor(side / data_config.get("crop_pct", 1.0)) for side in (height, width))
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(resize[0] if height == width else resize, interpolation=interpolation, antialias=True),
        v2.CenterCrop((height, width)),
        v2.RandomCrop((height, width), padding=padding, fill=0),
        v2.RandomHorizontalFlip(hflip),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(data_config["mean"]), std=list(data_config["std"])),
    ])


def reset_backbone_to_random_init(model: torch.nn.Module, model_name_or_path: str, seed: int = 0) -> torch.nn.Module:
    """Give a ``TimmWrapperForImageClassification`` the random initialisation its backbone had before pretraining.

    The backbone's weights become :func:`~hf_sslviews.evaluation.features.load_backbone`'s random
    copy (timm's own initialisation, seeded); the classification head keeps the fresh head it was
    loaded with. Fine-tuning this model is supervised training from scratch of the same network:
    the fine-tuning floor that every pretrained backbone is judged against.

    Args:
        model: the classifier loaded from ``model_name_or_path``.
        model_name_or_path: the exported backbone it was loaded from.
        seed: the ``torch`` seed of the initialisation.

    Returns:
        ``model``, changed in place.
    """
    from .features import load_backbone

    random_state = load_backbone(model_name_or_path, random_init=True, seed=seed).timm_model.state_dict()
    missing, unexpected = model.timm_model.load_state_dict(random_state, strict=False)
    classifier = model.timm_model.default_cfg.get("classifier", "head")  # the head's module name(s) in timm
    heads = set(classifier) if isinstance(classifier, (list, tuple)) else {classifier}
    if unexpected or any(key.rsplit(".", 1)[0] not in heads for key in missing):
        raise ValueError(f"the random backbone of {model_name_or_path} does not match the classifier's: missing {missing}, unexpected {unexpected}")
    return model


def _posterize_at_least_one_bit(img, bits_to_keep, **kwargs):
    return timm_auto_augment.posterize(img, max(1, int(bits_to_keep)), **kwargs)


def clamp_posterize_bits(transform: Callable) -> Callable:
    """Make timm's Posterize ops keep at least one bit, in this transform only.

    ``PosterizeIncreasing`` at magnitude ~10 asks for 0 bits (TensorFlow's convention: a black
    image), which Pillow >= 10 rejects with ``ValueError: bits must be between or equal to 1 and
    8``: about 8 in 4,000 images, so every real epoch died. One bit is the nearest value Pillow
    accepts. The op objects of this transform are changed; timm's module is not patched.
    """
    for op in getattr(transform, "transforms", ()):
        for augment in getattr(op, "ops", ()):
            if getattr(augment, "aug_fn", None) is timm_auto_augment.posterize:
                augment.aug_fn = _posterize_at_least_one_bit
    return transform


class ClassificationTransform:
    """``dataset.with_transform`` callable: images -> ``pixel_values``, labels -> ``labels``.

    Input: a batch dict with an image column (decoded or ``Image(decode=False)``, any mode) and
    an integer label column. Output: ``{"pixel_values": [float32 [3, H, W] or None], "labels": [int]}``
    plus, for a training transform, ``"augmented": [True]`` so that :class:`ClassificationCollator`
    mixes those batches and leaves evaluation batches alone. An undecodable image gives ``None``;
    the collator skips and counts it.

    Args:
        transform: ``PIL.Image -> float32 [3, H, W]`` (:func:`train_transform_for` or ``eval_transform_for``).
        image_column: the image column's name.
        label_column: the label column's name.
        training: whether this is the training transform.
    """

    def __init__(self, transform: Callable, image_column: str = "image", label_column: str = "label", training: bool = False):
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        self.training = training

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        for column, flag in ((self.image_column, "--image_column_name"), (self.label_column, "--label_column_name")):
            if column not in batch:
                raise ValueError(f"column {column!r} not found; the batch has columns {sorted(batch)}. Pass the right one with {flag}.")
        pixel_values = []
        for value in batch[self.image_column]:
            try:
                pixel_values.append(self.transform(decode_image(value)))
            except ImageDecodeError as error:
                logger.debug("skipping an undecodable image: %s", error)
                pixel_values.append(None)
        output = {"pixel_values": pixel_values, "labels": [class_index(label, self.label_column) for label in batch[self.label_column]]}
        if self.training:
            output[AUGMENTED_KEY] = [True] * len(pixel_values)
        return output


def build_mixup(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, label_smoothing: float = 0.0) -> Optional[Mixup]:
    """timm's batch-mode ``Mixup`` (switching between Mixup and CutMix with probability 0.5), or ``None`` when both alphas are 0."""
    if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= label_smoothing < 1:
        raise ValueError(f"mixup and cutmix alphas must be >= 0 and label smoothing in [0, 1), got {mixup_alpha}, {cutmix_alpha}, {label_smoothing}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return None
    return Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=label_smoothing, num_classes=num_classes)


class ClassificationCollator:
    """Stacks examples into ``pixel_values [B, 3, H, W]`` and ``labels``; mixes training batches.

    Batches of training examples (``"augmented"`` set by the training :class:`ClassificationTransform`)
    get timm's ``Mixup`` / CutMix when ``mixup_fn`` is given, else label smoothing when
    ``label_smoothing > 0``; their ``labels`` become soft targets ``float32 [B, C]``. Evaluation
    batches keep integer ``labels [B]`` (the Trainer uses one collator for both).

    timm's batch Mixup pairs example ``i`` with ``B - 1 - i`` and needs an even batch: an odd training
    batch (the last one without ``--dataloader_drop_last``, or one with a skipped image) drops its
    last example.

    Args:
        num_classes: ``C``.
        mixup_fn: a timm ``Mixup`` (:func:`build_mixup`), or ``None``.
        label_smoothing: smoothing of the one-hot targets when there is no ``mixup_fn`` (a
            ``Mixup`` smooths its own targets).

    Attributes:
        num_skipped: undecodable images skipped so far (in this process).
    """

    def __init__(self, num_classes: int, mixup_fn: Optional[Mixup] = None, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.mixup_fn = mixup_fn
        self.label_smoothing = label_smoothing
        self.num_skipped = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        kept = [example for example in examples if example["pixel_values"] is not None]
        if len(kept) < len(examples):
            self.num_skipped += len(examples) - len(kept)
            logger.warning("skipped %d undecodable image(s) in a batch (%d so far)", len(examples) - len(kept), self.num_skipped)
        if not kept:
            raise ValueError(f"none of the {len(examples)} images of a batch could be decoded; check the dataset's image column")
        training = all(example.get(AUGMENTED_KEY, False) for example in kept)
        if training and self.mixup_fn is not None and len(kept) % 2:
            if len(kept) == 1:
                raise ValueError("Mixup / CutMix need at least 2 images per batch; raise --per_device_train_batch_size")
            kept = kept[:-1]
        pixel_values = torch.stack([example["pixel_values"] for example in kept])
        labels = torch.tensor([example["labels"] for example in kept], dtype=torch.long)
        if training and self.mixup_fn is not None:
            pixel_values, labels = self.mixup_fn(pixel_values, labels)
        elif training and self.label_smoothing > 0:
            labels = mixup_target(labels, self.num_classes, lam=1.0, smoothing=self.label_smoothing)
        return {"pixel_values": pixel_values, "labels": labels}


def soft_target_cross_entropy(outputs, labels: torch.Tensor, num_items_in_batch: Optional[torch.Tensor | int] = None) -> torch.Tensor:
    """Cross-entropy with integer labels ``[B]`` or soft targets ``[B, C]``: the Trainer's ``compute_loss_func``.

    The Trainer (5.x) treats a ``compute_loss_func`` loss as already normalised over the whole
    accumulated (and, with ``average_tokens_across_devices``, all-process) batch: it passes
    ``num_items_in_batch`` = the count of ``labels != -100`` over those micro-batches and does not
    divide by the accumulation steps. So the loss is the per-example sum over ``num_items_in_batch``
    examples. For soft targets that count is ``examples * C`` (every entry of ``[B, C]`` is counted),
    hence the division by ``C``.

    Args:
        outputs: the model output (``logits [B, C]``).
        labels: int ``[B]`` or float ``[B, C]`` soft targets (rows sum to 1).
        num_items_in_batch: the Trainer's count; ``None`` gives the batch mean.

    Returns:
        The scalar loss.
    """
    logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
    if labels is None:
        raise ValueError("the fine-tuning loss needs labels; the collator must provide a 'labels' key")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if labels.ndim == 2:
        per_example = -(labels.to(log_probs) * log_probs).sum(dim=-1)
        examples = None if num_items_in_batch is None else num_items_in_batch / labels.shape[-1]
    else:
        per_example = F.nll_loss(log_probs, labels.long(), reduction="none")
        examples = num_items_in_batch
    if examples is None:
        return per_example.mean()
    if torch.is_tensor(examples):
        examples = examples.to(per_example.device)
    return per_example.sum() / examples


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: ``accuracy`` (top-1) and ``top5`` through the shipped metrics."""
    logits, label_ids = eval_prediction.predictions, eval_prediction.label_ids
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    scores = top1_top5(torch.as_tensor(np.asarray(logits)), torch.as_tensor(np.asarray(label_ids)).long())
    return {"accuracy": scores["top1"], "top5": scores["top5"]}


__all__ = [
    "ClassificationCollator",
    "ClassificationTransform",
    "RANDAUGMENT_POLICY",
    "TRAIN_AUGMENTATIONS",
    "build_mixup",
    "class_labels",
    "compute_classification_metrics",
    "pad_crop_transform_for",
    "reset_backbone_to_random_init",
    "soft_target_cross_entropy",
    "train_transform_for",
]
