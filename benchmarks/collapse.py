"""Where does an embedding collapse? RankMe and spread at each stage of a pretraining model.

For each finished pretraining run (the output folder of ``scripts/run_pretrain.py``, holding the
full model with its heads), the same training images (Fashion-MNIST ``train[58000:60000]``, never
the test split) go through the model at evaluation time, with every token, and three stages are
measured: the backbone's pooled feature (what is exported and probed), the projector's output and
the predictor's output (what the loss sees). Per stage: RankMe (effective rank, Garrido et al.
2023), the mean per-dimension standard deviation of the L2-normalised features (SimSiam's collapse
statistic: ``1 / sqrt(D)`` for a spread-out embedding, 0 for a collapsed one) and the share of
the variance in the first principal direction.

    python benchmarks/collapse.py /path/to/aps_p4_seed1 /path/to/mocov3_p4_seed1 [--images 2000]

Writes ``benchmarks/results/collapse_cpu.json`` (one entry per run folder, replaced when measured again).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import machine_info, write_report

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "benchmarks" / "results" / "collapse_cpu.json"


def spread(features: torch.Tensor) -> dict[str, float]:
    """RankMe, the normalised per-dimension std and the top principal direction's share of ``[N, D]`` features."""
    from hf_sslviews.evaluation.embedding_quality import rankme

    features = features.double()
    normalised = F.normalize(features, dim=1)
    centred = features - features.mean(0)
    singular = torch.linalg.svdvals(centred)
    variance = singular.pow(2)
    return {
        "dim": features.shape[1],
        "rankme": round(rankme(features), 3),
        "normalised_std": round(float(normalised.std(0).mean()), 5),
        "spread_std": round(1 / math.sqrt(features.shape[1]), 5),
        "top_direction_share": round(float(variance[0] / variance.sum()), 4),
    }


@torch.no_grad()
def stages(model, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The backbone's pooled features and what the heads make of them."""
    features = model.backbone(pixel_values)
    out = {"backbone": features}
    if hasattr(model, "projector"):
        out["projector"] = model.projector(features)
        if hasattr(model, "predictor"):
            out["predictor"] = model.predictor(out["projector"])
    return out


def measure(run_dir: Path, images: int) -> dict:
    from PIL import Image

    from hf_sslviews.data.sources import load_fashion_mnist_arrays
    from hf_sslviews.evaluation.monitor import eval_transform_for_config
    from hf_sslviews.publish.loading import load_pretraining_model

    model = load_pretraining_model(str(run_dir)).eval()
    transform = eval_transform_for_config(model.config)
    arrays, _ = load_fashion_mnist_arrays("train")
    batch = torch.stack([transform(Image.fromarray(image).convert("RGB")) for image in arrays[-images:]])
    results = {name: [] for name in ("backbone", "projector", "predictor")}
    for start in range(0, len(batch), 250):
        for name, value in stages(model, batch[start : start + 250]).items():
            results[name].append(value)
    return {"run": run_dir.name, "method": model.config.model_type, "images": images,
            "stages": {name: spread(torch.cat(parts)) for name, parts in results.items() if parts}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="pretraining output folders (config.json and model.safetensors of the full model)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    import json

    output = Path(args.output)
    previous = json.loads(output.read_text()).get("results", []) if output.is_file() else []
    measured = [measure(Path(run), args.images) for run in args.runs]
    names = {entry["run"] for entry in measured}
    report = {"machine": machine_info(), "results": [entry for entry in previous if entry["run"] not in names] + measured}
    write_report(report, output)
    for entry in measured:
        for name, values in entry["stages"].items():
            print(f"{entry['run']:<28} {name:<10} d={values['dim']:<4} RankMe {values['rankme']:>7.2f}  std {values['normalised_std']:.4f} "
                  f"(spread {values['spread_std']:.4f})  top direction {100 * values['top_direction_share']:.1f}%")


if __name__ == "__main__":
    main()
