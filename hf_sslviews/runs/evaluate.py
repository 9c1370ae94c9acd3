"""The frozen-backbone evaluation scripts' plumbing (kNN, linear probe): arguments, the model, the two splits."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TypeVar

import datasets
import torch

from ..atomic import claim_results_file, write_text_atomic
from ..data.labels import check_label_column, encode_string_labels
from ..evaluation.features import load_backbone
from .arguments import DataSourceArguments, parse_flags_or_json

T = TypeVar("T")


@dataclass
class FrozenBackboneArguments(DataSourceArguments):
    """What every frozen-backbone evaluation needs: the model, the data, where results go."""

    model_name_or_path: str = field(kw_only=True, metadata={"help": "Exported backbone folder or Hub id, loaded with AutoModel.from_pretrained."})
    random_init: bool = field(default=False, metadata={"help": "Evaluate a randomly initialised copy of the same architecture (the floor)."})
    train_split: str = field(default="train", metadata={"help": "Split the classifier learns from (the kNN neighbour bank, the probe's training set)."})
    test_split: str = field(default="test", metadata={"help": "Split whose examples are classified."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training examples (quick runs)."})
    max_test_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N test examples (quick runs)."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Alias of --max_test_samples (the transformers examples' spelling)."})
    train_val_split: Optional[float] = field(
        default=None,
        metadata={"help": "When the data has no --test_split (e.g. an image folder of one split): hold out this fraction of --train_split, stratified by label with --seed, and classify it instead (like the transformers image-classification example)."},
    )
    batch_size: int = field(default=256, metadata={"help": "Images per forward pass during feature extraction."})
    device: Optional[str] = field(default=None, metadata={"help": "Device ('cpu', 'cuda'); default: cuda if available."})
    seed: int = field(default=0, metadata={"help": "Seed of the random initialisation with --random_init (and of any randomness of the evaluation)."})
    output_file: Optional[str] = field(default=None, metadata={"help": "Write the results (and these arguments) to this JSON file."})

    def __post_init__(self):
        if self.output_file:
            claim_results_file(self.output_file)
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1 image, got {self.batch_size}")
        for name in ("max_train_samples", "max_test_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive number of examples, got {getattr(self, name)}")


def parse_arguments(dataclass_type: type[T], argv: Optional[Sequence[str]] = None) -> T:
    """Flags, or a single JSON file, into ``dataclass_type``; sets up logging."""
    (args,) = parse_flags_or_json((dataclass_type,), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args


def load_backbone_and_splits(args: FrozenBackboneArguments):
    """``(model, train split, test split, device)`` for a frozen-backbone evaluation."""
    model = load_backbone(args.model_name_or_path, random_init=args.random_init, seed=args.seed)
    train, test = load_splits(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model, train, test, device


def load_splits(args: FrozenBackboneArguments):
    """The labelled (train, test) pair: two splits of the source, or train cut in two by ``--train_val_split``."""
    if args.max_eval_samples is not None:
        if args.max_test_samples is not None and args.max_test_samples != args.max_eval_samples:
            raise ValueError(f"--max_eval_samples {args.max_eval_samples} and --max_test_samples {args.max_test_samples} disagree; give one of them")
        args.max_test_samples = args.max_eval_samples
    return load_labelled_splits(args, args.train_split, args.test_split, args.train_val_split, args.seed, args.max_train_samples, args.max_test_samples)


def load_labelled_splits(
    source: DataSourceArguments,
    train_split: str,
    test_split: str,
    train_val_split: Optional[float] = None,
    seed: int = 0,
    max_train_samples: Optional[int] = None,
    max_test_samples: Optional[int] = None,
):
    """``(train, test)`` for every script that scores on labels (kNN, linear probe, fine-tuning).

    With ``train_val_split`` the test side is that fraction of ``train_split``, held out
    (stratified by label when the column is a ``ClassLabel``, seeded) and never trained on: the
    validation split on which a recipe is chosen, and the way to score a source with one split.
    Without it, ``test_split`` must exist, or the error names both ways out. String class names
    become one ``ClassLabel`` shared by both sides, and every label is checked to be a class index
    before any work is done (a test split published without labels is refused with its name).
    """
    train, test = _load_two_splits(source, train_split, test_split, train_val_split, seed, max_train_samples, max_test_samples)
    train, test = encode_string_labels(train, test, source.label_column_name)
    for dataset, split in ((train, train_split), (test, test_split if train_val_split is None else f"{train_split} (held out)")):
        check_label_column(dataset, source.label_column_name, split)
    return train, test


def _load_two_splits(source, train_split, test_split, train_val_split, seed, max_train_samples, max_test_samples):
    if train_val_split is not None:
        if not 0 < train_val_split < 1:
            raise ValueError(f"--train_val_split is the held-out fraction of the training split, in (0, 1); got {train_val_split}")
        full = source.load(train_split)
        label = full.features.get(source.label_column_name)
        stratify = source.label_column_name if isinstance(label, datasets.ClassLabel) else None
        parts = full.train_test_split(test_size=train_val_split, seed=seed, stratify_by_column=stratify)
        train, test = parts["train"], parts["test"]
        cap = lambda data, n: data if n is None else data.select(range(min(n, len(data))))  # noqa: E731
        return cap(train, max_train_samples), cap(test, max_test_samples)
    train = source.load(train_split, max_samples=max_train_samples)
    try:
        test = source.load(test_split, max_samples=max_test_samples)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        raise ValueError(
            f"the data has no {test_split!r} split to classify ({error}). Hold out part of {train_split!r} with "
            f"--train_val_split 0.15, or name an existing split with --test_split."
        ) from error
    return train, test


def describe(args: FrozenBackboneArguments) -> str:
    return f"{args.model_name_or_path}{' (random init)' if args.random_init else ''}"


def write_results(args: FrozenBackboneArguments, results: dict) -> None:
    """Write ``results`` with the arguments that produced them to ``--output_file`` (JSON)."""
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.output_file, json.dumps({"arguments": asdict(args), **results}, indent=2) + "\n")
