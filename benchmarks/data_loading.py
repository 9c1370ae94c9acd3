"""The data path at ImageNet scale: decoded-and-augmented views per second per core, from JPEG files.

    python benchmarks/data_loading.py --suite imagenet            # ~1,000 JPEGs made once, then every pipeline
    python benchmarks/data_loading.py --suite imagenet --sets pair --rounds 5
    python benchmarks/data_loading.py --suite imagenet --sets pair mulan --size_multiplier 8 \
        --num_files 200 --data_dir /tmp/camera_jpegs --libraries ours ours_full_decode torchvision lightly \
        --batches 3 --rounds 2 --output benchmarks/results/data_large_photos_cpu.json   # camera-sized photos

A folder of real photos at ImageNet-like sizes (about 500 x 375, JPEG quality 90) is made from the
photographs scikit-image ships, re-encoded with varied crops and sizes (generated, not committed;
``--data_dir``). Every pipeline reads it through a ``DataLoader`` with one worker per core
(``--workers``) and is timed over the same number of batches, the pipelines interleaved round by
round so that a change of machine load hits all of them alike:

- ``ours``: ``datasets`` image folder (``load_image_dataset(train_dir=...)``, images undecoded) ->
  ``with_transform(<the method's views>)`` -> :class:`~hf_sslviews.data.ViewCollator`, the path
  ``run_pretrain.py`` uses, with the views of each method's ImageNet preset.
- ``torchvision``: the per-image pipeline written the usual way: a list of files, ``PIL.Image.open``
  in ``__getitem__``, one ``torchvision.transforms.v2.Compose`` per view on the PIL image
  (RandomResizedCrop bicubic, flip, ColorJitter, grayscale, GaussianBlur, solarize, to tensor,
  normalise), the default collate.
- ``lightly``: lightly's own transforms with the same settings where lightly has them
  (``BYOLTransform`` for the pair, ``DINOTransform`` for 2 global + n local crops), same file list.
- ``ours_full_decode``: ours with ``reduced_decoding=False`` (every JPEG decoded whole), to show
  what decoding at a reduced size gains; it only applies when every crop of an image keeps twice
  its output side at a quarter size, so it matters for photos much larger than the crops
  (``--size_multiplier 8``: about 4000 x 3000), not at ImageNet's ~500 x 375 with 224 px views.
- ``ours_device_photometric``: ours with ``--photometric_on_device``: the workers decode, crop and
  flip (``uint8`` crops) and the colour ops run on the training device after collation. Only the
  CPU half is timed here: it is what bounds a GPU node; the device half is one batched op chain.

The view sets: the BYOL / MoCo v3 pair at 224; MULAN's 2 x 224 + 4 x 96 + one cutout view at 224;
CLSA-Multi (5 weak + 5 strong views, 224 to 96); APS pairs with their patch indices; PatchMix's
pair + 8 local crops at 96. Where a peer has no such view (cutout, CLSA's RandAugment set, APS's
patch indices) its nearest pipeline is timed and the row says what was left out.

Reported per pipeline: views per second per core (images x views per image / seconds / workers;
the best of ``--rounds`` rounds and the median), and the peak resident memory of each worker
(``VmHWM`` of the worker processes, read before they exit) with its growth over the worker's
resident memory at start (a forked worker starts with the parent's pages, ~600 MiB here, which
grow as the benchmark imports more libraries: the growth is the pipeline's own working memory).
Ratios are ours over each peer,
measured side by side in one run. Results: ``benchmarks/results/data_imagenet_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from harness import machine_info, write_report

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "hf_sslviews_imagenet_like_jpegs"
# The photographs in scikit-image's wheel (textures and test patterns left out).
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
          "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "color.png")
# Sizes ImageNet photos typically have (landscape and portrait); each file gets one, +-10%.
IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (400, 300), (333, 500), (500, 500))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- the JPEG folder


def make_jpegs(folder: Path, count: int, seed: int = 0, quality: int = 90, size_multiplier: float = 1.0) -> list[Path]:
    """``count`` JPEGs at ImageNet-like sizes (times ``size_multiplier``) in ``folder/<class>/``; made once, reused after."""
    import numpy as np
    import skimage
    from PIL import Image

    stamp = folder / "made_by_benchmark_data.json"
    recipe = {"count": count, "seed": seed, "quality": quality, "photos": PHOTOS, "sizes": IMAGENET_SIZES, "size_multiplier": size_multiplier}
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(recipe)):
        return sorted(folder.glob("*/*.jpg"))
    rng = np.random.default_rng(seed)
    data = Path(skimage.__file__).parent / "data"
    photos = [Image.open(data / name).convert("RGB") for name in PHOTOS if (data / name).is_file()]
    if not photos:
        raise FileNotFoundError(f"no photographs found in {data}; pip install scikit-image")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        # A random crop of 50-100% of the photo's area, any aspect close to the target's.
        target_w, target_h = IMAGENET_SIZES[rng.integers(len(IMAGENET_SIZES))]
        target_w, target_h = (int(side * size_multiplier * rng.uniform(0.9, 1.1)) for side in (target_w, target_h))
        area = rng.uniform(0.5, 1.0) * width * height
        crop_w = int(min(width, (area * target_w / target_h) ** 0.5))
        crop_h = int(min(height, crop_w * target_h / target_w))
        left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
        image = photo.crop((left, top, left + crop_w, top + crop_h)).resize((target_w, target_h), Image.BICUBIC)
        path = folder / f"class_{index % 10}" / f"photo_{index:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        image.save(path, "JPEG", quality=quality)
    stamp.write_text(json.dumps(recipe, indent=2) + "\n")
    return sorted(folder.glob("*/*.jpg"))


# ----------------------------------------------------------------------------- the pipelines


class FileDataset(torch.utils.data.Dataset):
    """A list of image files; ``transform`` gets the decoded RGB ``PIL.Image`` (the usual torchvision way)."""

    def __init__(self, files: list[Path], transform: Callable):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB"))


def torchvision_view(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float, jitter=(0.4, 0.4, 0.2, 0.1), extra=()) -> Callable:
    from torchvision.transforms import InterpolationMode, v2

    steps = [
        v2.RandomResizedCrop(size, scale=scale, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
        *extra,
        v2.RandomApply([v2.ColorJitter(*jitter)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if blur_p > 0:
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p))
    if solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_p))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(steps)


class ManyViews:
    """One image -> a tuple of views, one per transform (the usual multi-crop wrapper).

    ``flatten``: a transform that returns a list of views (lightly's multi-view transforms)
    contributes each of them.
    """

    def __init__(self, transforms: list[Callable], flatten: bool = False):
        self.transforms, self.flatten = transforms, flatten

    def __call__(self, image):
        views = []
        for transform in self.transforms:
            out = transform(image)
            views.extend(out if self.flatten and isinstance(out, (list, tuple)) else [out])
        return tuple(views)


def torchvision_set(view_set: str) -> tuple[Callable, str]:
    """The torchvision v2 pipeline of a view set, and what it leaves out of ours."""
    from torchvision.transforms import v2

    global_1 = lambda size=224, scale=(0.08, 1.0): torchvision_view(size, scale, blur_p=1.0, solarize_p=0.0)  # noqa: E731
    global_2 = lambda size=224, scale=(0.08, 1.0): torchvision_view(size, scale, blur_p=0.1, solarize_p=0.2)  # noqa: E731
    local = lambda: torchvision_view(96, (0.05, 0.35), blur_p=0.5, solarize_p=0.0)  # noqa: E731
    if view_set == "pair":
        return ManyViews([global_1(), global_2()]), ""
    if view_set == "mulan":
        cutout = torchvision_view(224, (0.25, 1.0), blur_p=0.5, solarize_p=0.0)
        erase = v2.RandomErasing(p=1.0, scale=(0.2, 0.4), ratio=(0.75, 4 / 3), value=0)
        return ManyViews([global_1(scale=(0.25, 1.0)), global_2(scale=(0.25, 1.0))] + [torchvision_view(96, (0.08, 0.25), 0.5, 0.0)] * 4
                         + [v2.Compose([cutout, erase])]), "cutout as RandomErasing after normalising (ours: before colour jitter)"
    if view_set == "patchmix":
        return ManyViews([global_1(scale=(0.35, 1.0)), global_2(scale=(0.35, 1.0))] + [local()] * 8), ""
    if view_set == "aps":
        aps = torchvision_view(224, (0.15, 1.0), blur_p=0.0, solarize_p=0.0, jitter=(0.4, 0.4, 0.4, 0.1))
        return ManyViews([aps, aps]), "no patch indices (torchvision has no APS sampling)"
    if view_set == "clsa_multi":
        sizes = ((224, (0.2, 1.0)), (192, (0.172, 0.86)), (160, (0.143, 0.715)), (128, (0.114, 0.571)), (96, (0.086, 0.429)))
        weak = [torchvision_view(size, scale, 0.5, 0.0, jitter=(0.4, 0.4, 0.4, 0.1)) for size, scale in sizes]
        strong = [torchvision_view(size, scale, 0.5, 0.0, jitter=(0.4, 0.4, 0.4, 0.1), extra=(v2.RandAugment(num_ops=5, magnitude=9),)) for size, scale in sizes]
        return ManyViews([torchvision_view(224, (0.2, 1.0), 0.5, 0.0, jitter=(0.4, 0.4, 0.4, 0.1))] + weak + strong), \
            "torchvision's RandAugment (5 ops, magnitude 9) for CLSA's (5 ops drawn with replacement, random magnitudes, p=0.5 each)"
    raise ValueError(view_set)


def lightly_set(view_set: str) -> Optional[tuple[Callable, str]]:
    """lightly's transform with the same settings, where lightly has one."""
    import lightly.transforms as lt

    jitter = dict(cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.2, cj_hue=0.1, random_gray_scale=0.2, hf_prob=0.5)
    if view_set == "pair":
        return lt.BYOLTransform(lt.BYOLView1Transform(224, min_scale=0.08, **jitter), lt.BYOLView2Transform(224, min_scale=0.08, **jitter)), \
            "lightly crops bilinearly (ours and torchvision: bicubic)"
    dino = dict(global_crop_size=224, local_crop_size=96, sigmas=(0.1, 2.0), solarization_prob=0.2, gaussian_blur=(1.0, 0.1, 0.5), **jitter)
    if view_set == "mulan":
        from torchvision.transforms import v2

        # lightly has no cutout view: its DINO global view with torchvision's RandomErasing stands in,
        # so that both sides make the same seven views (same output size, hence comparable memory).
        cutout_view = lt.DINOViewTransform(crop_size=224, crop_scale=(0.25, 1.0), gaussian_blur=0.5, solarization_prob=0.0, sigmas=(0.1, 2.0), **jitter)
        cutout = v2.Compose([cutout_view, v2.RandomErasing(p=1.0, scale=(0.2, 0.4), ratio=(0.75, 4 / 3), value=0)])
        multi_crop = lt.DINOTransform(global_crop_scale=(0.25, 1.0), local_crop_scale=(0.08, 0.25), n_local_views=4, **dino)
        return ManyViews([multi_crop, cutout], flatten=True), "cutout: lightly's global view + torchvision RandomErasing after normalising (lightly has no cutout)"
    if view_set == "patchmix":
        return lt.DINOTransform(global_crop_scale=(0.35, 1.0), local_crop_scale=(0.05, 0.35), n_local_views=8, **dino), ""
    return None


def our_views(view_set: str):
    """The view transform of the method's ImageNet preset (what ``run_pretrain.py --preset ...`` builds)."""
    from hf_sslviews.methods import get_recipe

    method, preset_name, overrides = {
        "pair": ("mocov3", "mocov3_imagenet_vit_small", {}),
        "mulan": ("mulan", "mulan_byol_imagenet_vit_small", {"n_local": 4}),
        "clsa_multi": ("clsa", "clsa_multi_imagenet_r50", {}),
        "aps": ("aps", "aps_imagenet_vit_small", {}),
        "patchmix": ("patchmix", "patchmix_imagenet_vit_small", {}),
    }[view_set]
    recipe = get_recipe(method)
    preset = recipe.presets[preset_name]
    return recipe.build_views(recipe.config_class(**preset.config), image_column="image", **{**preset.views, **overrides})


VIEWS_PER_IMAGE = {"pair": 2, "mulan": 7, "clsa_multi": 11, "aps": 2, "patchmix": 10}


def build_loader(library: str, view_set: str, files: list[Path], data_dir: Path, batch_size: int, workers: int):
    from torch.utils.data import DataLoader

    if library in ("ours", "ours_device_photometric", "ours_full_decode"):
        from hf_sslviews.data import ViewCollator, load_image_dataset, prepare_for_views

        views = our_views(view_set)
        note = ""
        if library == "ours_full_decode":
            views.reduced_decoding = False
            note = "every JPEG decoded at full size (reduced_decoding=False)"
        if library == "ours_device_photometric":
            if not hasattr(views, "deferred_photometric"):
                return None, f"{type(views).__name__} keeps its colour ops in the workers"
            views.photometric_on_device = True
            note = "CPU half only (uint8 crops); the colour ops run on the training device"
        dataset = prepare_for_views(load_image_dataset(train_dir=str(data_dir)), "image").with_transform(views)
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=ViewCollator(), drop_last=True), note
    built = torchvision_set(view_set) if library == "torchvision" else lightly_set(view_set)
    if built is None:
        return None, "lightly has no transform for this view set"
    transform, note = built
    return DataLoader(FileDataset(files, transform), batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True), note


