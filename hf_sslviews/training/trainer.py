"""SSLTrainer: the stock Trainer with the few things self-supervised pretraining needs.

Overridden: ``compute_loss`` (call the model, keep each loss term for logging), ``log`` (add the
averaged terms), the weight-decay grouping (no decay on biases, norms, position embeddings and
tokens), the counting of undecodable images, and a guard that stops on a non-finite loss
before a bad checkpoint can be written. Mixed precision, gradient accumulation, checkpoints,
resume, DDP / FSDP, ``report_to`` and ``push_to_hub`` are the stock machinery.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..data.collator import SKIPPED_REASONS_KEY, batch_rows, keep_first_rows
from ..data.labels import WithLabels
from ..data.streaming import attached_transform
from ..views.base import ViewTransform
from .callbacks import MomentumCallback, ViewEpochCallback, WeightDecayScheduleCallback
from .checkpoints import save_checkpoint_atomically
from .device_photometric import DevicePhotometricLoader
from .repeated_batches import ChunkRepeatingLoader, skip_first_batches
from .safetensors_state import check_resumable
from .trainer_state_files import SafetensorsStateMixin

logger = logging.getLogger(__name__)
SKIPPED_REASONS_KEPT = 3  # reasons of undecodable images quoted in the warning and the error


@dataclass
class SSLTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the self-supervised settings.

    Views come from ``dataset.with_transform``, so ``remove_unused_columns`` defaults to
    ``False`` here (the stock default drops the image column and fails with ``KeyError: 'image'``).
    ``max_grad_norm`` defaults to 0 (no clipping) as in the methods' official codes; the stock 1.0
    would clip silently, and every preset that clips says so in its training flags.
    """

    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep False: the view transform needs the image column."})
    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available, metadata={"help": "Pin host memory for faster GPU copies (on by default only when a GPU is present)."}
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={"help": "Drop the last incomplete batch of an epoch (default True here): BatchNorm heads cannot train on a batch of one image, and MoCo v2 queues need full batches."},
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports the SSL loss only (there are no logits to gather)."})
    optim_recipe: str = field(
        default="default",
        metadata={"help": "'default' uses --optim as usual (AdamW); 'lars' uses timm's LARS (BYOL / MULAN ResNet recipe) with biases and norms excluded from weight decay and adaptation; 'sgd' is SGD with momentum 0.9 (MoCo v2 / CLSA)."},
    )
    weight_decay_end: Optional[float] = field(
        default=None,
        metadata={"help": "If set, weight decay follows a cosine schedule from --weight_decay to this value (DINO / PatchMix 0.04 -> 0.4)."},
    )
    steps_per_batch: Optional[int] = field(
        default=None,
        metadata={"help": "Optimizer steps per loaded batch, on the same augmented images, one per chunk of views that make chunks (APS: one per patch chunk). Default: every chunk the views make (APS: K = 1/ratio), else 1; 1 turns reuse off."},
    )
    aps_chunks_per_batch: Optional[int] = field(default=None, metadata={"help": "Former name of --steps_per_batch (still accepted)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an earlier run in --output_dir (its checkpoint-* folders are deleted). Without it a folder holding another run is refused."},
    )
    predictor_lr_multiplier: float = field(
        default=1.0,
        metadata={"help": "Learning rate of the predictor heads (parameters named 'predictor*') as a multiple of --learning_rate, following the same schedule. >1 speeds up BYOL / SimSiam / MULAN at small budgets (a predictor that lags the projector slows the start)."},
    )
    predictor_constant_lr: bool = field(
        default=False,
        metadata={"help": "Keep the predictor heads at their initial learning rate (times --predictor_lr_multiplier) while the rest follows the schedule: SimSiam's fix_pred_lr, used by MULAN's SimSiam recipe."},
    )
    weight_decay_all_parameters: bool = field(
        default=False,
        metadata={"help": "Apply weight decay to every parameter, biases, norms, position embeddings and CLS included (APS's official code). Default: those are excluded."},
    )
    photometric_on_device: bool = field(
        default=False,
        metadata={"help": "Run the views' colour ops (jitter, grayscale, blur, solarize, normalise) on the training device after collation; the DataLoader workers only decode, crop and flip (uint8 crops). For GPU nodes where the CPU limits throughput. Views of every method but CLSA (whose strong views interleave RandAugment with the colour ops)."},
    )
    sync_batchnorm: bool = field(
        default=False,
        metadata={"help": "Under multi-GPU data parallelism, convert every BatchNorm layer to torch's SyncBatchNorm so statistics are over the global batch (official APS, PatchMix, MoCo v3, BYOL, SimSiam). No effect on one process; torch implements it for GPUs only. Not for shuffle-BN methods (CLSA, RepCo)."},
    )
    max_grad_norm: float = field(
        default=0.0,
        metadata={"help": "Clip the global gradient norm to this value; 0 (the default here) does not clip. transformers' default is 1.0, but none of the official codes of these methods clips except MULAN's ViT recipe (0.5, set in its presets); the CPU presets set 1.0, what their measured results were trained with."},
    )
    max_bad_image_fraction: float = field(
        default=0.01,
        metadata={"help": "Undecodable images are skipped and counted; training stops when more than this fraction of the images seen are bad."},
    )


    def __post_init__(self):
        # torchrun / accelerate launch on a machine without an accelerator: without use_cpu the
        # Trainer runs one independent single-process training per process (identical losses,
        # then a race to write the same checkpoint). CPU DDP is what such a launch means.
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if launched and not self.use_cpu and not _has_accelerator():
            logger.warning("%s processes launched on a machine without GPU: training with CPU DDP (gloo), as --use_cpu True would.", os.environ["WORLD_SIZE"])
            self.use_cpu = True
        if self.aps_chunks_per_batch is not None:
            if self.steps_per_batch is not None and self.steps_per_batch != self.aps_chunks_per_batch:
                raise ValueError(f"--aps_chunks_per_batch {self.aps_chunks_per_batch} and --steps_per_batch {self.steps_per_batch} disagree; give --steps_per_batch only")
            logger.warning("--aps_chunks_per_batch is now --steps_per_batch; the old name still works")
            self.steps_per_batch = self.aps_chunks_per_batch
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must lie in [0, 2**32 - 1] (numpy's seed range), got {self.seed}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 image, got {getattr(self, name)}")
        if self.gradient_accumulation_steps < 1:
            raise ValueError(f"--gradient_accumulation_steps must be at least 1, got {self.gradient_accumulation_steps}")
        if self.fp16 and (self.use_cpu or not _has_accelerator()):
            # The Trainer would train in float32 without a word: fp16 autocast and its grad
            # scaler are GPU features.
            raise ValueError("--fp16 needs a GPU; on CPU use --bf16 True (the Trainer runs it with CPU autocast) or leave both off")
        super().__post_init__()
        _check_reporting_packages(self.report_to)
        if not (math.isfinite(self.max_bad_image_fraction) and 0 <= self.max_bad_image_fraction <= 1):
            raise ValueError(f"--max_bad_image_fraction is a fraction of the images seen, in [0, 1]; got {self.max_bad_image_fraction}")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ValueError(
                f"nothing would train: --max_steps {self.max_steps} and --num_train_epochs {self.num_train_epochs:g}; give a positive "
                f"--max_steps or --num_train_epochs (an untrained backbone would otherwise be exported as if pretrained)"
            )


# --report_to integrations -> (modules any of which serves it, how to install one).
REPORTING_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), 'pip install "hf-sslviews[tensorboard]"'),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "comet_ml": (("comet_ml",), "pip install comet_ml"),
    "trackio": (("trackio",), "pip install trackio"),
}


