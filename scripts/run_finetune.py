"""Fine-tune an exported backbone end to end with the stock ``transformers.Trainer``.

    python scripts/run_finetune.py --model_name_or_path out/aps-vit-tiny/backbone --dataset_name sample \\
        --output_dir out/finetune --num_train_epochs 10 --per_device_train_batch_size 128 \\
        --learning_rate 5e-4 --eval_strategy epoch --randaugment --mixup 0.8 --cutmix 1.0 --label_smoothing 0.1

The backbone loads with ``AutoModelForImageClassification.from_pretrained(..., num_labels, id2label,
label2id)`` (a ``TimmWrapperForImageClassification`` with a fresh head); training images go through
timm's training transform built from the export's data config (random resized crop, flip, colour
jitter, optional RandAugment and random erasing), evaluation images through its evaluation
transform. Mixup / CutMix / label smoothing make soft targets in the data collator, and the loss is a
``compute_loss_func``. Every ``TrainingArguments`` flag works; ``remove_unused_columns`` is forced
to ``False`` (the images are transformed on the fly with ``with_transform``). Arguments can also
come from a JSON file: ``run_finetune.py args.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from transformers import AutoModelForImageClassification, Trainer, TrainingArguments, set_seed

from hf_sslviews.atomic import claim_results_file, claim_run_folder, write_text_atomic
from hf_sslviews.evaluation.features import eval_transform_for
from hf_sslviews.evaluation.finetune import (
    TRAIN_AUGMENTATIONS,
    ClassificationCollator,
    ClassificationTransform,
    build_mixup,
    class_labels,
    compute_classification_metrics,
    pad_crop_transform_for,
    reset_backbone_to_random_init,
    soft_target_cross_entropy,
    train_transform_for,
)
from hf_sslviews.runs.arguments import DataSourceArguments, parse_flags_or_json
from hf_sslviews.runs.evaluate import load_labelled_splits
from hf_sslviews.safetensors_files import check_safetensors_files
from hf_sslviews.training.trainer_state_files import SafetensorsStateMixin

logger = logging.getLogger(__name__)


class FinetuneTrainer(SafetensorsStateMixin, Trainer):
    """The stock Trainer writing its checkpoints as safetensors and JSON only: the optimizer,
    scheduler, RNG state and arguments, which it would pickle (``optimizer.pt``, ``rng_state.pth``,
    ``scheduler.pt``, ``training_args.bin``), as pretraining does."""
FINETUNE_MARKER = "finetune_run.json"  # marks a folder as a fine-tune's output: a later fine-tune may write there


@dataclass
class FinetuneModelArguments:
    model_name_or_path: str = field(metadata={"help": "Exported backbone folder or Hub id, loaded with AutoModelForImageClassification.from_pretrained."})
    random_init: bool = field(
        default=False,
        metadata={"help": "Train the same architecture from its random initialisation (seeded with --seed) instead of the pretrained weights: supervised training from scratch, the floor a pretrained backbone must beat."},
    )


@dataclass
class FinetuneDataArguments(DataSourceArguments):
    train_split: str = field(default="train", metadata={"help": "Split to fine-tune on."})
    test_split: str = field(default="test", metadata={"help": "Split evaluated during (--eval_strategy) and after training."})
    train_val_split: Optional[float] = field(
        default=None,
        metadata={"help": "Hold out this fraction of --train_split (stratified by label, with --seed), train on the rest and evaluate on it instead of --test_split: a validation split to choose a recipe on, or the way to score data with one split."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training examples (quick runs)."})
    max_test_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N test examples (quick runs)."})


@dataclass
class AugmentationArguments:
    train_augmentation: str = field(
        default="random_resized_crop",
        metadata={"help": f"Training geometry: one of {TRAIN_AUGMENTATIONS}. random_resized_crop: timm's ImageNet recipe (crop 8-100%% of the area, colour jitter); pad_crop: the small-image recipe (pad by --crop_padding, random crop back, flip; no colour jitter), for 28-32 px images."},
    )
    crop_padding: int = field(default=2, metadata={"help": "With --train_augmentation pad_crop: pixels of black padding on each side (the largest shift)."})
    randaugment: bool = field(default=False, metadata={"help": "Add RandAugment rand-m9-mstd0.5-inc1 (DeiT) to the training transform."})
    re_prob: float = field(default=0.0, metadata={"help": "Random-erasing probability of the training transform (DeiT: 0.25)."})
    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha (DeiT: 0.8); 0 turns Mixup off."})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha (DeiT: 1.0); 0 turns CutMix off. With both on, each batch uses one of them (p=0.5)."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the training targets (DeiT: 0.1); evaluation uses plain cross-entropy."})
    output_file: Optional[str] = field(default=None, metadata={"help": "Write the final evaluation metrics (and these arguments) to this JSON file."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": f"Use an --output_dir that holds files a fine-tune did not write (an export, another run, your files): they are moved aside to <output_dir>.replaced-<time>, not deleted. A folder with {FINETUNE_MARKER} (an earlier fine-tune) is used without it."},
    )


def main(argv: Optional[list[str]] = None) -> dict:
    model_args, data_args, aug_args, training_args = parse_flags_or_json((FinetuneModelArguments, FinetuneDataArguments, AugmentationArguments, TrainingArguments), argv)
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    training_args.remove_unused_columns = False  # with_transform needs the image column
    set_seed(training_args.seed)

    if aug_args.train_augmentation not in TRAIN_AUGMENTATIONS:
        raise ValueError(f"--train_augmentation must be one of {TRAIN_AUGMENTATIONS}, got {aug_args.train_augmentation!r}")
    if aug_args.train_augmentation == "pad_crop" and (aug_args.randaugment or aug_args.re_prob):
        raise ValueError("--randaugment and --re_prob belong to --train_augmentation random_resized_crop; drop them or choose that augmentation")
    if aug_args.output_file:
        claim_results_file(aug_args.output_file)
    if training_args.process_index == 0:
        # Before anything is loaded: the Trainer writes config.json / model.safetensors over whatever the folder holds.
        claim_run_folder(training_args.output_dir, FINETUNE_MARKER, force=aug_args.overwrite_output_dir)
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(training_args.output_dir) / FINETUNE_MARKER, json.dumps({"model_name_or_path": model_args.model_name_or_path}) + "\n")
    train, test = load_labelled_splits(data_args, data_args.train_split, data_args.test_split, data_args.train_val_split, training_args.seed,
                                       data_args.max_train_samples, data_args.max_test_samples)
    num_labels, id2label, label2id = class_labels(train, data_args.label_column_name, test)
    check_safetensors_files(model_args.model_name_or_path)
    model = AutoModelForImageClassification.from_pretrained(model_args.model_name_or_path, num_labels=num_labels, id2label=id2label, label2id=label2id)
    if model_args.random_init:
        reset_backbone_to_random_init(model, model_args.model_name_or_path, seed=training_args.seed)

    columns = (data_args.image_column_name, data_args.label_column_name)
    if aug_args.train_augmentation == "pad_crop":
        train_transform = pad_crop_transform_for(model_args.model_name_or_path, padding=aug_args.crop_padding)
    else:
        train_transform = train_transform_for(model_args.model_name_or_path, randaugment=aug_args.randaugment, re_prob=aug_args.re_prob)
    train = train.with_transform(ClassificationTransform(train_transform, *columns, training=True))
    test = test.with_transform(ClassificationTransform(eval_transform_for(model_args.model_name_or_path), *columns))
    mixup_fn = build_mixup(num_labels, aug_args.mixup, aug_args.cutmix, aug_args.label_smoothing)
    if mixup_fn is not None:
        training_args.dataloader_drop_last = True  # timm's batch Mixup pairs images: keep every batch full (even)

    trainer = FinetuneTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=test,
        data_collator=ClassificationCollator(num_labels, mixup_fn, aug_args.label_smoothing),
        compute_loss_func=soft_target_cross_entropy, compute_metrics=compute_classification_metrics,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_model()
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    scored = f"{data_args.train_split} held-out {data_args.train_val_split:g}" if data_args.train_val_split is not None else data_args.test_split
    print(f"fine-tuned {model_args.model_name_or_path}: {scored} top-1 {100 * metrics['eval_accuracy']:.2f}%  top-5 {100 * metrics['eval_top5']:.2f}%")
    if aug_args.output_file and trainer.is_world_process_zero():
        Path(aug_args.output_file).parent.mkdir(parents=True, exist_ok=True)
        arguments = {"model": asdict(model_args), "data": asdict(data_args), "augmentation": asdict(aug_args)}
        record = {"arguments": arguments, "num_train_examples": len(train), "num_eval_examples": len(test), "eval": metrics, "train": train_result.metrics}
        write_text_atomic(aug_args.output_file, json.dumps(record, indent=2, default=str) + "\n")
    return metrics


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
