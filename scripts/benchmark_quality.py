#!/usr/bin/env python
"""The scoreboard: every method and baseline, same backbone, data and epochs, kNN and linear top-1.

Each method runs its small preset (a 4-block ViT-Tiny on 32 px crops, patch 4) through
``scripts/run_pretrain.py`` on Debian's Fashion-MNIST (or the embedded sample), then the exported
backbone is scored by weighted kNN (k=20, DINO protocol) and a linear probe (L-BFGS logistic
regression on frozen features). Beside them: raw-pixel kNN with the same protocol and the same
architecture at random initialisation, the floors every SSL result must clear.

    python scripts/benchmark_quality.py --suite cpu        # minutes per method on 2 cores, a subset
    python scripts/benchmark_quality.py --suite cpu --seeds 1 2 --add_to_existing   # more seeds
    python scripts/benchmark_quality.py --suite gpu        # full 60k / 10k, longer schedule (GPU)

Writes ``benchmarks/results/quality_<suite>.json`` (every run, and per method the mean and sample
standard deviation over seeds), ``quality_<suite>.md`` (the README table) and
``quality_<suite>.png`` (kNN top-1 against training time per method, with the seed spread).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hf_sslviews.benchmarking import machine_info, write_report

REPO = Path(__file__).resolve().parents[1]
METHODS = ("aps", "patchmix", "clsa", "repco", "mulan", "mocov3", "byol", "simsiam")

SUITES = {
    # The embedded 3,000 / 1,000 sample, 3 data epochs: about 2-5 minutes per method on 2 cores.
    "cpu": dict(dataset="sample", train_samples=None, test_samples=None, epochs=3, extra=[]),
    # Full Fashion-MNIST 60k / 10k, 50 epochs, bf16: for a lent GPU.
    "gpu": dict(dataset="fashion_mnist", train_samples=None, test_samples=None, epochs=50, extra=["--bf16", "True", "--per_device_train_batch_size", "256", "--dataloader_num_workers", "8"]),
}


def run(command: list[str], log: Path) -> float:
    """Run ``command``, tee its output to ``log``, return the wall time; raise on failure."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed; see {log}")
    return time.perf_counter() - start


def raw_pixel_knn(dataset: str, train_samples, test_samples, k: int = 20) -> dict:
    """Weighted kNN on raw pixels (flattened, L2-normalised), the same protocol as for features."""
    import numpy as np
    import torch

    from hf_sslviews.data import load_image_dataset
    from hf_sslviews.evaluation.knn import knn_accuracy

    def arrays(split, limit):
        data = load_image_dataset(dataset_name=dataset, split=split, label_column="label", max_samples=limit)
        pixels = np.stack([np.asarray(image.convert("L"), dtype=np.float32).ravel() / 255.0 for image in data["image"]])
        return torch.from_numpy(pixels), torch.tensor(data["label"])

    train_x, train_y = arrays("train", train_samples)
    test_x, test_y = arrays("test", test_samples)
    return knn_accuracy(train_x, train_y, test_x, test_y, num_classes=10, k=k, temperature=0.07)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=None, help="override the suite's data epochs")
    parser.add_argument("--work_dir", default="/tmp/hf_sslviews_quality", help="where runs and logs go (not committed)")
    parser.add_argument("--skip_linear_probe", action="store_true")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed; the table shows mean and standard deviation")
    parser.add_argument("--add_to_existing", action="store_true", help="keep the (method, seed) runs already in quality_<suite>.json that this call does not redo")
    args = parser.parse_args()

    suite = SUITES[args.suite]
    epochs = args.epochs or suite["epochs"]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    limits = []
    if suite["train_samples"]:
        limits += ["--max_train_samples", str(suite["train_samples"]), "--knn_max_train_samples", str(suite["train_samples"])]
    if suite["test_samples"]:
        limits += ["--knn_max_test_samples", str(suite["test_samples"])]

    results_dir = REPO / "benchmarks" / "results"
    rows = []
    if args.add_to_existing:
        existing_path = results_dir / f"quality_{args.suite}.json"
        if not existing_path.exists():
            raise SystemExit(f"--add_to_existing: {existing_path} does not exist; run without it first")
        existing = json.loads(existing_path.read_text())
        if existing["data_epochs"] != epochs:
            raise SystemExit(f"the existing report ran {existing['data_epochs']} epochs, this call {epochs}: they cannot share a table")
        redo = {(method, seed) for method in args.methods for seed in args.seeds}
        # Reports written before --seeds ran seed 0 only.
        rows = [{**row, "seed": row.get("seed", 0)} for row in existing["results"]]
        rows = [row for row in rows if (row["method"], row["seed"]) not in redo]
    for method, seed in [(method, seed) for method in args.methods for seed in args.seeds]:
        out = work / f"{method}_seed{seed}"
        shutil.rmtree(out, ignore_errors=True)
        command = [
            sys.executable, "scripts/run_pretrain.py", "--preset", f"{method}_tiny", "--dataset_name", suite["dataset"],
            "--num_train_epochs", str(epochs), "--output_dir", str(out), "--save_strategy", "no",
            "--report_to", "none", "--seed", str(seed), *limits, *suite["extra"],
        ]
        try:
            seconds = run(command, work / f"{method}_seed{seed}.log")
            results = json.loads((out / "results.json").read_text())
            row = {
                "method": method,
                "seed": seed,
                "train_seconds": round(results["train"]["train_runtime"], 1),
                "wall_seconds": round(seconds, 1),
                "optimizer_steps": results["train"].get("total_steps") or None,
                "knn_top1": results["knn"]["pretrained"]["top1"],
                "knn_top5": results["knn"]["pretrained"]["top5"],
                "random_init_knn_top1": results["knn"]["random_init"]["top1"],
            }
            if not args.skip_linear_probe:
                # The random-init backbone does not depend on the pretraining seed: probe it once per method.
                probed = any(r["method"] == method and r.get("random_init_linear_top1") is not None for r in rows)
                probes = [("linear", [])] + ([] if probed else [("random_init_linear", ["--random_init", "True"])])
                for name, extra in probes:
                    probe_file = work / f"{method}_seed{seed}_{name}.json"
                    run([sys.executable, "scripts/run_linear_probe.py", "--model_name_or_path", str(out / "backbone"), "--dataset_name", suite["dataset"], "--output_file", str(probe_file), *extra], work / f"{method}_seed{seed}_{name}.log")
                    probe = json.loads(probe_file.read_text())
                    row[f"{name}_top1"] = probe["linear_probe"]["top1"]
        except (RuntimeError, KeyError, FileNotFoundError) as error:
            row = {"method": method, "seed": seed, "error": str(error)}
        rows.append(row)
        print(json.dumps(row))

    floors = {"raw_pixel_knn": raw_pixel_knn(suite["dataset"], suite["train_samples"], suite["test_samples"])}
    report = {
        "suite": args.suite,
        "dataset": suite["dataset"],
        "data_epochs": epochs,
        "backbone": "vit_tiny_patch16_224, depth 4, 32 px, patch 4 (each method's *_tiny preset)",
        "protocols": {"knn": "weighted kNN, k=20, cosine, T=0.07 (DINO)", "linear": "L-BFGS logistic regression on frozen, standardised features"},
        "device": "cpu" if args.suite == "cpu" else "gpu",
        "machine": machine_info(),
        "floors": floors,
        "results": sorted(rows, key=lambda row: (METHODS.index(row["method"]), row.get("seed", 0))),
        "summary": summarise(rows),
    }
    write_report(report, results_dir / f"quality_{args.suite}.json")
    (results_dir / f"quality_{args.suite}.md").write_text(markdown_table(report))
    plot(report, results_dir / f"quality_{args.suite}.png")
    print(markdown_table(report))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict]) -> list[dict]:
    """Per method, over its seeds: mean and sample standard deviation of every score."""
    summary = []
    for method in METHODS:
        runs = [row for row in rows if row["method"] == method and "error" not in row]
        failed = sum(1 for row in rows if row["method"] == method and "error" in row)
        if not runs:
            if failed:
                summary.append({"method": method, "seeds": [], "failed_runs": failed})
            continue
        entry = {"method": method, "seeds": sorted(row.get("seed", 0) for row in runs), "failed_runs": failed}
        for key in ("knn_top1", "linear_top1", "train_seconds", "random_init_knn_top1", "random_init_linear_top1"):
            values = [row[key] for row in runs if row.get(key) is not None]
            if values:
                entry[key], entry[key + "_std"] = _mean_std(values)
        summary.append(entry)
    return summary