def _check_reporting_packages(report_to) -> None:
    """Fail before training, with the install command, when a --report_to integration's package is missing."""
    import importlib.util

    for name in report_to or ():
        modules, install = REPORTING_PACKAGES.get(name, ((), ""))
        if modules and not any(importlib.util.find_spec(module) for module in modules):
            raise ValueError(f"--report_to {name} needs the {modules[0]} package, which is not installed: {install} (or pass --report_to none)")


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


# One-sided 99.9% normal quantile: a run under the limit is stopped by chance about once in a thousand.
_BAD_IMAGE_Z = 3.09
# The Wilson bound is too optimistic at a handful of events (1 bad among the first 8 images would
# pass a 1% limit's bound): a stop needs at least this many bad images as well.
_MIN_BAD_IMAGES = 10


def bad_fraction_exceeds(bad: int, seen: int, limit: float, z: float = _BAD_IMAGE_Z, min_bad: int = _MIN_BAD_IMAGES) -> bool:
    """Whether ``bad`` undecodable images of ``seen`` show, beyond chance, a fraction above ``limit``.

    The raw fraction misleads early: 3 bad images among the first 256 of a data set with 0.75%
    bad ones is 1.2%, and a rule on the raw fraction stopped 38% of such runs (0.5% bad: 17%).
    This stops only when at least ``min_bad`` images were bad and the lower end of the Wilson
    score interval (99.9%, one-sided) is above the limit, i.e. when the data really hold more bad
    images than allowed; a 10% bad data set is still stopped within its first few hundred images.
    A limit of 0 stops at the first bad image.
    """
    if seen <= 0 or bad <= 0:
        return False
    if limit <= 0:
        return True
    if bad < min_bad:
        return False
    p = bad / seen
    z2 = z * z
    lower = (p + z2 / (2 * seen) - z * math.sqrt(p * (1 - p) / seen + z2 / (4 * seen * seen))) / (1 + z2 / seen)
    return lower > limit


