"""RepCo's patch-level pairs within one image, and the multi-positive InfoNCE over them.

**Reconstruction** (model_cards/repco.md): the RepCo paper's method text and code are not
public; only its idea is ("patches that are similar but at different positions are extra
positives, patches that are dissimilar but adjacent are extra negatives"). The rules below are
this library's reading of that idea; every constant is an argument, set from ``RepCoConfig``.

A *cell* is one position of the backbone's final feature grid (a ResNet C5 cell, a ViT patch
token), numbered row-major: cell ``i`` sits at row ``i // w``, column ``i % w``. Grid distance is
the Chebyshev (chessboard) distance ``max(|dr|, |dc|)``, so "adjacent" means the 8-neighbourhood.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

NEGATIVE_RULES = ("threshold", "least_similar")


def grid_chebyshev_distance(height: int, width: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Chebyshev distance between every pair of cells of a ``height x width`` grid.

    Args:
        height: grid rows.
        width: grid columns.
        device: where the result lives.

    Returns:
        ``int64 [N, N]`` with ``N = height * width`` (row-major cells):
        ``max(|row_i - row_j|, |col_i - col_j|)``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the feature grid must have at least one cell, got {height} x {width}")
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    return torch.maximum((rows[:, None] - rows[None, :]).abs(), (cols[:, None] - cols[None, :]).abs())


def _topk_mask(scores: torch.Tensor, allowed: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Boolean mask of the ``k`` highest (``largest``) or lowest scores among ``allowed`` entries, per row."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    k = min(k, int(allowed.sum(-1).max())) if allowed.numel() else 0
    if k <= 0:
        return mask
    fill = float("-inf") if largest else float("inf")
    values, indices = scores.masked_fill(~allowed, fill).topk(k, dim=-1, largest=largest)
    return mask.scatter_(-1, indices, torch.isfinite(values))  # rows with fewer than k allowed cells


@torch.no_grad()
def select_patch_pairs(
    features: torch.Tensor,
    grid_hw: tuple[int, int],
    r_far: int = 2,
    num_positives: int = 1,
    negative_rule: str = "threshold",
    negative_threshold: float = 0.5,
    num_negatives: int = 2,
    positive_threshold: Optional[float] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative cells for every cell of every image, from cosine similarity.

    Computed without gradient (RepCo selects pairs on the momentum encoder's features). For each
    cell ``i`` of an image:

    - positives: the ``num_positives`` cells most similar to ``i`` among the cells at grid
      distance ``>= r_far`` ("similar but at different positions"); with ``positive_threshold``
      set, only those with similarity ``>= positive_threshold``;
    - negatives: cells at grid distance exactly 1 ("adjacent"), either those with similarity
      ``< negative_threshold`` (``negative_rule="threshold"``) or the ``num_negatives`` least
      similar neighbours (``negative_rule="least_similar"``).

    A cell may end up with no positive (no far cell: grid smaller than ``r_far + 1``; positive
    threshold not met) or no negative (every neighbour too similar): its rows are then empty, and
    :func:`multi_positive_info_nce` leaves the cell out of the loss.

    Args:
        features: ``[B, N, C]`` per-cell features (``N = h * w``, row-major).
        grid_hw: ``(h, w)`` of the feature grid.
        r_far: smallest grid distance of a positive (>= 2, so a positive is never a neighbour).
        num_positives: positives per cell (top-k by similarity).
        negative_rule: ``"threshold"`` or ``"least_similar"``.
        negative_threshold: cosine similarity below which a neighbour is a negative (``"threshold"``).
        num_negatives: least similar neighbours taken as negatives (``"least_similar"``).
        positive_threshold: optional lowest cosine similarity of a positive.

    Returns:
        ``(pos_mask, neg_mask)``, both ``bool [B, N, N]``: ``pos_mask[b, i, j]`` says cell ``j``
        is a positive of cell ``i`` in image ``b``. The two masks never overlap and the diagonal
        is always False.
    """
    height, width = grid_hw
    if features.ndim != 3 or features.shape[1] != height * width:
        raise ValueError(f"features must be [B, h*w, C] with h*w = {height * width}, got shape {tuple(features.shape)}")
    if r_far < 2:
        raise ValueError(f"r_far must be >= 2 so that positives are never adjacent cells, got {r_far}")
    if num_positives < 1 or num_negatives < 1:
        raise ValueError(f"num_positives and num_negatives must be >= 1, got {num_positives}, {num_negatives}")
    if negative_rule not in NEGATIVE_RULES:
        raise ValueError(f"negative_rule must be one of {NEGATIVE_RULES}, got {negative_rule!r}")
    normed = F.normalize(features.float(), dim=-1)
    similarity = normed @ normed.transpose(1, 2)  # [B, N, N] cosine
    distance = grid_chebyshev_distance(height, width, device=features.device)
    far = (distance >= r_far).expand_as(similarity)
    adjacent = (distance == 1).expand_as(similarity)

    pos_mask = _topk_mask(similarity, far, num_positives, largest=True)
    if positive_threshold is not None:
        pos_mask &= similarity >= positive_threshold
    if negative_rule == "threshold":
        neg_mask = adjacent & (similarity < negative_threshold)
    else:
        neg_mask = _topk_mask(similarity, adjacent, num_negatives, largest=False)
    return pos_mask, neg_mask


