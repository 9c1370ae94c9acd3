"""The pretraining job behind ``scripts/run_pretrain.py``: data -> views -> SSLTrainer -> export -> kNN."""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import datasets
import transformers
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..atomic import claim_folder, write_text_atomic
from ..data.collator import ViewCollator
from ..data.labels import WithLabels
from ..data.sources import prepare_for_views
from ..data.streaming import attach_views, configure_streaming
from ..evaluation.monitor import monitors_seconds
from ..evaluation.online_probe import add_online_linear_probe
from ..methods import RECIPES, get_recipe
from ..publish.cards import dataset_reference, default_repo_id, render_model_card
from ..publish.export import export_backbone
from ..publish.hub import push_run
from ..publish.loading import load_pretraining_model
from ..publish.run_folder import RunRecord
from ..training.trainer import SSLTrainer, SSLTrainingArguments
from .arguments import (
    DataArguments,
    EvalArguments,
    HubArguments,
    ModelArguments,
    config_and_starting_weights,
    json_file_to_flags,
    method_options,
    parse_flags_or_json,
    parse_json_arg,
    preset_flags,
    preset_table,
    resolve_preset,
)
from .output_dir import check_checkpoint_method, check_resumed_run, prepare_output_dir, run_identity
from .starting_weights import load_starting_weights

logger = logging.getLogger("hf_sslviews")
KNN_HELD_OUT_FRACTION = 0.1  # of a one-split labelled data set, for the final kNN's queries


def parse_args(argv: Optional[Sequence[str]] = None):
    """Parse flags (or one JSON file) on top of the chosen preset's flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list_presets" in argv:
        print(preset_table())
        raise SystemExit(0)
    if "--list_options" in argv:
        position = argv.index("--list_options")
        if position + 1 >= len(argv) or argv[position + 1] not in RECIPES:
            raise ValueError(f"--list_options needs a method: one of {sorted(RECIPES)}")
        print(method_options(argv[position + 1]))
        raise SystemExit(0)
    # The preset is read from the user's flags (or file) before the preset's flags are put first.
    method, preset_name = resolve_preset(json_file_to_flags(argv[0]) if len(argv) == 1 and argv[0].endswith(".json") else argv)
    recipe = get_recipe(method)
    preset = recipe.presets[preset_name]
    defaults = ["--method", method, "--preset", preset_name, "--output_dir", f"outputs/{preset_name}", *preset_flags(preset)]
    return parse_flags_or_json((ModelArguments, DataArguments, EvalArguments, SSLTrainingArguments, HubArguments), argv, leading_flags=defaults)


def shutdown_distributed() -> None:
    """Leave the process group together and close it, once every process has finished.

    A gloo group left for interpreter exit to tear down ended a 2-process CPU run once in five
    with "terminate called without an active exception" on rank 1 (rc 1) after everything was
    written; torch asks for ``destroy_process_group`` before exit.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_model(recipe, preset, model_args: ModelArguments):
    if model_args.model_name_or_path:
        # Strict: a config.json edited to another depth, or weights lacking a part, is an error
        # naming it, not a silently different (partly random) model.
        model = load_pretraining_model(model_args.model_name_or_path)
        if not isinstance(model, recipe.model_class):
            raise ValueError(f"{model_args.model_name_or_path} holds a {type(model).__name__}, not a {recipe.model_class.__name__} (--method {recipe.name})")
        return model
    config, weights = config_and_starting_weights(recipe, preset, model_args)
    model = recipe.model_class(config)
    if weights is not None:
        load_starting_weights(model, weights)
    return model


class TrainingData(NamedTuple):
    """The data of a run: the training split as loaded, with its views (and labels) attached, and the eval split's."""

    split: Any
    train: Any
    eval: Any
    probe_classes: Optional[int]


class Monitors(NamedTuple):
    knn: Any  # KNNMonitorCallback or None
    quality: Any  # EmbeddingQualityMonitor


