"""CLSA on CPU: strong-augmentation throughput and training-step time against MoCo v3.

Measures:
- views per second on one CPU thread (``torch.set_num_threads(1)``: images/s/core) of the
  strong view (MoCo v2 pipeline + RandAugment, 5 ops with p=0.5) against the weak view (MoCo v2
  pipeline alone) at 96 px (scale (0.086, 0.429)) and 224 px (scale (0.2, 1)), from a 256 px
  colour photo (scikit-image's astronaut, or a random image without scikit-image); plus the
  whole per-image ``CLSAViewTransform`` of the Single and Multi presets (decode included).
- the time of one training step (forward, backward, SGD step, momentum update) of CLSA-Single
  and CLSA-Multi against MoCo v3 with two views, on the same small backbone (the 4-block
  ViT-Tiny of the CPU presets, 32 px views: CLSA's ``single_cifar`` / ``multi_cifar`` sizes),
  with random pixels.

Writes ``benchmarks/results/clsa_cpu.json`` and prints a summary (about 2 minutes).

    python benchmarks/clsa.py [--repeats 3] [--batch_size 32] [--output PATH]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from harness import best_rate, machine_info, write_report
from PIL import Image

from hf_sslviews.modeling.clsa import CLSAConfig, CLSAForPreTraining
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.views.augment import ViewAugmentation
from hf_sslviews.views.clsa import CLSA_SETTINGS, CLSAViewTransform
from hf_sslviews.views.decode import pil_to_uint8_tensor

SIZES = {96: (0.086, 0.429), 224: (0.2, 1.0)}
TINY_VIT = dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 4, "depth": 4}, image_size=32)


def _photo() -> Image.Image:
    try:
        from skimage import data

        image = Image.fromarray(data.astronaut())
    except ImportError:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    return image.resize((256, 256), Image.BILINEAR)


def augmentation_throughput(repeats: int, images: int) -> list[dict]:
    photo = _photo()
    tensor = pil_to_uint8_tensor(photo)
    specs = tuple((size, scale) for size, scale in SIZES.items())
    transform = CLSAViewTransform(key=specs[-1], weak=specs, strong=specs)
    results = []
    for index, (size, scale) in enumerate(specs):
        weak = ViewAugmentation.from_settings("mocov2", size=size, scale=scale)
        weak_rate = best_rate(lambda: [weak(tensor) for _ in range(images)], images, repeats)
        strong_rate = best_rate(lambda: [transform.strong_view(tensor, index) for _ in range(images)], images, repeats)
        results.append(
            {
                "size": size,
                "scale": list(scale),
                "weak_views_per_s_per_core": round(weak_rate, 1),
                "strong_views_per_s_per_core": round(strong_rate, 1),
                "strong_over_weak_time": round(weak_rate / strong_rate, 2),
            }
        )
    for preset in ("single", "multi"):
        views = CLSAViewTransform(preset)
        batch = {"image": [photo] * 8}
        rate = best_rate(lambda: views(batch), 8, repeats)
        settings = CLSA_SETTINGS[preset]
        results.append({"transform": f"CLSAViewTransform({preset!r})", "views_per_image": 1 + len(settings["weak"]) + len(settings["strong"]), "images_per_s_per_core": round(rate, 2)})
    return results


def _clsa_inputs(preset: str, batch: int) -> dict:
    settings = CLSA_SETTINGS[preset]
    g = torch.Generator().manual_seed(0)
    return {
        "key_pixel_values": torch.randn(batch, 3, settings["key"][0], settings["key"][0], generator=g),
        "weak_pixel_values": [torch.randn(batch, 3, s, s, generator=g) for s, _ in settings["weak"]],
        "strong_pixel_values": [torch.randn(batch, 3, s, s, generator=g) for s, _ in settings["strong"]],
    }


def step_time(repeats: int, batch: int, steps: int) -> list[dict]:
    heads = dict(projector_hidden_dim=512, projector_dim=128)
    torch.manual_seed(0)
    models = {
        "mocov3_two_view": (MoCoV3ForPreTraining(MoCoV3Config(**TINY_VIT, **heads)), {"pixel_values_1": torch.randn(batch, 3, 32, 32), "pixel_values_2": torch.randn(batch, 3, 32, 32)}),
        "clsa_single": (CLSAForPreTraining(CLSAConfig(**TINY_VIT, **heads, queue_size=batch * 32)), _clsa_inputs("single_cifar", batch)),
        "clsa_multi": (CLSAForPreTraining(CLSAConfig(**TINY_VIT, **heads, queue_size=batch * 32)), _clsa_inputs("multi_cifar", batch)),
    }
    results = []
    for name, (model, inputs) in models.items():
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=1e-4)

        def run():
            for _ in range(steps):
                loss = model(**inputs).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                model.update_momentum(0.99)

        rate = best_rate(run, steps, repeats)  # steps per second
        pixels = sum(int(v.numel()) for v in inputs.values() if isinstance(v, torch.Tensor)) + sum(int(t.numel()) for v in inputs.values() if isinstance(v, list) for t in v)
        results.append({"model": name, "batch_size": batch, "step_ms": round(1000 / rate, 1), "input_pixels_per_step": pixels})
    base = results[0]["step_ms"]
    for entry in results:
        entry["relative_to_mocov3"] = round(entry["step_ms"] / base, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the fastest is kept")
    parser.add_argument("--images", type=int, default=32, help="views per timed augmentation run")
    parser.add_argument("--batch_size", type=int, default=32, help="batch of the training-step measurement")
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed run")
    parser.add_argument("--output", default="benchmarks/results/clsa_cpu.json", help="where the JSON results go")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = time.perf_counter()
    report = {
        "benchmark": "CLSA strong vs weak augmentation, and training step vs MoCo v3, single CPU thread",
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
        "augmentation": augmentation_throughput(args.repeats, args.images),
        "train_step": step_time(args.repeats, args.batch_size, args.steps),
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    output = write_report(report, args.output)
    for entry in report["augmentation"] + report["train_step"]:
        print(entry)
    print(f"written to {output} in {report['seconds']} s")


if __name__ == "__main__":
    main()
