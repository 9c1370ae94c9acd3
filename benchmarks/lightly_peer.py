#!/usr/bin/env python
"""Train lightly's BYOL / SimSiam / MoCo-style loop under one of our presets, for the quality parity check.

Everything a method's result could depend on is taken from the preset, so only the method code
differs from ``scripts/run_pretrain.py --preset <preset>``:

- the same timm backbone (``config.backbone`` / ``backbone_kwargs``), head widths, momentum
  schedule (cosine from ``momentum_base`` to ``momentum_final`` per optimizer step) and
  MoCo v3 temperature;
- the same view tensors: the preset's view transform over the same ``datasets`` split, in the
  same ``ViewCollator`` batches, shuffled with ``--data_seed`` (default ``--seed``): by one torch
  generator (``--data_order torch``, the committed runs) or in exactly the order our Trainer
  sees (``--data_order trainer``);
- the same optimizer: AdamW with the preset's learning rate (and predictor multiple), betas,
  weight decay (none on 1-d parameters, position embeddings and class tokens, as
  ``SSLTrainer``), gradient clipping (the preset's ``max_grad_norm``), warm-up and cosine
  schedule from transformers, the same number of optimizer steps, the same batch size. Given
  the same weights and batches, :func:`build_optimizer` + :func:`optimizer_step` take the steps
  ``SSLTrainer`` takes (tested in float64).

lightly's side is its own ``BYOLProjectionHead`` / ``BYOLPredictionHead`` /
``SimSiamProjectionHead`` / ``SimSiamPredictionHead`` / ``MoCoProjectionHead``,
``NegativeCosineSimilarity`` / ``NTXentLoss`` and ``update_momentum`` (``LightlyLoop`` of
``benchmarks/peers.py``). The trained timm backbone is exported in the same format as
ours (``<output_dir>/backbone``), so the quality protocol scores both identically; the kNN monitor
runs on the same fixed subset and lands in ``<output_dir>/results.json`` like a pretraining run's.

    pip install -e ".[bench]"
    python benchmarks/lightly_peer.py --preset byol_fmnist --dataset_name fashion_mnist --output_dir out/lightly_byol --seed 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("byol", "simsiam", "mocov3")


def _peers_module():
    spec = importlib.util.spec_from_file_location("peers", REPO / "benchmarks" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def lightly_heads(method: str, config) -> dict:
    """Our config's head widths in the names ``LightlyLoop`` takes."""
    if method == "simsiam":
        return dict(projector_dim=config.projector_dim, predictor_hidden_dim=config.predictor_hidden_dim)
    return dict(projector_hidden_dim=config.projector_hidden_dim, projector_dim=config.projector_dim)


def _no_decay_names(module) -> set[str]:
    """timm's ``no_weight_decay()`` names (position embeddings, class token) as parameter names of ``module``."""
    for prefix, model in (("backbone.model.", getattr(module.backbone, "model", None)), ("backbone.", module.backbone)):
        if model is not None and hasattr(model, "no_weight_decay"):
            return {prefix + name for name in model.no_weight_decay()}
    return set()


def optimizer_groups(module, learning_rate: float, weight_decay: float, predictor_lr_multiplier: float = 1.0, predictor_prefix: str = "prediction_head") -> list[dict]:
    """AdamW groups as ``SSLTrainer`` makes them: no decay on 1-d tensors and timm's
    ``no_weight_decay()``; the prediction heads (parameters under ``predictor_prefix``: lightly's
    ``prediction_head``, our ``predictor``) at ``predictor_lr_multiplier`` x the rate."""
    skip = _no_decay_names(module)
    groups = []
    for head in (False, True):
        params = [(name, param) for name, param in module.named_parameters() if param.requires_grad and name.startswith(predictor_prefix) == head]
        lr = learning_rate * (predictor_lr_multiplier if head else 1.0)
        decay = [param for name, param in params if param.ndim > 1 and name not in skip]
        rest = [param for name, param in params if not (param.ndim > 1 and name not in skip)]
        groups += [group for group in ({"params": decay, "weight_decay": weight_decay, "lr": lr}, {"params": rest, "weight_decay": 0.0, "lr": lr}) if group["params"]]
    return groups