def markdown_table(report: dict) -> str:
    """Mean (and standard deviation over seeds, when there are several) per method."""

    def pct(entry: dict, key: str) -> str:
        if key not in entry:
            return "—"
        spread = f" ± {100 * entry[key + '_std']:.1f}" if len(entry["seeds"]) > 1 else ""
        return f"{100 * entry[key]:.1f}{spread}"

    lines = [
        "| method | kNN top-1 | linear top-1 | seeds | train time (s) | random-init kNN | random-init linear |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in report["summary"]:
        if not entry["seeds"]:
            lines.append(f"| {entry['method']} | failed | | | | | |")
            continue
        seeds = ", ".join(str(seed) for seed in entry["seeds"]) + (f" ({entry['failed_runs']} failed)" if entry["failed_runs"] else "")
        lines.append(
            f"| {entry['method']} | {pct(entry, 'knn_top1')} | {pct(entry, 'linear_top1')} | {seeds} | {entry['train_seconds']:.0f} | "
            f"{100 * entry['random_init_knn_top1']:.1f} | {pct({**entry, 'seeds': [0]}, 'random_init_linear_top1')} |"
        )
    lines.append(f"| raw pixels (floor) | {100 * report['floors']['raw_pixel_knn']['top1']:.1f} | | | | | |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for entry in report["summary"]:
        if not entry["seeds"]:
            continue
        x, y, err = entry["train_seconds"], 100 * entry["knn_top1"], 100 * entry["knn_top1_std"]
        axis.errorbar(x, y, yerr=err if len(entry["seeds"]) > 1 else None, fmt="o", markersize=6, capsize=3)
        axis.annotate(entry["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.axhline(100 * report["floors"]["raw_pixel_knn"]["top1"], color="gray", linestyle="--", linewidth=1, label="raw pixels (kNN)")
    random_init = [entry["random_init_knn_top1"] for entry in report["summary"] if entry["seeds"]]
    if random_init:
        axis.axhline(100 * sum(random_init) / len(random_init), color="red", linestyle=":", linewidth=1, label="random init (kNN, mean)")
    axis.set_xlabel("pretraining time (s)")
    axis.set_ylabel("kNN top-1 (%)")
    axis.set_title(f"{report['dataset']}, {report['data_epochs']} epochs, ViT-Tiny/4 (4 blocks), {report['device']}")
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
