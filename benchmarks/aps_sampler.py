"""Throughput of the APS view transform on one CPU core.

Measures, with ``torch.set_num_threads(1)``:
- image pairs per second through ``APSViewTransform.__call__`` (decode of an in-memory PIL
  image, two crops, batched photometric ops, sparse + selective sampling) at 32 px (CIFAR
  preset, 16 x 16 grid) and 224 px (ImageNet preset, 14 x 14 grid);
- the same pairs through the per-crop ``ViewAugmentation`` path (``normalize(photometric(crop))``),
  for comparison;
- the patch sampler alone (sparse chunks + coverage + selective draw), per pair.

Writes ``benchmarks/results/aps_sampler_cpu.json`` and prints a summary.

    python benchmarks/aps_sampler.py [--batch_size 256] [--repeats 5] [--output PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from harness import best_rate, machine_info, random_images, write_report
from PIL import Image

from hf_sslviews.views.aps import APSViewTransform, patch_coverage, selective_patch_indices, sparse_patch_chunks


def _images(count: int, side: int) -> list[Image.Image]:
    return random_images(count, side)


def bench_transform(preset: str, source_side: int, batch_size: int, repeats: int) -> dict:
    views = APSViewTransform.from_settings(preset)
    batch = {"image": _images(batch_size, source_side)}
    aps_rate = best_rate(lambda: views(batch), batch_size, repeats)

    augment = views.augment
    tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous() for image in batch["image"]]

    def per_crop():
        for image in tensors:
            for _ in range(2):
                crop, _ = augment.geometric(image)
                augment.normalize(augment.photometric(crop))

    per_crop_rate = best_rate(per_crop, batch_size, repeats)

    grid = views.grid
    boxes = torch.tensor([[[0, 0, source_side, source_side, 0], [source_side // 4, 0, source_side // 2, source_side // 2, 1]]] * batch_size, dtype=torch.float32)

    def sampler():
        indices_1 = sparse_patch_chunks(grid, grid, views.ratio, views.num_chunks, batch_shape=(batch_size,))
        coverage = patch_coverage(boxes[:, 0], boxes[:, 1], indices_1, grid)
        selective_patch_indices(coverage, views.num_patches, views.power)

    sampler_rate = best_rate(sampler, batch_size, repeats)
    return {
        "preset": preset,
        "crop_size": views.size,
        "grid": grid,
        "source_image_side": source_side,
        "batch_size": batch_size,
        "aps_transform_pairs_per_s": round(aps_rate, 1),
        "per_crop_view_augmentation_pairs_per_s": round(per_crop_rate, 1),
        "sampler_only_us_per_pair": round(1e6 / sampler_rate, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=256, help="images per transform call (as a DataLoader batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the fastest is kept")
    parser.add_argument("--output", default="benchmarks/results/aps_sampler_cpu.json", help="where the JSON goes")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = [
        bench_transform("cifar", 32, args.batch_size, args.repeats),
        bench_transform("imagenet", 256, max(8, args.batch_size // 8), args.repeats),
    ]
    report = {
        "benchmark": "APS view transform, single CPU thread",
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
        "results": results,
    }
    output = write_report(report, args.output)
    for row in results:
        print(
            f"{row['preset']:>8} {row['crop_size']:>3} px (grid {row['grid']}x{row['grid']}): "
            f"APS transform {row['aps_transform_pairs_per_s']:8.1f} pairs/s/core | "
            f"per-crop ViewAugmentation {row['per_crop_view_augmentation_pairs_per_s']:7.1f} pairs/s/core | "
            f"sampler alone {row['sampler_only_us_per_pair']:6.1f} us/pair"
        )
    print(f"written to {output}")


if __name__ == "__main__":
    main()