def _status_mib(pid, field: str) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _worker_memory_mib(iterator, start_rss: dict) -> tuple[list[float], list[float]]:
    """Per worker: peak resident memory (VmHWM), and that peak minus the worker's resident memory at start.

    A forked worker starts with the parent's resident pages (about 600 MiB here: torch, datasets,
    every library imported so far), which grow as the benchmark goes; the growth over the start
    is the pipeline's own working memory, comparable across libraries and rounds.
    """
    peaks, growth = [], []
    for worker_id, worker in enumerate(getattr(iterator, "_workers", [])):
        peak = _status_mib(worker.pid, "VmHWM")
        if peak is not None:
            peaks.append(peak)
            if worker_id in start_rss:
                growth.append(peak - start_rss[worker_id])
    return peaks, growth


class _RecordStartRss:
    """``worker_init_fn`` writing each worker's resident memory at start into a shared array."""

    def __init__(self, workers: int):
        import multiprocessing

        self.values = multiprocessing.Array("d", [float("nan")] * max(1, workers))

    def __call__(self, worker_id: int) -> None:
        self.values[worker_id] = _status_mib("self", "VmRSS") or float("nan")

    def by_worker(self) -> dict:
        return {index: value for index, value in enumerate(self.values[:]) if value == value}


def time_loader(loader, batches: int) -> tuple[float, list[float], list[float]]:
    """Seconds for ``batches`` batches after the first (worker start-up and the first batch excluded),
    and per worker its peak memory and that peak's growth over its start (MiB)."""
    start_rss = _RecordStartRss(loader.num_workers)
    loader.worker_init_fn = start_rss
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    peaks, growth = _worker_memory_mib(iterator, start_rss.by_worker())
    del iterator
    return seconds, peaks, growth


