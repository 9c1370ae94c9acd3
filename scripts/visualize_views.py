#!/usr/bin/env python
"""Draw what a method's views look like on a few real colour photos (scikit-image's samples).

    python scripts/visualize_views.py --method aps --num_images 2 --chunk 1 --seed 3 --size 224 --patch_size 16
    python scripts/visualize_views.py --method patchmix --num_images 4 --num_groups 2
    python scripts/visualize_views.py --method clsa --preset multi
    python scripts/visualize_views.py --method mulan --n_local 4
    python scripts/visualize_views.py --method repco [--model_name_or_path exported_backbone_dir]
    python scripts/visualize_views.py --method byol --image my_photo.jpg other.png   # your own images; byol / mocov3 / simsiam: the pair

Needs matplotlib and scikit-image: ``pip install "hf-sslviews[viz]"``.

The figures in docs/ are ``--method <m> --output docs/views_<m>.png --dpi 72`` (APS with
``--num_images 2``), seed 0, every other flag at its default.

Every registered method draws: :func:`render_views` shows each image its view transform makes
(from the method's first preset). :data:`RENDERERS` holds richer pictures for some methods
(``(images, args) -> matplotlib Figure``): crop boxes, kept patches, mixing, pairs.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Callable, Sequence

try:
    import matplotlib
except ImportError as error:  # an optional dependency: say which extra brings it
    raise SystemExit('visualize_views.py draws with matplotlib, which is not installed: pip install "hf-sslviews[viz]"') from error

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from hf_sslviews.views.base import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
VIEW_COLOURS = ("#f28e2b", "#4e79a7")  # view 1 orange, view 2 blue
# One colour per source image (PatchMix) / per view type (MULAN): tableau colours, distinct in print.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2")
CLSA_COLOURS = {"key": "#b07aa1", "weak": "#4e79a7", "strong": "#e15759"}
MULAN_COLOURS = {"global": "#4e79a7", "local": "#59a14f", "cutout": "#e15759"}
NEGATIVE_COLOUR = "#ff00ff"  # RepCo negatives: magenta, apart from the red/blue similarity tint
DIM_GREY = 0.82  # dropped patches are faded towards this grey
# Images per method when --num_images is not given: PatchMix needs a batch to mix.
DEFAULT_NUM_IMAGES = {"patchmix": 4, "clsa": 2, "mulan": 2, "repco": 2}


def load_sample_images(num_images: int) -> list[np.ndarray]:
    """``uint8 [H, W, 3]`` photos bundled with scikit-image (no download)."""
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - scikit-image is in the [viz] extra
        raise SystemExit('visualize_views.py takes its sample photos from scikit-image, which is not installed: pip install "hf-sslviews[viz]" (or pass --image your_photo.jpg)') from error
    if not 1 <= num_images <= len(SAMPLE_IMAGES):
        raise SystemExit(f"--num_images must lie in 1..{len(SAMPLE_IMAGES)}, got {num_images}")
    loaders = {"motorcycle_left": lambda: data.stereo_motorcycle()[0]}
    return [np.ascontiguousarray(loaders.get(name, getattr(data, name, None))()[..., :3]) for name in SAMPLE_IMAGES[:num_images]]


def load_user_images(paths: Sequence[str]) -> list[np.ndarray]:
    """The user's own image files as ``uint8 [H, W, 3]`` (any mode; decoded as the views decode them)."""
    from hf_sslviews.views.decode import ImageDecodeError, decode_image

    images = []
    for path in paths:
        try:
            images.append(np.asarray(decode_image(path)))
        except (ImageDecodeError, FileNotFoundError) as error:
            raise SystemExit(f"--image {path}: cannot be read as an image ({error})") from error
    return images


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``uint8 [3, H, W]``, what the view transforms take."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()  # a copy: the decoded array may be read-only


def _square(image: np.ndarray, size: int) -> torch.Tensor:
    """Centre square crop resized to ``size``: ``uint8 [3, size, size]`` (no randomness)."""
    from torchvision.transforms.v2 import functional as F

    side = min(image.shape[:2])
    return F.resize(F.center_crop(_as_tensor(image), [side, side]), [size, size], antialias=True)


