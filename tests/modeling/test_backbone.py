import pytest
import torch

from hf_sslviews.modeling.common import TimmBackbone, check_backbone_name


def test_backbone__token_subset_with_all_indices_equals_full_forward(tiny_vit_kwargs):
    backbone = TimmBackbone(tiny_vit_kwargs["backbone"], tiny_vit_kwargs["backbone_kwargs"]).eval()
    x = torch.randn(2, 3, 32, 32)
    all_indices = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        assert torch.allclose(backbone.forward_tokens(x, all_indices), backbone(x), atol=1e-5)


def test_backbone__token_subset_depends_only_on_kept_patches(tiny_vit_kwargs):
    backbone = TimmBackbone(tiny_vit_kwargs["backbone"], tiny_vit_kwargs["backbone_kwargs"]).eval()
    x = torch.randn(1, 3, 32, 32)
    keep = torch.tensor([[0, 5, 10]])
    y = x.clone()
    y[..., 24:, 24:] = 0  # patch 15 only, which is not kept
    with torch.no_grad():
        a, b = backbone.forward_tokens(x, keep), backbone.forward_tokens(y, keep)
        assert torch.allclose(a, b, atol=1e-6)
        # ...and the kept tokens' positions matter: the same pixels at other positions differ.
        assert not torch.allclose(a, backbone.forward_tokens(x, torch.tensor([[1, 5, 10]])), atol=1e-4)


def test_backbone__other_input_sizes_interpolate_position_embedding(tiny_vit_kwargs):
    backbone = TimmBackbone(tiny_vit_kwargs["backbone"], tiny_vit_kwargs["backbone_kwargs"])
    assert backbone(torch.randn(2, 3, 16, 16)).shape == (2, 48)


def test_backbone__dense_grid_for_vit_and_cnn(tiny_vit_kwargs):
    vit = TimmBackbone(tiny_vit_kwargs["backbone"], tiny_vit_kwargs["backbone_kwargs"])
    assert vit.forward_dense(torch.randn(2, 3, 32, 32)).shape == (2, 48, 4, 4)
    cnn = TimmBackbone("resnet18", {})
    assert not cnn.is_vit
    assert cnn.forward_dense(torch.randn(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    assert cnn(torch.randn(2, 3, 64, 64)).shape == (2, 512)
    with pytest.raises(ValueError, match="needs a ViT"):
        cnn.forward_tokens(torch.randn(1, 3, 64, 64), torch.tensor([[0]]))


def test_backbone__target_copy_has_same_weights_no_grad_no_drop_path(tiny_vit_kwargs):
    kwargs = {**tiny_vit_kwargs["backbone_kwargs"], "drop_path_rate": 0.5}
    online = TimmBackbone(tiny_vit_kwargs["backbone"], kwargs)
    target = online.make_target()
    assert all(not p.requires_grad for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(online.state_dict().values(), target.state_dict().values()))
    x = torch.randn(2, 3, 32, 32)
    target.train()
    assert torch.allclose(target(x), target(x))  # no stochastic depth in the target


def test_backbone__unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="vit_small_patch16_224"):
        check_backbone_name("vit_smal_patch16_224")


def test_backbone__rejects_num_classes(tiny_vit_kwargs):
    with pytest.raises(ValueError, match="num_classes"):
        TimmBackbone(tiny_vit_kwargs["backbone"], {**tiny_vit_kwargs["backbone_kwargs"], "num_classes": 10})


def test_backbone__index_out_of_range_is_a_clear_error(tiny_vit_kwargs):
    backbone = TimmBackbone(tiny_vit_kwargs["backbone"], tiny_vit_kwargs["backbone_kwargs"])
    with pytest.raises(ValueError, match="token_indices"):
        backbone.forward_tokens(torch.randn(1, 3, 32, 32), torch.tensor([[16]]))
