#!/usr/bin/env python
"""Does each method learn, and does each paper's claim hold? The quality protocol.

Every run goes through ``scripts/run_pretrain.py`` exactly as a user would run it; the exported
backbone is then scored here, on features extracted once per split: weighted kNN (k=20, DINO
protocol) and a linear probe (L-BFGS logistic regression, L2 picked on a held-out 20% of
train). Beside them, with the same protocol: raw pixels and the same architecture at random
initialisation (the floors), and the kNN monitor's learning curve of every run.

Suites:

- ``cpu`` (the reference): Debian's full Fashion-MNIST, training on fresh images (60,000 train;
  a budget of a few epochs at most, so no image is seen often), each arm's ``*_fmnist`` preset,
  final kNN and linear probe on the full 60,000 / 10,000; the arms include each paper's
  baseline (see ``CLAIMS``); 3 seeds.
- ``smoke``: the 3,000-image embedded sample, 3 epochs of each method's ``*_tiny`` preset
  (about 141 optimizer steps): what a CI-sized budget shows, which is mostly noise.

The suite is incremental: every finished (arm, seed) is appended to
``benchmarks/results/quality_<suite>.json`` at once (with its curve), and a later call skips
what is there, so a run cut short loses only the run in progress::

    python scripts/benchmark_quality.py --suite cpu --seeds 0 1 2                   # everything
    python scripts/benchmark_quality.py --suite cpu --arms aps mocov3 --seeds 0     # a part
    python scripts/benchmark_quality.py --suite cpu --report_only                   # rewrite md / png

Writes ``quality_<suite>.json`` (every run, floors, per-arm mean and sample standard deviation,
the claims' verdicts), ``quality_<suite>.md`` (the README tables) and ``quality_<suite>.png``
(kNN against optimizer steps and against training time, floors drawn).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METHODS = ("aps", "patchmix", "clsa", "repco", "mulan", "mocov3", "byol", "simsiam")


@dataclass(frozen=True)
class Arm:
    """One configuration of the protocol: a preset plus flags, run once per seed."""

    name: str
    preset: str
    description: str
    flags: tuple[str, ...] = ()
    # "pretrain": scripts/run_pretrain.py; "lightly": scripts/train_lightly_peer.py (lightly's loop, same preset).
    runner: str = "pretrain"
    # (arm, reference): train for as many optimizer steps as fit `arm`'s training time, at the step
    # time `reference` measured with the same seed in this suite (both run on this machine, in turn).
    equal_time: Optional[tuple[str, str]] = None


NO_CLIPPING = ("--max_grad_norm", "0")


def data_order_seed(seed: int) -> int:
    """The seed of a run's data order (``--data_seed``); the views and the weights keep ``--seed``.

    accelerate shuffles epoch ``e`` with ``data_seed + e``, so with ``data_seed = seed`` the runs of
    seeds ``s`` and ``s + 1`` share all but one epoch's order (these runs touch 3 epochs) and their
    spread understates seed noise. ``1000 * seed`` keeps every seed's orders apart for runs under
    1000 epochs. Seed 1's runs were made before this was found, with data order 1 (epochs 1 and 2
    shared with seed 0); they keep it, so that they stay reproducible and are not silently replaced.
    """
    return 1 if seed == 1 else 1000 * seed


# The Fashion-MNIST presets' ViT (28 px, depth 4) with 4 px patches instead of 7 px.
P4_PATCHES = ("--backbone_kwargs", json.dumps({"img_size": 28, "patch_size": 4, "depth": 4}))


def _cpu_arms() -> dict[str, Arm]:
    arms = [Arm(method, f"{method}_fmnist", f"`{method}_fmnist`") for method in METHODS]
    arms += [
        Arm("patchmix_no_mix", "patchmix_fmnist", "PatchMix without mixed images: only its identity term (instance discrimination with label smoothing)",
            ("--config_overrides", json.dumps({"mix_origin_weight": 0.0, "mix_mix_weight": 0.0}))),
        Arm("clsa_mocov2", "clsa_fmnist", "CLSA's MoCo v2 base: key + weak view, no strong views, no DDM",
            ("--config_overrides", json.dumps({"ddm_weight": 0.0}), "--view_kwargs", json.dumps({"strong": []}))),
        Arm("repco_mocov2", "repco_fmnist", "RepCo's MoCo v2 base: the patch term off", ("--config_overrides", json.dumps({"patch_loss_weight": 0.0}))),
        Arm("mocov3_ddm", "mocov3_ddm_fmnist", "MoCo v3 plus CLSA's DDM term on one strong view per image"),
        Arm("mulan_shared", "mulan_fmnist", "MULAN's views with one predictor shared by every view type", ("--config_overrides", json.dumps({"shared_predictor": True}))),
        Arm("mulan_two_views", "mulan_fmnist", "MULAN's framework with its two global views only (no locals, no cutout)",
            ("--view_kwargs", json.dumps({"n_local": 0, "n_cutout": 0}))),
        # APS steps are several times cheaper than MoCo v3's: the same wall time buys more of them.
        Arm("aps_equal_time", "aps_fmnist", "APS with as many optimizer steps as fit MoCo v3's training time (same seed, measured in this suite)",
            equal_time=("mocov3", "aps")),
        # The APS pair again with 4 px patches: a 7 x 7 grid of 49 tokens, 12 kept per view (the
        # 7 px presets keep 4 of 16), closer to the paper's 64 of 256: is the claim's failure the
        # method's or the 4 x 4 grid's?
        Arm("mocov3_p4", "mocov3_fmnist", "MoCo v3 with 4 px patches (49 tokens)", P4_PATCHES),
        Arm("aps_p4", "aps_fmnist", "APS with 4 px patches (12 of 49 tokens per view)", P4_PATCHES),
        Arm("aps_p4_equal_time", "aps_fmnist", "APS with 4 px patches, as many steps as fit `mocov3_p4`'s training time", P4_PATCHES,
            equal_time=("mocov3_p4", "aps_p4")),
    ]
    # The peers: lightly's own heads, losses and momentum update, with our preset's backbone, view
    # tensors, optimizer, schedule and steps (scripts/train_lightly_peer.py).
    peers = (("byol", "BYOL"), ("simsiam", "SimSiam"), ("mocov3", "MoCo-style (NTXent)"))
    arms += [Arm(f"lightly_{method}", f"{method}_fmnist", f"lightly's {name} loop under `{method}_fmnist`", runner="lightly") for method, name in peers]
    # Without gradient clipping on both sides: the fmnist presets clip at 1.0 (transformers'
    # default, which our runs always had); the peer loop first ran without it, and SimSiam was the
    # one method where that seemed to matter. These arms measure it, and keep those first peer runs.
    arms += [Arm(f"lightly_{method}_no_clip", f"{method}_fmnist", f"lightly's {name} loop under `{method}_fmnist`, no gradient clipping", NO_CLIPPING, runner="lightly")
             for method, name in peers]
    arms += [Arm("simsiam_no_clip", "simsiam_fmnist", "`simsiam_fmnist` without gradient clipping", NO_CLIPPING)]
    return {arm.name: arm for arm in arms}


@dataclass(frozen=True)
class Suite:
    dataset: str
    arms: dict[str, Arm]
    train_split: str = "train"
    test_split: str = "test"
    extra: tuple[str, ...] = ()
    monitor: bool = True


SUITES = {
    "cpu": Suite(dataset="fashion_mnist", arms=_cpu_arms()),
    "smoke": Suite(
        dataset="sample",
        arms={method: Arm(method, f"{method}_tiny", f"`{method}_tiny`") for method in METHODS},
        extra=("--num_train_epochs", "3"),
        monitor=False,
    ),
}

# Each paper's central claim as a pair of arms that differ only in what the paper adds.
CLAIMS = (
    ("APS beats MoCo v3 with the same ViT at equal optimizer steps", "aps", "mocov3"),
    ("APS beats MoCo v3 with the same ViT at equal training time", "aps_equal_time", "mocov3"),
    ("APS beats MoCo v3 at equal optimizer steps, 4 px patches (49 tokens)", "aps_p4", "mocov3_p4"),
    ("APS beats MoCo v3 at equal training time, 4 px patches (49 tokens)", "aps_p4_equal_time", "mocov3_p4"),
    ("PatchMix beats its instance-discrimination baseline (no mixing)", "patchmix", "patchmix_no_mix"),
    ("CLSA beats its MoCo v2 base (no strong views, no DDM)", "clsa", "clsa_mocov2"),
    ("The DDM term improves MoCo v3", "mocov3_ddm", "mocov3"),
    ("RepCo beats its MoCo v2 base (patch term off)", "repco", "repco_mocov2"),
    ("MULAN (one predictor per view type) beats one shared predictor on the same views", "mulan", "mulan_shared"),
    ("MULAN beats its framework with two views only", "mulan", "mulan_two_views"),
)

# Ours against lightly under the same protocol: ours must not be worse beyond seed noise.
PARITY = (("byol", "lightly_byol"), ("simsiam", "lightly_simsiam"), ("mocov3", "lightly_mocov3"), ("simsiam_no_clip", "lightly_simsiam_no_clip"))

LINEAR_PROBE_MAX_ITER = 300

# The kNN monitor's fixed labelled subset: the first images of each split.
MONITOR_TRAIN, MONITOR_TEST = 5000, 1000


# --------------------------------------------------------------------------------------------
# Statistics and verdicts
# --------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict], arms: list[str]) -> list[dict]:
    """Per arm, over its finished seeds: mean and sample standard deviation of every score."""
    summary = []
    for arm in arms:
        runs = [row for row in rows if row["arm"] == arm and "error" not in row]
        failed = sum(1 for row in rows if row["arm"] == arm and "error" in row)
        if not runs and not failed:
            continue
        entry = {"arm": arm, "seeds": sorted(row["seed"] for row in runs), "failed_runs": failed}
        for key in ("knn_top1", "linear_top1", "train_seconds", "optimizer_steps"):
            values = [row[key] for row in runs if row.get(key) is not None]
            if values:
                entry[key], entry[key + "_std"] = mean_std(values)
        summary.append(entry)
    return summary


def verdict(method: list[float], baseline: list[float]) -> dict:
    """Whether ``method`` beats ``baseline``: the difference of means against two standard deviations.

    The spread is the larger of the two arms' sample standard deviations over seeds (the seed
    noise of one arm), so "holds" means the method's mean is above the baseline's by more than
    twice the noise, "fails" the reverse, and anything in between is "not resolved" at this
    budget. With fewer than two seeds per arm the noise is unknown: always "not resolved".
    """
    if len(method) < 2 or len(baseline) < 2:
        return {"difference": (statistics.mean(method) - statistics.mean(baseline)) if method and baseline else None, "noise": None, "verdict": "not resolved (fewer than 2 seeds)"}
    difference = statistics.mean(method) - statistics.mean(baseline)
    noise = max(statistics.stdev(method), statistics.stdev(baseline))
    if difference > 2 * noise:
        outcome = "holds"
    elif difference < -2 * noise:
        outcome = "fails"
    else:
        outcome = "not resolved"
    return {"difference": difference, "noise": noise, "verdict": outcome}


def claims_table(rows: list[dict], metric: str = "knn_top1", claims=CLAIMS) -> list[dict]:
    """Every claim whose two arms both have finished runs, with its verdict on ``metric``."""
    table = []
    for claim, method, baseline in claims:
        scores = {arm: [row[metric] for row in rows if row["arm"] == arm and row.get(metric) is not None] for arm in (method, baseline)}
        if not scores[method] or not scores[baseline]:
            continue
        table.append({"claim": claim, "method": method, "baseline": baseline, "metric": metric,
                      "method_seeds": len(scores[method]), "baseline_seeds": len(scores[baseline]), **verdict(scores[method], scores[baseline])})
    return table


# --------------------------------------------------------------------------------------------
# Running and scoring
# --------------------------------------------------------------------------------------------


def run_logged(command: list[str], log: Path) -> float:
    """Run ``command`` with its output in ``log``; return the wall time; raise on failure."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{' '.join(command[1:4])} ... exited with {done.returncode}: {tail[0]} (log: {log})")
    return time.perf_counter() - start