def resolve_steps_per_batch(flag: Optional[int], view_chunks: Optional[int], model) -> int:
    """Optimizer steps per loaded batch: ``--steps_per_batch`` if given, else the number of patch chunks
    the views make (APS: K, one step per chunk, whoever builds the Trainer: the script or a user's own
    Python), else 1. Checked against what the views and the model can do."""
    steps = flag if flag is not None else int(view_chunks or 1)
    if steps < 1:
        raise ValueError(f"--steps_per_batch must be at least 1 (1 turns the chunk steps off), got {steps}")
    if steps > 1 and not _takes_chunk_index(model):
        raise ValueError(
            f"--steps_per_batch {steps}: {type(model).__name__} trains on whole views and takes no chunk_index, so there "
            "is one optimizer step per batch; the flag is for methods whose views come in patch chunks (APS). Drop it."
        )
    if view_chunks and steps > view_chunks:
        raise ValueError(f"--steps_per_batch {steps} is more than the {view_chunks} patch chunks the views make; give at most {view_chunks}")
    return steps


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class BadImageFractionError(RuntimeError):
    """Too many images of the dataset could not be decoded."""


class SSLTrainer(SafetensorsStateMixin, Trainer):
    """``Trainer`` for ``<Method>ForPreTraining`` models fed by a view transform.

    Adds a :class:`~hf_sslviews.training.callbacks.MomentumCallback` when the model has a target network.
    Logs every ``*_loss`` field of the model output next to ``loss``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._photometric_plan: dict = {}
        self.model = convert_sync_batchnorm(self.model, self.args)
        if getattr(self.model, "has_momentum_encoder", False) and not any(isinstance(cb, MomentumCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(MomentumCallback())
        views = _view_transform_of(self.train_dataset)
        if views is not None:
            if views.seed is None:
                views.seed = self.args.seed
            self.add_callback(ViewEpochCallback(views))
            if self.args.photometric_on_device:
                if not hasattr(views, "deferred_photometric"):
                    raise ValueError(
                        f"--photometric_on_device: {type(views).__name__} cannot defer its colour ops (it has no deferred_photometric: views "
                        "that interleave them with RandAugment, as CLSA's strong views do, cannot); leave the flag off"
                    )
                views.photometric_on_device = True
                self._photometric_plan = views.deferred_photometric()
        if self.args.photometric_on_device and views is None:
            raise ValueError("--photometric_on_device needs a training set with an hf_sslviews view transform (with_transform or attach_views)")
        # Optimizer steps per loaded batch: read here once, from the flag or the views' chunk count.
        self.steps_per_batch = resolve_steps_per_batch(self.args.steps_per_batch, getattr(views, "num_chunks", None), self.model)
        if self.steps_per_batch > 1 and "get_resumed_dataloader" not in vars(Trainer):
            # Without the hook a resumed run would skip loaded batches, not chunks: refuse rather than resume wrongly.
            raise RuntimeError(
                f"{self.steps_per_batch} optimizer steps per batch resume through Trainer.get_resumed_dataloader, which this "
                "transformers version does not have; upgrade it (pip install -U transformers)"
            )
        _warn_if_datasets_decodes(self.train_dataset)
        if self.args.weight_decay_end is not None:
            self.add_callback(WeightDecayScheduleCallback(self.args.weight_decay, self.args.weight_decay_end))
        if self.args.optim_recipe not in ("default", "lars", "sgd"):
            raise ValueError(f"--optim_recipe must be 'default', 'lars' or 'sgd', got {self.args.optim_recipe!r}")
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_count = 0
        # An OnlineLinearProbe (hf_sslviews.evaluation.online_probe.add_online_linear_probe) fed the
        # outputs and labels of WithLabels batches: observe(outputs, labels), pop_train_sums, metrics_from_sums.
        self.online_probe = None
        self._nonfinite = None  # device tensor: number of non-finite losses since the last check
        self._last_finite_step = 0
        self.images_seen = 0
        self.images_skipped = 0
        self.skipped_image_reasons: list[str] = []  # the first few, for the messages
        self.images_cut_for_batchnorm = 0  # single-image batches of a BatchNorm model, not trained
        self._batchnorm: Optional[bool] = None
        self.images_cut_for_step = 0  # good images not trained because another process's batch was smaller

    # -- inputs ---------------------------------------------------------------------------
    def get_train_dataloader(self):
        self._check_one_batch_fits()
        loader = super().get_train_dataloader()
        if self._photometric_plan:
            # Inside the repeated-batch loader: APS's K steps reuse one finished batch.
            loader = DevicePhotometricLoader(loader, self._photometric_plan)
        if self.steps_per_batch > 1:
            loader = ChunkRepeatingLoader(loader, self.steps_per_batch)
        return loader

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        # APS's chunk loader is skipped by chunks, the device-photometric wrapper inside itself.
        return skip_first_batches(dataloader, num_batches)

    def get_eval_dataloader(self, eval_dataset=None):
        loader = super().get_eval_dataloader(eval_dataset)
        return DevicePhotometricLoader(loader, self._photometric_plan) if self._photometric_plan else loader

    def _check_one_batch_fits(self) -> None:
        """A training set smaller than one global batch trains zero steps under drop_last: say so."""
        try:
            rows = len(self.train_dataset)
        except TypeError:  # a stream: its length is unknown
            return
        batch = self.args.per_device_train_batch_size * max(1, self.args.world_size)
        if self.args.dataloader_drop_last and rows < batch:
            raise ValueError(
                f"the training set has {rows} images, fewer than one batch ({self.args.per_device_train_batch_size} per device "
                f"x {max(1, self.args.world_size)} processes = {batch}); with dataloader_drop_last (the default, which keeps "
                f"BatchNorm heads from a batch of one image) no step would train. Lower --per_device_train_batch_size to "
                f"at most {rows // max(1, self.args.world_size)} or add images."
            )

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        skipped = inputs.pop("num_skipped_images", None)
        reasons = inputs.pop(SKIPPED_REASONS_KEY, None) or []
        if len(self.skipped_image_reasons) < SKIPPED_REASONS_KEPT:
            self.skipped_image_reasons += reasons[: SKIPPED_REASONS_KEPT - len(self.skipped_image_reasons)]
        # A batch repeated for APS chunks is counted once, at its first chunk.
        if self.model.training and skipped is not None and not inputs.get("chunk_index"):
            self._count_images(int(skipped), inputs)
        if self.model.training and self.args.world_size > 1:
            inputs = self._same_batch_on_every_process(inputs)
        if self.model.training and batch_rows(inputs) == 1 and self._has_batchnorm():
            # BatchNorm cannot normalise one image in training mode ("Expected more than 1 value per
            # channel"): the last batch of a streaming or drop_last=False epoch. Trained as a zero step.
            self.images_cut_for_batchnorm += not inputs.get("chunk_index")  # an APS batch counts once, not per chunk
            inputs = {key: value for key, value in inputs.items() if key == "chunk_index"}
        if not batch_rows(inputs):
            # Every image of the batch was skipped: nothing to move to the device, and the
            # Trainer's own _prepare_inputs refuses an empty batch. compute_loss trains it as zero.
            return inputs
        return super()._prepare_inputs(inputs)

    def _has_batchnorm(self) -> bool:
        if self._batchnorm is None:
            self._batchnorm = any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in self.model.modules())
        return self._batchnorm

    def _same_batch_on_every_process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Cut every process's batch to the smallest one of this step.

        A skipped image makes one process's batch smaller, and the losses' all-gathers need the
        same shape everywhere (gloo and NCCL fail, or hang, otherwise). One integer all-reduce
        per step finds the common size; the good images cut here are counted, not trained.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return inputs
        rows = batch_rows(inputs)
        common = torch.tensor([rows], dtype=torch.int64, device=self.args.device)
        dist.all_reduce(common, op=dist.ReduceOp.MIN)
        common = int(common.item())
        if common == rows:
            return inputs
        if not inputs.get("chunk_index"):
            self.images_cut_for_step += rows - common
        return keep_first_rows(inputs, common)

    def _count_images(self, skipped: int, inputs: dict[str, Any]) -> None:
        first = next((v for v in inputs.values() if isinstance(v, torch.Tensor)), None)
        good = 0 if first is None else first.shape[0]
        self.images_seen += good + skipped
        self.images_skipped += skipped
        limit = self.args.max_bad_image_fraction
        if bad_fraction_exceeds(self.images_skipped, self.images_seen, limit):
            raise BadImageFractionError(
                f"{self.images_skipped} of {self.images_seen} images could not be decoded "
                f"(more than --max_bad_image_fraction={limit}){self._reasons_text()}. Check the dataset's image column, "
                "or raise --max_bad_image_fraction to keep skipping them."
            )

    def _reasons_text(self) -> str:
        if not self.skipped_image_reasons:
            return ""
        return "; the first: " + " | ".join(self.skipped_image_reasons)

    # -- loss -----------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch: Optional[torch.Tensor] = None):
        # Class labels (WithLabels) are for the online linear probe only: no method sees them.
        labels = inputs.pop("labels", None)
        if not any(isinstance(v, (torch.Tensor, list)) for v in inputs.values()):
            # Every image of this batch was undecodable: a zero loss that touches the
            # parameters keeps DDP and the optimizer schedule in step.
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
            return (loss, None) if return_outputs else loss
        outputs = model(**inputs)
        loss = outputs["loss"]
        if model.training:
            self._track(outputs, loss)
            if labels is not None and self.online_probe is not None:
                self.online_probe.observe(outputs, labels)
        return (loss, outputs) if return_outputs else loss

    def _track(self, outputs, loss: torch.Tensor) -> None:
        detached = loss.detach()
        bad = (~torch.isfinite(detached)).to(torch.int32)
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
        for key, value in outputs.items():
            if key.endswith("_loss") and isinstance(value, torch.Tensor) and value.ndim == 0:
                total = self._term_sums.get(key)
                self._term_sums[key] = value.detach().float() if total is None else total + value.detach().float()
        self._term_count += 1

    def _check_finite(self) -> None:
        # One device sync per log / save instead of one per step.
        if self._nonfinite is not None and int(self._nonfinite) > 0:
            last = get_last_checkpoint(self.args.output_dir) if self.args.output_dir else None
            raise NonFiniteLossError(
                f"the loss became NaN or infinite between optimizer steps {self._last_finite_step} and "
                f"{self.state.global_step}. Training stopped before writing any further checkpoint; the last good "
                f"checkpoint is {last or 'none (no checkpoint was saved)'}. Lower --learning_rate, use --bf16 "
                "instead of --fp16, or set --max_grad_norm."
            )
        self._last_finite_step = self.state.global_step

    def _check_finite_weights(self) -> None:
        """Never write a checkpoint whose weights are not finite (a finite loss can precede them by one step)."""
        bad = [name for name, tensor in list(self.model.named_parameters()) + list(self.model.named_buffers()) if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if bad:
            last = get_last_checkpoint(self.args.output_dir) if self.args.output_dir else None
            raise NonFiniteLossError(
                f"at optimizer step {self.state.global_step} {len(bad)} weight tensors hold NaN or infinite values (first: {bad[0]}); "
                f"no checkpoint was written for this step. The last checkpoint, all of whose weights were checked finite when it "
                f"was written, is {last or 'none (no checkpoint was saved)'}. Lower --learning_rate, use --bf16 instead of --fp16, or set --max_grad_norm."
            )

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs:
            self._check_finite()
            if self._term_count and self._term_sums:
                # Each term averaged over the steps since the last log, then over processes, as
                # the Trainer averages `loss` (one process's terms alone would not add up to it).
                keys = sorted(self._term_sums)
                means = torch.stack([self._term_sums[key] / self._term_count for key in keys])
                if self.args.world_size > 1:
                    means = self.accelerator.reduce(means, reduction="mean")
                logs.update({key: round(value, 6) for key, value in zip(keys, means.tolist())})
            self._term_sums, self._term_count = {}, 0
            if self.images_skipped:
                logs["skipped_images"] = self.images_skipped
            if self.online_probe is not None:
                sums = self.online_probe.pop_train_sums(self.args.device)
                if self.args.world_size > 1:
                    sums = self.accelerator.reduce(sums, reduction="sum")
                logs.update({key: round(value, 6) for key, value in (self.online_probe.metrics_from_sums(sums) or {}).items()})
            momentum = next((cb.last_momentum for cb in self.callback_handler.callbacks if isinstance(cb, MomentumCallback)), None)
            if momentum is not None:
                logs["momentum"] = momentum
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        self._check_finite()
        self._check_finite_weights()
        # Written into a hidden sibling folder and renamed when complete: a crash mid-save never
        # leaves a checkpoint-N that looks whole, and rotation never deletes the last good one.
        save_checkpoint_atomically(self, super()._save_checkpoint, model, trial)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        checkpoint = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
        if isinstance(checkpoint, (str, os.PathLike)) and self._plain_state_files():
            check_resumable(checkpoint, self.model)
        result = super().train(resume_from_checkpoint, *args, **kwargs)
        self._check_finite()
        if self.images_skipped:
            logger.warning("%d of %d images could not be decoded and were skipped%s", self.images_skipped, self.images_seen, self._reasons_text())
        if self.images_cut_for_batchnorm:
            logger.warning(
                "%d batch(es) of a single image were not trained: the model's BatchNorm layers cannot normalise one image "
                "(the last batch of an epoch without --dataloader_drop_last, or of a stream)", self.images_cut_for_batchnorm
            )
        if self.images_cut_for_step:
            logger.warning(
                "%d good images were left out of their batch because another process's batch had skipped images "
                "(every process trains the same batch size)", self.images_cut_for_step
            )
        return result

    # -- optimizer ------------------------------------------------------------------------
    def get_decay_parameter_names(self, model) -> list[str]:
        """No weight decay on biases, norm weights and timm's ``no_weight_decay()`` tensors.

        Most recipes exclude 1-d parameters from weight decay (MoCo v3, DINO, PatchMix, MULAN);
        timm adds position embeddings and class tokens. ``--weight_decay_all_parameters`` decays
        every parameter, as APS's and SimSiam's official code do.
        """
        if self.args.weight_decay_all_parameters:
            return [name for name, _ in model.named_parameters()]
        skip: set[str] = set()
        backbone = getattr(model, "backbone", None)
        timm_model = getattr(backbone, "model", None)
        if timm_model is not None and hasattr(timm_model, "no_weight_decay"):
            prefix = f"{model.base_model_prefix}.model."
            skip = {prefix + name for name in timm_model.no_weight_decay()}
        return [name for name, param in model.named_parameters() if param.ndim > 1 and name not in skip]

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        if self.args.optim_recipe == "default":
            super().create_optimizer(model) if model is not None else super().create_optimizer()
        else:
            self._create_recipe_optimizer(model)
        self._scale_predictor_learning_rate(self.model if model is None else model)
        return self.optimizer

    def _scale_predictor_learning_rate(self, model) -> None:
        """Move the predictor parameters of every group into a twin group with ``lr * predictor_lr_multiplier``.

        Done before the scheduler is built, so the schedule scales each group from its own
        initial rate and the predictor keeps its multiple throughout. The twin groups are marked
        ``"predictor": True``; with ``--predictor_constant_lr`` :meth:`create_scheduler` holds
        them at that rate.
        """
        multiplier = self.args.predictor_lr_multiplier
        if not (math.isfinite(multiplier) and multiplier > 0):
            raise ValueError(f"--predictor_lr_multiplier must be a positive number, got {multiplier}")
        if multiplier == 1.0 and not self.args.predictor_constant_lr:
            return
        predictor = {id(param) for name, param in model.named_parameters() if name.split(".")[0].startswith("predictor")}
        if not predictor:
            flag = f"--predictor_lr_multiplier {multiplier}" if multiplier != 1.0 else "--predictor_constant_lr"
            raise ValueError(f"{flag}: {type(model).__name__} has no predictor head (no parameter named 'predictor*')")
        groups = []
        for group in self.optimizer.param_groups:
            heads = [p for p in group["params"] if id(p) in predictor]
            rest = [p for p in group["params"] if id(p) not in predictor]
            if rest:
                groups.append({**group, "params": rest, "predictor": False})
            if heads:
                groups.append({**group, "params": heads, "lr": group["lr"] * multiplier, "predictor": True})
        self.optimizer.param_groups.clear()
        for group in groups:
            self.optimizer.add_param_group(group)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.args.predictor_constant_lr:
            lambdas = getattr(scheduler, "lr_lambdas", None)
            if lambdas is None:
                raise ValueError(f"--predictor_constant_lr needs a LambdaLR schedule (every --lr_scheduler_type of transformers but reduce_lr_on_plateau); got {type(scheduler).__name__}")
            groups = (optimizer or self.optimizer).param_groups
            for index, group in enumerate(groups):
                if group.get("predictor"):
                    lambdas[index] = _constant_factor
            # LambdaLR set each group's lr from its lambda at step 0 already: undo that for the predictors.
            for index, group in enumerate(groups):
                if group.get("predictor"):
                    group["lr"] = group["initial_lr"]
        return scheduler

    def _create_recipe_optimizer(self, model=None):
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
        ]
        if self.args.optim_recipe == "lars":
            from timm.optim import Lars

            # timm's LARS adapts only groups with weight decay (always_adapt=False), so biases and
            # norms get plain SGD-momentum steps, as in BYOL and MULAN's ResNet recipe.
            self.optimizer = Lars(groups, lr=self.args.learning_rate, momentum=0.9)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=self.args.learning_rate, momentum=0.9)
        return self.optimizer


def _takes_chunk_index(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes ``chunk_index`` (the repeated-batch steps pass it)."""
    parameters = inspect.signature(model.forward).parameters
    return "chunk_index" in parameters or any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters.values())


