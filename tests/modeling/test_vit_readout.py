"""The CLS-only last block: the same features and gradients as timm's full forward, less work."""

import pytest
import torch

from hf_sslviews.modeling.common import TimmBackbone
from hf_sslviews.modeling.common.vit_readout import supports_cls_readout

BASE = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 48, "num_heads": 3}
VARIANTS = {
    "plain": {},
    "register_tokens": {"reg_tokens": 2},
    "layer_scale_qk_norm": {"init_values": 0.1, "qk_norm": True},
    "no_qkv_bias": {"qkv_bias": False},
    "swiglu": {"mlp_layer": "swiglu"},
}


def _backbone(**extra) -> TimmBackbone:
    kwargs = {**BASE, **extra}
    if kwargs.pop("mlp_layer", None) == "swiglu":
        from timm.layers import SwiGLU

        kwargs["mlp_layer"] = SwiGLU
    torch.manual_seed(0)
    return TimmBackbone("vit_tiny_patch16_224", kwargs).double()


def _features_and_grads(backbone: TimmBackbone, fast: bool, forward, seed: int = 1):
    backbone.allow_cls_readout = fast
    backbone.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same drop-path draws on both paths
    features = forward()
    (features.square().sum() + features.sum()).backward()
    return features.detach(), {name: p.grad.clone() for name, p in backbone.named_parameters() if p.grad is not None}


def _assert_same(backbone: TimmBackbone, forward) -> None:
    fast, fast_grads = _features_and_grads(backbone, True, forward)
    full, full_grads = _features_and_grads(backbone, False, forward)
    torch.testing.assert_close(fast, full, rtol=1e-10, atol=1e-10)
    assert fast_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cls_readout__features_and_gradients_equal_timm_full_forward(variant):
    backbone = _backbone(**VARIANTS[variant]).train()
    assert backbone.cls_readout
    x = torch.randn(3, 3, 32, 32, dtype=torch.double)
    _assert_same(backbone, lambda: backbone(x))


def test_cls_readout__with_drop_path_other_sizes_and_token_subsets():
    backbone = _backbone(drop_path_rate=0.3).train()
    local_crops = torch.randn(3, 3, 16, 16, dtype=torch.double)  # interpolated position embedding
    _assert_same(backbone, lambda: backbone(local_crops))
    x = torch.randn(3, 3, 32, 32, dtype=torch.double)
    keep = torch.tensor([[0, 3, 7], [1, 2, 15], [4, 8, 12]])
    _assert_same(backbone, lambda: backbone.forward_tokens(x, keep))  # APS's path


def test_cls_readout__with_gradient_checkpointing():
    backbone = _backbone().train()
    backbone.model.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.double)
    _assert_same(backbone, lambda: backbone(x))


def test_cls_readout__last_block_mlp_sees_only_the_cls_rows():
    backbone = _backbone()
    rows = {}

    def record(name):
        return lambda module, args: rows.__setitem__(name, tuple(args[0].shape))

    backbone.model.blocks[-1].mlp.fc1.register_forward_pre_hook(record("last"))
    backbone.model.blocks[0].mlp.fc1.register_forward_pre_hook(record("first"))
    backbone(torch.randn(5, 3, 32, 32, dtype=torch.double))
    assert rows["last"][:2] == (5, 1)  # one token per image in the last block's MLP
    assert rows["first"][:2] == (5, 17)  # every token (CLS + 16 patches) before it


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("vit_tiny_patch16_224", {**BASE, "global_pool": "avg"}),  # reads every token
        ("vit_tiny_patch16_224", {**BASE, "class_token": False, "global_pool": "avg"}),
        ("resnet18", {}),
    ],
)
def test_cls_readout__not_used_where_other_tokens_are_read(name, kwargs):
    backbone = TimmBackbone(name, kwargs)
    assert not supports_cls_readout(backbone.model)
    assert not backbone.cls_readout
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = backbone.model.forward_head(backbone.model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(backbone(x), expected)


def test_cls_only_block__equals_the_cls_row_of_a_block_with_scale_norms():
    from timm.models.vision_transformer import Block

    from hf_sslviews.modeling.common.vit_readout import cls_only_block

    torch.manual_seed(0)
    block = Block(48, 3, qkv_bias=True, scale_attn_norm=True, scale_mlp_norm=True, init_values=0.5).double()
    x = torch.randn(2, 9, 48, dtype=torch.double)
    torch.testing.assert_close(cls_only_block(block, x), block(x)[:, :1], rtol=1e-10, atol=1e-10)