def run_pretraining(model_args: ModelArguments, data_args: DataArguments, eval_args: EvalArguments, training_args: SSLTrainingArguments, hub_args: Optional[HubArguments] = None) -> dict:
    """Pretrain, save the full model, export the backbone, kNN-evaluate it, push it if asked. Returns the results."""
    hub_args = hub_args or HubArguments()
    push_to_hub = _take_over_hub_upload(training_args, hub_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    recipe = get_recipe(model_args.method)
    preset = recipe.presets[model_args.preset]
    model = build_model(recipe, preset, model_args)
    view_kwargs = {**preset.views, **parse_json_arg(data_args.view_kwargs, "view_kwargs")}
    views = build_views_from_flags(recipe, model.config, data_args.image_column_name, view_kwargs)
    if model_args.print_config:
        print(json.dumps(effective_configuration(model.config, view_kwargs, training_args), indent=2, default=str))
        return {}
    logger.info("%s", describe_run(recipe.name, model_args.preset, model.config, training_args))

    data = _training_data(views, data_args, eval_args, training_args)
    resume = _claim_output_dir(recipe, model, data_args, training_args)
    trainer = SSLTrainer(model=model, args=training_args, train_dataset=data.train, eval_dataset=data.eval, data_collator=ViewCollator())
    monitors = _add_monitors(trainer, data, data_args, eval_args, training_args)
    logger.info("method %s, preset %s, backbone %s, %d train images", recipe.name, model_args.preset, model.config.backbone, _length(data.train))
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)

    # What the monitors took is inside train_runtime; monitor_seconds lets a comparison of training times leave it out.
    results: dict = {"method": recipe.name, "preset": model_args.preset, "train": {**train_result.metrics, "monitor_seconds": round(monitors_seconds(trainer), 4)}}
    if monitors.knn is not None:
        results["knn_monitor"] = monitors.knn.history  # the learning curve: step, train_seconds, knn_top1, knn_top5
    results["embedding_quality"] = monitors.quality.history  # step, rankme, alignment, uniformity (the last: the final model)
    # The full pretraining model (heads, target network, queues). Every process calls it (FSDP
    # gathers the weights collectively); only rank 0 writes.
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        _export_and_publish(trainer, results, monitors, model_args, data_args, eval_args, training_args, hub_args, push_to_hub)
    return results


def _take_over_hub_upload(training_args: SSLTrainingArguments, hub_args: HubArguments) -> bool:
    """Whether to push when training is done; the Trainer's own pushing is turned off.

    The Trainer would push the whole output_dir (heads, checkpoint-* with optimizer states) on
    every save; :func:`~hf_sslviews.publish.hub.push_run` pushes the backbone (and, if asked, the
    full model to its own repo) once.
    """
    if (hub_args.push_pretraining_checkpoint or hub_args.pretraining_hub_model_id) and not training_args.push_to_hub:
        raise ValueError("--push_pretraining_checkpoint / --pretraining_hub_model_id need --push_to_hub --hub_model_id org/name")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id org/name: the repo that receives the exported backbone")
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    return push_to_hub


def _training_data(views, data_args: DataArguments, eval_args: EvalArguments, training_args: SSLTrainingArguments) -> TrainingData:
    if data_args.streaming:
        configure_streaming(training_args)  # needs --max_steps; each process reads its own shards
    split = _load_split(data_args, data_args.train_split, data_args.max_train_samples)
    probe_classes = _probe_classes(split, data_args) if eval_args.online_linear_probe else None
    train = attach_views(
        split, WithLabels(views, data_args.label_column_name) if probe_classes else views, training_args.max_steps,
        image_column=data_args.image_column_name, world_size=training_args.world_size, seed=training_args.seed,
    )
    evaluation = None
    if data_args.eval_split:
        evaluation = attach_views(
            _load_split(data_args, data_args.eval_split, None), views, training_args.max_steps,
            image_column=data_args.image_column_name, world_size=training_args.world_size,
        )
    return TrainingData(split, train, evaluation, probe_classes)


def _claim_output_dir(recipe, model, data_args: DataArguments, training_args: SSLTrainingArguments) -> Optional[str]:
    """The checkpoint to resume from (checked to be this run's), after the output folder is claimed for this run."""
    resume = training_args.resume_from_checkpoint
    if resume in ("last", "True", "true"):
        # --resume_from_checkpoint last: the newest complete checkpoint in --output_dir.
        resume = get_last_checkpoint(training_args.output_dir)
        if resume is None:
            raise ValueError(f"--resume_from_checkpoint last: no checkpoint-N folder in {training_args.output_dir}")
    data = {key: getattr(data_args, key) for key in ("dataset_name", "dataset_config_name", "train_dir", "train_split", "max_train_samples")}
    identity = run_identity(recipe.name, model.config, data, training_args)
    if resume:
        check_checkpoint_method(resume, model.config.model_type)
        check_resumed_run(resume, identity)
    if training_args.process_index == 0:
        # One writer; the other processes follow rank 0, which stops the launch if the folder is wrong.
        prepare_output_dir(training_args.output_dir, identity, resume=bool(resume), overwrite=training_args.overwrite_output_dir)
        if not training_args.overwrite_output_dir:
            claim_folder(Path(training_args.output_dir) / "backbone")  # the export at the end would refuse it: say so now, not after training
    return resume