def preset_max_grad_norm(training: dict) -> float:
    """The gradient clipping a ``run_pretrain.py`` run of the preset gets: the preset's, else ``SSLTrainingArguments``' default."""
    from hf_sslviews.training.trainer import SSLTrainingArguments

    return float(training.get("max_grad_norm", SSLTrainingArguments.__dataclass_fields__["max_grad_norm"].default))


def build_optimizer(module, training: dict, max_steps: int, predictor_prefix: str = "prediction_head"):
    """``SSLTrainer``'s AdamW and warm-up + schedule from a preset's training flags, for ``module``."""
    import torch
    from transformers import get_scheduler

    learning_rate = float(training["learning_rate"])
    groups = optimizer_groups(module, learning_rate, float(training.get("weight_decay", 0.0)), float(training.get("predictor_lr_multiplier", 1.0)), predictor_prefix)
    optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(float(training.get("adam_beta1", 0.9)), float(training.get("adam_beta2", 0.999))))
    warmup = training.get("warmup_steps", 0)
    warmup = int(math.ceil(warmup * max_steps)) if 0 < warmup < 1 else int(warmup)
    return optimizer, get_scheduler(training.get("lr_scheduler_type", "cosine"), optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)


def optimizer_step(module, optimizer, scheduler, max_grad_norm: float) -> None:
    """One step after ``loss.backward()`` as transformers' Trainer takes it: the global gradient
    norm clipped to ``max_grad_norm`` (when positive), the optimizer and schedule stepped, gradients freed."""
    import torch

    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([param for param in module.parameters() if param.grad is not None], max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def train_loader(dataset, batch_size: int, collate_fn, data_seed: int, data_order: str = "torch"):
    """The peer's shuffled, drop-last training batches.

    ``"torch"``: one generator seeded with ``data_seed`` draws every epoch's permutation in turn
    (what the committed peer runs used). ``"trainer"``: the order our ``SSLTrainer`` sees, from
    accelerate's sampler, which reseeds epoch ``e`` with ``data_seed + e`` (tested equal).
    """
    import torch
    from torch.utils.data import DataLoader

    if data_order == "trainer":
        from accelerate.data_loader import SeedableRandomSampler

        # It counts its own epochs: each full pass ends with set_epoch(epoch + 1).
        return DataLoader(dataset, batch_size=batch_size, sampler=SeedableRandomSampler(dataset, data_seed=data_seed), drop_last=True, collate_fn=collate_fn)
    if data_order != "torch":
        raise ValueError(f"data_order must be 'torch' or 'trainer', not {data_order!r}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate_fn, generator=torch.Generator().manual_seed(data_seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help="one of our presets of BYOL, SimSiam or MoCo v3, e.g. byol_fmnist")
    parser.add_argument("--dataset_name", default="fashion_mnist")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--test_split", default="test")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_seed", type=int, default=None, help="seed of the data order alone (the DataLoader's shuffling); default --seed. The views stay seeded by --seed per row")
    parser.add_argument("--data_order", choices=("torch", "trainer"), default="torch",
                        help="torch: one generator draws each epoch's permutation in turn; trainer: the order run_pretrain.py's Trainer sees at the same data seed (epoch e shuffled with data_seed + e)")
    parser.add_argument("--max_steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--max_grad_norm", type=float, default=None, help="gradient clipping (0: none); default: what run_pretrain.py gives the preset")
    parser.add_argument("--knn_monitor_steps", type=int, default=0)
    parser.add_argument("--knn_monitor_max_train_samples", type=int, default=5000)
    parser.add_argument("--knn_monitor_max_test_samples", type=int, default=1000)
    args = parser.parse_args()

    from lightly.utils.scheduler import cosine_schedule
    from transformers import set_seed

    from hf_sslviews.data.collator import ViewCollator
    from hf_sslviews.data.sources import load_image_dataset, prepare_for_views
    from hf_sslviews.evaluation.features import extract_features
    from hf_sslviews.evaluation.knn import knn_accuracy
    from hf_sslviews.evaluation.monitor import eval_transform_for_config
    from hf_sslviews.methods import find_preset
    from hf_sslviews.publish.export import export_backbone
    from hf_sslviews.runs.arguments import ModelArguments, build_config

    recipe, preset = find_preset(args.preset)
    if recipe.name not in METHODS:
        raise SystemExit(f"--preset {args.preset} is a {recipe.name} preset; lightly loops exist for {METHODS}")
    training = preset.training
    set_seed(args.seed)
    config = build_config(recipe, preset, ModelArguments(method=recipe.name, preset=args.preset))
    loop = _peers_module().LightlyLoop(recipe.name, {"backbone": config.backbone, "backbone_kwargs": config.backbone_kwargs},
                                       heads=lightly_heads(recipe.name, config), temperature=getattr(config, "loss_temperature", 0.2))
    loop.train()

    views = recipe.build_views(config, **preset.views)
    train = prepare_for_views(load_image_dataset(dataset_name=args.dataset_name, split=args.train_split), "image").with_transform(views)
    views.seed = args.seed
    batch_size = int(training["per_device_train_batch_size"])
    loader = train_loader(train, batch_size, ViewCollator(), args.seed if args.data_seed is None else args.data_seed, args.data_order)
    max_steps = int(args.max_steps or training["max_steps"])
    optimizer, scheduler = build_optimizer(loop.net, training, max_steps)
    max_grad_norm = preset_max_grad_norm(training) if args.max_grad_norm is None else args.max_grad_norm

    transform = eval_transform_for_config(config)
    monitor = None
    if args.knn_monitor_steps:
        monitor = [load_image_dataset(dataset_name=args.dataset_name, split=split, label_column="label", max_samples=n)
                   for split, n in ((args.train_split, args.knn_monitor_max_train_samples), (args.test_split, args.knn_monitor_max_test_samples))]
    curve, step, epoch, losses = [], 0, 0, []
    started, monitor_seconds = time.perf_counter(), 0.0
    while step < max_steps:
        views.epoch = epoch
        for batch in loader:
            batch.pop("num_skipped_images", None)
            loss = loop.loss(batch)
            loss.backward()
            optimizer_step(loop.net, optimizer, scheduler, max_grad_norm)
            step += 1
            # Our MomentumCallback's schedule: cosine from momentum_base at step 0 to momentum_final.
            loop.after_step(cosine_schedule(step, max_steps, getattr(config, "momentum_base", 0.99), getattr(config, "momentum_final", 1.0)))
            losses.append(float(loss.detach()))
            if monitor is not None and step % args.knn_monitor_steps == 0:
                tick = time.perf_counter()
                elapsed = tick - started - monitor_seconds  # training time only, as our monitor reports it
                loop.net.eval()
                bank, queries = (extract_features(loop.net.backbone, data, transform=transform) for data in monitor)
                loop.net.train()
                scores = knn_accuracy(*bank, *queries, num_classes=10, k=20, temperature=0.07)
                monitor_seconds += time.perf_counter() - tick
                curve.append({"step": step, "train_seconds": elapsed, "knn_top1": scores["top1"], "knn_top5": scores["top5"]})
                print(json.dumps({"step": step, "loss": sum(losses[-20:]) / len(losses[-20:]), **scores}), flush=True)
            if step >= max_steps:
                break
        epoch += 1
    train_seconds = time.perf_counter() - started - monitor_seconds

    # Export through our exporter: our model of the same config, its backbone replaced by lightly's.
    model = recipe.model_class(config)
    model.backbone.model.load_state_dict(loop.net.backbone.state_dict())
    out = Path(args.output_dir)
    backbone_dir = export_backbone(model, out / "backbone")
    results = {"method": f"lightly_{recipe.name}", "preset": args.preset, "max_grad_norm": max_grad_norm, "train": {"train_runtime": train_seconds, "total_steps": step, "final_loss": losses[-1]}, "knn_monitor": curve, "backbone_dir": str(backbone_dir)}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({key: value for key, value in results.items() if key != "knn_monitor"}))


if __name__ == "__main__":
    main()
