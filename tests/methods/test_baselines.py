"""MoCo v3, BYOL and SimSiam: shapes, gradient paths, momentum, config and save/load round trips."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews  # noqa: F401  (registers the Auto classes)
from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.modeling.simsiam import SimSiamConfig, SimSiamForPreTraining

SMALL_HEADS = {
    "mocov3": (MoCoV3Config, MoCoV3ForPreTraining, dict(projector_hidden_dim=32, projector_dim=16)),
    "byol": (BYOLConfig, BYOLForPreTraining, dict(projector_hidden_dim=32, projector_dim=16)),
    "simsiam": (SimSiamConfig, SimSiamForPreTraining, dict(projector_dim=32, predictor_hidden_dim=8)),
}


def make(method, tiny_vit_kwargs, **overrides):
    config_cls, model_cls, heads = SMALL_HEADS[method]
    torch.manual_seed(0)
    return model_cls(config_cls(**tiny_vit_kwargs, **heads, **overrides))


def views(batch=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 32, 32, generator=g)


@pytest.mark.parametrize("method", sorted(SMALL_HEADS))
def test_model__outputs_and_online_gradients_only(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs)
    x1, x2 = views()
    out = model(pixel_values_1=x1, pixel_values_2=x2)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.embeddings_1.shape == (4, 48)
    out.loss.backward()
    online = [p for n, p in model.named_parameters() if n.startswith(("backbone.", "projector.", "predictor."))]
    assert online and all(p.grad is not None for p in online if p.requires_grad)
    assert sum(p.grad.abs().sum() for p in online if p.grad is not None) > 0
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert all(p.grad is None and not p.requires_grad for p in targets)
    assert bool(targets) == (method != "simsiam")


@pytest.mark.parametrize("method", ["mocov3", "byol"])
def test_model__update_momentum_moves_target_towards_online(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = model.target_backbone.model.patch_embed.proj.weight.clone()
    online = model.backbone.model.patch_embed.proj.weight
    model.update_momentum(0.75)
    after = model.target_backbone.model.patch_embed.proj.weight
    assert torch.allclose(after, 0.75 * before + 0.25 * online, atol=1e-6)
    model.update_momentum(1.0)
    assert torch.allclose(model.target_backbone.model.patch_embed.proj.weight, after)


def test_byol__loss_is_zero_when_prediction_equals_target_direction(tiny_vit_kwargs):
    model = make("byol", tiny_vit_kwargs)
    model.predictor = torch.nn.Identity()
    model.eval()  # BatchNorm in eval mode: online and target projections of the same input agree
    x1, _ = views()
    out = model(pixel_values_1=x1, pixel_values_2=x1)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-5)


def test_mocov3__loss_equals_hand_assembled_symmetric_info_nce(tiny_vit_kwargs):
    from hf_sslviews.modeling.common.losses import info_nce_loss

    model = make("mocov3", tiny_vit_kwargs).eval()
    x1, x2 = views()
    with torch.no_grad():
        out = model(pixel_values_1=x1, pixel_values_2=x2)
        q1 = model.predictor(model.projector(model.backbone(x1)))
        q2 = model.predictor(model.projector(model.backbone(x2)))
        k1 = model.target_projector(model.target_backbone(x1))
        k2 = model.target_projector(model.target_backbone(x2))
        expected = info_nce_loss(q1, k2, 0.2) + info_nce_loss(q2, k1, 0.2)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("method", sorted(SMALL_HEADS))
def test_model__save_load_round_trip_through_auto_classes(method, tiny_vit_kwargs, tmp_path):
    model = make(method, tiny_vit_kwargs).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == f"sslviews_{method}"
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    x1, x2 = views()
    with torch.no_grad():
        assert torch.equal(model(x1, x2).loss, reloaded(x1, x2).loss)
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "config_cls, bad, match",
    [
        (MoCoV3Config, dict(loss_temperature=0.0), "loss_temperature"),
        (MoCoV3Config, dict(momentum_base=1.2), "momentum"),
        (BYOLConfig, dict(momentum_base=0.9, momentum_final=0.5), "momentum"),
        (SimSiamConfig, dict(projector_num_layers=0), "projector_num_layers"),
        (BYOLConfig, dict(backbone="not_a_model"), "unknown backbone"),
        (BYOLConfig, dict(image_size=0), "image_size"),
    ],
)
def test_config__validation_errors(config_cls, bad, match):
    with pytest.raises(ValueError, match=match):
        config_cls(**bad)


def test_config__json_round_trip(tiny_vit_kwargs, tmp_path):
    config = MoCoV3Config(**tiny_vit_kwargs, loss_temperature=0.3, momentum_base=0.95)
    config.save_pretrained(tmp_path)
    again = MoCoV3Config.from_pretrained(tmp_path)
    assert again.loss_temperature == 0.3 and again.momentum_base == 0.95
    assert again.backbone_kwargs == tiny_vit_kwargs["backbone_kwargs"]


def test_model__gradient_checkpointing_flag_reaches_timm(tiny_vit_kwargs):
    model = make("simsiam", tiny_vit_kwargs)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing and model.backbone.model.grad_checkpointing
    x1, x2 = views()
    model(x1, x2).loss.backward()
    assert model.backbone.model.patch_embed.proj.weight.grad is not None