def _to_rgb(pixels: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """A normalised ``float32 [3, s, s]`` view back to displayable ``[s, s, 3]`` in [0, 1]."""
    rgb = pixels * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return rgb.permute(1, 2, 0).clamp(0, 1).numpy()


def _show_view(ax, rgb: np.ndarray, frame: int, colour: str | None = None) -> None:
    """Draw a view at its true size, centred in a ``frame x frame`` box (small crops look small)."""
    side = rgb.shape[0]
    lo = (frame - side) / 2
    ax.imshow(rgb, extent=(lo, lo + side, lo + side, lo))
    ax.set_xlim(0, frame)
    ax.set_ylim(frame, 0)
    _axis_off(ax)
    if colour is not None:
        ax.add_patch(Rectangle((lo, lo), side, side, fill=False, edgecolor=colour, linewidth=2.5))


def _kept_mask(indices: torch.Tensor, grid: int) -> np.ndarray:
    mask = np.zeros(grid * grid, dtype=bool)
    mask[indices.numpy()] = True
    return mask.reshape(grid, grid)


def _dim_dropped(pixels: np.ndarray, kept: np.ndarray, patch: int) -> np.ndarray:
    """Fade the patches the encoder never sees towards light grey, keep the others as they are."""
    keep = np.kron(kept, np.ones((patch, patch), dtype=bool))[..., None]
    faded = 0.25 * pixels.mean(axis=-1, keepdims=True) + 0.75 * DIM_GREY
    return np.where(keep, pixels, faded)


def _outline_cells(ax, kept: np.ndarray, patch: int, colour: str) -> None:
    for r, c in zip(*np.nonzero(kept)):
        ax.add_patch(Rectangle((c * patch - 0.5, r * patch - 0.5), patch, patch, fill=False, edgecolor=colour, linewidth=0.8))


def _cell_footprints(box: torch.Tensor, kept: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Source-pixel rectangles ``(x, y, w, h)`` of a view's kept cells (flips mirrored)."""
    top, left, height, width, flipped = (float(v) for v in box)
    grid = kept.shape[0]
    cell_h, cell_w = height / grid, width / grid
    rects = []
    for r, c in zip(*np.nonzero(kept)):
        col = grid - 1 - c if flipped else c  # a flipped view's column c lies where column G-1-c was
        rects.append((left + col * cell_w, top + r * cell_h, cell_w, cell_h))
    return rects


def _axis_off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def render_aps(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """APS: the two crops, view 1's sparse chunk, view 2's selective chunk, and where they fall."""
    from hf_sslviews.views.aps import APSViewTransform, kept_patch_overlap, patch_coverage

    views = APSViewTransform(
        size=args.size, patch_size=args.patch_size, ratio=args.ratio, num_chunks=args.num_chunks,
        track_flips=not args.original_flips, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),  # pixels stay in [0, 1]
    )
    if not 0 <= args.chunk < views.num_chunks:
        raise SystemExit(f"--chunk must lie in 0..{views.num_chunks - 1}, got {args.chunk}")
    grid, patch, k = views.grid, views.patch_size, args.chunk
    titles = ("source image, crop boxes\nand kept patches", f"view 1: sparse (chunk {k})", f"view 2: selective (chunk {k})", "view 2: area covered by\nview 1's kept patches (orange)")
    fig, axes = plt.subplots(len(images), 4, figsize=(11.5, 3.1 * len(images) + 0.7), squeeze=False, layout="constrained")
    for row, image in zip(axes, images):
        out = views.make_views(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        boxes = out["crop_boxes"]
        kept = [_kept_mask(out[f"token_indices_{v}"][k], grid) for v in (1, 2)]
        overlap = float(kept_patch_overlap(boxes[0], boxes[1], out["token_indices_1"][k : k + 1], out["token_indices_2"][k : k + 1], grid)[0])
        coverage = patch_coverage(boxes[0], boxes[1], out["token_indices_1"][k : k + 1], grid)[0].reshape(grid, grid).numpy()

        ax = row[0]
        ax.imshow((0.55 * image + 0.45 * 255).astype(np.uint8))  # faded so that the kept patches stand out
        for v, (box, colour) in enumerate(zip(boxes, VIEW_COLOURS)):
            for x, y, w, h in _cell_footprints(box, kept[v]):
                ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, alpha=0.45, edgecolor="none"))
            top, left, height, width, flipped = (float(t) for t in box)
            ax.add_patch(Rectangle((left, top), width, height, fill=False, edgecolor=colour, linewidth=2.2, linestyle="--"))
            label = f"view {v + 1}" + (" (flipped)" if flipped else "")
            # view 1's label at the top-left corner of its box, view 2's at the bottom-left: they never collide
            y, va = (top + 3, "top") if v == 0 else (top + height - 3, "bottom")
            ax.text(left + 3, y, label, color="white", fontsize=8, va=va, bbox=dict(facecolor=colour, edgecolor="none", pad=1.5))
        ax.set_xlabel(f"view-2 kept area also kept in view 1: {overlap:.1%}", fontsize=9)

        for v in (0, 1):
            pixels = out[f"pixel_values_{v + 1}"].permute(1, 2, 0).clamp(0, 1).numpy()
            row[v + 1].imshow(_dim_dropped(pixels, kept[v], patch))
            _outline_cells(row[v + 1], kept[v], patch, VIEW_COLOURS[v])
            row[v + 1].set_xlabel(f"{int(kept[v].sum())} of {grid * grid} patches" + (", flipped" if float(boxes[v][4]) else ""), fontsize=9)

        ax = row[3]
        view_2 = out["pixel_values_2"].permute(1, 2, 0).clamp(0, 1).numpy()
        ax.imshow(view_2.mean(axis=-1), cmap="gray", vmin=0, vmax=1)
        heat = np.kron(coverage, np.ones((patch, patch)))
        ax.imshow(heat, cmap="Oranges", vmin=0, vmax=1, alpha=0.6)
        _outline_cells(ax, kept[1], patch, VIEW_COLOURS[1])
        # The mean over all cells is what random view-2 sampling would overlap, on average.
        ax.set_xlabel(f"kept (outlined): {coverage[kept[1]].mean():.1%} covered\nall cells (random sampling): {coverage.mean():.1%}", fontsize=9)

        for ax in row:
            _axis_off(ax)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=10)
    legend = [Patch(facecolor=VIEW_COLOURS[0], alpha=0.6, label="view 1 kept patches"), Patch(facecolor=VIEW_COLOURS[1], alpha=0.6, label="view 2 kept patches")]
    fig.legend(handles=legend, loc="outside lower center", ncol=2, frameon=False, fontsize=9)
    flips = "flips ignored as in the original code" if args.original_flips else "flips tracked"
    fig.suptitle(
        f"APS views: {args.size} px, patch {patch} ({grid}x{grid} grid), ratio {views.ratio:g}, K={views.num_chunks}, {flips}",
        fontsize=12,
    )
    return fig