def pretrain_command(suite: Suite, arm: Arm, seed: int, out: Path, monitor_steps: int) -> list[str]:
    if arm.runner == "lightly":
        command = [sys.executable, "scripts/train_lightly_peer.py", "--preset", arm.preset, "--dataset_name", suite.dataset, "--train_split", suite.train_split,
                   "--test_split", suite.test_split, "--output_dir", str(out), "--seed", str(seed), "--data_seed", str(data_order_seed(seed))]
        if monitor_steps:
            command += ["--knn_monitor_steps", str(monitor_steps), "--knn_monitor_max_train_samples", str(MONITOR_TRAIN), "--knn_monitor_max_test_samples", str(MONITOR_TEST)]
        return command + list(arm.flags)
    command = [
        sys.executable, "scripts/run_pretrain.py", "--preset", arm.preset, "--dataset_name", suite.dataset, "--train_split", suite.train_split,
        "--output_dir", str(out), "--save_strategy", "no", "--report_to", "none", "--seed", str(seed), "--data_seed", str(data_order_seed(seed)),
        "--disable_tqdm", "True",
        "--knn_eval", "False", *suite.extra,
    ]
    if suite.monitor and monitor_steps:
        command += [
            "--knn_monitor_steps", str(monitor_steps), "--knn_train_split", suite.train_split, "--knn_test_split", suite.test_split,
            "--knn_monitor_max_train_samples", str(MONITOR_TRAIN), "--knn_monitor_max_test_samples", str(MONITOR_TEST),
            # A second curve; the probe trains on detached features with its own optimizer, so
            # the model trains exactly as without it (runs before it was added have no such curve).
            "--online_linear_probe", "True",
        ]
    return command + list(arm.flags)  # last: an arm's flags override the suite's