def _add_monitors(trainer, data: TrainingData, data_args: DataArguments, eval_args: EvalArguments, training_args) -> Monitors:
    """The callbacks a run adds to its trainer: the online probe, the kNN curve, the label-free measures."""
    if data.probe_classes:
        add_online_linear_probe(trainer, data.probe_classes, eval_args.online_linear_probe_lr)
    knn = _add_knn_monitor(trainer, data_args, eval_args) if eval_args.knn_monitor_steps or eval_args.knn_monitor_epoch_end else None
    return Monitors(knn, _add_embedding_quality_monitor(trainer, data.split, data_args, eval_args, training_args))


def _export_and_publish(trainer, results: dict, monitors: Monitors, model_args, data_args, eval_args, training_args, hub_args, push_to_hub: bool) -> None:
    """On the main process: the run record, the backbone export, the final kNN, the card, the upload."""
    model = trainer.model
    output_dir = Path(training_args.output_dir)
    record = RunRecord(arguments={"model": asdict(model_args), "data": asdict(data_args), "eval": asdict(eval_args)}, results=results)
    record.write(output_dir)  # now, so a failure in the export or the kNN leaves the run described; again below, complete
    backbone_dir = export_backbone(model, output_dir / "backbone", overwrite=training_args.overwrite_output_dir)
    logger.info("backbone exported to %s", backbone_dir)
    results["backbone_dir"] = str(backbone_dir)
    if eval_args.knn_eval:
        results["knn"] = _knn_report(backbone_dir, data_args, eval_args)
    dataset_id, dataset_label = dataset_reference(data_args.dataset_name, data_args.train_dir)
    quality = monitors.quality.history
    card = render_model_card(
        model, model_args.preset,
        repo_id=training_args.hub_model_id or default_repo_id(model.config),
        dataset=dataset_label, dataset_id=dataset_id,
        budget=f"{trainer.state.global_step} optimizer steps ({trainer.state.epoch:.2f} epochs) at batch {training_args.per_device_train_batch_size} x {training_args.gradient_accumulation_steps} accumulation x {training_args.world_size} processes",
        knn=results.get("knn"), knn_k=eval_args.knn_k, base_model=getattr(model.config, "base_model", None),
        embedding_quality=quality[-1] if quality else None,
    )
    write_text_atomic(backbone_dir / "README.md", str(card))
    record.write(output_dir)
    if push_to_hub:
        pushed = push_run(
            output_dir, training_args.hub_model_id, pretraining_hub_model_id=hub_args.pretraining_hub_model_id,
            push_pretraining=hub_args.push_pretraining_checkpoint, token=training_args.hub_token,
            private=training_args.hub_private_repo, revision=training_args.hub_revision, dry_run_dir=hub_args.hub_dry_run_dir,
        )
        results["hub"] = {kind: str(getattr(result, "commit_url", result)) for kind, result in pushed.items()}
        if hub_args.hub_dry_run_dir:
            logger.info("dry run, nothing uploaded: what each repo would receive is in %s", results["hub"])
        else:
            logger.info("pushed: %s", results["hub"])


def build_views_from_flags(recipe, config, image_column: str, view_kwargs: dict):
    """``recipe.build_views`` with a ``--view_kwargs`` mistake reported as the flag's error.

    The builders set the view size (and APS's patch size) from the model config, so
    ``{"size": 0}`` used to end in Python's "multiple values for keyword argument 'size'".
    """
    try:
        return recipe.build_views(config, image_column=image_column, **view_kwargs)
    except TypeError as error:
        text = str(error)
        repeated = re.search(r"multiple values for keyword argument '(\w+)'", text)
        unknown = re.search(r"unexpected keyword argument '(\w+)'", text)
        if repeated:
            raise ValueError(
                f"--view_kwargs: {repeated.group(1)!r} is set from the model config for {recipe.name} views (the view size "
                f"is image_size, the patch grid the backbone's); change it with --config_overrides '{{\"image_size\": N}}' "
                f"and --backbone_kwargs '{{\"img_size\": N}}' instead"
            ) from error
        if unknown:
            raise ValueError(f"--view_kwargs: the {recipe.name} views take no argument {unknown.group(1)!r} ({text})") from error
        raise


