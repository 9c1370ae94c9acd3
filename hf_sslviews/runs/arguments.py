"""Script arguments (``HfArgumentParser`` dataclasses), the one flags-or-JSON parser, presets.

Every script names its data with :class:`DataSourceArguments` and reads its arguments with
:func:`parse_flags_or_json`. A preset is a list of flags placed **before** the user's flags, so
argparse's last-wins rule makes every explicit flag override the preset.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from transformers import HfArgumentParser

from ..data.sources import load_image_dataset
from ..methods import RECIPES, Preset, find_preset, get_recipe
from .starting_weights import StartingWeights, starting_weights

DEFAULT_METHOD = "aps"
# Config fields that describe one backbone and do not carry over to another.
BACKBONE_SPECIFIC = ("backbone_kwargs", "image_size")
DEFAULT_IMAGE_SIZE = 224

logger = logging.getLogger("hf_sslviews")


@dataclass
class ModelArguments:
    method: Optional[str] = field(default=None, metadata={"help": f"SSL method: one of {sorted(RECIPES)}. Default: the preset's method, else {DEFAULT_METHOD}. --list_options METHOD lists the method's own options (config fields for --config_overrides, view arguments for --view_kwargs), documented."})
    preset: Optional[str] = field(
        default=None,
        metadata={"help": "Named recipe setting config, views and training flags (e.g. mocov3_tiny, mocov3_cifar_vit_small); --list_presets lists them all. Explicit flags override it. Default: the method's small CPU preset."},
    )
    backbone: Optional[str] = field(default=None, metadata={"help": "timm architecture name, e.g. vit_small_patch16_224 or resnet18."})
    backbone_kwargs: Optional[str] = field(default=None, metadata={"help": 'JSON dict of timm.create_model arguments, e.g. \'{"img_size": 32, "patch_size": 4}\'.'})
    image_size: Optional[int] = field(default=None, metadata={"help": "Side of the training views in pixels (and the exported input size)."})
    config_overrides: Optional[str] = field(default=None, metadata={"help": 'JSON dict of method config fields, e.g. \'{"loss_temperature": 0.1}\'.'})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Start from a saved pretraining model (a previous --output_dir) instead of a fresh one."})
    print_config: bool = field(
        default=False,
        metadata={"help": "Print the effective configuration (method config, view arguments, and every training argument the preset or your flags set) as JSON, and exit without training."},
    )


@dataclass
class DataSourceArguments:
    """Where the images come from: the same flags in every script (pretraining, evaluation, fine-tuning)."""

    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "Hub dataset name, local dataset path, 'sample' (embedded Fashion-MNIST subset, the default) or 'fashion_mnist' (Debian's full set)."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Configuration name of the Hub dataset, if it has several."})
    train_dir: Optional[str] = field(default=None, metadata={"help": "An image folder (class sub-folders optional) to use instead of --dataset_name."})
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the integer class labels (for evaluation)."})

    def load(self, split: str, max_samples: Optional[int] = None, labels: bool = True, streaming: bool = False):
        """One split of the source (``labels``: the label column must exist)."""
        return load_image_dataset(
            dataset_name=self.dataset_name, dataset_config_name=self.dataset_config_name, train_dir=self.train_dir, split=split,
            image_column=self.image_column_name, label_column=self.label_column_name if labels else None, max_samples=max_samples, streaming=streaming,
        )

    def source(self) -> dict[str, Any]:
        """The fields naming the data (for cache keys and run records)."""
        return dict(dataset_name=self.dataset_name, dataset_config_name=self.dataset_config_name, train_dir=self.train_dir,
                    image_column=self.image_column_name, label_column=self.label_column_name)


@dataclass
class DataArguments(DataSourceArguments):
    """The pretraining data: the source, its splits and the views' arguments."""

    train_split: str = field(default="train", metadata={"help": "Split to pretrain on."})
    eval_split: Optional[str] = field(default=None, metadata={"help": "Split for eval_loss during training (with --eval_strategy steps/epoch)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the training set (quick runs)."})
    view_kwargs: Optional[str] = field(default=None, metadata={"help": 'JSON dict of view-transform arguments, e.g. \'{"scale": [0.2, 1.0]}\'.'})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset (datasets IterableDataset) instead of downloading it whole; needs --max_steps."})