def preset_max_steps(preset: str) -> Optional[int]:
    from hf_sslviews.methods import find_preset

    _, found = find_preset(preset)
    steps = found.training.get("max_steps")
    return int(steps) if steps and steps > 0 else None


def equal_time_steps(rows: list[dict], seed: int, target: str, reference: str) -> Optional[int]:
    """Optimizer steps of ``reference``'s setup that take as long as ``target``'s run of this seed took."""
    found = {arm: next((row for row in rows if row["arm"] == arm and row["seed"] == seed and "error" not in row), None) for arm in (target, reference)}
    if None in found.values():
        return None
    seconds_per_step = found[reference]["train_seconds"] / found[reference]["optimizer_steps"]
    return max(1, round(found[target]["train_seconds"] / seconds_per_step))


class Scorer:
    """Loads the labelled splits once and scores features: weighted kNN and a linear probe."""

    def __init__(self, dataset: str, train_split: str, test_split: str):
        from hf_sslviews.data.sources import load_image_dataset

        self.splits = {name: load_image_dataset(dataset_name=dataset, split=split, label_column="label") for name, split in (("train", train_split), ("test", test_split))}
        self._pixels: dict = {}

    def pixels(self, name: str, transform, limit: Optional[int] = None):
        """The evaluation transform's tensors of a split, made once and kept (every arm shares them)."""
        import torch

        key = (name, repr(transform))
        if key not in self._pixels:
            data = self.splits[name]
            self._pixels[key] = (torch.stack([transform(image) for image in data["image"]]), torch.tensor(data["label"]))
        images, labels = self._pixels[key]
        return (images[:limit], labels[:limit]) if limit else (images, labels)

    def features(self, model, transform, limits: Optional[dict] = None):
        """``extract_features`` of each split, on pixels transformed once for all runs (the same numbers, minutes faster)."""
        import torch

        from hf_sslviews.evaluation.features import embed

        model.eval()
        out = {}
        for name in self.splits:
            images, labels = self.pixels(name, transform, (limits or {}).get(name))
            with torch.inference_mode():
                feats = torch.cat([embed(model, batch).float() for batch in images.split(1024)])
            out[name] = (feats, labels)
        return out

    @staticmethod
    def score(features: dict, linear: bool = True) -> dict:
        import torch

        from hf_sslviews.evaluation.knn import knn_accuracy
        from hf_sslviews.evaluation.linear_probe import fit_linear_probe

        (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
        knn = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=10, k=20, temperature=0.07)
        scores = {"knn_top1": knn["top1"], "knn_top5": knn["top5"]}
        if linear:
            # float32 and at most 300 L-BFGS iterations: with the library's float64 / 1000-iteration
            # default the sweep on 60k raw-pixel vectors ran past 5 minutes on 2 cores, per run.
            classifier, info = fit_linear_probe(train_x, train_y, num_classes=10, max_iter=LINEAR_PROBE_MAX_ITER, dtype=torch.float32)
            scores["linear_top1"] = (classifier.logits(test_x).argmax(dim=1) == test_y).double().mean().item()
            scores["linear_weight_decay"] = info["weight_decay"]
        return scores

    def backbone(self, backbone_dir: Path, random_init: bool = False, seed: int = 0, limits: Optional[dict] = None, linear: bool = True) -> dict:
        from hf_sslviews.evaluation.features import eval_transform_for, load_backbone

        model = load_backbone(str(backbone_dir), random_init=random_init, seed=seed)
        return self.score(self.features(model, eval_transform_for(str(backbone_dir)), limits), linear=linear)

    def raw_pixels(self, limits: Optional[dict] = None, linear: bool = True) -> dict:
        import numpy as np
        import torch

        def pixels(image):  # flattened grey levels in [0, 1]: kNN normalises, the probe standardises
            return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32).ravel() / 255.0)

        out = {}
        for name, data in self.splits.items():
            if limits and limits.get(name):
                data = data.select(range(min(limits[name], len(data))))
            out[name] = (torch.stack([pixels(image) for image in data["image"]]), torch.tensor(data["label"]))
        return self.score(out, linear=linear)


