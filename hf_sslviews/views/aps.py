"""APS views: two crops and asymmetric patch sampling (model_cards/aps.md).

Asymmetric Patch Sampling (arXiv 2306.02854) makes a positive pair as different in
appearance as possible: view 1 keeps a sparse random subset of its patches, view 2 keeps the
patches that overlap view 1's least. Per image this module returns the two augmented crops,
``K`` chunks of patch indices for each view (one chunk per optimizer step of the repeated-batch
schedule) and the crop boxes.

The geometry (source-pixel frame, written for this project from the paper's description, not from the
CC-BY-NC reference code): a crop box ``(top, left, h, w)`` resized to ``size x size`` and cut
into a ``G_h x G_w`` grid has cell ``(r, c)`` covering source rows
``top + r * h / G_h .. top + (r + 1) * h / G_h`` and columns
``left + c * w / G_w .. left + (c + 1) * w / G_w``. A flipped view's column ``c`` is the
unflipped column ``G_w - 1 - c``. Because cells are rectangles, the area of a view-2 cell
covered by a view-1 cell is the product of a row overlap and a column overlap, so the coverage
of every view-2 cell by a set of view-1 cells is ``Y @ M @ X^T`` (two small matrix products per
chunk, ``M`` the chunk's 0/1 mask on the view-1 grid).

Deviation from the original **[ours]**: the reference code records the crop box before the
flip and never looks at the flip, so when exactly one view is flipped its geometry is mirrored
and "least overlapping" patches may overlap fully. ``track_flips=True`` (default) mirrors the
grid correctly; ``track_flips=False`` reproduces the original.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch

from .augment import CropBox, ViewAugmentation
from .base import ViewTransform, planned_images
from .multi_view import plan_crops
from .worker_memory import view_output

GridSize = Union[int, Sequence[int]]


def _grid_hw(grid: GridSize) -> tuple[int, int]:
    if isinstance(grid, int):
        grid_h = grid_w = grid
    else:
        grid_h, grid_w = (int(g) for g in grid)
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must have at least one cell per side, got {grid_h}x{grid_w}")
    return grid_h, grid_w


def patches_per_chunk(num_cells: int, ratio: float, num_chunks: int) -> int:
    """``n = int(num_cells * ratio)``, checked so that ``num_chunks`` disjoint chunks fit.

    Raises:
        ValueError: if ``ratio`` is not in (0, 1], ``n`` is 0, or ``num_chunks * n > num_cells``.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio is the fraction of patches kept per chunk and must lie in (0, 1], got {ratio}")
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be at least 1, got {num_chunks}")
    # The small tolerance keeps int(256 * 0.3) style products from losing a patch to rounding.
    n = int(num_cells * ratio + 1e-9)
    if n < 1:
        raise ValueError(f"ratio {ratio} keeps no patch of a {num_cells}-cell grid; raise ratio or the grid size")
    if num_chunks * n > num_cells:
        raise ValueError(
            f"{num_chunks} disjoint chunks of {n} patches need {num_chunks * n} cells but the grid has {num_cells}; "
            f"use num_chunks <= {num_cells // n} (1 / ratio)"
        )
    return n


def sparse_patch_chunks(
    grid_h: int,
    grid_w: int,
    ratio: float = 0.25,
    num_chunks: int = 4,
    generator: Optional[torch.Generator] = None,
    batch_shape: Sequence[int] = (),
) -> torch.Tensor:
    """View 1's sparse sampling: one random permutation split into disjoint chunks.

    Args:
        grid_h, grid_w: patch grid of the view.
        ratio: fraction of the grid kept per chunk; ``n = int(grid_h * grid_w * ratio)``.
        num_chunks: ``K``; when ``ratio * K == 1`` the chunks cover the grid.
        generator: optional ``torch.Generator`` (the global RNG otherwise).
        batch_shape: leading shape for many independent draws (e.g. ``(B,)``).

    Returns:
        ``int64 [*batch_shape, K, n]``: row-major cell indices ``r * grid_w + c``, each chunk
        sorted ascending, no index repeated across chunks of one draw.

    Raises:
        ValueError: ``ratio`` not in (0, 1] or ``K * n`` larger than the grid.
    """
    cells = grid_h * grid_w
    n = patches_per_chunk(cells, ratio, num_chunks)
    # argsort of uniform keys is a uniform random permutation per row, batched.
    perm = torch.rand(*batch_shape, cells, generator=generator).argsort(dim=-1)
    chunks = perm[..., : num_chunks * n].reshape(*batch_shape, num_chunks, n)
    return chunks.sort(dim=-1).values