@dataclass
class EvalArguments:
    knn_eval: bool = field(default=True, metadata={"help": "After training, kNN-evaluate the exported backbone (and a random-init one) when the dataset has labels."})
    knn_train_split: str = field(default="train", metadata={"help": "Split the kNN classifier memorises."})
    knn_test_split: str = field(default="test", metadata={"help": "Split the kNN classifier is scored on."})
    knn_k: int = field(default=20, metadata={"help": "Neighbours of the weighted kNN (DINO protocol)."})
    knn_temperature: float = field(default=0.07, metadata={"help": "Temperature of the kNN vote weights exp(sim / T)."})
    knn_max_train_samples: Optional[int] = field(
        default=10000, metadata={"help": "The final kNN's memory set: the first N training images (default 10,000, so a large data set does not add an hour after training; 0 = all)."}
    )
    knn_max_test_samples: Optional[int] = field(default=2000, metadata={"help": "The final kNN's queries: the first N test images (default 2,000; 0 = all)."})
    knn_monitor_steps: int = field(default=0, metadata={"help": "Every N optimizer steps, log knn_top1/knn_top5 of the backbone being trained (weighted kNN on capped labelled splits); 0 = off."})
    knn_monitor_epoch_end: bool = field(default=False, metadata={"help": "Also run the kNN monitor at the end of every epoch."})
    knn_monitor_max_train_samples: int = field(default=1000, metadata={"help": "kNN monitor: images in the neighbour bank."})
    knn_monitor_max_test_samples: int = field(default=500, metadata={"help": "kNN monitor: images classified."})
    online_linear_probe: bool = field(
        default=False,
        metadata={"help": "Train a linear classifier on the detached backbone features of every training batch (its own AdamW; the model trains exactly as without it) and log online_linear_loss / online_linear_train_top1, plus online_linear_top1 on the kNN monitor's test images. Needs a ClassLabel column (--label_column_name)."},
    )
    online_linear_probe_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the online linear probe (AdamW, constant, no weight decay)."})
    embedding_quality_steps: int = field(
        default=-1,
        metadata={"help": "Every N optimizer steps, log RankMe, alignment and uniformity of the backbone on a fixed set of training images: a quality signal that needs no labels, with a warning when the embedding collapses. -1 (default): the kNN monitor's cadence, else 10 times in a run of at least 100 steps; 0: only at the end."},
    )
    embedding_quality_images: int = field(default=1024, metadata={"help": "Training images (the first N of the split) the label-free measures use."})

    def __post_init__(self):
        # Checked when the flags are parsed: a bad value found by the evaluation after training costs the run.
        if self.knn_k < 1:
            raise ValueError(f"--knn_k must be at least 1 neighbour, got {self.knn_k}")
        if not (math.isfinite(self.knn_temperature) and self.knn_temperature > 0):
            raise ValueError(f"--knn_temperature must be a positive number, got {self.knn_temperature}")
        for name in ("knn_max_train_samples", "knn_max_test_samples"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"--{name} must be a number of images >= 0 (0 = all), got {getattr(self, name)}")
        if self.knn_eval and self.knn_max_train_samples and self.knn_k > self.knn_max_train_samples:
            raise ValueError(f"--knn_k {self.knn_k} is more than the {self.knn_max_train_samples} images of the kNN memory (--knn_max_train_samples); lower --knn_k")
        for name in ("knn_monitor_steps", "knn_monitor_max_train_samples", "knn_monitor_max_test_samples", "embedding_quality_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.embedding_quality_images < 2:
            raise ValueError(f"--embedding_quality_images must be >= 2, got {self.embedding_quality_images}")


@dataclass
class HubArguments:
    push_pretraining_checkpoint: bool = field(
        default=False,
        metadata={"help": "With --push_to_hub: also push the full pretraining model (heads, target network; never checkpoint-* folders, optimizer states or pickles) to its own repo, --pretraining_hub_model_id or <hub_model_id>-pretraining. It reloads with AutoModelForPreTraining after `import hf_sslviews`."},
    )
    pretraining_hub_model_id: Optional[str] = field(
        default=None, metadata={"help": "Repo of the full pretraining checkpoint (implies --push_pretraining_checkpoint). Default: <hub_model_id>-pretraining."}
    )
    hub_dry_run_dir: Optional[str] = field(
        default=None, metadata={"help": "With --push_to_hub: upload nothing, write <hub_dry_run_dir>/backbone (and /pretraining), exactly what each repo would receive."}
    )


def preset_table() -> str:
    """Every registered preset, one line each: name, method, backbone, image size, budget, what it is for."""
    lines = ["preset | method | backbone | image size | budget | description", "---|---|---|---|---|---"]
    for name in sorted(RECIPES):
        recipe = RECIPES[name]
        for preset_name, preset in recipe.presets.items():
            config = recipe.config_class(**preset.config)
            kwargs = config.backbone_kwargs or {}
            backbone = config.backbone + (f" {json.dumps(kwargs, sort_keys=True)}" if kwargs else "")
            training = preset.training
            budget = (f"{training['max_steps']} steps" if training.get("max_steps", -1) > 0 else
                      f"{training['num_train_epochs']:g} epochs" if "num_train_epochs" in training else "TrainingArguments' default")
            lines.append(f"{preset_name} | {name} | {backbone} | {config.image_size} | {budget} | {preset.description}")
    return "\n".join(lines)


def parse_flags_or_json(dataclass_types: Sequence[type], argv: Optional[Sequence[str]] = None, leading_flags: Sequence[str] = ()) -> tuple:
    """Command-line flags, or one JSON file of them, into the given argument dataclasses.

    ``leading_flags`` (a preset's) come first, so the user's flags and JSON values override them.
    A JSON value ``null`` leaves the argument at its default.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        argv = json_file_to_flags(argv[0])
    return tuple(HfArgumentParser(tuple(dataclass_types)).parse_args_into_dataclasses(args=[*leading_flags, *argv]))


def json_file_to_flags(path: str) -> list[str]:
    """The flags one JSON arguments file stands for.

    ``null`` leaves the argument at its default (the preset's value, else the dataclass's): a
    flag cannot spell ``None``, and ``"None"`` would fail as an int.
    """
    try:
        with open(path) as handle:
            values = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"arguments file {path!r} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"arguments file {path!r} must hold one JSON object of argument names and values, got a {type(values).__name__}")
    flags: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            flags += [f"--{key}", json.dumps(value)]
        elif isinstance(value, list):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def _flag_value(value: Any) -> list[str]:
    if isinstance(value, (dict, list, tuple)) and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        return [json.dumps(list(value) if isinstance(value, tuple) else value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def preset_flags(preset: Preset) -> list[str]:
    """``Preset.training`` as command-line flags."""
    flags: list[str] = []
    for name, value in preset.training.items():
        flags += [f"--{name}", *_flag_value(value)]
    return flags


def resolve_preset(argv: Sequence[str]) -> tuple[str, str]:
    """Find the method and preset the user asked for (or the defaults) before full parsing."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--method")
    probe.add_argument("--preset")
    known, _ = probe.parse_known_args(list(argv))
    if known.preset:
        recipe, _ = find_preset(known.preset)
        if known.method and known.method != recipe.name:
            raise ValueError(f"--preset {known.preset} belongs to method {recipe.name!r}, not --method {known.method!r}")
        return recipe.name, known.preset
    recipe = get_recipe(known.method or DEFAULT_METHOD)
    return recipe.name, recipe.default_preset


