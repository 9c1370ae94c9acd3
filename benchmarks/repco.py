"""CPU training-step time of RepCo against global-only (MoCo v2-style) training, same backbone.

For each backbone, two models from one seed differ only in ``patch_loss_weight``: RepCo
(mu = 1: dense head, pair selection, patch InfoNCE) and global-only (mu = 0: no dense head, the
symmetrised MoCo v2 objective with the same queue and momentum encoder). A step is
forward + backward + AdamW step + momentum update, on random 32 px views. The two models' steps are
interleaved and the median of the timed steps is kept (the machine is shared), after a warm-up
step. Also timed: pair selection alone.

Backbones: the ``repco_tiny`` ViT (4 blocks, 4 px patches: 8x8 cells) and a small ResNet-18
(one block per stage, output stride 8: 4x4 cells at 32 px).

Writes ``benchmarks/results/repco_cpu.json`` and prints a summary (about a minute on 2 cores).

    python benchmarks/repco.py [--batch_size 16] [--steps 8] [--threads 1] [--output PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from harness import machine_info, write_report

from hf_sslviews.modeling.repco import RepCoConfig, RepCoForPreTraining, select_patch_pairs

BACKBONES = {
    "vit_tiny_4blocks_p4_32px": dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 4, "depth": 4}, image_size=32),
    "resnet18_1block_os8_32px": dict(backbone="resnet18", backbone_kwargs={"layers": [1, 1, 1, 1], "output_stride": 8}, image_size=32),
}
HEADS = dict(projector_hidden_dim=512, projector_dim=128, dense_hidden_dim=512, dense_dim=128, queue_size=4096, shuffle_bn_splits=2)


def _train_step(model: RepCoForPreTraining, optimizer: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x1, x2).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.update_momentum(0.99)
    return time.perf_counter() - start


def interleaved_step_times(configs: dict[str, RepCoConfig], batch_size: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Step times of several models, their steps interleaved so that load from other processes
    on a shared machine falls on all of them alike."""
    models, optimizers = {}, {}
    for label, config in configs.items():
        torch.manual_seed(0)
        models[label] = RepCoForPreTraining(config).train()
        optimizers[label] = torch.optim.AdamW([p for p in models[label].parameters() if p.requires_grad], lr=1e-4)
    x1, x2 = torch.randn(batch_size, 3, 32, 32), torch.randn(batch_size, 3, 32, 32)
    times: dict[str, list[float]] = {label: [] for label in configs}
    for i in range(warmup + steps):
        for label in configs:
            elapsed = _train_step(models[label], optimizers[label], x1, x2)
            if i >= warmup:
                times[label].append(elapsed)
    return times


def selection_time(batch_size: int, cells: int, width: int, grid: tuple[int, int], repeats: int = 20) -> float:
    features = torch.randn(batch_size, cells, width)
    select_patch_pairs(features, grid)
    best = float("inf")
    for _ in range(repeats):  # fastest run: the least disturbed by other load
        start = time.perf_counter()
        select_patch_pairs(features, grid)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=16, help="images per view per step")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", default="benchmarks/results/repco_cpu.json", help="where the JSON goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    for name, backbone in BACKBONES.items():
        row = {"backbone": name, "batch_size": args.batch_size}
        configs = {label: RepCoConfig(**backbone, **HEADS, patch_loss_weight=weight) for label, weight in (("global_only", 0.0), ("repco", 1.0))}
        for label, times in interleaved_step_times(configs, args.batch_size, args.steps, args.warmup).items():
            row[f"{label}_step_ms_median"] = round(1000 * statistics.median(times), 1)
            row[f"{label}_step_ms_min"] = round(1000 * min(times), 1)
        row["repco_over_global_only"] = round(row["repco_step_ms_median"] / row["global_only_step_ms_median"], 3)
        model = RepCoForPreTraining(RepCoConfig(**backbone, **HEADS))
        with torch.no_grad():
            _, cells = model.encode_keys(torch.randn(2, 3, 32, 32))
        grid_side = int(round(cells.shape[1] ** 0.5))
        row["cells_per_view"] = cells.shape[1]
        row["pair_selection_ms_per_view"] = round(1000 * selection_time(args.batch_size, cells.shape[1], cells.shape[2], (grid_side, grid_side)), 2)
        results.append(row)
        print(
            f"{name:>26}: global-only {row['global_only_step_ms_median']:7.1f} ms/step | RepCo {row['repco_step_ms_median']:7.1f} ms/step "
            f"(x{row['repco_over_global_only']}) | pair selection {row['pair_selection_ms_per_view']:.2f} ms/view ({row['cells_per_view']} cells)"
        )

    report = {
        "benchmark": "RepCo vs global-only (patch_loss_weight 0) training step on CPU, same backbone, random 32 px views",
        "step": "forward (both views, online + momentum) + backward + AdamW step + momentum update",
        "heads": HEADS,
        "torch_threads": torch.get_num_threads(),
        "timed_steps": args.steps,
        "note": "steps of the two models interleaved; median and min over the timed steps",
        "machine": machine_info(),
        "results": results,
    }
    output = write_report(report, args.output)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