def _as_box_tensor(box: Union[CropBox, torch.Tensor, Sequence[float]]) -> torch.Tensor:
    if isinstance(box, CropBox):
        return box.as_tensor()
    return torch.as_tensor(box, dtype=torch.float32)


def axis_overlap(
    src_start: torch.Tensor,
    src_length: torch.Tensor,
    dst_start: torch.Tensor,
    dst_length: torch.Tensor,
    src_cells: int,
    dst_cells: int,
    src_flipped: Optional[torch.Tensor] = None,
    dst_flipped: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One axis of the cell geometry: how much of each destination cell each source cell covers.

    Args:
        src_start, src_length: ``float [*B]`` the source view's crop interval on this axis
            (source-image pixels).
        dst_start, dst_length: ``float [*B]`` the destination view's interval.
        src_cells, dst_cells: number of grid cells along the axis in each view.
        src_flipped, dst_flipped: optional ``bool/float [*B]``: the view is mirrored on this
            axis, so its cell ``i`` lies where unflipped cell ``cells - 1 - i`` lies.

    Returns:
        ``float32 [*B, dst_cells, src_cells]``: entry ``[j, i]`` is the length of the overlap of
        destination cell ``j`` and source cell ``i`` divided by the destination cell's length.
    """
    src_start, src_length, dst_start, dst_length = (torch.as_tensor(t, dtype=torch.float32) for t in (src_start, src_length, dst_start, dst_length))
    s_edges = src_start.unsqueeze(-1) + src_length.unsqueeze(-1) * torch.arange(src_cells + 1, dtype=torch.float32) / src_cells
    d_edges = dst_start.unsqueeze(-1) + dst_length.unsqueeze(-1) * torch.arange(dst_cells + 1, dtype=torch.float32) / dst_cells
    low = torch.maximum(d_edges[..., :-1, None], s_edges[..., None, :-1])
    high = torch.minimum(d_edges[..., 1:, None], s_edges[..., None, 1:])
    overlap = (high - low).clamp_(min=0.0) / (dst_length / dst_cells)[..., None, None]
    if src_flipped is not None:
        overlap = torch.where(torch.as_tensor(src_flipped).bool()[..., None, None], overlap.flip(-1), overlap)
    if dst_flipped is not None:
        overlap = torch.where(torch.as_tensor(dst_flipped).bool()[..., None, None], overlap.flip(-2), overlap)
    return overlap


def patch_coverage(
    box_src: Union[CropBox, torch.Tensor],
    box_dst: Union[CropBox, torch.Tensor],
    selected_cells: torch.Tensor,
    grid: GridSize,
    track_flips: bool = True,
) -> torch.Tensor:
    """Fraction of each destination-view cell covered by the selected source-view cells.

    Separable: per-axis overlap matrices ``Y [G_h, G_h]`` and ``X [G_w, G_w]``, then
    ``coverage = Y @ M @ X^T`` per chunk, ``M`` the chunk's 0/1 mask on the source grid. The
    selected cells of one chunk must be distinct (they are for :func:`sparse_patch_chunks`),
    so the coverage lies in [0, 1].

    Args:
        box_src, box_dst: crop boxes ``float [*B, 5]`` (top, left, height, width, flipped) as
            from ``CropBox.as_tensor()``, or ``CropBox`` objects.
        selected_cells: ``int64 [*B, K, n]`` row-major source-grid indices per chunk.
        grid: ``G`` or ``(G_h, G_w)``, the same for both views.
        track_flips: mirror flipped views (correct). ``False`` ignores the flip flags, which
            reproduces the original code's flaw.

    Returns:
        ``float32 [*B, K, G_h * G_w]``: coverage of each destination cell (row-major), per chunk.
    """
    grid_h, grid_w = _grid_hw(grid)
    src, dst = _as_box_tensor(box_src), _as_box_tensor(box_dst)
    if src.shape[-1] != 5 or dst.shape[-1] != 5:
        raise ValueError(f"crop boxes must have 5 values (top, left, height, width, flipped), got shapes {tuple(src.shape)} and {tuple(dst.shape)}")
    rows = axis_overlap(src[..., 0], src[..., 2], dst[..., 0], dst[..., 2], grid_h, grid_h)
    cols = axis_overlap(
        src[..., 1], src[..., 3], dst[..., 1], dst[..., 3], grid_w, grid_w,
        src[..., 4] if track_flips else None, dst[..., 4] if track_flips else None,
    )
    selected_cells = torch.as_tensor(selected_cells, dtype=torch.int64)
    if selected_cells.numel() and (selected_cells.min() < 0 or selected_cells.max() >= grid_h * grid_w):
        raise ValueError(f"selected_cells must index a {grid_h}x{grid_w} grid (0..{grid_h * grid_w - 1})")
    mask = torch.zeros(*selected_cells.shape[:-1], grid_h * grid_w, dtype=torch.float32)
    mask.scatter_(-1, selected_cells, 1.0)
    mask = mask.view(*mask.shape[:-1], grid_h, grid_w)
    coverage = rows.unsqueeze(-3) @ mask @ cols.unsqueeze(-3).transpose(-1, -2)
    return coverage.flatten(-2)


def selective_patch_indices(
    coverage: torch.Tensor,
    num_patches: int,
    power: float = 3.0,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """View 2's selective sampling: draw cells without replacement, ``p ∝ (1 - coverage) ** power``.

    Args:
        coverage: ``float [*B, C]`` per-cell coverage by view 1 (from :func:`patch_coverage`).
        num_patches: ``n`` cells drawn per row, without replacement.
        power: sharpness of the preference for uncovered cells (3 in the paper; 0 gives
            uniform random sampling).
        generator: optional ``torch.Generator``.
        eps: weight given to every cell of a row that has fewer than ``n`` cells with positive
            weight, so that the draw never fails; rows with enough free cells are untouched,
            so fully covered cells are never drawn there.

    Returns:
        ``int64 [*B, n]`` distinct cell indices per row, sorted ascending.
    """
    cells = coverage.shape[-1]
    if not 1 <= num_patches <= cells:
        raise ValueError(f"num_patches must lie in 1..{cells} (the grid size), got {num_patches}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    weights = (1.0 - coverage.reshape(-1, cells).float()).clamp_(min=0.0).pow_(power)
    short = (weights > 0).sum(dim=-1, keepdim=True) < num_patches
    if bool(short.any()):
        weights = weights + eps * short
    picked = torch.multinomial(weights, num_patches, replacement=False, generator=generator)
    return picked.sort(dim=-1).values.reshape(*coverage.shape[:-1], num_patches)


def kept_patch_overlap(
    box_1: torch.Tensor,
    box_2: torch.Tensor,
    indices_1: torch.Tensor,
    indices_2: torch.Tensor,
    grid: GridSize,
) -> torch.Tensor:
    """The statistic APS promises: how much of view 2's kept area view 1's kept patches cover.

    Defined, per chunk, as (area, in source pixels, of the intersection of the union of view-1
    kept cells with the union of view-2 kept cells) / (area of the view-2 kept cells). All
    view-2 cells have the same source area, so it is the mean coverage of the kept view-2
    cells. Flips are always tracked here: this measures the true geometry.

    Args:
        box_1, box_2: ``float [*B, 5]`` crop boxes.
        indices_1, indices_2: ``int64 [*B, K, n]`` kept cells of each view.
        grid: ``G`` or ``(G_h, G_w)``.

    Returns:
        ``float32 [*B, K]`` fractions in [0, 1] (about 0.04 for APS, 0.16 for random sampling).
    """
    coverage = patch_coverage(box_1, box_2, indices_1, grid, track_flips=True)
    return coverage.gather(-1, indices_2).mean(dim=-1)


# Named settings (model_cards/aps.md): CIFAR 32 px / patch 2 (16 x 16), ImageNet 224 / 16 (14 x 14).
APS_SETTINGS: dict[str, dict] = {
    "cifar": dict(size=32, patch_size=2),
    "imagenet": dict(size=224, patch_size=16),
}


class APSViewTransform(ViewTransform):
    """``datasets`` transform for APS: two crops, sparse patches for view 1, selective for view 2.

    Input: a batch dict with an image column (PIL images, ``{"bytes", "path"}`` dicts, paths,
    bytes, arrays; any mode and size).

    Output (lists with one entry per input row; ``None`` where ``image_ok`` is False):
        - ``pixel_values_1``, ``pixel_values_2``: ``float32 [3, size, size]``, normalised.
        - ``token_indices_1``: ``int64 [K, n]`` view-1 patch indices (row-major over the
          ``G x G`` grid, ``G = size // patch_size``); the K chunks are disjoint.
        - ``token_indices_2``: ``int64 [K, n]`` view-2 indices, chunk k drawn against view-1
          chunk k, distinct within a chunk.
        - ``crop_boxes``: ``float32 [2, 5]``, (top, left, height, width, flipped) per view.
        - ``image_ok``: ``bool``.

    Augmentations (``ViewAugmentation.from_settings("aps")``): RandomResizedCrop(size,
    scale=(0.15, 1)) -> flip p=0.5 -> ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8 -> grayscale
    p=0.2 -> normalise; no blur, no solarize. For crops up to 96 px the photometric ops run
    batched in ``float32`` (``ViewAugmentation.photometric_normalize_batch``, same distribution,
    no 8-bit truncation between ops); larger crops use the per-crop ``uint8`` path.

    Args:
        size: crop side in pixels.
        patch_size: ViT patch side; ``size`` must be a multiple of it.
        ratio: fraction of patches kept per chunk (0.25).
        num_chunks: ``K``; default ``round(1 / ratio)`` (4), so view-1 chunks cover the grid.
        power: exponent of the selective sampling weights ``(1 - coverage) ** power`` (3).
        scale: crop area range as a fraction of the image ((0.15, 1)).
        track_flips: mirror flipped views in the geometry (True) or reproduce the original
            code, which ignores flips (False).
        image_column: name of the image column.
        **augment_overrides: other ``ViewAugmentation`` arguments (``flip_p``, ``jitter``,
            ``mean``, ``std``, ``interpolation``, ...).

    Example:
        >>> views = APSViewTransform.from_settings("cifar")
        >>> dataset = dataset.with_transform(views)
    """

    output_keys = ("pixel_values_1", "pixel_values_2", "token_indices_1", "token_indices_2", "crop_boxes")

    def __init__(
        self,
        size: int = 224,
        patch_size: int = 16,
        ratio: float = 0.25,
        num_chunks: Optional[int] = None,
        power: float = 3.0,
        scale: tuple[float, float] = (0.15, 1.0),
        track_flips: bool = True,
        image_column: str = "image",
        **augment_overrides: Any,
    ):
        super().__init__(image_column=image_column)
        if patch_size < 1 or size % patch_size:
            raise ValueError(f"size ({size}) must be a positive multiple of patch_size ({patch_size})")
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio is the fraction of patches kept per chunk and must lie in (0, 1], got {ratio}")
        if power < 0:
            raise ValueError(f"power must be >= 0, got {power}")
        self.grid = size // patch_size
        self.num_chunks = int(num_chunks) if num_chunks is not None else max(1, round(1 / ratio))
        self.num_patches = patches_per_chunk(self.grid * self.grid, ratio, self.num_chunks)
        self.size, self.patch_size, self.ratio, self.power, self.track_flips = int(size), int(patch_size), float(ratio), float(power), bool(track_flips)
        self.augment = ViewAugmentation.from_settings("aps", size=size, scale=scale, **augment_overrides)

    @classmethod
    def from_settings(cls, name: str, **overrides: Any) -> "APSViewTransform":
        """The settings of ``APS_SETTINGS[name]`` ("cifar" or "imagenet"), then ``overrides``."""
        if name not in APS_SETTINGS:
            raise ValueError(f"unknown APS view settings {name!r}; choose one of {sorted(APS_SETTINGS)}")
        return cls(**{**APS_SETTINGS[name], **overrides})

    def make_views(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of one ``uint8 [3, H, W]`` image (the keys of :attr:`output_keys`)."""
        return {key: value[0] for key, value in self._views_of([image]).items()}

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        return self.call_batched(batch, self._views_of)

    def deferred_photometric(self) -> dict[str, list[ViewAugmentation]]:
        """Output key -> the augmentation of its view, for the colour ops run on the device."""
        return {"pixel_values_1": [self.augment], "pixel_values_2": [self.augment]}

    def _views_of(self, images: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """All views of the decoded images, batched across them: ``key -> [N, ...]``."""
        crops: tuple[list, list] = ([], [])
        boxes: list[tuple] = []
        # Image by image: each decoded image is dropped once its crops are taken, and a JPEG whose
        # two crops allow it is decoded at a reduced size (the boxes stay in full-size pixels).
        for image, scale, pair in planned_images(images, plan_crops([self.augment, self.augment])):
            for view, box in enumerate(pair):
                crops[view].append(self.augment.crop(image, box, scale))
                boxes.append((box.top, box.left, box.height, box.width, float(box.flipped)))
        if not boxes:
            return {}
        n = len(crops[0])
        # The patch geometry is drawn before the colours, so it is the same wherever they are made.
        boxes = torch.tensor(boxes, dtype=torch.float32).view(n, 2, 5)
        indices_1 = sparse_patch_chunks(self.grid, self.grid, self.ratio, self.num_chunks, batch_shape=(n,))
        coverage = patch_coverage(boxes[:, 0], boxes[:, 1], indices_1, self.grid, track_flips=self.track_flips)
        indices_2 = selective_patch_indices(coverage, self.num_patches, self.power)
        # View 1 of every image, then view 2, written into one block (in shared memory inside a
        # DataLoader worker) that the collator takes without a copy; each view's crops are stacked
        # and freed in turn, so at most one view's separate crops are held.
        pixels = view_output((2, n, 3, self.size, self.size), torch.uint8 if self.photometric_on_device else torch.float32)
        for view in range(2):
            stacked = torch.stack(crops[view])
            crops[view].clear()
            if self.photometric_on_device:
                pixels[view] = stacked
            else:
                self.augment.photometric_normalize_crops(stacked, out=pixels[view])
        return {"pixel_values_1": pixels[0], "pixel_values_2": pixels[1], "token_indices_1": indices_1, "token_indices_2": indices_2, "crop_boxes": boxes}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, patch_size={self.patch_size}, grid={self.grid}, ratio={self.ratio}, "
            f"num_chunks={self.num_chunks}, power={self.power}, track_flips={self.track_flips}, augment={self.augment})"
        )


__all__ = [
    "APSViewTransform",
    "APS_SETTINGS",
    "axis_overlap",
    "kept_patch_overlap",
    "patch_coverage",
    "patches_per_chunk",
    "selective_patch_indices",
    "sparse_patch_chunks",
]