def parse_json_arg(value: Optional[str], name: str) -> dict:
    if value in (None, ""):
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"--{name} must be a JSON object, e.g. '{{\"key\": 1}}'; got {value!r} ({error})") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object (a dict), got {type(parsed).__name__}")
    return parsed


def build_config(recipe, preset: Preset, model_args: ModelArguments):
    """The method config: preset fields, then --backbone/--backbone_kwargs/--image_size, then --config_overrides."""
    return config_and_starting_weights(recipe, preset, model_args)[0]


def config_and_starting_weights(recipe, preset: Preset, model_args: ModelArguments) -> tuple[Any, Optional[StartingWeights]]:
    """:func:`build_config`, and the existing weights the run starts from (``None``: a random start).

    A backbone that names existing weights (``hf-hub:``, ``local-dir:``, ``{"pretrained": true}``)
    becomes its timm architecture and arguments plus ``base_model`` in the config; the script
    loads the weights (:mod:`hf_sslviews.runs.starting_weights`).
    """
    fields = dict(preset.config)
    if model_args.backbone and model_args.backbone != fields.get("backbone"):
        # Another architecture does not inherit the preset's sizes: its timm arguments and image
        # size belong to the preset's backbone (a ResNet from a 32 px ViT preset would train at 32 px).
        dropped = [key for key in BACKBONE_SPECIFIC if key in fields]
        for key in dropped:
            fields.pop(key)
        kept = sorted(key for key in fields if key != "backbone")
        logger.warning(
            "--backbone %s replaces the preset's %s: its %s are dropped (timm's defaults and image_size %d apply unless you pass "
            "--backbone_kwargs / --image_size); the preset's %s still apply",
            model_args.backbone, preset.config.get("backbone"), ", ".join(dropped) or "sizes", DEFAULT_IMAGE_SIZE, ", ".join(kept) or "nothing else",
        )
    if model_args.backbone:
        fields["backbone"] = model_args.backbone
    if model_args.backbone_kwargs is not None:
        fields["backbone_kwargs"] = parse_json_arg(model_args.backbone_kwargs, "backbone_kwargs")
    weights = starting_weights(fields.get("backbone", ""), fields.get("backbone_kwargs"))
    if weights is not None:
        user_kwargs = {key: value for key, value in (fields.get("backbone_kwargs") or {}).items() if key != "pretrained"}
        fields.update(backbone=weights.architecture, backbone_kwargs={**weights.model_args, **user_kwargs}, base_model=weights.base_model)
    if model_args.image_size:
        fields["image_size"] = model_args.image_size
    elif "img_size" in fields.get("backbone_kwargs", {}):
        size = fields["backbone_kwargs"]["img_size"]
        fields["image_size"] = size if isinstance(size, int) else size[0]
    overrides = parse_json_arg(model_args.config_overrides, "config_overrides")
    check_config_fields(recipe.config_class, overrides)
    fields.update(overrides)
    return recipe.config_class(**fields), weights