def multi_positive_info_nce(
    query: torch.Tensor,
    keys: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of each query cell against its selected key cells, averaged over its positives.

    For image ``b`` and cell ``i`` with positives ``P`` and negatives ``M`` (from the masks),
    ``s_ij = nrm(q_bi) . nrm(k_bj) / tau`` and

    ``l_bi = -1/|P| sum_{p in P} log( exp(s_ip) / sum_{j in P u M} exp(s_ij) )``

    (the "outside" multi-positive form of SupCon: each positive is a separate softmax target).
    The loss is the mean of ``l_bi`` over the *valid* cells, those with at least one positive and
    one negative; the others are masked out (a cell without negatives would give a trivial,
    zero-gradient term). With no valid cell at all the loss is a zero that keeps the graph.

    Args:
        query: ``[B, N, D]`` online cell embeddings (gradient flows).
        keys: ``[B, N, D]`` momentum cell embeddings of the same image (pass them detached).
        pos_mask: ``bool [B, N, N]`` positives of each query cell.
        neg_mask: ``bool [B, N, N]`` negatives of each query cell.
        temperature: softmax temperature tau.

    Returns:
        ``(loss, valid)``: scalar loss and ``bool [B, N]`` valid cells.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if query.shape != keys.shape or pos_mask.shape != neg_mask.shape or pos_mask.shape != query.shape[:2] + query.shape[1:2]:
        raise ValueError(
            f"expected query and keys [B, N, D] and masks [B, N, N], got {tuple(query.shape)}, {tuple(keys.shape)}, "
            f"{tuple(pos_mask.shape)}, {tuple(neg_mask.shape)}"
        )
    # float32 logits: the masked log-sum-exp must not overflow under bf16 autocast.
    logits = F.normalize(query.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).transpose(1, 2) / temperature
    candidates = pos_mask | neg_mask
    # Rows without any candidate get zeros instead of all -inf, so log-sum-exp and its gradient
    # stay finite; those rows are invalid and dropped below.
    masked = logits.masked_fill(~candidates, float("-inf"))
    masked = torch.where(candidates.any(-1, keepdim=True), masked, torch.zeros_like(masked))
    log_denominator = torch.logsumexp(masked, dim=-1, keepdim=True)  # [B, N, 1]
    per_positive = torch.where(pos_mask, log_denominator - logits, torch.zeros_like(logits))
    num_pos = pos_mask.sum(-1)
    valid = (num_pos > 0) & neg_mask.any(-1)
    per_cell = per_positive.sum(-1) / num_pos.clamp(min=1)
    if not bool(valid.any()):
        return logits.sum() * 0.0, valid
    return per_cell[valid].mean(), valid


__all__ = ["NEGATIVE_RULES", "grid_chebyshev_distance", "multi_positive_info_nce", "select_patch_pairs"]