def architecture_key(backbone_dir: Path) -> str:
    config = json.loads((backbone_dir / "config.json").read_text())
    return f"{config.get('architecture')} {json.dumps(config.get('model_args') or {}, sort_keys=True)} {config['pretrained_cfg'].get('input_size')}"


def random_init_floor(report: dict, scorer: Scorer, backbone_dir: Path, seed: int, monitor_limits: dict) -> None:
    """The same architecture at random initialisation (seeded like the run), scored once per (architecture, seed)."""
    key = architecture_key(backbone_dir)
    floors = report["floors"].setdefault("random_init", {}).setdefault(key, {})
    if str(seed) in floors:
        return
    from hf_sslviews.evaluation.features import eval_transform_for, load_backbone

    features = scorer.features(load_backbone(str(backbone_dir), random_init=True, seed=seed), eval_transform_for(str(backbone_dir)))
    # The monitor's subset is the first images of each split: a slice of the same features.
    subset = {name: (x[: monitor_limits[name]], y[: monitor_limits[name]]) for name, (x, y) in features.items()}
    floors[str(seed)] = {**scorer.score(features), "monitor_knn_top1": scorer.score(subset, linear=False)["knn_top1"]}


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


def load_report(suite_name: str, suite: Suite) -> dict:
    path = RESULTS / f"quality_{suite_name}.json"
    if path.exists():
        report = json.loads(path.read_text())
        if report.get("protocol_version") == PROTOCOL_VERSION:
            return report
        raise SystemExit(f"{path} was written by another version of this protocol; move it away to start afresh")
    return {"suite": suite_name, "protocol_version": PROTOCOL_VERSION, "dataset": suite.dataset, "floors": {}, "results": []}