def effective_configuration(config, view_kwargs: dict, training_args) -> dict:
    """What a run will use: the method config, the view arguments, and the training arguments that differ from the Trainer's defaults."""
    defaults = SSLTrainingArguments(output_dir=training_args.output_dir).to_dict()
    training = {key: value for key, value in training_args.to_dict().items() if defaults.get(key) != value and "token" not in key}
    return {"config": config.to_diff_dict(), "views": view_kwargs, "training": training}


def describe_run(method: str, preset: str, config, training_args) -> str:
    """One line naming what trains: the effective backbone, its size, the batch and the budget."""
    kwargs = config.backbone_kwargs or {}
    depth = f", depth {kwargs['depth']}" if "depth" in kwargs else ""
    budget = f"{training_args.max_steps} optimizer steps" if training_args.max_steps > 0 else f"{training_args.num_train_epochs:g} epochs"
    return (
        f"method {method}, preset {preset}: backbone {config.backbone}{depth} {json.dumps(kwargs)} at {config.image_size} px, "
        f"batch {training_args.per_device_train_batch_size} x {training_args.gradient_accumulation_steps} accumulation x "
        f"{training_args.world_size} processes, learning rate {training_args.learning_rate:g}, {budget} (python scripts/run_pretrain.py ... --print_config shows everything)"
    )


def _load_split(data_args: DataArguments, split: str, max_samples: Optional[int]):
    dataset = data_args.load(split, max_samples=max_samples, labels=False, streaming=data_args.streaming)
    return prepare_for_views(dataset, data_args.image_column_name)


def _probe_classes(dataset, data_args: DataArguments) -> int:
    """The number of classes of the training split's label column, for --online_linear_probe."""
    feature = (dataset.features or {}).get(data_args.label_column_name)
    if not isinstance(feature, datasets.ClassLabel):
        found = "missing" if feature is None else f"a {type(feature).__name__} feature, not a ClassLabel"
        raise ValueError(
            f"--online_linear_probe needs class labels: the training split's column {data_args.label_column_name!r} is {found}. "
            "Name the label column with --label_column_name (cast integer labels to datasets.ClassLabel), or leave --online_linear_probe off."
        )
    return feature.num_classes


def _add_knn_monitor(trainer, data_args: DataArguments, eval_args: EvalArguments):
    from ..evaluation.monitor import add_knn_monitor

    try:
        bank = data_args.load(eval_args.knn_train_split, max_samples=eval_args.knn_monitor_max_train_samples)
        queries = data_args.load(eval_args.knn_test_split, max_samples=eval_args.knn_monitor_max_test_samples)
    except (ValueError, KeyError) as error:
        logger.warning("kNN monitor off (it needs labelled train and test splits): %s", error)
        return None
    return add_knn_monitor(trainer, bank, queries, every_n_steps=eval_args.knn_monitor_steps, at_epoch_end=eval_args.knn_monitor_epoch_end,
                    k=min(eval_args.knn_k, len(bank)), temperature=eval_args.knn_temperature, max_train_samples=None, max_test_samples=None,
                    image_column=data_args.image_column_name, label_column=data_args.label_column_name)