def render_patchmix(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """PatchMix: a batch, its mixed images with each patch's source outlined, and the soft targets."""
    from hf_sslviews.modeling.patchmix.mixing import patch_mix, patchmix_targets

    batch, m, patch = len(images), args.num_groups, args.patch_size
    if batch < 2 or not 1 <= m <= batch:
        raise SystemExit(f"PatchMix mixes a batch: use --num_images >= 2 and 1 <= --num_groups <= --num_images, got {batch} and {m}")
    if args.size % patch:
        raise SystemExit(f"--size {args.size} must be a multiple of --patch_size {patch}")
    grid = args.size // patch
    pixels = torch.stack([_square(image, args.size) for image in images]).float() / 255
    generator = torch.Generator().manual_seed(args.seed)
    mixed, owner = patch_mix(pixels, patch, m, generator=generator)
    owner = owner.reshape(batch, grid, grid).numpy()
    targets = patchmix_targets(batch, m)
    names = [f"{g}: {name}" for g, name in enumerate(SAMPLE_IMAGES[:batch])]

    fig = plt.figure(figsize=(2.7 * batch + 3.2, 6.4), layout="constrained")
    spec = fig.add_gridspec(2, batch + 1, width_ratios=[1] * batch + [1.25])
    for g in range(batch):
        ax = fig.add_subplot(spec[0, g])
        ax.imshow(pixels[g].permute(1, 2, 0).numpy())
        _axis_off(ax)
        for spine in ax.spines.values():  # the source image's colour as a frame
            spine.set_visible(True)
            spine.set(edgecolor=PALETTE[g], linewidth=4)
        ax.set_title(f"image {names[g]}", fontsize=10)

        ax = fig.add_subplot(spec[1, g])
        ax.imshow(mixed[g].permute(1, 2, 0).numpy())
        for r, c in zip(*np.nonzero(owner[g] != g)):  # patches borrowed from another image
            ax.add_patch(Rectangle((c * patch - 0.5, r * patch - 0.5), patch, patch, facecolor=PALETTE[owner[g, r, c]], alpha=0.3, edgecolor=PALETTE[owner[g, r, c]], linewidth=1.2))
        _axis_off(ax)
        shares = [f"{np.mean(owner[g] == g):.0%} own"] + [f"{np.mean(owner[g] == (g + j) % batch):.0%} from {(g + j) % batch}" for j in range(1, m)]
        ax.set_title(f"mixed {g}", fontsize=10)
        ax.set_xlabel(", ".join(shares), fontsize=9)

    for row, (matrix, title) in enumerate(((targets.mix_origin, "mix -> origin targets"), (targets.mix_mix, "mix -> mix targets"))):
        ax = fig.add_subplot(spec[row, batch])
        ax.imshow(matrix.numpy(), cmap="Blues", vmin=0, vmax=1)
        for (r, c), value in np.ndenumerate(matrix.numpy()):
            if value > 0:
                ax.text(c, r, f"{value:g}", ha="center", va="center", fontsize=9, color="white" if value > 0.4 else "black")
        ax.set_xticks(range(batch), [f"{'origin' if row == 0 else 'mix'} {j}" for j in range(batch)], fontsize=8, rotation=30)
        ax.set_yticks(range(batch), [f"mix {g}" for g in range(batch)], fontsize=8)
        ax.set_title(title, fontsize=10)
    legend = [Patch(facecolor=PALETTE[g], alpha=0.6, label=f"patch from image {names[g]}") for g in range(batch)]
    fig.legend(handles=legend, loc="outside lower center", ncol=batch, frameon=False, fontsize=9)
    fig.suptitle(
        f"PatchMix, m={m}: mixed image g keeps half its {grid}x{grid} patches (untinted) and takes the others from image g+1 "
        f"at the same positions\n(centre crops at {args.size} px, patch {patch}; one permutation shared by the batch; rows of the targets sum to 1)"
        if m == 2 else
        f"PatchMix, m={m}: mixed image g takes 1/{m} of its {grid}x{grid} patches from each of images g..g+{m - 1} at the same positions\n"
        f"(centre crops at {args.size} px, patch {patch}; own patches untinted; rows of the targets sum to 1)",
        fontsize=11,
    )
    return fig


def render_clsa(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """CLSA: key, weak and strong views at their true relative sizes, RandAugment ops under each strong one."""
    from hf_sslviews.views.clsa import CLSA_SETTINGS, CLSAViewTransform

    if args.preset not in CLSA_SETTINGS:
        raise SystemExit(f"--preset must be one of {sorted(CLSA_SETTINGS)} for clsa, got {args.preset!r}")
    views = CLSAViewTransform(args.preset)
    frame = max(aug.size for aug in (views.key_view, *views.weak_views, *views.strong_views))
    multi = len(views.weak_views) > 1
    # Single: one row [source, key, weak, strong]; Multi: rows [source, weak...] and [key, strong...].
    rows_per_image, cols = (2, 1 + len(views.weak_views)) if multi else (1, 4)
    fig, axes = plt.subplots(rows_per_image * len(images), cols, figsize=(2.4 * cols + 0.4, 3.5 * rows_per_image * len(images) + 0.6), squeeze=False, layout="constrained")
    for i, image in enumerate(images):
        source = _as_tensor(image)
        key = (f"key {views.key_view.size}", _to_rgb(views.key_view(source)), None)
        weak = [(f"weak {aug.size}", _to_rgb(aug(source)), None) for aug in views.weak_views]
        strong = []
        for index, aug in enumerate(views.strong_views):
            pixels, ops = views.strong_view(source, index)
            # ``ops`` lists only the draws whose p=0.5 coin came up, in the order applied.
            text = "\n".join([str(op) for op in ops] or ["(no op applied)"]) + f"\n{len(ops)} of {views.randaugment.num_ops} draws applied"
            strong.append((f"strong {aug.size}", _to_rgb(pixels), text))
        panels = [[("source", image, None), key, *weak, *strong]] if not multi else [[("source", image, None), *weak], [key, *strong]]
        for r, row_panels in enumerate(panels):
            for ax, (title, rgb, text) in zip(axes[i * rows_per_image + r], row_panels):
                kind = title.split()[0]
                if kind == "source":
                    ax.imshow(rgb)
                    _axis_off(ax)
                else:
                    _show_view(ax, rgb, frame, CLSA_COLOURS[kind])
                ax.set_title(title + ("" if kind == "source" else " px"), fontsize=10, color=CLSA_COLOURS.get(kind, "black"))
                if text:
                    ax.set_xlabel(text, fontsize=9, family="monospace")
    legend = [Patch(facecolor=colour, label=label) for label, colour in (
        ("key view (momentum encoder)", CLSA_COLOURS["key"]), ("weak: MoCo v2 augmentation", CLSA_COLOURS["weak"]),
        ("strong: weak + RandAugment (5 ops, p=0.5 each)", CLSA_COLOURS["strong"]))]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle(f"CLSA views, preset {args.preset!r}: drawn at their true resolution ({frame} px frame)\n"
                 "ops listed under each strong view are the RandAugment draws that were applied", fontsize=11)
    return fig


def render_mulan(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """MULAN: the two global views, the local crops and the cutout view(s), one predictor per type."""
    from hf_sslviews.views.mulan import MultiTaskViewTransform

    # Locals at 96/224 of the global side, as the ImageNet preset.
    views = MultiTaskViewTransform(global_size=args.size, local_size=max(8, args.size * 3 // 7), cutout_size=args.size, n_local=args.n_local, n_cutout=args.n_cutout)
    cols = 1 + len(views.global_views) + len(views.local_views) + len(views.cutout_views)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.3 * cols, 2.9 * len(images) + 0.6), squeeze=False, layout="constrained")
    for row, image in zip(axes, images):
        source = _as_tensor(image)
        row[0].imshow(image)
        _axis_off(row[0])
        row[0].set_title("source, crop boxes", fontsize=10)
        panels = []
        for kind, augs in (("global", views.global_views), ("local", views.local_views)):
            for n, aug in enumerate(augs):
                crop, box = aug.geometric(source)
                row[0].add_patch(Rectangle((box.left, box.top), box.width, box.height, fill=False, edgecolor=MULAN_COLOURS[kind], linewidth=1.8, linestyle="--"))
                detail = {"global": ("blur p=1", "blur p=0.1, solarize p=0.2")[n % 2], "local": "blur p=0.5"}[kind]
                panels.append((f"{kind} {n + 1}{' (flipped)' if box.flipped else ''}", detail, kind, _to_rgb(aug.normalize(aug.photometric(crop))), None))
        for n in range(len(views.cutout_views)):
            pixels, hole = views.cutout_view(source, n)
            panels.append((f"cutout {n + 1}", "hole filled with the mean", "cutout", _to_rgb(pixels), hole))
        for ax, (title, detail, kind, rgb, hole) in zip(row[1:], panels):
            _show_view(ax, rgb, args.size, MULAN_COLOURS[kind])
            if hole is not None:
                top, left, h, w = hole
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor=MULAN_COLOURS[kind], linewidth=2, linestyle="--"))
            ax.set_title(f"{title}, {rgb.shape[0]} px", fontsize=10, color=MULAN_COLOURS[kind])
            ax.set_xlabel(detail, fontsize=8)
    legend = [Patch(facecolor=colour, label=f"{kind} views -> {kind} predictor") for kind, colour in MULAN_COLOURS.items()]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, frameon=False, fontsize=9)
    fig.suptitle("MULAN views: 2 globals (the targets), local crops and cutout views (dashed: the hole);\n"
                 "every view type has its own predictor and is matched to both globals (dashed boxes on the source: global and local crops)", fontsize=11)
    return fig