PROTOCOL_VERSION = 2


def finish_report(report: dict, suite: Suite, suite_name: str) -> None:
    from benchmark_harness import machine_info, write_report

    arms = list(suite.arms)
    report["machine"] = machine_info()
    report["protocols"] = {
        "knn": "weighted kNN, k=20, cosine, T=0.07 (DINO), full train split as memory, full test split",
        "linear": f"L-BFGS logistic regression (float32, at most {LINEAR_PROBE_MAX_ITER} iterations) on standardised frozen features, L2 from {{1e-5..1e-1}} picked on a held-out 20% of train",
        "monitor": f"weighted kNN k=20 every ~10% of the run: memory = first {MONITOR_TRAIN} train images, queries = first {MONITOR_TEST} test images",
        "claims": "difference of means vs two times the larger sample standard deviation over seeds (holds / fails / not resolved)",
    }
    report["summary"] = summarise(report["results"], arms)
    report["claims"] = {metric: claims_table(report["results"], metric) for metric in ("knn_top1", "linear_top1")}
    parity = tuple((f"hf_sslviews' {ours} against lightly's", ours, peer) for ours, peer in PARITY)
    report["parity"] = claims_table(report["results"], "knn_top1", parity)
    report["results"].sort(key=lambda row: (arms.index(row["arm"]) if row["arm"] in arms else len(arms), row["seed"]))
    write_report(report, RESULTS / f"quality_{suite_name}.json")
    (RESULTS / f"quality_{suite_name}.md").write_text(markdown(report, suite))
    plot(report, suite, RESULTS / f"quality_{suite_name}.png")


