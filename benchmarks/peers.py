#!/usr/bin/env python
"""hf_sslviews against lightly, on one machine, in one run (issue 10).

Same timm backbone, batch size, image size, number of views, optimizer (AdamW) and images on
both sides; lightly's side is built only from lightly's own modules (transforms, heads, losses,
momentum utilities), the way its examples write a training loop.

- Data side: views per second per DataLoader worker (= per core) of our two-view and
  multi-crop transforms against lightly's ``BYOLTransform`` and ``DINOTransform`` set to the same
  sizes, scales and probabilities, both reading the same ``datasets.Dataset`` through a
  ``DataLoader`` with the same number of workers.
- Training side: optimizer steps per second and peak memory of our BYOL / MoCo v3 / SimSiam /
  MULAN models against lightly's equivalent loops, fed the very same view tensors. Ours run the
  last ViT block for the CLS token only (``modeling/common/vit_readout.py``: the same features
  and gradients as timm's full forward, which lightly runs).

Timings on a shared machine are noisy, so the two libraries are interleaved within one process
(alternating which goes first), each measurement is repeated ``--rounds`` times and the fastest
round is kept; ``os.getloadavg()`` is recorded before and after. On CPU, peak memory is the peak
RSS (VmHWM, reset just before) of a fresh subprocess per (method, library) minus its RSS before
the model was built (Linux); on a
GPU it is ``torch.cuda.max_memory_allocated``.

    pip install -e ".[bench]"      # lightly (check that it leaves torch / torchvision alone)
    python benchmarks/peers.py                                  # CPU, ViT-Tiny/4 blocks, 32 px
    python benchmarks/peers.py --backbone resnet18
    python benchmarks/peers.py --device cuda --bf16 --compile    # on a GPU

Results: ``benchmarks/results/peers_<device>[_<backbone>].json`` and a printed markdown table of
ratios (ours / lightly; > 1 means hf_sslviews is faster or, for memory, lighter).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BACKBONES = {
    # The CPU default of the presets: ViT-Tiny, 4 blocks, patch 4 at 32 px (64 tokens).
    "vit_tiny": {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 4, "depth": 4}},
    "resnet18": {"backbone": "resnet18", "backbone_kwargs": {}},
}
# Head widths of the *_tiny presets (scaled-down paper heads), identical on both sides.
HEADS = {
    "byol": dict(projector_hidden_dim=512, projector_dim=128),
    "mocov3": dict(projector_hidden_dim=512, projector_dim=128),
    "simsiam": dict(projector_dim=256, predictor_hidden_dim=64),
    "mulan": dict(framework="byol", projector_hidden_dim=512, projector_dim=128, predictor_hidden_dim=512),
}
METHODS = tuple(HEADS)
MOMENTUM = 0.99
LEARNING_RATE = 1e-4

# View settings, and where lightly's API cannot match them.
SCALE = (0.2, 1.0)
MULTI_CROP = dict(n_global=2, n_local=2, global_scale=(0.25, 1.0), local_scale=(0.08, 0.25))
DATA_MISMATCHES = [
    "Blur: ours is torchvision's Gaussian kernel of ~10% of the crop side (3 px at 32 px, as BYOL's 23 px at 224), "
    "lightly's is PIL's GaussianBlur(radius=sigma) (extent ~3 sigma); same probabilities and sigma range (0.1, 2).",
    "Ours works on uint8/float tensors (photometric ops batched across the images of a DataLoader batch for "
    "crops <= 96 px); lightly works on PIL images and converts with ToTensor at the end. Same op order: "
    "crop, flip, jitter (random order, p=0.8), grayscale (p=0.2), blur, solarize, normalise.",
    "Solarize: same threshold (128 of 255) on both sides.",
    "Multi-crop: ours is MultiTaskViewTransform('cifar', n_cutout=0) (MULAN's global/local views without the "
    "cutout view, which DINOTransform has no equivalent of); lightly's DINOTransform with the same sizes (32 / 16), "
    "scales (0.25-1 / 0.08-0.25), blur (1.0, 0.1, 0.5), solarize 0.2 on the 2nd global and jitter strengths "
    "(0.4, 0.4, 0.2, 0.1).",
]
TRAIN_MISMATCHES = {
    "byol": "Same architecture (Linear-BN-ReLU-Linear projector and predictor with biases); loss 2-2cos (ours) vs "
    "-cos (lightly NegativeCosineSimilarity), the same gradient up to a factor 2.",
    "mocov3": "Lightly has no MoCo v3 model or loss: its loop is MoCoProjectionHead(num_layers=3, batch_norm=True) "
    "as projector, MoCoProjectionHead(num_layers=2, batch_norm=True) as predictor (affine BN on outputs, ours "
    "non-affine) and NTXentLoss(temperature=0.2) with in-batch negatives from both views (2B-2, ours B-1 from the "
    "other view, scaled by 2 tau).",
    "simsiam": "Same architecture (SimSiamProjectionHead / SimSiamPredictionHead widths); same loss.",
    "mulan": "Lightly has no MULAN: its loop is BYOL modules with one BYOLPredictionHead per view type (global, "
    "local, cutout), NegativeCosineSimilarity over MULAN's pairs (2 global, 2 x n_local, 2 x n_cutout terms) and "
    "one backbone forward per view, as lightly's multi-crop examples write it; ours runs one backbone forward per "
    "view type (views of one size batched).",
}


# ----------------------------------------------------------------------------- helpers


def _load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def _images(source: str, count: int):
    """A ``datasets.Dataset`` with an ``image`` column of RGB PIL images."""
    import datasets
    from harness import random_images

    if source == "sample":
        from hf_sslviews.data.sources import load_image_dataset

        dataset = load_image_dataset("sample")
        return dataset.select(range(min(count, len(dataset))))
    return datasets.Dataset.from_dict({"image": random_images(count, 40)})


class LightlyBatchTransform:
    """Apply a lightly per-image transform in ``with_transform`` (the HF-datasets way of using it)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, batch: dict) -> dict:
        return {"views": [self.transform(image) for image in batch["image"]]}