def render_pair(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """The baselines' asymmetric pair (MoCo v3, BYOL, SimSiam): view 1 always blurred, view 2 sometimes solarized."""
    from hf_sslviews.views.multi_view import two_view_transform

    pair = two_view_transform(size=args.size, scale=(0.08, 1.0)).views
    fig, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.7 * len(images) + 0.4), squeeze=False, layout="constrained")
    details = {"pixel_values_1": "view 1: blur p=1", "pixel_values_2": "view 2: blur p=0.1, solarize p=0.2"}
    for row, image in zip(axes, images):
        source = _as_tensor(image)
        row[0].imshow(image)
        _axis_off(row[0])
        row[0].set_title("source, crop boxes", fontsize=10)
        for ax, (key, aug), colour in zip(row[1:], pair.items(), VIEW_COLOURS):
            crop, box = aug.geometric(source)
            row[0].add_patch(Rectangle((box.left, box.top), box.width, box.height, fill=False, edgecolor=colour, linewidth=1.8, linestyle="--"))
            _show_view(ax, _to_rgb(aug.normalize(aug.photometric(crop))), args.size, colour)
            ax.set_title(details[key] + (" (flipped)" if box.flipped else ""), fontsize=9, color=colour)
    fig.suptitle(f"The {args.method} pair: two random resized crops with colour jitter, grayscale, blur and solarize", fontsize=11)
    return fig