def _pct(entry: dict, key: str) -> str:
    if key not in entry:
        return "—"
    spread = f" ± {100 * entry[key + '_std']:.1f}" if len(entry["seeds"]) > 1 else ""
    return f"{100 * entry[key]:.1f}{spread}"


def floor_values(report: dict) -> dict:
    """Raw pixels as measured; the random-init floor per architecture (mean, std over its inits).

    Architectures are not pooled: a 4 px-patch ViT starts far below a 7 px-patch one, and each arm
    is judged against the untrained version of its own network. Each floor carries a ``label``.
    """
    out = {"raw_pixels": report["floors"].get("raw_pixels"), "random_init": {}}
    architectures = report["floors"].get("random_init", {})
    for key, inits in architectures.items():
        entries = list(inits.values())
        floor = {name: mean_std([entry[name] for entry in entries]) for name in ("knn_top1", "linear_top1", "monitor_knn_top1") if all(name in entry for entry in entries)}
        patch = re.search(r'"patch_size": (\d+)', key)
        floor["label"] = "random init" + (f", {patch.group(1)} px patches" if len(architectures) > 1 and patch else "")
        floor["inits"] = len(entries)
        out["random_init"][key] = floor
    return out


def markdown(report: dict, suite: Suite) -> str:
    """The results table (mean ± sample std over seeds), the floors, and the claims."""
    lines = [
        "| arm | kNN top-1 | linear top-1 | seeds | optimizer steps | train time (s) | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in report["summary"]:
        arm = suite.arms.get(entry["arm"])
        seeds = ", ".join(map(str, entry["seeds"])) + (f" ({entry['failed_runs']} failed)" if entry["failed_runs"] else "")
        steps = f"{entry['optimizer_steps']:.0f}" if "optimizer_steps" in entry else "—"
        seconds = f"{entry['train_seconds']:.0f}" if "train_seconds" in entry else "—"
        lines.append(f"| {entry['arm']} | {_pct(entry, 'knn_top1')} | {_pct(entry, 'linear_top1')} | {seeds} | {steps} | {seconds} | {arm.description if arm else ''} |")
    floors = floor_values(report)
    for floor in floors["random_init"].values():
        knn, linear = floor["knn_top1"], floor.get("linear_top1", (math.nan, 0))
        lines.append(f"| {floor['label']} (floor) | {100 * knn[0]:.1f} ± {100 * knn[1]:.1f} | {100 * linear[0]:.1f} ± {100 * linear[1]:.1f} | {floor['inits']} inits | 0 | 0 | the same ViT, untrained |")
    if floors.get("raw_pixels"):
        raw = floors["raw_pixels"]
        lines.append(f"| raw pixels (floor) | {100 * raw['knn_top1']:.1f} | {100 * raw['linear_top1']:.1f} | | | | 784 grey levels, no network |" if "linear_top1" in raw else f"| raw pixels (floor) | {100 * raw['knn_top1']:.1f} | | | | | 784 grey levels |")
    claims = report.get("claims", {})
    if any(claims.values()):
        lines += ["", "| claim | metric | method − baseline (points) | 2 × noise | seeds | verdict |", "|---|---|---|---|---|---|"]
        for metric, table in claims.items():
            for claim in table:
                noise = f"{200 * claim['noise']:.1f}" if claim["noise"] is not None else "—"
                lines.append(
                    f"| {claim['claim']} (`{claim['method']}` vs `{claim['baseline']}`) | {metric.replace('_top1', '')} | "
                    f"{100 * claim['difference']:+.1f} | {noise} | {claim['method_seeds']} / {claim['baseline_seeds']} | {claim['verdict']} |"
                )
    if report.get("parity"):
        outcome = {"holds": "ours better", "fails": "ours worse", "not resolved": "equal within seed noise"}
        lines += ["", "| peer parity (kNN top-1) | ours − lightly (points) | 2 × noise | seeds | outcome |", "|---|---|---|---|---|"]
        for row in report["parity"]:
            noise = f"{200 * row['noise']:.1f}" if row["noise"] is not None else "—"
            lines.append(f"| `{row['method']}` vs `{row['baseline']}` | {100 * row['difference']:+.1f} | {noise} | {row['method_seeds']} / {row['baseline_seeds']} | "
                         f"{outcome.get(row['verdict'], row['verdict'])} |")
    return "\n".join(lines) + "\n"


def mean_curve(rows: list[dict], metric: str = "knn_top1") -> tuple[list[float], list[float], list[float]]:
    """The monitor's curve of ``metric`` averaged over the seeds that logged it, at the steps they all have: (steps, seconds, values)."""
    curves = [row["curve"] for row in rows if row.get("curve") and all(metric in point for point in row["curve"])]
    if not curves:
        return [], [], []
    steps = sorted(set.intersection(*(set(point["step"] for point in curve) for curve in curves)))
    by_step = [{point["step"]: point for point in curve} for curve in curves]
    seconds = [statistics.mean(curve[step]["train_seconds"] for curve in by_step) for step in steps]
    values = [statistics.mean(curve[step][metric] for curve in by_step) for step in steps]
    return steps, seconds, values


def plot(report: dict, suite: Suite, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [row for row in report["results"] if "error" not in row]
    # A third panel once runs carry the online linear probe's curve (--online_linear_probe).
    probe = any("online_linear_top1" in point for row in finished for point in row.get("curve") or [])
    figure, axes = plt.subplots(1, 3 if probe else 2, figsize=(18 if probe else 12, 4.5), dpi=100)
    axes[1].sharey(axes[0])  # the probe's panel keeps its own scale: its accuracies are another measure
    colours = plt.get_cmap("tab20").colors
    drawn = False
    for index, arm in enumerate(suite.arms):
        runs = [row for row in finished if row["arm"] == arm]
        steps, seconds, knn = mean_curve(runs)
        if not steps:
            continue
        drawn = True
        style = dict(color=colours[index % len(colours)], marker="o", markersize=3, linewidth=1.2, linestyle="-" if arm in METHODS else "--", label=arm)
        axes[0].plot(steps, [100 * v for v in knn], **style)
        axes[1].plot(seconds, [100 * v for v in knn], **style)
        probe_steps, _, linear = mean_curve(runs, "online_linear_top1")
        if probe and probe_steps:
            axes[2].plot(probe_steps, [100 * v for v in linear], **style)
    floors = floor_values(report)
    for axis in axes[:2]:  # kNN floors: they do not bound the online linear probe
        for index, floor in enumerate(floors["random_init"].values()):  # every architecture's floor, colours cycling
            colour = ("red", "darkorange", "purple")[index % 3]
            if "monitor_knn_top1" in floor:
                axis.axhline(100 * floor["monitor_knn_top1"][0], color=colour, linestyle=":", linewidth=1, label=floor["label"])
        if floors.get("raw_pixels") and "monitor_knn_top1" in floors["raw_pixels"]:
            axis.axhline(100 * floors["raw_pixels"]["monitor_knn_top1"], color="gray", linestyle="--", linewidth=1, label="raw pixels")
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("training time (s, monitor excluded)")
    axes[0].set_ylabel(f"kNN top-1 (%), {MONITOR_TRAIN} / {MONITOR_TEST} monitor subset")
    axes[0].set_title(f"{report['dataset']}: kNN monitor, mean over seeds")
    if probe:
        axes[2].set_xlabel("optimizer steps")
        axes[2].set_ylabel(f"online linear probe top-1 (%), {MONITOR_TEST} monitor test images")
        axes[2].set_title("online linear probe, mean over the seeds that had it")
    if drawn:
        axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--arms", nargs="+", default=None, help="arms to run (default: every arm of the suite)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one run per seed and arm; runs already in the report are skipped")
    parser.add_argument("--redo", action="store_true", help="run (arm, seed) pairs again even if the report has them")
    parser.add_argument("--report_only", action="store_true", help="only rewrite the markdown table and the plot from the JSON")
    parser.add_argument("--work_dir", default="/tmp/hf_sslviews_quality", help="where runs and logs go (not committed)")
    args = parser.parse_args()

    suite = SUITES[args.suite]
    arms = args.arms or list(suite.arms)
    unknown = sorted(set(arms) - set(suite.arms))
    if unknown:
        raise SystemExit(f"unknown arms {unknown} for suite {args.suite}; choose from {sorted(suite.arms)}")
    report = load_report(args.suite, suite)
    if args.report_only:
        finish_report(report, suite, args.suite)
        print(markdown(report, suite))
        return

    work = Path(args.work_dir) / args.suite
    work.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(suite.dataset, suite.train_split, suite.test_split)
    monitor_limits = {"train": MONITOR_TRAIN, "test": MONITOR_TEST}
    if "raw_pixels" not in report["floors"]:
        report["floors"]["raw_pixels"] = {**scorer.raw_pixels(), "monitor_knn_top1": scorer.raw_pixels(monitor_limits, linear=False)["knn_top1"]}
        finish_report(report, suite, args.suite)

    # Seed-major: a cut-short session leaves every arm with the same number of seeds.
    for seed in args.seeds:
        for name in arms:
            done = [row for row in report["results"] if row["arm"] == name and row["seed"] == seed]
            if done and not args.redo and "error" not in done[0]:
                continue
            report["results"] = [row for row in report["results"] if not (row["arm"] == name and row["seed"] == seed)]
            arm = suite.arms[name]
            out = work / f"{name}_seed{seed}"
            shutil.rmtree(out, ignore_errors=True)
            steps = preset_max_steps(arm.preset)
            if arm.equal_time:
                steps = equal_time_steps(report["results"], seed, *arm.equal_time)
                if steps is None:
                    print(json.dumps({"arm": name, "seed": seed, "skipped": f"needs finished {' and '.join(arm.equal_time)} runs of seed {seed}"}), flush=True)
                    continue
            command = pretrain_command(suite, arm, seed, out, max(1, steps // 10) if steps else 0)
            if arm.equal_time:
                command += ["--max_steps", str(steps)]
            load_before = os.getloadavg()[0]
            try:
                wall = run_logged(command, work / f"{name}_seed{seed}.log")
                results = json.loads((out / "results.json").read_text())
                row = {
                    "arm": name, "seed": seed, "data_seed": data_order_seed(seed), "preset": arm.preset, "flags": list(arm.flags),
                    "optimizer_steps": results["train"].get("total_steps") or steps,
                    "train_seconds": round(results["train"]["train_runtime"], 1), "wall_seconds": round(wall, 1),
                    # A 1-minute load above ~2 on the 2-core machine means something else ran beside it.
                    "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    **scorer.backbone(out / "backbone"),
                    "curve": results.get("knn_monitor", []),
                }
                random_init_floor(report, scorer, out / "backbone", seed, monitor_limits)
            except (RuntimeError, KeyError, FileNotFoundError, ValueError) as error:
                row = {"arm": name, "seed": seed, "preset": arm.preset, "error": str(error)}
            report["results"].append(row)
            finish_report(report, suite, args.suite)
            print(json.dumps({key: value for key, value in row.items() if key != "curve"}), flush=True)
    print(markdown(report, suite))


if __name__ == "__main__":
    main()
