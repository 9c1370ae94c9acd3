#!/usr/bin/env python
"""Model FLOPs utilisation (MFU) of a pretraining step: ViT-S/16 at 224 px, BYOL and APS (issue 10).

MFU = (FLOPs of one optimizer step) x (steps per second) / (the device's dense bf16 peak).

- FLOPs are counted, not estimated: one forward + backward of the step runs under
  ``torch.utils.flop_counter.FlopCounterMode`` with the math attention kernel (so attention's
  matrix products are counted on every device), in the same precision and with the same inputs
  as the timed steps. They are the FLOPs the step executes: APS's token subsets and the CLS-only
  last ViT block (``modeling/common/vit_readout.py``) are counted as run, not as a full-token
  model would need. The AdamW update and the EMA (a few FLOPs per parameter) are not counted.
- Steps are timed as training runs them: bf16 autocast, timm's SDPA attention, fused AdamW on
  CUDA, optionally ``channels_last`` (only the patch-embedding convolution of a ViT sees it) and
  ``torch.compile``.
- Inputs are the method's own views of random 256 px images, collated as in training.

    python benchmarks/mfu.py --device cuda --bf16                # BYOL and APS, ViT-S/16
    python benchmarks/mfu.py --device cuda --bf16 --compile
    python benchmarks/mfu.py --device cpu --peak_tflops 1 ...     # smoke run, any machine

Results: ``benchmarks/results/mfu_<device>.json`` and a printed table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import collated_views, machine_info, random_images, write_report

REPO = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. The first
# name fragment found in torch.cuda.get_device_name() wins, so the specific ones come first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)

# The ViT-S/16 at 224 px of the papers' ImageNet recipes; heads at the methods' defaults.
CASES = {
    "byol": dict(config=dict(backbone="vit_small_patch16_224", backbone_kwargs={}, image_size=224), views={}),
    "aps": dict(config=dict(backbone="vit_small_patch16_224", backbone_kwargs={}, image_size=224), views=dict(ratio=0.25, scale=(0.15, 1.0))),
}


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named ``device_name`` (None when the name is not known)."""
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment.lower() in device_name.lower():
            return tflops
    return None


def mfu(flops_per_step: float, seconds_per_step: float, peak_flops: float) -> float:
    """Achieved FLOP/s over peak FLOP/s."""
    if seconds_per_step <= 0 or peak_flops <= 0:
        raise ValueError(f"seconds_per_step and peak_flops must be positive, got {seconds_per_step}, {peak_flops}")
    return flops_per_step / seconds_per_step / peak_flops


def count_step_flops(loss_fn) -> int:
    """FLOPs of ``loss_fn()`` and its backward, attention computed by the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss_fn().backward()
    return int(counter.get_total_flops())


def make_batch(method: str, config, views_kwargs: dict, batch_size: int, device: str) -> dict:
    import hf_sslviews

    views = hf_sslviews.get_recipe(method).build_views(config, **views_kwargs)
    side = max(256, config.image_size + config.image_size // 7)
    return collated_views(views, random_images(batch_size, side), device)


def bench_case(method: str, args) -> dict:
    import torch

    import hf_sslviews

    torch.manual_seed(0)
    case = CASES[method]
    recipe = hf_sslviews.get_recipe(method)
    config_fields = {**case["config"], **(args.config_overrides or {})}
    config = recipe.config_class(**config_fields)
    model = recipe.model_class(config).to(args.device).train()
    batch = make_batch(method, config, case["views"], args.batch, args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        batch = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.ndim == 4 and v.is_floating_point() else v for k, v in batch.items()}
    on_cuda = args.device.startswith("cuda")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=on_cuda)
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)

    def loss(module=forward):
        with autocast:
            return module(**batch).loss

    flops = count_step_flops(lambda: loss(model))  # eager: compiling changes kernels, not the math
    optimizer.zero_grad(set_to_none=True)

    def step():
        loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if getattr(model, "has_momentum_encoder", False):
            model.update_momentum(0.996)

    def sync():
        if on_cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    peak = args.peak_tflops * 1e12
    row = {
        "method": method,
        "config": config_fields,
        "views": {k: list(v) if isinstance(v, tuple) else v for k, v in case["views"].items()},
        "batch": args.batch,
        "input_shapes": {k: list(v.shape) for k, v in batch.items() if torch.is_tensor(v)},
        "flops_per_step": flops,
        "seconds_per_step": seconds,
        "images_per_second": args.batch / seconds,
        "achieved_tflops": flops / seconds / 1e12,
        "mfu": mfu(flops, seconds, peak),
    }
    if on_cuda:
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--methods", nargs="+", choices=sorted(CASES), default=["byol", "aps"])
    parser.add_argument("--batch", type=int, default=256, help="images per step")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the setting the MFU target is for)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak_tflops", type=float, default=None, help="the device's peak (default: the bf16 data-sheet value of a known GPU)")
    parser.add_argument("--config_overrides", type=lambda text: __import__("json").loads(text), default=None, help="JSON dict of config fields (smoke runs: a smaller backbone)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import torch

    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    if args.peak_tflops is None:
        args.peak_tflops = peak_tflops(device_name)
        if args.peak_tflops is None:
            parser.error(f"no known bf16 peak for {device_name!r}: pass --peak_tflops (the data sheet's dense bf16 TFLOP/s)")
    rows = []
    for method in args.methods:
        row = bench_case(method, args)
        rows.append(row)
        print(f"{method:<6} {row['seconds_per_step'] * 1000:9.1f} ms/step  {row['images_per_second']:8.1f} img/s  "
              f"{row['achieved_tflops']:7.1f} TFLOP/s  MFU {100 * row['mfu']:5.1f}%", flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    report = {
        "device": device_name,
        "peak_tflops": args.peak_tflops,
        "bf16": args.bf16,
        "compile": args.compile,
        "channels_last": args.channels_last,
        "fused_adamw": args.device.startswith("cuda"),
        "machine": machine_info(),
        "command": "python " + " ".join(sys.argv),
        "results": rows,
    }
    tag = "cpu" if device_name == "cpu" else device_name.replace("NVIDIA ", "").split()[0].lower()
    path = write_report(report, args.output or REPO / "benchmarks" / "results" / f"mfu_{tag}.json")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
