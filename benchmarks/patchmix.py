"""Training-step cost of PatchMix against MoCo v3 on the same small ViT and views, on CPU.

Both methods get the tiny presets' backbone (4-block ViT-Tiny, 4 px patches at 32 px: 64 tokens)
and heads (512 -> 128), the same batch of BYOL / MoCo v3 asymmetric views (built once with
``two_view_transform`` from random images), AdamW, and one momentum update per step. Measured:

- ``step_s``: the fastest of ``--repeats`` optimizer steps (forward, backward, AdamW, EMA) after
  one warm-up step, the three methods interleaved in one process so that a shared machine's
  changing load hits them alike; ``step_cpu_s``: the CPU time (user + sys) of the fastest-CPU
  step, which counts the work done rather than the waiting.
- ``peak_rss_mib``: peak resident memory of a process running that method alone, over two steps
  (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; ``ru_maxrss`` where that
  is unavailable).
- ``step_rss_increase_mib``: that peak minus the resident memory before the first step
  (activations, gradients, optimizer state).

Variants: ``mocov3``; ``patchmix`` with a momentum encoder (the S/B recipes, same target network
as MoCo v3); ``patchmix_no_momentum`` (the ViT-T / tiny recipe: keys from the online encoder).
PatchMix runs 2 online + 3 key forwards per step (x1, mix(x2) / x1, x2, mix(x1)); MoCo v3 runs
2 + 2.

Writes ``benchmarks/results/patchmix_cpu.json`` and prints the ratios.

    python benchmarks/patchmix.py [--batch_size 32] [--repeats 5] [--threads 2] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import machine_info, process_memory_mib, random_images, reset_peak_memory, write_report

VARIANTS = ("mocov3", "patchmix", "patchmix_no_momentum")


def _views(batch_size: int):
    import torch

    from hf_sslviews.views import two_view_transform

    torch.manual_seed(0)
    rows = two_view_transform(size=32, scale=(0.2, 1.0))({"image": random_images(batch_size, 40)})
    return torch.stack(rows["pixel_values_1"]), torch.stack(rows["pixel_values_2"])


def _build(variant: str):
    import torch

    from hf_sslviews.methods.common import TINY_BACKBONE
    from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
    from hf_sslviews.modeling.patchmix import PatchMixConfig, PatchMixForPreTraining

    torch.manual_seed(0)
    heads = dict(projector_hidden_dim=512, projector_dim=128)
    if variant == "mocov3":
        model = MoCoV3ForPreTraining(MoCoV3Config(**TINY_BACKBONE, **heads))
    else:
        model = PatchMixForPreTraining(PatchMixConfig(**TINY_BACKBONE, **heads, use_momentum_encoder=variant == "patchmix"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(x1, x2):
        loss = model(pixel_values_1=x1, pixel_values_2=x2).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_momentum(0.99)

    return step


def memory_worker(variant: str, batch_size: int, threads: int) -> dict:
    """Peak memory of one method alone in this process: warm-up step, then one measured step."""
    import torch

    torch.set_num_threads(threads)
    x1, x2 = _views(batch_size)
    step = _build(variant)
    rss_before = process_memory_mib("VmRSS")
    reset = reset_peak_memory()
    step(x1, x2)  # allocates the optimizer state
    step(x1, x2)
    peak = process_memory_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "variant": variant,
        "peak_rss_mib": round(peak, 1),
        "step_rss_increase_mib": round(peak - rss_before, 1) if rss_before is not None else None,
        "peak_measure": "VmHWM after clear_refs" if reset else "ru_maxrss (includes model build)",
    }


def time_all(batch_size: int, repeats: int, threads: int) -> dict:
    """Step times of all variants, interleaved (A, B, C, A, B, C, ...) so that changing load on a
    shared machine hits every method alike; the fastest step of each is kept. CPU time (user +
    sys of this process) is reported too: it counts the work done, not the waiting."""
    import torch

    torch.set_num_threads(threads)
    x1, x2 = _views(batch_size)
    steps = {variant: _build(variant) for variant in VARIANTS}
    for step in steps.values():
        step(x1, x2)  # warm-up
    wall: dict = {v: [] for v in VARIANTS}
    cpu: dict = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant, step in steps.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step(x1, x2)
            wall[variant].append(time.perf_counter() - start_wall)
            cpu[variant].append(time.process_time() - start_cpu)
    return {v: {"step_s": round(min(wall[v]), 4), "median_step_s": round(sorted(wall[v])[len(wall[v]) // 2], 4), "step_cpu_s": round(min(cpu[v]), 4)} for v in VARIANTS}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "patchmix_cpu.json"))
    parser.add_argument("--memory_worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.batch_size, args.threads)))
        return {}

    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--memory_worker", variant, "--batch_size", str(args.batch_size), "--threads", str(args.threads)]
        completed = subprocess.run(command, check=True, capture_output=True, text=True)
        results[variant] = json.loads(completed.stdout.strip().splitlines()[-1])
    for variant, times in time_all(args.batch_size, args.repeats, args.threads).items():
        results[variant].update(times)
        print(results[variant], flush=True)

    base = results["mocov3"]
    report = {
        "benchmark": "PatchMix vs MoCo v3 training step, CPU: 4-block ViT-Tiny/4 at 32 px (64 tokens), heads 512->128, same views, AdamW + EMA",
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "machine": machine_info(),
        "results": list(results.values()),
        "ratios_vs_mocov3": {
            variant: {
                "step_time": round(results[variant]["step_s"] / base["step_s"], 3),
                "step_cpu_time": round(results[variant]["step_cpu_s"] / base["step_cpu_s"], 3),
                "peak_rss": round(results[variant]["peak_rss_mib"] / base["peak_rss_mib"], 3),
                "step_rss_increase": round(results[variant]["step_rss_increase_mib"] / base["step_rss_increase_mib"], 3)
                if results[variant]["step_rss_increase_mib"] and base["step_rss_increase_mib"]
                else None,
            }
            for variant in VARIANTS
            if variant != "mocov3"
        },
    }
    output = write_report(report, args.output)
    print(json.dumps(report["ratios_vs_mocov3"], indent=2))
    print(f"written to {output}")
    return report


if __name__ == "__main__":
    main()
