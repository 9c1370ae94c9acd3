"""CPU cost of MULAN's extra views: step time and peak memory per view configuration, and the
throughput of the view sampler.

Model side: the ``mulan_tiny`` preset's network (4-block ViT-Tiny, 32 px globals / cutouts
with 4 px patches, 16 px locals, MULAN-BYOL heads 512 -> 128) at batch 32 (the preset trains
with 64), one full training step per iteration (forward, backward, grad-clip, AdamW step, EMA
update of the target), for

- ``2 globals``: the two-view baseline's views (global task only);
- ``+ 2 locals``: adds the local task;
- ``+ 2 locals + 1 cutout``: MULAN's full set.

Step times: the three models are built in one process and timed round by round (one step of
each per round, the fastest round kept), so the load of a shared machine falls on every
configuration alike; the 1-minute load average is recorded. Peak memory: each configuration
runs two steps in its own subprocess, so that the peak resident memory (``ru_maxrss``) is its
alone; ``peak_step_memory_mb`` is that peak minus the resident memory just before the first
step (model, optimizer and inputs built).

Sampler side: ``MultiTaskViewTransform`` views per second on one CPU thread ("cifar" preset on
32 px images, "imagenet" preset on 256 px images) for the same view configurations.

Writes ``benchmarks/results/mulan_cpu.json``; takes about two to three minutes on 2 idle cores.

    python benchmarks/mulan.py [--steps 3] [--batch_size 32] [--threads 2] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from harness import machine_info, process_memory_mib, random_images, write_report

VIEW_CONFIGS = {
    "2 globals": dict(n_local=0, n_cutout=0),
    "+ 2 locals": dict(n_local=2, n_cutout=0),
    "+ 2 locals + 1 cutout": dict(n_local=2, n_cutout=1),
}


def build_step(name: str, batch_size: int):
    """Model, optimizer and inputs of one view configuration; returns the step function."""
    import torch

    from hf_sslviews.methods.common import TINY_BACKBONE
    from hf_sslviews.modeling.mulan import MulanConfig, MulanForPreTraining

    torch.manual_seed(0)
    counts = VIEW_CONFIGS[name]
    config = MulanConfig(**TINY_BACKBONE, framework="byol", projector_hidden_dim=512, projector_dim=128, predictor_hidden_dim=512, momentum_base=0.99)
    model = MulanForPreTraining(config).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.98), weight_decay=0.05)
    batch = {"global_pixel_values": torch.randn(batch_size, 2, 3, 32, 32)}
    if counts["n_local"]:
        batch["local_pixel_values"] = torch.randn(batch_size, counts["n_local"], 3, 16, 16)
    if counts["n_cutout"]:
        batch["cutout_pixel_values"] = torch.randn(batch_size, counts["n_cutout"], 3, 32, 32)

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_momentum(0.99)

    return step


def peak_memory(name: str, batch_size: int, threads: int) -> dict:
    """Run in a fresh process: peak RSS of two steps of one configuration."""
    import torch

    torch.set_num_threads(threads)
    step = build_step(name, batch_size)
    rss_before = process_memory_mib("VmRSS")
    step()  # allocates gradients and optimizer state
    step()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"peak_rss_mb": round(peak_mb, 1), "peak_step_memory_mb": round(peak_mb - rss_before, 1)}


def step_times(batch_size: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of every configuration, interleaved round by round so that the load of
    a shared machine falls on all configurations alike."""
    steps = {name: build_step(name, batch_size) for name in VIEW_CONFIGS}
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in VIEW_CONFIGS}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def bench_sampler(preset: str, source_side: int, batch_size: int, repeats: int) -> list[dict]:

    from hf_sslviews.views.mulan import MultiTaskViewTransform

    batch = {"image": random_images(batch_size, source_side)}
    rows = []
    for name, counts in VIEW_CONFIGS.items():
        transform = MultiTaskViewTransform(preset, **counts)
        transform(batch)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            transform(batch)
            best = min(best, time.perf_counter() - start)
        views_per_image = 2 + counts["n_local"] + counts["n_cutout"]
        rows.append(
            {
                "preset": preset,
                "views": name,
                "source_image_side": source_side,
                "batch_size": batch_size,
                "images_per_s": round(batch_size / best, 1),
                "views_per_s": round(batch_size * views_per_image / best, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed rounds (one step of every view configuration each), after one warm-up step")
    parser.add_argument("--batch_size", type=int, default=32, help="images per step (mulan_tiny trains with 64; 32 keeps the run short)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the model steps")
    parser.add_argument("--repeats", type=int, default=2, help="timed sampler runs; the fastest is kept")
    parser.add_argument("--output", default="benchmarks/results/mulan_cpu.json", help="where the JSON goes")
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._one is not None:  # child process: peak memory of one view configuration
        print(json.dumps(peak_memory(args._one, args.batch_size, args.threads)))
        return

    import torch

    memory = {}
    for name in VIEW_CONFIGS:
        cmd = [sys.executable, __file__, "--_one", name, "--batch_size", str(args.batch_size), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        memory[name] = json.loads(out.strip().splitlines()[-1])

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    times = step_times(args.batch_size, args.steps)
    load_after = os.getloadavg()[0]
    steps = []
    for name, counts in VIEW_CONFIGS.items():
        best, median = min(times[name]), statistics.median(times[name])
        views_per_image = 2 + counts["n_local"] + counts["n_cutout"]
        steps.append(
            {
                "views": name,
                "n_global": 2,
                **counts,
                "batch_size": args.batch_size,
                "step_time_ms_min": round(1000 * best, 1),
                "step_time_ms_median": round(1000 * median, 1),
                "relative_step_time": round(best / min(times["2 globals"]), 2),
                "views_per_s": round(args.batch_size * views_per_image / best, 1),
                **memory[name],
            }
        )
        row = steps[-1]
        print(f"{name:>24}: {row['step_time_ms_min']:7.1f} ms/step (x{row['relative_step_time']}), peak +{row['peak_step_memory_mb']:.0f} MB (rss {row['peak_rss_mb']:.0f} MB)")

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    sampler = bench_sampler("cifar", 32, 128, args.repeats) + bench_sampler("imagenet", 256, 8, args.repeats)
    for row in sampler:
        print(f"sampler {row['preset']:>8} {row['views']:>24}: {row['views_per_s']:8.1f} views/s/core ({row['images_per_s']:.1f} images/s)")

    report = {
        "benchmark": "MULAN CPU step time and memory per view configuration; MultiTaskViewTransform throughput",
        "model": "mulan_tiny network: MULAN-BYOL, vit_tiny_patch16_224 depth 4, patch 4, globals/cutout 32 px, locals 16 px, heads 512->128",
        "torch_threads_model": args.threads,
        "torch_threads_sampler": 1,
        "machine": machine_info(),
        "load_average_1min_during_steps": [round(load_before, 2), round(load_after, 2)],
        "steps": steps,
        "sampler": sampler,
    }
    output = write_report(report, args.output)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
