"""The last ViT block computed for the CLS token only, when the CLS token is all that is read.

Every method except RepCo reads a ViT through its CLS token (``global_pool="token"``). In the
last block only the CLS row of the output is used, so only its query, attention output,
projection and MLP need computing; keys and values are still needed for every token. Per
token, a block costs ``3d^2`` (qkv) ``+ d^2`` (proj) ``+ 2 r d^2`` (MLP, ratio ``r``); the CLS-only
block keeps ``2d^2`` per token (keys, values). With ``r = 4`` that saves 10/12 of the last
block: about 20% of a 4-block ViT's FLOPs and 7% of a 12-block ViT-S, forward and backward,
for the online and the target encoder alike.

Values and gradients are those of the full block (the discarded rows get no gradient), up to
floating-point summation order. LayerNorm, the MLP, LayerScale and DropPath act per token or
per sample, so they give the same CLS row whether or not the other rows are computed.

Only timm's plain ``Block`` with its plain ``Attention`` and a token-wise MLP qualifies;
anything else (other block or attention classes, gated attention, attention pooling, average
pooling) runs timm's full forward, which is always correct.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import GluMlp, Mlp, SwiGLU
from timm.models.vision_transformer import Attention, Block
from torch import nn

# Token-wise MLPs: each output row depends only on its own input row.
_TOKENWISE_MLPS = (Mlp, GluMlp, SwiGLU)


def supports_cls_readout(vit: nn.Module) -> bool:
    """Whether :func:`cls_readout_forward` gives ``vit``'s pooled features exactly."""
    blocks = getattr(vit, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        return False
    if getattr(vit, "cls_token", None) is None or getattr(vit, "global_pool", None) != "token":
        return False
    if getattr(vit, "attn_pool", None) is not None:
        return False
    last = blocks[-1]
    if type(last) is not Block or type(last.attn) is not Attention:
        return False
    if getattr(last.attn, "gate", None) is not None:  # gated attention reads every token's gate; keep it simple
        return False
    return isinstance(last.mlp, _TOKENWISE_MLPS)


def cls_only_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """``block(x)[:, :1]`` without computing the other rows: ``[B, N, D]`` -> ``[B, 1, D]``."""
    attn = block.attn
    batch, tokens, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    normed = block.norm1(x)
    # The fused qkv weight is [q; k; v] stacked along the output dimension.
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(normed[:, :1], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(normed, weight[width:], None if bias is None else bias[width:])
    q = attn.q_norm(q.reshape(batch, 1, heads, head_dim).transpose(1, 2))
    k, v = kv.reshape(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    k = attn.k_norm(k)
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=attn.scale)
    out = out.transpose(1, 2).reshape(batch, 1, width)
    scale_norm = getattr(attn, "norm", None)  # timm versions before scale_norm have none
    out = attn.proj_drop(attn.proj(out if scale_norm is None else scale_norm(out)))
    cls = x[:, :1] + block.drop_path1(block.ls1(out))
    return cls + block.drop_path2(block.ls2(block.mlp(block.norm2(cls))))


def cls_readout_forward(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Blocks, final norm and head of ``vit`` on embedded tokens ``[B, N, D]`` -> ``[B, D]``.

    ``tokens`` are what ``forward_features`` feeds its blocks (patch embedding, position
    embedding, prefix tokens, ``norm_pre`` applied). Only valid where
    :func:`supports_cls_readout` holds.
    """
    body = vit.blocks[:-1]
    if getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled() and len(body) > 0:
        from timm.models._manipulate import checkpoint_seq

        tokens = checkpoint_seq(body, tokens)
    else:
        tokens = body(tokens)
    cls = vit.norm(cls_only_block(vit.blocks[-1], tokens))
    return vit.forward_head(cls, pre_logits=True)


__all__ = ["cls_only_block", "cls_readout_forward", "supports_cls_readout"]
