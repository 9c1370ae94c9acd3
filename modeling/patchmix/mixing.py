"""PatchMix's batch operations: mixing patches across a batch and the soft targets it implies.

Pure functions of tensors, one job each, with their randomness injectable (``permutation`` /
``generator``) so tests are exact. They run in the model, on the device: the mix needs the
whole batch, which a per-example ``datasets`` transform never sees.

Mixing is done in **pixel space on patch-aligned blocks**: a block of ``patch_size x
patch_size`` pixels is exactly what the ViT's patch embedding turns into one token, so moving
blocks is the same as moving patch tokens before the embedding. Every block keeps its grid
position, so each token gets the position embedding of the place it came from (model_cards/patchmix.md:
"at the same positions").
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


def sample_patch_permutation(num_patches: int, generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None) -> torch.Tensor:
    """One random order of the ``num_patches`` grid positions, shared by the whole batch.

    Returns:
        ``int64 [num_patches]``.
    """
    if generator is not None:
        return torch.randperm(num_patches, generator=generator, device=generator.device).to(device or generator.device)
    return torch.randperm(num_patches, device=device)


def patch_groups(permutation: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Group of each grid position: the permutation cut into ``num_groups`` runs of ``T // m``.

    Position ``permutation[i]`` belongs to group ``i // (T // m)``; the ``T mod m`` positions left
    over at the end of the permutation are put in group 0, i.e. they keep the image's own patch.

    Args:
        permutation: ``int64 [T]``, a permutation of ``0..T-1``.
        num_groups: ``m``, at least 1 and at most ``T``.

    Returns:
        ``int64 [T]``: the group ``j`` in ``[0, m)`` of every grid position (row-major).
    """
    num_patches = permutation.numel()
    if not 1 <= num_groups <= num_patches:
        raise ValueError(f"num_groups must lie in [1, {num_patches}] (the number of patches), got {num_groups}")
    group_size = num_patches // num_groups
    rank_in_order = torch.arange(num_patches, device=permutation.device)
    group_of_rank = torch.where(rank_in_order < group_size * num_groups, rank_in_order // group_size, torch.zeros_like(rank_in_order))
    groups = torch.empty_like(group_of_rank)
    groups[permutation] = group_of_rank
    return groups


def patch_mix(
    pixel_values: torch.Tensor,
    patch_size: int,
    num_groups: int,
    permutation: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix patch-aligned blocks across the batch, each block staying at its grid position.

    Image ``g`` of the output takes the positions of group ``j`` (see :func:`patch_groups`) from
    input image ``(g + j) mod B``; group 0 and the leftover positions are its own.

    Args:
        pixel_values: ``[B, C, H, W]`` with ``H`` and ``W`` multiples of ``patch_size``.
        patch_size: side of a ViT patch in pixels.
        num_groups: ``m``, the number of images each mixed image draws from.
        permutation: ``int64 [T]`` order of the ``T = (H/p)(W/p)`` positions; drawn from
            ``generator`` (or torch's global RNG) when ``None``.
        generator: RNG for the permutation.

    Returns:
        ``(mixed, owner)``: ``mixed`` is ``[B, C, H, W]``; ``owner`` is ``int64 [B, T]``, the
        index of the input image each output patch (row-major) came from.
    """
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values must be [B, C, H, W], got shape {tuple(pixel_values.shape)}")
    batch, channels, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch_size}; crop sizes must be multiples of it")
    grid_h, grid_w = height // patch_size, width // patch_size
    num_patches = grid_h * grid_w
    if permutation is None:
        permutation = sample_patch_permutation(num_patches, generator, pixel_values.device)
    if permutation.numel() != num_patches:
        raise ValueError(f"permutation must have {num_patches} entries (one per patch), got {permutation.numel()}")
    groups = patch_groups(permutation.to(pixel_values.device), num_groups)
    owner = (torch.arange(batch, device=pixel_values.device).unsqueeze(1) + groups.unsqueeze(0)) % batch  # [B, T]
    # [B, C, gh, p, gw, p] -> [B, T, C*p*p]: one row per patch, in the ViT's row-major order.
    patches = pixel_values.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, num_patches, -1)
    position = torch.arange(num_patches, device=pixel_values.device).unsqueeze(0)
    mixed = patches[owner, position]  # patch t of image g <- patch t of image owner[g, t]
    mixed = mixed.reshape(batch, grid_h, grid_w, channels, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return mixed.reshape(batch, channels, height, width), owner


class PatchMixTargets(NamedTuple):
    """The three soft-target matrices, ``[N, N * world_size]`` each, rows summing to 1."""

    identity: torch.Tensor
    mix_origin: torch.Tensor
    mix_mix: torch.Tensor


def identity_targets(batch_size: int, rank: int = 0, world_size: int = 1, smoothing: float = 0.1, device: Optional[torch.device] = None) -> torch.Tensor:
    """origin -> origin targets: one-hot on the own column ``rank * N + g``, label-smoothed.

    Smoothing as ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``: ``1 - eps`` on the positive
    plus ``eps / K`` on each of the ``K = N * world_size`` columns.

    Returns:
        ``float32 [N, N * world_size]``.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must lie in [0, 1), got {smoothing}")
    num_columns = batch_size * world_size
    targets = torch.full((batch_size, num_columns), smoothing / num_columns, device=device)
    rows = torch.arange(batch_size, device=device)
    targets[rows, rows + rank * batch_size] += 1.0 - smoothing
    return targets


def mix_origin_targets(batch_size: int, num_groups: int, rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None) -> torch.Tensor:
    """mix -> origin targets: mixed image ``g`` is ``1/m`` of each of images ``g .. g+m-1``.

    Indices wrap within the local batch (the mix pairs images of one process), columns are
    offset by ``rank * N``. When ``m > N`` an image appears more than once and its weights add.

    Returns:
        ``float32 [N, N * world_size]``.
    """
    rows = torch.arange(batch_size, device=device)
    targets = torch.zeros(batch_size, batch_size * world_size, device=device)
    for shift in range(num_groups):
        columns = (rows + shift) % batch_size + rank * batch_size
        targets[rows, columns] += 1.0 / num_groups
    return targets


def mix_mix_targets(batch_size: int, num_groups: int, rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None) -> torch.Tensor:
    """mix -> mix targets: the share of sources that mixed images ``g`` and ``g + d`` have in common.

    Both hold ``1/m`` of ``m`` consecutive images; ``m - |d|`` of them are shared, so the
    weight of column ``g + d`` is ``(m - |d|) / m^2`` for ``|d| < m`` (m=2: 0.25, 0.5, 0.25).
    Wrapping and the rank offset as in :func:`mix_origin_targets`.

    Returns:
        ``float32 [N, N * world_size]``.
    """
    rows = torch.arange(batch_size, device=device)
    targets = torch.zeros(batch_size, batch_size * world_size, device=device)
    for shift in range(-(num_groups - 1), num_groups):
        columns = (rows + shift) % batch_size + rank * batch_size
        targets[rows, columns] += (num_groups - abs(shift)) / num_groups**2
    return targets


def patchmix_targets(
    batch_size: int,
    num_groups: int,
    rank: int = 0,
    world_size: int = 1,
    smoothing: float = 0.1,
    device: Optional[torch.device] = None,
) -> PatchMixTargets:
    """The identity, mix -> origin and mix -> mix targets of one local batch.

    Args:
        batch_size: ``N``, the local batch.
        num_groups: ``m`` used by :func:`patch_mix` for this batch.
        rank: this process's rank (columns offset by ``rank * N``).
        world_size: number of processes (``N * world_size`` columns: the gathered keys).
        smoothing: label smoothing of the identity targets (0.1).
    """
    if batch_size < 1 or num_groups < 1:
        raise ValueError(f"batch_size and num_groups must be at least 1, got {batch_size}, {num_groups}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    return PatchMixTargets(
        identity_targets(batch_size, rank, world_size, smoothing, device),
        mix_origin_targets(batch_size, num_groups, rank, world_size, device),
        mix_mix_targets(batch_size, num_groups, rank, world_size, device),
    )


__all__ = [
    "PatchMixTargets",
    "identity_targets",
    "mix_mix_targets",
    "mix_origin_targets",
    "patch_groups",
    "patch_mix",
    "patchmix_targets",
    "sample_patch_permutation",
]
