"""Exponential moving average (momentum encoder) update and its cosine schedule."""

from __future__ import annotations

import copy
import math
from typing import Iterable

import torch
from torch import nn


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """``end + (start - end) * (1 + cos(pi * step / total)) / 2``: ``start`` at step 0, ``end`` at the last.

    The one cosine of the project: EMA momentum (BYOL 0.996 -> 1) and weight decay (DINO /
    PatchMix 0.04 -> 0.4) both follow it, per optimizer step. Clamped outside ``[0, total]``;
    constant ``start`` without steps.
    """
    if total_steps <= 0:
        return start
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's momentum schedule ``m = final - (final - base) * (1 + cos(pi * step / total)) / 2``.

    ``base`` at step 0, ``final`` at the last step; constant ``base`` when ``final == base``.
    """
    return cosine_schedule(step, total_steps, base, final)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers copied.

    BatchNorm running statistics are copied rather than averaged (as MoCo and BYOL do: the
    target net's statistics then follow the data, not an average of old statistics).
    """
    target_named = list(target.named_parameters())
    online_named = list(online.named_parameters())
    # Pairs are made by position, so both sides must list the same names and shapes: a wrapper
    # on one side only (FSDP's flat parameters, a compiled or DDP-wrapped online module) would
    # otherwise average unrelated tensors, or raise a bare shape error.
    if [n for n, _ in target_named] != [n for n, _ in online_named]:
        mismatch = next(((a, b) for (a, _), (b, _) in zip(target_named, online_named) if a != b), None)
        raise ValueError(
            f"target and online modules have different parameter lists ({len(target_named)} vs {len(online_named)} "
            f"parameters, first difference {mismatch}): wrap, shard or compile both the same way, or neither"
        )
    for (name, t), (_, o) in zip(target_named, online_named):
        if t.shape != o.shape:
            raise ValueError(f"target and online parameter {name!r} differ in shape ({tuple(t.shape)} vs {tuple(o.shape)}): shard both the same way")
    target_params = [p for _, p in target_named]
    online_params = [p for _, p in online_named]
    torch._foreach_lerp_(target_params, online_params, 1.0 - momentum)
    for t_buf, o_buf in zip(target.buffers(), online.buffers()):
        t_buf.copy_(o_buf)


def freeze(modules: Iterable[nn.Module]) -> None:
    """Turn off gradients of target-network modules."""
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(False)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A gradient-free copy of ``module`` with the same weights (a target network's head)."""
    target = copy.deepcopy(module)
    freeze([target])
    return target
