"""CLSA's DDM term attached to MoCo v3 and BYOL (``ddm_weight``), with strong views from the two-view builder."""

import pytest
import torch

import hf_sslviews
from hf_sslviews.modeling.byol import BYOLConfig, BYOLForPreTraining
from hf_sslviews.modeling.common.losses import ddm_loss
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining

MODELS = {
    "mocov3": (MoCoV3Config, MoCoV3ForPreTraining, dict(projector_hidden_dim=32, projector_dim=16)),
    "byol": (BYOLConfig, BYOLForPreTraining, dict(projector_hidden_dim=32, projector_dim=16)),
}


def make(method, tiny_vit_kwargs, **overrides):
    config_cls, model_cls, heads = MODELS[method]
    torch.manual_seed(0)
    return model_cls(config_cls(**tiny_vit_kwargs, **heads, **overrides))


def inputs(batch=4, strong=2):
    g = torch.Generator().manual_seed(3)
    return dict(
        pixel_values_1=torch.randn(batch, 3, 32, 32, generator=g),
        pixel_values_2=torch.randn(batch, 3, 32, 32, generator=g),
        strong_pixel_values=torch.randn(batch, strong, 3, 16, 16, generator=g),
    )


@pytest.mark.parametrize("method", sorted(MODELS))
def test_ddm_attach__off_by_default_and_unchanged(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs).eval()
    batch = inputs()
    with torch.no_grad():
        with_strong = model(**batch)
        without = model(batch["pixel_values_1"], batch["pixel_values_2"])
    assert with_strong.ddm_loss is None
    assert torch.equal(with_strong.loss, without.loss)


@pytest.mark.parametrize("method", sorted(MODELS))
def test_ddm_attach__total_equals_base_plus_weighted_hand_assembled_ddm(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs, ddm_weight=0.5, ddm_temperature=0.3).eval()
    batch = inputs()
    with torch.no_grad():
        out = model(**batch)
        online = lambda x: model.predictor(model.projector(model.backbone(x)))  # noqa: E731
        target = lambda x: model.target_projector(model.target_backbone(x))  # noqa: E731
        weak = [online(batch["pixel_values_1"]), online(batch["pixel_values_2"])]
        bank = torch.nn.functional.normalize(torch.cat([target(batch["pixel_values_1"]), target(batch["pixel_values_2"])]), dim=1)
        strong = [online(batch["strong_pixel_values"][:, i]) for i in range(2)]
        expected = sum(ddm_loss(s, w, bank, 0.3) for s in strong for w in weak)
    base = out.contrastive_loss if method == "mocov3" else out.regression_loss
    assert out.ddm_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(base.item() + 0.5 * expected.item(), rel=1e-5)


@pytest.mark.parametrize("method", sorted(MODELS))
def test_ddm_attach__gradient_reaches_strong_views_not_the_weak_targets(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs, ddm_weight=1.0).eval()
    batch = {k: v.requires_grad_(True) for k, v in inputs().items()}
    model(**batch).ddm_loss.backward()
    assert batch["strong_pixel_values"].grad.abs().sum() > 0
    assert batch["pixel_values_1"].grad is None or batch["pixel_values_1"].grad.abs().sum() == 0
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("target_"))


@pytest.mark.parametrize("method", sorted(MODELS))
def test_ddm_attach__missing_strong_views_is_a_clear_error(method, tiny_vit_kwargs):
    model = make(method, tiny_vit_kwargs, ddm_weight=1.0)
    batch = inputs()
    with pytest.raises(ValueError, match="num_strong_views"):
        model(batch["pixel_values_1"], batch["pixel_values_2"])


@pytest.mark.parametrize("bad, match", [(dict(ddm_weight=-1.0), "ddm_weight"), (dict(ddm_temperature=0.0), "ddm_temperature")])
def test_ddm_attach__config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        MoCoV3Config(**bad)


@pytest.mark.parametrize("preset", ["mocov3_ddm_tiny", "byol_ddm_tiny"])
def test_ddm_attach__presets_make_strong_views_the_model_uses(preset):
    from PIL import Image

    from hf_sslviews.data.collator import ViewCollator

    recipe, spec = hf_sslviews.find_preset(preset)
    config = recipe.config_class(**{**spec.config, "backbone_kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}, "projector_hidden_dim": 32, "projector_dim": 16})
    views = recipe.build_views(config, **spec.views)
    rows = views({"image": [Image.new("RGB", (28, 28), (i * 40, 80, 120)) for i in range(4)]})
    batch = ViewCollator()([{k: rows[k][i] for k in rows} for i in range(4)])
    batch.pop("num_skipped_images")
    assert batch["strong_pixel_values"].shape == (4, 1, 3, 16, 16)
    out = recipe.model_class(config)(**batch)
    assert out.ddm_loss is not None and torch.isfinite(out.loss)


def test_split_views__shapes_of_every_accepted_form():
    from hf_sslviews.modeling.common.view_inputs import split_views

    a, b = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 4, 4)
    stacked = torch.stack([a, a + 2], dim=1)  # [B, n, 3, h, w], as the collator stacks one-size views
    assert split_views(None) == []
    assert [t.shape for t in split_views(a)] == [(2, 3, 8, 8)]
    views = split_views(stacked)
    assert len(views) == 2 and torch.equal(views[1], a + 2)  # split along the view axis, not the batch
    assert [t.shape for t in split_views([stacked, b])] == [(2, 3, 8, 8), (2, 3, 8, 8), (2, 3, 4, 4)]
    with pytest.raises(ValueError, match="strong_pixel_values must be"):
        split_views(torch.zeros(3, 8, 8), "strong_pixel_values")