# ----------------------------------------------------------------------------- report


def summarise(report: dict) -> str:
    lines = [
        "# Views per second per core from JPEG files at ImageNet sizes",
        "",
        f"{report['protocol']['num_files']} JPEGs (~{500 * report['protocol'].get('size_multiplier', 1):.0f} x {375 * report['protocol'].get('size_multiplier', 1):.0f}, "
        f"quality 90), {report['protocol']['workers']} DataLoader workers "
        f"(one per core), batch {report['protocol']['batch_size']}, {report['protocol']['batches']} batches per round, "
        f"{report['protocol']['rounds']} rounds interleaved. Command: `{report['command']}`.",
        "",
        "| view set | library | views / s / core (best) | median | peak RSS / worker (MiB) | growth over start (MiB) | ours / this | ours, colour on device / this | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for view_set, rows in report["results"].items():
        ours = rows.get("ours", {}).get("views_per_second_per_core_best")
        deferred = rows.get("ours_device_photometric", {}).get("views_per_second_per_core_best")
        for library, row in rows.items():
            if "skipped" in row:
                lines.append(f"| {view_set} | {library} | - | - | - | - | - | - | {row['skipped']} |")
                continue
            peer = library not in ("ours", "ours_device_photometric")
            rate = row["views_per_second_per_core_best"]
            ratio = f"{ours / rate:.2f}x" if ours and peer else ""
            ratio_deferred = f"{deferred / rate:.2f}x" if deferred and peer else ""
            lines.append(
                f"| {view_set} | {library} | {rate:.1f} | {row['views_per_second_per_core_median']:.1f} | "
                f"{row['peak_rss_mib_per_worker']:.0f} | {row.get('peak_growth_mib_per_worker', float('nan')):.0f} | {ratio} | {ratio_deferred} | {row.get('note', '')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("imagenet",), default="imagenet")
    parser.add_argument("--sets", nargs="+", default=list(VIEWS_PER_IMAGE), choices=list(VIEWS_PER_IMAGE))
    parser.add_argument("--libraries", nargs="+", default=["ours", "torchvision", "lightly", "ours_device_photometric"], choices=("ours", "torchvision", "lightly", "ours_device_photometric", "ours_full_decode"))
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA_DIR), help="Where the JPEG folder is made (once) and read.")
    parser.add_argument("--num_files", type=int, default=1000)
    parser.add_argument("--size_multiplier", type=float, default=1.0,
                        help="Photo sides times this (4: about 2000 x 1500, a camera-sized folder; use its own --data_dir).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers (default: one per core).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="Timed batches per round (after one untimed batch).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "data_imagenet_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the main process only collects batches; the workers do the work

    data_dir = Path(args.data_dir)
    files = make_jpegs(data_dir, args.num_files, size_multiplier=args.size_multiplier)
    results: dict = {view_set: {} for view_set in args.sets}
    timings: dict = {(v, lib): [] for v in args.sets for lib in args.libraries}
    peaks: dict = {(v, lib): [] for v in args.sets for lib in args.libraries}
    growths: dict = {(v, lib): [] for v in args.sets for lib in args.libraries}
    notes: dict = {}
    for round_index in range(args.rounds):
        for view_set in args.sets:
            for library in args.libraries:
                loader, note = build_loader(library, view_set, files, data_dir, args.batch_size, args.workers)
                if loader is None:
                    results[view_set][library] = {"skipped": note}
                    continue
                notes[(view_set, library)] = note
                seconds, worker_peaks, worker_growth = time_loader(loader, args.batches)
                timings[(view_set, library)].append(seconds)
                peaks[(view_set, library)] += worker_peaks
                growths[(view_set, library)] += worker_growth
                rate = args.batches * args.batch_size * VIEWS_PER_IMAGE[view_set] / seconds / args.workers
                print(json.dumps({"round": round_index, "set": view_set, "library": library, "views_per_second_per_core": round(rate, 1),
                                  "worker_peak_mib": [round(p) for p in worker_peaks], "worker_growth_mib": [round(g) for g in worker_growth]}), flush=True)
    for (view_set, library), seconds in timings.items():
        if not seconds:
            continue
        rates = [args.batches * args.batch_size * VIEWS_PER_IMAGE[view_set] / s / args.workers for s in seconds]
        results[view_set][library] = {
            "views_per_second_per_core_best": max(rates),
            "views_per_second_per_core_median": statistics.median(rates),
            "rates": rates,
            "peak_rss_mib_per_worker": max(peaks[(view_set, library)] or [float("nan")]),
            "peak_growth_mib_per_worker": max(growths[(view_set, library)] or [float("nan")]),
            "views_per_image": VIEWS_PER_IMAGE[view_set],
            "note": notes.get((view_set, library), ""),
        }
    report = {
        "suite": args.suite,
        "command": "python benchmarks/data_loading.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "protocol": {"num_files": len(files), "size_multiplier": args.size_multiplier, "workers": args.workers, "batch_size": args.batch_size, "batches": args.batches, "rounds": args.rounds},
        "machine": machine_info(),
        "results": results,
    }
    write_report(report, args.output)
    Path(args.output).with_suffix(".md").write_text(summarise(report))
    print(summarise(report))
    return report


if __name__ == "__main__":
    main()