def _documented_arguments(klass) -> dict[str, str]:
    """``name -> text`` of the ``Args:`` section of a class docstring (Google style), lines joined."""
    documented: dict[str, str] = {}
    lines = (inspect.getdoc(klass) or "").splitlines()
    inside, name = False, None
    for line in lines:
        if line.strip() == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            inside, name = False, None  # the next section (a docstring may hold several Args: blocks)
            continue
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name, documented[entry[1]] = entry[1], entry[2].strip()
        elif name and line.startswith("        "):
            documented[name] += " " + line.strip()
    return documented


def method_options(method: str) -> str:
    """What ``--list_options METHOD`` prints: every config field (``--config_overrides``) and view
    argument (``--view_kwargs``) of the method, with the default preset's value and its documentation."""
    import textwrap

    recipe = get_recipe(method)
    preset_name = recipe.default_preset
    preset = recipe.presets[preset_name]
    config = recipe.config_class(**preset.config)
    documented: dict[str, str] = {}
    for klass in reversed(recipe.config_class.__mro__):
        if not klass.__module__.startswith("transformers"):
            documented.update(_documented_arguments(klass))
    wrap = lambda text: textwrap.fill(text, width=110, initial_indent="      ", subsequent_indent="      ")  # noqa: E731
    lines = [f"{recipe.title or method} ({recipe.config_class.__name__}): set with --config_overrides '{{\"name\": value}}'; values of preset {preset_name}"]
    for name in config_parameters(recipe.config_class):
        lines.append(f"  {name} = {json.dumps(getattr(config, name, None), default=str)}")
        if documented.get(name):
            lines.append(wrap(documented[name]))
    views = recipe.build_views(config, image_column="image", **preset.views)
    lines += ["", f"views: set with --view_kwargs '{{\"name\": value}}' (the view size comes from image_size); values of preset {preset_name}"]
    builder = inspect.signature(recipe.build_views).parameters
    for name, parameter in builder.items():
        if name not in ("config", "image_column") and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            lines.append(f"  {name} = {json.dumps(preset.views.get(name, parameter.default), default=str)}")
    # The builder's other keys go to the view class (APS) or to every view's ViewAugmentation (the rest).
    from ..views import MultiViewTransform, ViewAugmentation

    target = ViewAugmentation if isinstance(views, MultiViewTransform) else type(views)
    target_docs = _documented_arguments(target)
    lines.append(f"  and any argument of {target.__name__}:")
    for name, parameter in inspect.signature(target.__init__).parameters.items():
        if name in ("self", "image_column", "size") or name in builder or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        value = preset.views.get(name, getattr(views, name, parameter.default) if isinstance(views, target) else parameter.default)
        lines.append(f"  {name} = {'required' if value is inspect.Parameter.empty else json.dumps(value, default=str)}")
        if target_docs.get(name):
            lines.append(wrap(target_docs[name]))
    return "\n".join(lines)


def config_parameters(config_class) -> dict[str, inspect.Parameter]:
    """The named arguments of a method config, its own and those of the shared base classes."""
    parameters: dict[str, inspect.Parameter] = {}
    for klass in reversed(config_class.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith("transformers"):
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                parameters[name] = parameter
    return parameters


def check_config_fields(config_class, values: dict[str, Any]) -> None:
    """Unknown fields (typos) and values of the wrong kind are errors naming the field and the fix.

    A config would otherwise keep ``loss_temprature`` as an unused attribute and train with the
    default temperature, and take ``"0.2"`` or ``true`` for a number.
    """
    parameters = config_parameters(config_class)
    for name, value in values.items():
        if name not in parameters:
            close = difflib.get_close_matches(name, parameters, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(close)}?" if close else f" The fields are: {', '.join(sorted(parameters))}."
            raise ValueError(f"--config_overrides: {config_class.__name__} has no field {name!r}.{hint}")
        default = parameters[name].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
            if isinstance(value, (bool, str)):  # lists stay allowed: PatchMix's num_groups may be one
                raise ValueError(f"--config_overrides: {name} must be a number (like its default {default!r}), got {value!r} ({type(value).__name__})")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"--config_overrides: {name} must be a finite number, got {value!r}")
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"--config_overrides: {name} must be true or false, got {value!r}")