def _lightly_collate(rows: list[dict]):
    import torch

    views = [row["views"] for row in rows]
    return [torch.stack([v[i] for v in views]) for i in range(len(views[0]))]


def data_transforms(size: int) -> dict[str, dict]:
    """``case -> {"ours": transform, "lightly": transform, "views": views per image}``."""
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform, DINOTransform

    from hf_sslviews.views import MultiTaskViewTransform, two_view_transform

    local_size = max(1, size // 2)
    jitter = dict(cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.2, cj_hue=0.1, random_gray_scale=0.2, hf_prob=0.5)
    return {
        "two_view": {
            "ours": two_view_transform(size=size, scale=SCALE),
            "lightly": BYOLTransform(
                view_1_transform=BYOLView1Transform(input_size=size, min_scale=SCALE[0], gaussian_blur=1.0, solarization_prob=0.0, **jitter),
                view_2_transform=BYOLView2Transform(input_size=size, min_scale=SCALE[0], gaussian_blur=0.1, solarization_prob=0.2, **jitter),
            ),
            "views": 2,
        },
        "multi_crop": {
            "ours": MultiTaskViewTransform(
                "cifar", n_global=2, n_local=2, n_cutout=0, global_size=size, local_size=local_size,
                global_scale=MULTI_CROP["global_scale"], local_scale=MULTI_CROP["local_scale"],
            ),
            # cj_strength 0.5 x DINO's (0.8, 0.8, 0.4, 0.2) = (0.4, 0.4, 0.2, 0.1), ours.
            "lightly": DINOTransform(
                global_crop_size=size, global_crop_scale=MULTI_CROP["global_scale"], local_crop_size=local_size,
                local_crop_scale=MULTI_CROP["local_scale"], n_local_views=2, gaussian_blur=(1.0, 0.1, 0.5), solarization_prob=0.2,
            ),
            "views": 4,
        },
    }


def bench_data(args) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader

    from hf_sslviews.data.collator import ViewCollator

    images = _images(args.images, args.batch * (args.data_batches + 1))
    rows = []
    for case, spec in data_transforms(args.image_size).items():
        loaders = {
            "ours": DataLoader(images.with_transform(spec["ours"]), batch_size=args.batch, num_workers=args.workers, collate_fn=ViewCollator()),
            "lightly": DataLoader(
                images.with_transform(LightlyBatchTransform(spec["lightly"])), batch_size=args.batch, num_workers=args.workers, collate_fn=_lightly_collate
            ),
        }
        best = {"ours": float("inf"), "lightly": float("inf")}
        for round_ in range(args.rounds):
            for lib in (("ours", "lightly") if round_ % 2 == 0 else ("lightly", "ours")):
                torch.manual_seed(round_)
                iterator = iter(loaders[lib])
                next(iterator)  # worker start-up is not throughput
                start = time.perf_counter()
                count = sum(1 for _ in iterator)
                elapsed = time.perf_counter() - start
                best[lib] = min(best[lib], elapsed / count)
        per_core = {lib: args.batch * spec["views"] / seconds / max(1, args.workers) for lib, seconds in best.items()}
        rows.append(
            {
                "row": f"data/{case}",
                "unit": "views/s per core",
                "ours": per_core["ours"],
                "lightly": per_core["lightly"],
                "ratio": per_core["ours"] / per_core["lightly"],
                "views_per_image": spec["views"],
                "workers": args.workers,
                "batches_timed": args.data_batches,
                "ours_transform": repr(spec["ours"]),
                "lightly_transform": type(spec["lightly"]).__name__,
            }
        )
        print(f"data/{case:<12} ours {per_core['ours']:9.0f}  lightly {per_core['lightly']:9.0f} views/s/core  ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


# ----------------------------------------------------------------------------- training side


def ours_model(method: str, backbone: str, size: int):
    from hf_sslviews.methods import get_recipe

    recipe = get_recipe(method)
    return recipe.model_class(recipe.config_class(**BACKBONES[backbone], image_size=size, **HEADS[method]))


def _timm_backbone(spec: dict):
    # timm.create_model(name, num_classes=0, dynamic_img_size=True for ViTs, **kwargs): the very
    # backbone our models build (dynamic size so that 16 px local crops go through the 32 px ViT).
    from hf_sslviews.modeling.common.backbone import create_timm_model

    return create_timm_model(spec["backbone"], spec["backbone_kwargs"])


class LightlyLoop:
    """lightly's way: a ``nn.Module`` of its heads, its loss, its momentum utilities.

    Args:
        method: "byol", "mocov3", "simsiam" or "mulan".
        backbone: a key of ``BACKBONES``, or a ``{"backbone", "backbone_kwargs"}`` dict.
        heads: head widths (``HEADS[method]`` by default).
        temperature: MoCo v3's InfoNCE temperature.
    """

    def __init__(self, method: str, backbone, heads: dict | None = None, temperature: float = 0.2):
        import torch
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead, MoCoProjectionHead, SimSiamPredictionHead, SimSiamProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.method = method
        heads = HEADS[method] if heads is None else heads
        net = torch.nn.Module()
        net.backbone = _timm_backbone(BACKBONES[backbone] if isinstance(backbone, str) else backbone)
        dim = net.backbone.num_features
        if method in ("byol", "mulan"):
            net.projection_head = BYOLProjectionHead(dim, heads["projector_hidden_dim"], heads["projector_dim"])
            hidden = heads.get("predictor_hidden_dim", heads["projector_hidden_dim"])
            if method == "byol":
                net.prediction_head = BYOLPredictionHead(heads["projector_dim"], hidden, heads["projector_dim"])
            else:
                net.prediction_heads = torch.nn.ModuleDict({t: BYOLPredictionHead(heads["projector_dim"], hidden, heads["projector_dim"]) for t in ("global", "local", "cutout")})
            self.criterion = NegativeCosineSimilarity()
        elif method == "mocov3":
            net.projection_head = MoCoProjectionHead(dim, heads["projector_hidden_dim"], heads["projector_dim"], num_layers=3, batch_norm=True)
            net.prediction_head = MoCoProjectionHead(heads["projector_dim"], heads["projector_hidden_dim"], heads["projector_dim"], num_layers=2, batch_norm=True)
            self.criterion = NTXentLoss(temperature=temperature)
        else:
            net.projection_head = SimSiamProjectionHead(dim, heads["projector_dim"], heads["projector_dim"])
            net.prediction_head = SimSiamPredictionHead(heads["projector_dim"], heads["predictor_hidden_dim"], heads["projector_dim"])
            self.criterion = NegativeCosineSimilarity()
        if method != "simsiam":
            net.backbone_momentum = copy.deepcopy(net.backbone)
            net.projection_head_momentum = copy.deepcopy(net.projection_head)
            deactivate_requires_grad(net.backbone_momentum)
            deactivate_requires_grad(net.projection_head_momentum)
        self.net = net

    def parameters(self):
        return self.net.parameters()

    def to(self, device):
        self.net.to(device)
        return self

    def train(self):
        self.net.train()
        return self

    def compile(self):
        import torch

        for name in ("backbone", "backbone_momentum"):
            if hasattr(self.net, name):
                setattr(self.net, name, torch.compile(getattr(self.net, name)))

    def _online(self, x, prediction_head):
        z = self.net.projection_head(self.net.backbone(x).flatten(start_dim=1))
        return z, prediction_head(z)

    def _target(self, x):
        import torch

        with torch.no_grad():
            return self.net.projection_head_momentum(self.net.backbone_momentum(x).flatten(start_dim=1)).detach()

    def loss(self, batch: dict):
        if self.method == "mulan":
            return self._mulan_loss(batch)
        x0, x1 = batch["pixel_values_1"], batch["pixel_values_2"]
        z0, p0 = self._online(x0, self.net.prediction_head)
        z1, p1 = self._online(x1, self.net.prediction_head)
        if self.method == "simsiam":
            return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))
        t0, t1 = self._target(x0), self._target(x1)
        if self.method == "mocov3":
            return self.criterion(p0, t1) + self.criterion(p1, t0)
        return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))

    def _mulan_loss(self, batch: dict):
        import torch

        groups = {"global": batch["global_pixel_values"], "local": batch.get("local_pixel_values"), "cutout": batch.get("cutout_pixel_values")}
        targets = [self._target(view) for view in groups["global"].unbind(1)]
        total = 0.0
        for task, views in groups.items():
            if views is None:
                continue
            predictions = [self._online(view, self.net.prediction_heads[task])[1] for view in views.unbind(1)]
            terms = [self.criterion(p, t) for i, p in enumerate(predictions) for j, t in enumerate(targets) if task != "global" or i != j]
            total = total + torch.stack(terms).mean()
        return total

    def after_step(self, momentum: float = MOMENTUM):
        from lightly.models.utils import update_momentum

        if self.method != "simsiam":
            update_momentum(self.net.backbone, self.net.backbone_momentum, m=momentum)
            update_momentum(self.net.projection_head, self.net.projection_head_momentum, m=momentum)