def hand_cell_features(image: torch.Tensor, grid: int) -> torch.Tensor:
    """Deterministic, training-free features of each cell of a ``uint8 [3, S, S]`` image.

    Per cell: mean CIE-Lab colour, a 2x2x2 RGB colour histogram and a 4-bin gradient-orientation
    histogram (texture), each dimension z-scored over the image's cells so that cosine similarity
    spans [-1, 1] as with centred deep features. Returns ``float32 [grid * grid, 15]``.
    """
    from skimage.color import rgb2lab

    rgb = image.permute(1, 2, 0).numpy() / 255.0
    cell = rgb.shape[0] // grid
    lab = rgb2lab(rgb) / np.array([100.0, 128.0, 128.0])
    bins = (rgb >= 0.5).astype(int) @ np.array([4, 2, 1])  # which of the 8 RGB octants
    gy, gx = np.gradient(rgb.mean(axis=-1))
    magnitude, orientation = np.hypot(gx, gy), ((np.arctan2(gy, gx) % np.pi) / np.pi * 4).astype(int) % 4
    features = []
    for r in range(grid):
        for c in range(grid):
            window = np.s_[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
            colour_hist = np.bincount(bins[window].ravel(), minlength=8) / bins[window].size
            edge_hist = np.bincount(orientation[window].ravel(), weights=magnitude[window].ravel(), minlength=4) / bins[window].size
            features.append(np.concatenate([lab[window].reshape(-1, 3).mean(0), colour_hist, edge_hist * 10]))
    features = torch.tensor(np.array(features), dtype=torch.float32)
    return (features - features.mean(0)) / (features.std(0) + 1e-6)


def model_cell_features(model_name_or_path: str, images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Final feature grid of a timm backbone (an exported one: a local folder) for ``uint8 [B, 3, S, S]``.

    Returns ``(cells [B, h*w, D], h)``, the grid the RepCo model selects pairs on.
    """
    import os

    import timm

    name = f"local-dir:{model_name_or_path}" if os.path.isdir(model_name_or_path) else model_name_or_path
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, dynamic_img_size=True)
    except TypeError:  # CNNs take no dynamic_img_size
        model = timm.create_model(name, pretrained=True, num_classes=0)
    config = timm.data.resolve_model_data_config(model)
    pixels = (images.float() / 255 - torch.tensor(config["mean"]).view(1, 3, 1, 1)) / torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model.eval().forward_features(pixels)
    if features.ndim == 4:  # CNN map [B, D, h, w]
        return features.flatten(2).transpose(1, 2), features.shape[-2]
    cells = features[:, model.num_prefix_tokens :]  # ViT tokens [B, prefix + h*w, D]
    return cells, round(cells.shape[1] ** 0.5)


def render_repco(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """RepCo: for a few query cells, the far-but-similar positives and adjacent-but-dissimilar negatives."""
    from hf_sslviews.modeling.repco import RepCoConfig
    from hf_sslviews.modeling.repco.pairs import grid_chebyshev_distance, select_patch_pairs

    config = RepCoConfig()  # the default pair-selection settings
    pixels = torch.stack([_square(image, args.size) for image in images])
    if args.model_name_or_path:
        features, grid = model_cell_features(args.model_name_or_path, pixels)
        source = f"backbone {args.model_name_or_path}"
    else:
        if args.size % args.patch_size:
            raise SystemExit(f"--size {args.size} must be a multiple of --patch_size {args.patch_size}")
        grid = args.size // args.patch_size
        features = torch.stack([hand_cell_features(p, grid) for p in pixels])
        source = "hand-made cell features (mean Lab colour + colour histogram + edge-orientation histogram), no network"
    pos_mask, neg_mask = select_patch_pairs(
        features, (grid, grid), r_far=config.patch_far_distance, num_positives=config.patch_num_positives,
        negative_rule=config.patch_negative_rule, negative_threshold=config.patch_negative_threshold,
        num_negatives=config.patch_num_negatives, positive_threshold=config.patch_positive_threshold,
    )
    normed = torch.nn.functional.normalize(features, dim=-1)
    similarity = normed @ normed.transpose(1, 2)
    cell = args.size / grid
    adjacent = grid_chebyshev_distance(grid, grid) == 1
    generator = torch.Generator().manual_seed(args.seed)
    fig, axes = plt.subplots(len(images), 1 + args.num_queries, figsize=(2.6 * (1 + args.num_queries), 3.0 * len(images) + 1.0), squeeze=False, layout="constrained")
    for b, row in enumerate(axes):
        rgb = pixels[b].permute(1, 2, 0).numpy()
        # Queries: random cells that have a negative (else there is nothing to show but a positive).
        candidates = torch.nonzero(neg_mask[b].any(-1) & pos_mask[b].any(-1)).flatten()
        candidates = candidates if len(candidates) else torch.arange(grid * grid)
        queries = candidates[torch.randperm(len(candidates), generator=generator)[: args.num_queries]].tolist()
        row[0].imshow(rgb)
        for k, q in enumerate(queries):
            r, c = divmod(q, grid)
            row[0].add_patch(Rectangle((c * cell, r * cell), cell, cell, fill=False, edgecolor="yellow", linewidth=2))
            row[0].text((c + 0.5) * cell, (r + 0.5) * cell, f"Q{k + 1}", color="black", fontsize=8, ha="center", va="center", bbox={"facecolor": "yellow", "edgecolor": "none", "pad": 1})
        row[0].set_title(f"{SAMPLE_IMAGES[b]}, {grid}x{grid} cells", fontsize=10)
        for ax, (k, q) in zip(row[1:], enumerate(queries)):
            ax.imshow(rgb.mean(axis=-1), cmap="gray", vmin=0, vmax=255, extent=(0, args.size, args.size, 0))
            heat = similarity[b, q].reshape(grid, grid).numpy()
            ax.imshow(heat, cmap="coolwarm", vmin=-1, vmax=1, alpha=0.55, extent=(0, args.size, args.size, 0))
            for mask, colour, width in ((pos_mask[b, q], "#00c000", 2.5), (neg_mask[b, q], NEGATIVE_COLOUR, 2.0)):
                for j in torch.nonzero(mask).flatten().tolist():
                    r, c = divmod(j, grid)
                    ax.add_patch(Rectangle((c * cell, r * cell), cell, cell, fill=False, edgecolor=colour, linewidth=width, linestyle="-" if colour == "#00c000" else "--"))
            r, c = divmod(q, grid)
            ax.add_patch(Rectangle((c * cell, r * cell), cell, cell, fill=False, edgecolor="yellow", linewidth=2.5))
            positives = torch.nonzero(pos_mask[b, q]).flatten().tolist()
            pos_text = ", ".join(f"{similarity[b, q, j]:.2f}" for j in positives) or "none"
            ax.set_xlabel(f"positive cos {pos_text}\n{int(neg_mask[b, q].sum())} of {int((adjacent[q]).sum())} neighbours negative", fontsize=8)
            ax.set_title(f"Q{k + 1}: similarity to the query", fontsize=10)
            _axis_off(ax)
        _axis_off(row[0])
    legend = [
        Patch(facecolor="none", edgecolor="yellow", linewidth=2, label="query cell"),
        Patch(facecolor="none", edgecolor="#00c000", linewidth=2, label=f"positive: most similar cell at distance >= {config.patch_far_distance}"),
        Patch(facecolor="none", edgecolor=NEGATIVE_COLOUR, linewidth=2, linestyle="--", label=f"negative: adjacent cell with cos < {config.patch_negative_threshold:g}"),
        Patch(facecolor="#b40426", alpha=0.6, label="tint: cosine similarity (red +1, blue -1)"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncol=2, frameon=False, fontsize=9)
    fig.suptitle(f"RepCo patch pairs (select_patch_pairs with the RepCoConfig defaults: {config.patch_num_positives} positive, "
                 f"rule {config.patch_negative_rule!r})\nfeatures: {source}", fontsize=10)
    return fig


def _view_images(value) -> list[torch.Tensor]:
    """The images in one output of a view transform: a ``[3, s, s]`` tensor, ``[n, 3, s, s]`` (views of one kind stacked) or a list."""
    values = list(value) if isinstance(value, (list, tuple)) or (isinstance(value, torch.Tensor) and value.ndim == 4) else [value]
    return [v for v in values if isinstance(v, torch.Tensor) and v.ndim == 3 and v.shape[0] == 3 and v.is_floating_point()]


def render_views(images: Sequence[np.ndarray], args: argparse.Namespace) -> plt.Figure:
    """Any method: its view transform (the method's first preset, at ``--size``) applied to each image, every view shown."""
    from hf_sslviews.methods import get_recipe

    recipe = get_recipe(args.method)
    preset = recipe.presets[recipe.default_preset]
    fields = {**preset.config, "image_size": args.size}
    if isinstance(fields.get("backbone_kwargs"), dict) and "img_size" in fields["backbone_kwargs"]:
        fields["backbone_kwargs"] = {**fields["backbone_kwargs"], "img_size": args.size, "patch_size": args.patch_size}
    config = recipe.config_class(**fields)
    views = recipe.build_views(config, **preset.views)
    outputs = [views({"image": [image]}) for image in images]
    keys = [key for key in outputs[0] if _view_images(outputs[0][key][0])]
    columns = 1 + sum(len(_view_images(outputs[0][key][0])) for key in keys)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.5 * columns, 2.6 * len(images) + 0.4), squeeze=False, layout="constrained")
    for row, image, output in zip(axes, images, outputs):
        row[0].imshow(image)
        _axis_off(row[0])
        row[0].set_title("source", fontsize=10)
        column = 1
        for key in keys:
            for index, view in enumerate(_view_images(output[key][0])):
                _show_view(row[column], _to_rgb(view, config.image_mean, config.image_std), args.size)
                row[column].set_title(key if len(_view_images(output[key][0])) == 1 else f"{key}[{index}]", fontsize=9)
                column += 1
    fig.suptitle(f"{recipe.title}: the views of preset {recipe.default_preset}", fontsize=11)
    return fig


def renderer(method: str) -> Callable[[Sequence[np.ndarray], argparse.Namespace], plt.Figure]:
    """The method's own picture if it has one, else :func:`render_views`."""
    return RENDERERS.get(method, render_views)


RENDERERS: dict[str, Callable[[Sequence[np.ndarray], argparse.Namespace], plt.Figure]] = {
    "aps": render_aps,
    "patchmix": render_patchmix,
    "clsa": render_clsa,
    "mulan": render_mulan,
    "repco": render_repco,
    "mocov3": render_pair,
    "byol": render_pair,
    "simsiam": render_pair,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from hf_sslviews.methods import RECIPES

    parser.add_argument("--method", choices=sorted(RECIPES), default="aps", help="Method whose views to draw.")
    parser.add_argument("--output", default=None, help="PNG file to write (default views_<method>.png).")
    parser.add_argument("--num_images", type=int, default=None, help=f"Photos to use, 1..{len(SAMPLE_IMAGES)} ({', '.join(SAMPLE_IMAGES)}); default 3 (PatchMix 4, others 2).")
    parser.add_argument("--chunk", type=int, default=0, help="APS: which of the K patch chunks to show.")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random views.")
    parser.add_argument("--size", type=int, default=224, help="Crop side in pixels.")
    parser.add_argument("--patch_size", type=int, default=16, help="ViT patch side in pixels (size must be a multiple).")
    parser.add_argument("--ratio", type=float, default=0.25, help="APS: fraction of patches kept per view.")
    parser.add_argument("--num_chunks", type=int, default=None, help="APS: K, the number of view-1 chunks (default 1 / ratio).")
    parser.add_argument("--original_flips", action="store_true", help="APS: ignore flips in the geometry, as the original code does.")
    parser.add_argument("--num_groups", type=int, default=2, help="PatchMix: m, the number of images mixed into one.")
    parser.add_argument("--preset", default="single", help="CLSA: view set (single, multi, single_cifar, multi_cifar).")
    parser.add_argument("--n_local", type=int, default=2, help="MULAN: number of local crops.")
    parser.add_argument("--n_cutout", type=int, default=1, help="MULAN: number of cutout views.")
    parser.add_argument("--num_queries", type=int, default=3, help="RepCo: query cells shown per image.")
    parser.add_argument("--model_name_or_path", default=None, help="RepCo: exported timm backbone (folder) whose feature grid picks the pairs; default: hand-made cell features.")
    parser.add_argument("--dpi", type=int, default=80, help="Resolution of the PNG.")
    parser.add_argument("--image", nargs="+", default=None, help="Your own image files to draw the views of (default: scikit-image's sample photos).")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    output = args.output or f"views_{args.method}.png"
    if Path(output).exists() and (not Path(output).is_file() or Path(output).read_bytes()[:8] != b"\x89PNG\r\n\x1a\n"):
        # An earlier figure is replaced; anything else is the user's.
        raise ValueError(f"--output {output} exists and is not a PNG figure; choose another path (it would be replaced)")
    torch.manual_seed(args.seed)
    num_images = args.num_images if args.num_images is not None else DEFAULT_NUM_IMAGES.get(args.method, 3)
    images = load_user_images(args.image) if args.image else load_sample_images(num_images)
    fig = renderer(args.method)(images, args)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=args.dpi)
    plt.close(fig)
    # The figure is opaque: dropping matplotlib's alpha channel makes the file ~12% smaller.
    Image.open(buffer).convert("RGB").save(output, format="png", optimize=True)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    from hf_sslviews.runs.cli import run_script

    run_script(main)
