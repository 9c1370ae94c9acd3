#!/usr/bin/env python
"""Optimizer steps per second and peak memory, per method and backbone.

Each case runs in its own subprocess so that its peak memory (CUDA max allocated on a GPU,
peak RSS on CPU) is its own. Inputs are real views of random images made by the method's own
view transform and collator, so shapes and token counts are what training sees.

    python benchmarks/throughput.py                      # default cases, CPU
    python benchmarks/throughput.py --suite aps          # APS vs MoCo v3 (issue 3 claim)
    python benchmarks/throughput.py --device cuda --bf16 # on a GPU

Results: benchmarks/results/throughput_<suite>_<device>.json (plain JSON) and a printed table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import collated_views, machine_info, random_images, write_report

REPO = Path(__file__).resolve().parents[1]

VIT_TINY_32_P4 = {"backbone": "vit_tiny_patch16_224", "backbone_kwargs": {"img_size": 32, "patch_size": 4, "depth": 4}, "image_size": 32}
SUITES = {
    # The three baselines and what is registered beside them, on the CPU default backbone.
    "baselines": [
        {"method": m, "config": {**VIT_TINY_32_P4, **heads}, "batch": 64}
        for m, heads in (
            ("mocov3", {"projector_hidden_dim": 512, "projector_dim": 128}),
            ("byol", {"projector_hidden_dim": 512, "projector_dim": 128}),
            ("simsiam", {"projector_dim": 256, "predictor_hidden_dim": 64}),
        )
    ],
    # APS against MoCo v3 with full-token views on the same CIFAR ViT (32 px, patch 2, 256 tokens).
    "aps": [
        {"method": method, "config": {"backbone": name, "backbone_kwargs": {"img_size": 32, "patch_size": 2}, "image_size": 32}, "batch": 32, "label": f"{method}-{size}"}
        for size, name in (("tiny", "vit_tiny_patch16_224"), ("small", "vit_small_patch16_224"))
        for method in ("mocov3", "aps")
    ],
}


def _child(case: dict, device: str, bf16: bool, warmup: int, steps: int) -> dict:
    import torch

    import hf_sslviews

    torch.manual_seed(0)
    recipe = hf_sslviews.get_recipe(case["method"])
    config = recipe.config_class(**case["config"])
    model = recipe.model_class(config).to(device).train()
    views = recipe.build_views(config, **case.get("views", {}))
    batch = collated_views(views, random_images(case["batch"], 40), device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def step():
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if getattr(model, "has_momentum_encoder", False):
            model.update_momentum(0.99)

    for _ in range(warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {"steps_per_second": steps / elapsed, "seconds_per_step": elapsed / steps, "batch": case["batch"]}
    if device.startswith("cuda"):
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="baselines")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--output", default=None)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(_child(json.loads(args._child), args.device, args.bf16, args.warmup, args.steps)))
        return

    rows = []
    for case in SUITES[args.suite]:
        label = case.get("label", case["method"])
        command = [sys.executable, __file__, "--_child", json.dumps(case), "--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.bf16:
            command.append("--bf16")
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(f"{label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            rows.append({"case": label, "error": done.stderr[-500:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"case": label, "method": case["method"], "config": case["config"], **result})
        memory = result.get("peak_memory_mb", result.get("peak_rss_mb"))
        print(f"{label:<16} {result['steps_per_second']:8.3f} steps/s  {result['seconds_per_step'] * 1000:9.1f} ms/step  {memory:9.0f} MB peak")

    device_name = args.device
    if args.device.startswith("cuda"):
        import torch

        device_name = torch.cuda.get_device_name()
    report = {
        "suite": args.suite,
        "device": device_name,
        "bf16": args.bf16,
        "threads": args.threads or "default",
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "results": rows,
    }
    if args.suite == "aps":
        report["ratios"] = _aps_ratios(rows)
        for name, ratio in report["ratios"].items():
            print(f"{name}: APS is {ratio['speedup']:.2f}x faster per step, memory ratio {ratio['memory_ratio']:.2f}")
    output = write_report(report, args.output or REPO / "benchmarks" / "results" / f"throughput_{args.suite}_{'cuda' if args.device.startswith('cuda') else 'cpu'}.json")
    print(f"written to {output}")


def _aps_ratios(rows: list[dict]) -> dict:
    by_label = {row["case"]: row for row in rows if "error" not in row}
    ratios = {}
    for size in ("tiny", "small"):
        aps, moco = by_label.get(f"aps-{size}"), by_label.get(f"mocov3-{size}")
        if aps and moco:
            memory_key = "peak_memory_mb" if "peak_memory_mb" in aps else "peak_rss_mb"
            ratios[f"vit_{size}"] = {"speedup": moco["seconds_per_step"] / aps["seconds_per_step"], "memory_ratio": aps[memory_key] / moco[memory_key]}
    return ratios


if __name__ == "__main__":
    main()