class OursLoop:
    def __init__(self, method: str, backbone: str, size: int):
        self.model = ours_model(method, backbone, size)
        self.forward = self.model

    def parameters(self):
        return self.model.parameters()

    def to(self, device):
        self.model.to(device)
        return self

    def train(self):
        self.model.train()
        return self

    def compile(self):
        import torch

        self.forward = torch.compile(self.model)

    def loss(self, batch: dict):
        return self.forward(**batch).loss

    def after_step(self):
        if self.model.has_momentum_encoder:
            self.model.update_momentum(MOMENTUM)


def training_batch(method: str, batch_size: int, size: int, device: str, source: str) -> dict:
    """The same view tensors for both libraries, made by our transforms (real augmented views)."""
    import torch
    from harness import collated_views

    from hf_sslviews.views import MultiTaskViewTransform, two_view_transform

    torch.manual_seed(0)
    images = _images(source, batch_size)
    if method == "mulan":
        transform = MultiTaskViewTransform("cifar", n_global=2, n_local=2, n_cutout=1, global_size=size, local_size=max(1, size // 2), cutout_size=size)
    else:
        transform = two_view_transform(size=size, scale=SCALE)
    return collated_views(transform, list(images["image"]), device)


def make_loop(lib: str, method: str, args):
    import torch

    torch.manual_seed(0)
    loop = OursLoop(method, args.backbone, args.image_size) if lib == "ours" else LightlyLoop(method, args.backbone)
    loop.to(args.device).train()
    compiled = False
    if args.compile:
        try:
            loop.compile()
            compiled = True
        except Exception as error:  # noqa: BLE001 - record and carry on uncompiled
            print(f"torch.compile failed for {lib}/{method}: {error}", file=sys.stderr)
    optimizer = torch.optim.AdamW([p for p in loop.parameters() if p.requires_grad], lr=LEARNING_RATE)
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)

    def step(batch):
        with autocast:
            loss = loop.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loop.after_step()
        return loss

    return step, compiled


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, batch, steps: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(batch)
    _sync(device)
    if not torch_isfinite(loss):
        raise RuntimeError("non-finite loss in the benchmark loop")
    return (time.perf_counter() - start) / steps


def torch_isfinite(loss) -> bool:
    import torch

    return bool(torch.isfinite(loss.detach().float()).all())


def bench_train(args) -> list[dict]:
    import torch

    rows = []
    for method in args.methods:
        batch = training_batch(method, args.batch, args.image_size, args.device, args.images)
        steps, compiled = {}, {}
        for lib in ("ours", "lightly"):
            steps[lib], compiled[lib] = make_loop(lib, method, args)
            for _ in range(args.warmup):
                steps[lib](batch)
        best = {"ours": float("inf"), "lightly": float("inf")}
        for round_ in range(args.rounds):
            for lib in (("ours", "lightly") if round_ % 2 == 0 else ("lightly", "ours")):
                best[lib] = min(best[lib], time_steps(steps[lib], batch, args.steps, args.device))
        del steps
        memory = {lib: peak_memory(args, method, lib) for lib in ("ours", "lightly")}
        row = {
            "row": f"train/{method}",
            "unit": "optimizer steps/s",
            "ours": 1.0 / best["ours"],
            "lightly": 1.0 / best["lightly"],
            "ratio": best["lightly"] / best["ours"],
            "ours_peak_memory_mb": memory["ours"],
            "lightly_peak_memory_mb": memory["lightly"],
            # > 1: ours uses less memory.
            "memory_ratio_lightly_over_ours": memory["lightly"] / memory["ours"] if memory["ours"] else None,
            "batch": args.batch,
            "views": {k: list(v.shape) for k, v in batch.items()},
            "compiled": compiled,
            "mismatch": TRAIN_MISMATCHES[method],
        }
        rows.append(row)
        print(
            f"train/{method:<8} ours {row['ours']:7.3f}  lightly {row['lightly']:7.3f} steps/s  ratio {row['ratio']:.2f}  "
            f"peak MB ours {memory['ours']:.0f} lightly {memory['lightly']:.0f}",
            flush=True,
        )
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def peak_memory(args, method: str, lib: str) -> float:
    """Peak memory of a few steps: CUDA max allocated, or on CPU the RSS growth of a fresh process."""
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        batch = training_batch(method, args.batch, args.image_size, args.device, args.images)
        step, _ = make_loop(lib, method, args)
        for _ in range(3):
            step(batch)
        _sync(args.device)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        del step, batch
        return peak
    command = [sys.executable, __file__, "--_memory_child", json.dumps({"method": method, "lib": lib}), *args.child_args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        print(f"memory child {lib}/{method} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_growth_mb"]


def memory_child(args, spec: dict) -> None:
    import lightly  # noqa: F401 - both libraries imported on both sides: same baseline
    from harness import process_memory_mib, reset_peak_memory

    import hf_sslviews  # noqa: F401

    batch = training_batch(spec["method"], args.batch, args.image_size, args.device, args.images)
    # Reset the process's peak RSS (VmHWM) to its current RSS so that the import and data
    # peaks before this point do not hide the model's; ru_maxrss cannot be reset.
    if not reset_peak_memory():
        raise RuntimeError("peak memory needs Linux >= 4.0 (/proc/self/clear_refs)")
    base = process_memory_mib("VmRSS")
    step, _ = make_loop(spec["lib"], spec["method"], args)
    for _ in range(2):
        step(batch)
    peak = process_memory_mib("VmHWM")
    print(json.dumps({"peak_rss_growth_mb": peak - base, "peak_rss_mb": peak, "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# ----------------------------------------------------------------------------- report


def markdown_table(rows: list[dict]) -> str:
    lines = ["| row | unit | hf_sslviews | lightly | ratio (ours / lightly) |", "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['row']} | {row['unit']} | {row['ours']:.3g} | {row['lightly']:.3g} | **{row['ratio']:.2f}x** |")
    memory = [r for r in rows if "ours_peak_memory_mb" in r]
    if memory:
        lines += ["", "| row | peak memory, hf_sslviews (MB) | lightly (MB) | lightly / ours |", "|---|---:|---:|---:|"]
        for row in memory:
            ratio = row["memory_ratio_lightly_over_ours"]
            lines.append(f"| {row['row']} | {row['ours_peak_memory_mb']:.0f} | {row['lightly_peak_memory_mb']:.0f} | {ratio:.2f}x |" if ratio else f"| {row['row']} | - | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the training side (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models where it works (recorded per row)")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="vit_tiny")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", choices=("sample", "random"), default="sample", help="embedded Fashion-MNIST sample or random 40 px RGB images")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers on the data side (the same for both)")
    parser.add_argument("--data_batches", type=int, default=8, help="timed batches per data round")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--skip", nargs="*", choices=("data", "train"), default=[])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest is kept")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per round")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on the training side (0: torch's default)")
    parser.add_argument("--output", default=None)
    parser.add_argument("--_memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.child_args = [
        "--device", args.device, "--backbone", args.backbone, "--image_size", str(args.image_size), "--batch", str(args.batch),
        "--images", args.images, "--threads", str(args.threads),
    ]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_child:
        memory_child(args, json.loads(args._memory_child))
        return

    import lightly
    import timm
    import torchvision

    load_before = _load()
    started = time.time()
    rows = []
    if "data" not in args.skip:
        rows += bench_data(args)
    if "train" not in args.skip:
        rows += bench_train(args)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {
        "suite": "peers",
        "device": device_name,
        "bf16": args.bf16,
        "compile": args.compile,
        "backbone": {"name": args.backbone, **BACKBONES[args.backbone]},
        "image_size": args.image_size,
        "batch": args.batch,
        "images": args.images,
        "optimizer": f"AdamW(lr={LEARNING_RATE}), momentum {MOMENTUM} after each step",
        "timing": f"libraries interleaved in one process, fastest of {args.rounds} rounds ({args.steps} steps or {args.data_batches} batches each)",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__, "lightly": lightly.__version__},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "loadavg_before": load_before,
        "loadavg_after": _load(),
        "wall_seconds": round(time.time() - started, 1),
        "command": "python " + " ".join(sys.argv),
        "data_mismatches": DATA_MISMATCHES,
        "results": rows,
        "markdown": markdown_table(rows),
    }
    suffix = "cuda" if args.device.startswith("cuda") else "cpu"
    if args.backbone != "vit_tiny":
        suffix += f"_{args.backbone}"
    output = Path(args.output or REPO / "benchmarks" / "results" / f"peers_{suffix}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(report["markdown"])
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