def convert_sync_batchnorm(model: torch.nn.Module, args: "SSLTrainingArguments") -> torch.nn.Module:
    """Every BatchNorm of ``model`` as ``torch.nn.SyncBatchNorm`` when ``--sync_batchnorm`` asks and it means something.

    Official APS, PatchMix and MoCo v3 normalise the heads over the global batch; without it, 8
    GPUs x 128 images normalise 8 slices of 128 and train another model than one process with
    1024. On one process the flag changes nothing (no conversion). Refused where it cannot be
    right: torch implements SyncBatchNorm for GPUs only (CPU DDP would fail at the first
    forward), and MoCo v2-style methods (CLSA, RepCo) depend on shuffle-BN, which per-process
    statistics are the point of.
    """
    if not args.sync_batchnorm or args.world_size <= 1:
        return model
    if getattr(model, "uses_shuffle_bn", False):
        raise ValueError(f"--sync_batchnorm: {type(model).__name__} uses shuffle-BN (MoCo v2), whose key statistics must stay per process; leave --sync_batchnorm off")
    if args.device.type != "cuda":
        raise ValueError(
            f"--sync_batchnorm needs GPUs: torch's SyncBatchNorm has no {args.device.type} kernels. On CPU DDP leave it off "
            "(each process then normalises its own slice of the batch)"
        )
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    logger.info("--sync_batchnorm: %d BatchNorm layers normalise over the global batch", sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()))
    return converted


def _constant_factor(step: int) -> float:
    """The learning-rate factor of a group held at its initial rate (module level: picklable by LambdaLR.state_dict)."""
    return 1.0


def _view_transform_of(dataset) -> Optional[ViewTransform]:
    """The view transform of a dataset: given with ``with_transform``, or mapped by ``attach_views``."""
    transform = attached_transform(dataset)
    transform = transform.views if isinstance(transform, WithLabels) else transform
    return transform if isinstance(transform, ViewTransform) else None


def _warn_if_datasets_decodes(dataset) -> None:
    """A decoding ``Image`` column makes ``datasets`` raise on a corrupt file before the views see it."""
    import datasets

    features = getattr(dataset, "features", None) or {}
    decoding = [name for name, feature in features.items() if isinstance(feature, datasets.Image) and feature.decode]
    if decoding:
        logger.warning(
            "column(s) %s are decoded by datasets: one corrupt image will stop training with PIL's error instead of being "
            "skipped and counted. Call hf_sslviews.data.sources.prepare_for_views(dataset, image_column) before with_transform.",
            decoding,
        )