def _add_embedding_quality_monitor(trainer, train_split, data_args: DataArguments, eval_args: EvalArguments, training_args):
    """RankMe / alignment / uniformity on the first training images, at the kNN monitor's cadence (or 10 times a long run), and at the end."""
    from itertools import islice

    from ..evaluation.embedding_quality import add_embedding_quality_monitor
    from ..evaluation.monitor import eval_transform_for_config

    every = eval_args.embedding_quality_steps
    if every < 0:
        every = eval_args.knn_monitor_steps or (training_args.max_steps // 10 if training_args.max_steps >= 100 else 0)
    if hasattr(train_split, "select"):
        images = train_split.select(range(min(eval_args.embedding_quality_images, len(train_split))))[data_args.image_column_name]
    else:  # streaming: the first images of the stream
        images = [row[data_args.image_column_name] for row in islice(iter(train_split), eval_args.embedding_quality_images)]
    return add_embedding_quality_monitor(trainer, images, eval_transform_for_config(trainer.model.config), every_n_steps=every, seed=training_args.seed)


def _length(dataset) -> int:
    try:
        return len(dataset)
    except TypeError:
        return -1


def _knn_report(backbone_dir: Path, data_args: DataArguments, eval_args: EvalArguments) -> Optional[dict]:
    """Weighted kNN of the exported backbone (loaded with plain ``AutoModel``) and of a random-init copy."""
    from ..evaluation.features import eval_transform_for, load_backbone
    from ..evaluation.knn import run_knn_evaluation

    limits = {"train": eval_args.knn_max_train_samples or None, "test": eval_args.knn_max_test_samples or None}
    try:
        splits = _knn_splits(data_args, eval_args, limits)
    except (ValueError, KeyError) as error:
        logger.warning(
            "kNN evaluation skipped: %s. Without labels the run's quality signal is RankMe / alignment / uniformity "
            "(results.json, the model card); with a labelled folder of class sub-folders the kNN runs on a held-out part of it.", error,
        )
        return None
    transform = eval_transform_for(str(backbone_dir))
    logger.info(
        "final kNN: %d training images as memory, %d test images (--knn_max_train_samples / --knn_max_test_samples, 0 = all; --knn_eval False skips it)",
        len(splits["train"]), len(splits["test"]),
    )
    report = {}
    # The two floors a learned representation must clear: the same network untrained, and the
    # pixels themselves (the evaluation transform's output, flattened).
    for name, model in (("pretrained", None), ("random_init", None), ("raw_pixels", flattened_pixels)):
        result = run_knn_evaluation(
            model or load_backbone(str(backbone_dir), random_init=name == "random_init"), splits["train"], splits["test"], transform,
            ks=(eval_args.knn_k,), temperature=eval_args.knn_temperature,
            image_column=data_args.image_column_name, label_column=data_args.label_column_name, progress=True,
        )
        report[name] = result["knn"][f"k={eval_args.knn_k}"]
    print(format_knn_table(report, eval_args.knn_k, eval_args.knn_temperature))
    if data_args.train_dir is None and data_args.dataset_name in (None, "sample"):
        print("This is a minutes-long smoke run on the embedded sample. The reference protocol (full Fashion-MNIST, every method, "
              "3 seeds, linear probe, learning curves): python benchmarks/quality.py --suite cpu\n")
    return report


def _knn_splits(data_args: DataArguments, eval_args: EvalArguments, limits: dict) -> dict:
    """The final kNN's memory and queries: the two named splits, or, for data with one split (an
    image folder of class sub-folders), a held-out part of it (stratified by class, seeded)."""
    train = data_args.load(eval_args.knn_train_split, max_samples=None)  # refuses data without the label column
    try:
        test = data_args.load(eval_args.knn_test_split, max_samples=limits["test"])
    except ValueError as error:
        if "split" not in str(error).lower() or not isinstance(train.features.get(data_args.label_column_name), datasets.ClassLabel):
            raise
        parts = train.train_test_split(test_size=KNN_HELD_OUT_FRACTION, seed=0, stratify_by_column=data_args.label_column_name)
        train, test = parts["train"], parts["test"]
        logger.info(
            "the data has no %r split: the final kNN classifies a held-out %d%% of %r (%d images, stratified by class), "
            "which pretraining saw without labels", eval_args.knn_test_split, round(100 * KNN_HELD_OUT_FRACTION), eval_args.knn_train_split, len(test),
        )
        if limits["test"]:
            test = test.select(range(min(limits["test"], len(test))))
    if limits["train"]:
        train = train.select(range(min(limits["train"], len(train))))
    return {"train": train, "test": test}


def flattened_pixels(pixel_values):
    """The raw-pixel "backbone": each image's normalised pixels as one vector ``[B, 3*H*W]``."""
    return pixel_values.flatten(start_dim=1)


def format_knn_table(report: dict, k: int, temperature: float) -> str:
    labels = {"pretrained": "pretrained", "random_init": "random init (floor)", "raw_pixels": "raw pixels (floor)"}
    lines = [f"\nweighted kNN (k={k}, cosine, T={temperature}) on the exported backbone, train -> test", f"{'features':<20} {'top-1':>7} {'top-5':>7}"]
    for name, scores in report.items():
        lines.append(f"{labels.get(name, name):<20} {100 * scores['top1']:>6.2f}% {100 * scores['top5']:>6.2f}%")
    return "\n".join(lines) + "\n"
