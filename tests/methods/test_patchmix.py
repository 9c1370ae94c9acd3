"""PatchMix: the batch mix, the soft targets, the soft-target loss, the model, views and recipe."""

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews.methods.patchmix as patchmix_recipe  # noqa: F401  (registers the Auto classes)
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.modeling.common import distributed
from hf_sslviews.modeling.common.losses.soft_target_cross_entropy import SoftTargetCrossEntropyLoss, soft_target_cross_entropy
from hf_sslviews.modeling.patchmix import PatchMixConfig, PatchMixForPreTraining, patch_mix, patchmix_targets
from hf_sslviews.modeling.patchmix.mixing import patch_groups, sample_patch_permutation

from ..helpers import random_image_dataset

SMALL_HEADS = dict(projector_hidden_dim=32, projector_dim=16)


def coded_images(batch, channels=3, height=32, width=32):
    """Pixel value = 1000 * image index + row-major pixel index: every pixel names its source."""
    pixel = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)
    image = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1) * 1000
    return (image + pixel).expand(batch, channels, height, width).clone()


def patch_rows(x, p):
    """``[B, C, H, W]`` -> ``[B, T, C*p*p]`` (row-major patches), written independently of patch_mix."""
    b, c, h, w = x.shape
    out = []
    for i in range(h // p):
        for j in range(w // p):
            out.append(x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(b, -1))
    return torch.stack(out, dim=1)


# -- patch_mix ---------------------------------------------------------------------------------
@pytest.mark.parametrize("height, width, batch", [(32, 32, 4), (24, 40, 5), (16, 16, 2)])
def test_patch_mix__m2_patches_come_from_g_or_g_plus_1_in_equal_shares_at_unchanged_positions(height, width, batch):
    p = 8
    x = coded_images(batch, height=height, width=width)
    num_patches = (height // p) * (width // p)
    perm = sample_patch_permutation(num_patches, torch.Generator().manual_seed(3))
    mixed, owner = patch_mix(x, p, 2, permutation=perm)
    assert mixed.shape == x.shape
    src, out = patch_rows(x, p), patch_rows(mixed, p)
    half, leftover = num_patches // 2, num_patches % 2
    for g in range(batch):
        from_self = from_next = 0
        for t in range(num_patches):
            source = int(out[g, t, 0].item()) // 1000
            assert torch.equal(out[g, t], src[source, t])  # the block at t is the source's block at t
            assert source == owner[g, t]
            assert source in (g, (g + 1) % batch)
            from_self += source == g
            from_next += source != g
        if batch > 1:
            assert (from_self, from_next) == (half + leftover, half)


def test_patch_mix__explicit_permutation_assigns_groups_and_leftover():
    # 3x3 patches (9), m=2 -> S=4: the first 4 positions of the permutation are group 0, the next
    # 4 group 1, the last one (leftover) group 0 (stays own).
    perm = torch.tensor([8, 0, 4, 2, 1, 3, 5, 7, 6])
    assert patch_groups(perm, 2).tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    x = coded_images(3, height=12, width=12)
    _, owner = patch_mix(x, 4, 2, permutation=perm)
    assert owner.tolist() == [[0, 1, 0, 1, 0, 1, 0, 1, 0], [1, 2, 1, 2, 1, 2, 1, 2, 1], [2, 0, 2, 0, 2, 0, 2, 0, 2]]
    # m=3 on 16 patches: S=5, sizes 5+1 leftover, 5, 5.
    counts = torch.bincount(patch_groups(torch.randperm(16), 3), minlength=3)
    assert counts.tolist() == [6, 5, 5]


def test_patch_mix__m3_sources_are_g_to_g_plus_2():
    x = coded_images(4)
    _, owner = patch_mix(x, 8, 3, generator=torch.Generator().manual_seed(0))
    for g in range(4):
        assert set(owner[g].tolist()) == {g, (g + 1) % 4, (g + 2) % 4}


def test_patch_mix__generator_makes_it_reproducible_and_m1_is_identity():
    x = torch.randn(3, 3, 16, 16)
    a, _ = patch_mix(x, 4, 2, generator=torch.Generator().manual_seed(7))
    b, _ = patch_mix(x, 4, 2, generator=torch.Generator().manual_seed(7))
    c, _ = patch_mix(x, 4, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(patch_mix(x, 4, 1)[0], x)


@pytest.mark.parametrize(
    "shape, num_groups, match",
    [((2, 3, 30, 32), 2, "multiple of the patch size"), ((2, 3, 16, 16), 17, "num_groups"), ((3, 16, 16), 2, r"\[B, C, H, W\]")],
)
def test_patch_mix__rejects_bad_input(shape, num_groups, match):
    with pytest.raises(ValueError, match=match):
        patch_mix(torch.zeros(shape), 4, num_groups)


# -- targets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch, m, world", [(4, 1, 1), (4, 2, 1), (5, 3, 2), (2, 3, 1), (1, 2, 2)])
def test_patchmix_targets__rows_sum_to_one(batch, m, world):
    for rank in range(world):
        for targets in patchmix_targets(batch, m, rank, world, 0.1):
            assert targets.shape == (batch, batch * world)
            assert torch.allclose(targets.sum(dim=1), torch.ones(batch))
            assert (targets >= 0).all()
            # only this process's block of columns holds mix weight beyond smoothing
            outside = torch.cat([targets[:, : rank * batch], targets[:, (rank + 1) * batch:]], dim=1)
            assert (outside <= 0.1 / (batch * world) + 1e-7).all()


@pytest.mark.parametrize("rank, world", [(0, 1), (0, 2), (1, 2)])
def test_patchmix_targets__m2_values_at_the_right_columns_with_rank_offset(rank, world):
    n = 4
    ident, mix, mixmix = patchmix_targets(n, 2, rank, world, smoothing=0.1)
    off, k = rank * n, n * world
    for g in range(n):
        expected_mix = torch.zeros(k)
        expected_mix[off + g] = expected_mix[off + (g + 1) % n] = 0.5
        assert torch.equal(mix[g], expected_mix)
        expected_mm = torch.zeros(k)
        expected_mm[off + (g - 1) % n], expected_mm[off + g], expected_mm[off + (g + 1) % n] = 0.25, 0.5, 0.25
        assert torch.equal(mixmix[g], expected_mm)
        expected_id = torch.full((k,), 0.1 / k)
        expected_id[off + g] = 0.9 + 0.1 / k
        assert torch.allclose(ident[g], expected_id)


def test_patchmix_targets__m3_mix_mix_weights():
    _, mix, mixmix = patchmix_targets(6, 3)
    assert mix[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0, 0])
    # d = -2..2 -> (3 - |d|) / 9: 1/9, 2/9, 3/9, 2/9, 1/9
    assert mixmix[0].tolist() == pytest.approx([3 / 9, 2 / 9, 1 / 9, 0, 1 / 9, 2 / 9])


def test_patchmix_targets__smoothing_matches_torch_label_smoothing():
    logits = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    ident, _, _ = patchmix_targets(4, 2, rank=1, world_size=2, smoothing=0.1)
    labels = torch.arange(4) + 4
    ours = -(ident * F.log_softmax(logits, 1)).sum(1).mean()
    assert ours.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)


# -- soft-target cross-entropy -----------------------------------------------------------------
def _reference_sce(q, keys, targets, tau):
    total = 0.0
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        logits = [float(qi @ (kj / kj.norm())) / tau for kj in keys]
        m = max(logits)
        log_z = m + math.log(sum(math.exp(l - m) for l in logits))
        total += sum(-float(targets[i, j]) * (logits[j] - log_z) for j in range(len(logits)))
    return total / q.shape[0]


def test_soft_target_cross_entropy__hand_computed_fixed_batch():
    # One-hot q and k: logits are I / tau. With tau = 0.5, row i: log(e^2 + 2) - 2 * T_ii.
    eye = torch.eye(3)
    ident, mix, mixmix = patchmix_targets(3, 2, smoothing=0.1)
    log_z = math.log(math.exp(2) + 2)
    assert soft_target_cross_entropy(eye, eye, ident, 0.5).item() == pytest.approx(log_z - 2 * (0.9 + 0.1 / 3), rel=1e-6)
    assert soft_target_cross_entropy(eye, eye, mix, 0.5).item() == pytest.approx(log_z - 1.0, rel=1e-6)
    assert soft_target_cross_entropy(eye, eye, mixmix, 0.5).item() == pytest.approx(log_z - 1.0, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 6])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_soft_target_cross_entropy__matches_reference(batch, tau):
    g = torch.Generator().manual_seed(batch)
    q, k = torch.randn(batch, 5, generator=g), torch.randn(batch, 5, generator=g)
    targets = torch.rand(batch, batch, generator=g)
    targets = targets / targets.sum(1, keepdim=True)
    assert SoftTargetCrossEntropyLoss(tau)(q, k, targets).item() == pytest.approx(_reference_sce(q, k, targets, tau), rel=1e-5)


def test_soft_target_cross_entropy__one_hot_targets_equal_cross_entropy():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.2
    expected = F.cross_entropy(logits, torch.arange(4))
    assert soft_target_cross_entropy(q, k, torch.eye(4), 0.2).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_target_cross_entropy__rank_offset_with_simulated_two_process_gather():
    # Process 1 of 2: its keys are rows 3..5 of the gathered batch, its targets point there.
    g = torch.Generator().manual_seed(0)
    q, k_local, k_other = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    gathered = torch.cat([F.normalize(k_other, dim=1), F.normalize(k_local, dim=1)])
    targets = patchmix_targets(3, 2, rank=1, world_size=2).mix_mix
    with mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "gather", return_value=gathered):
        loss = soft_target_cross_entropy(q, k_local, targets, 0.2)
    assert loss.item() == pytest.approx(_reference_sce(q, gathered, targets, 0.2), rel=1e-5)
    # The mix pairs images within a process, so the local block wraps on itself (row 0 of rank 1
    # points at column 5, not 2): not rows 3..5 of one process's targets over 6 images.
    full_targets = patchmix_targets(6, 2).mix_mix
    assert not torch.allclose(full_targets[3:], targets)


def test_soft_target_cross_entropy__keys_get_no_gradient_and_shape_is_checked():
    q = torch.randn(3, 4, requires_grad=True)
    k = torch.randn(3, 4, requires_grad=True)
    soft_target_cross_entropy(q, k, torch.eye(3), 0.2).backward()
    assert q.grad is not None and k.grad is None
    with pytest.raises(ValueError, match="targets must be"):
        soft_target_cross_entropy(q, k, torch.eye(4), 0.2)
    with pytest.raises(ValueError, match="temperature"):
        SoftTargetCrossEntropyLoss(0.0)


# -- model -------------------------------------------------------------------------------------
def make(tiny_vit_kwargs, **overrides):
    torch.manual_seed(0)
    return PatchMixForPreTraining(PatchMixConfig(**tiny_vit_kwargs, **{**SMALL_HEADS, **overrides}))


def views(batch=4, size=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)


class ChannelMean(nn.Module):
    """Stand-in backbone: the mean of each channel, so features of mixed images are hand-computable."""

    patch_size = 8

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_model__loss_on_fixed_tiny_batch_equals_hand_computed_value(tiny_vit_kwargs):
    # Image g is constant e_g (one-hot channel). With mean-pooling features and identity heads:
    # q(x) = k(x) = e_g, q(mix(x)) = k(mix(x)) = (e_g + e_{g+1}) / 2 exactly (8 + 8 of 16 patches).
    model = make(tiny_vit_kwargs, use_momentum_encoder=False, loss_temperature=0.2)
    model.backbone = ChannelMean()
    model.projector, model.predictor = nn.Identity(), nn.Identity()
    x = torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 32, 32).clone()
    out = model(x, x.clone())
    s = 1 / 0.2
    id_loss = math.log(math.exp(s) + 2) - s * (0.9 + 0.1 / 3)
    mix_origin = math.log(2 * math.exp(s / math.sqrt(2)) + 1) - s / math.sqrt(2)  # cos = 1/sqrt2, 1/sqrt2, 0
    mix_mix = math.log(math.exp(s) + 2 * math.exp(s / 2)) - (0.5 * s + 0.5 * s / 2)  # cos = 1, 1/2, 1/2
    assert out.id_loss.item() == pytest.approx(id_loss, rel=1e-5)
    assert out.mix_origin_loss.item() == pytest.approx(mix_origin, rel=1e-5)
    assert out.mix_mix_loss.item() == pytest.approx(mix_mix, rel=1e-5)
    assert out.loss.item() == pytest.approx(id_loss + 0.5 * mix_origin + 0.5 * mix_mix, rel=1e-5)
    assert out.local_loss is None
    # Two 16 px local crops of the same images, official weights: each adds the identity term
    # and 1.0 x mix->origin against both global keys (2x), no mix->mix, averaged over the crops.
    local = x[:, :, :16, :16].unsqueeze(1).expand(3, 2, 3, 16, 16).clone()
    out = model(x, x.clone(), local_pixel_values=local)
    assert out.local_loss.item() == pytest.approx(2 * (id_loss + 1.0 * mix_origin), rel=1e-5)
    assert out.loss.item() == pytest.approx(id_loss + 0.5 * mix_origin + 0.5 * mix_mix + 2 * (id_loss + mix_origin), rel=1e-5)
    # The earlier form (the global weights applied to local crops) stays available.
    model.config.local_mix_origin_weight, model.config.local_mix_mix_weight = 0.5, 0.5
    out = model(x, x.clone(), local_pixel_values=local)
    assert out.local_loss.item() == pytest.approx(2 * (id_loss + 0.5 * mix_origin + 0.5 * mix_mix), rel=1e-5)


def test_model__loss_equals_terms_assembled_from_its_parts(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs).eval()
    x1, x2 = views()
    perms = [torch.randperm(16, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    with mock.patch.object(model, "sample_permutation", side_effect=list(perms)), torch.no_grad():
        out = model(x1, x2)
        m1, _ = patch_mix(x1, 8, 2, perms[0])
        m2, _ = patch_mix(x2, 8, 2, perms[1])
        q = lambda x: model.predictor(model.projector(model.backbone(x)))  # noqa: E731
        k = lambda x: model.target_projector(model.target_backbone(x))  # noqa: E731
        t = patchmix_targets(4, 2)
        id_loss = _reference_sce(q(x1), k(x2), t.identity, 0.2)
        mix_origin = _reference_sce(q(m2), k(x1), t.mix_origin, 0.2)
        mix_mix = _reference_sce(q(m2), k(m1), t.mix_mix, 0.2)
    assert out.id_loss.item() == pytest.approx(id_loss, rel=1e-4)
    assert out.mix_origin_loss.item() == pytest.approx(mix_origin, rel=1e-4)
    assert out.mix_mix_loss.item() == pytest.approx(mix_mix, rel=1e-4)
    assert out.loss.item() == pytest.approx(id_loss + 0.5 * mix_origin + 0.5 * mix_mix, rel=1e-4)


def test_model__without_mix_weights_is_instance_discrimination_and_encodes_no_mixed_image(tiny_vit_kwargs):
    mixed = make(tiny_vit_kwargs).eval()
    plain = make(tiny_vit_kwargs, mix_origin_weight=0.0, mix_mix_weight=0.0).eval()
    plain.load_state_dict(mixed.state_dict())
    x1, x2 = views()
    with mock.patch.object(plain, "_mix", side_effect=AssertionError("no mixed image may be made")), torch.no_grad():
        out = plain(x1, x2)
        q = lambda x: plain.predictor(plain.projector(plain.backbone(x)))  # noqa: E731
        k = lambda x: plain.target_projector(plain.target_backbone(x))  # noqa: E731
        id_loss = _reference_sce(q(x1), k(x2), patchmix_targets(4, 2).identity, 0.2)
    assert out.mix_origin_loss is None and out.mix_mix_loss is None
    assert out.loss.item() == pytest.approx(id_loss, rel=1e-4) and out.id_loss.item() == pytest.approx(id_loss, rel=1e-4)
    with torch.no_grad():
        assert mixed(x1, x2).id_loss.item() == pytest.approx(id_loss, rel=1e-4)  # the same identity term with mixing on
    # Local crops keep their identity terms against both global keys.
    crops = torch.randn(4, 2, 3, 16, 16)
    with torch.no_grad():
        with_locals = plain(x1, x2, local_pixel_values=crops)
        local = sum(_reference_sce(q(crops[:, i]), k(x), patchmix_targets(4, 2).identity, 0.2) for i in range(2) for x in (x1, x2)) / 2
    assert with_locals.local_loss.item() == pytest.approx(local, rel=1e-4)


def test_model__simulated_second_process_uses_offset_targets(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, use_momentum_encoder=False).eval()
    model.backbone, model.projector, model.predictor = ChannelMean(), nn.Identity(), nn.Identity()
    x = torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 32, 32).clone()
    with torch.no_grad():
        single = model(x, x.clone())

    def gather_with_zero_other(t):  # process 0's keys are zero vectors: logit 0 each
        return torch.cat([torch.zeros_like(t), t])

    with mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "world_size", return_value=2), mock.patch.object(distributed, "gather", side_effect=gather_with_zero_other), torch.no_grad():
        double = model(x, x.clone())
    # Extra 3 columns of logit 0 add exp(0) = 1 each to the partition function; the targets sit
    # on the local block (columns 3..5), so nothing else changes except the identity smoothing.
    s = 5.0
    mix_origin = math.log(2 * math.exp(s / math.sqrt(2)) + 4) - s / math.sqrt(2)
    assert double.mix_origin_loss.item() == pytest.approx(mix_origin, rel=1e-5)
    assert double.mix_origin_loss.item() > single.mix_origin_loss.item()
    id_loss = math.log(math.exp(s) + 5) - s * (0.9 + 0.1 / 6)
    assert double.id_loss.item() == pytest.approx(id_loss, rel=1e-5)


def test_model__outputs_gradients_online_only_and_local_crops(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    x1, x2 = views()
    local = torch.randn(4, 2, 3, 16, 16)  # 16 px crops: 2x2 patches, position embedding interpolated
    out = model(x1, x2, local_pixel_values=local)
    for name in ("loss", "id_loss", "mix_origin_loss", "mix_mix_loss", "local_loss"):
        assert out[name].ndim == 0 and torch.isfinite(out[name]), name
    assert out.embeddings_1.shape == out.embeddings_2.shape == (4, 48)
    assert not out.embeddings_2.requires_grad
    out.loss.backward()
    online = [p for n, p in model.named_parameters() if n.startswith(("backbone.", "projector.", "predictor.")) and p.requires_grad]
    assert online and all(p.grad is not None for p in online)
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert targets and all(p.grad is None and not p.requires_grad for p in targets)


def test_model__without_loss_returns_embeddings_only(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    out = model(*views(), return_loss=False)
    assert out.loss is None and out.id_loss is None and out.embeddings_1.shape == (4, 48)


def test_model__drop_path_on_online_encoder_only(tiny_vit_kwargs):
    tiny_vit_kwargs["backbone_kwargs"]["drop_path_rate"] = 0.1
    model = make(tiny_vit_kwargs)
    assert type(model.backbone.model.blocks[-1].drop_path1).__name__ == "DropPath"
    assert isinstance(model.target_backbone.model.blocks[-1].drop_path1, nn.Identity)


def test_model__momentum_switch(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, use_momentum_encoder=False)
    assert not model.has_momentum_encoder and not hasattr(model, "target_backbone")
    model.update_momentum(0.5)  # a no-op, not an error
    model(*views()).loss.backward()  # keys from the online encoder under stop-gradient
    model = make(tiny_vit_kwargs)
    assert model.has_momentum_encoder
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = model.target_backbone.model.patch_embed.proj.weight.clone()
    model.update_momentum(0.75)
    expected = 0.75 * before + 0.25 * model.backbone.model.patch_embed.proj.weight
    assert torch.allclose(model.target_backbone.model.patch_embed.proj.weight, expected, atol=1e-6)


def test_model__num_groups_list_is_sampled_per_call(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, num_groups=[2, 3])
    torch.manual_seed(0)
    draws = {model.sample_num_groups() for _ in range(40)}
    assert draws == {2, 3}
    with mock.patch.object(model, "sample_num_groups", return_value=3), mock.patch("hf_sslviews.modeling.patchmix.modeling_patchmix.patchmix_targets", wraps=patchmix_targets) as targets:
        model(*views())
    assert targets.call_args.args[1] == 3


def test_model__cls_token_is_the_exported_feature(tiny_vit_kwargs, tmp_path):
    from transformers import AutoModel

    from hf_sslviews.publish.export import export_backbone

    model = make(tiny_vit_kwargs).eval()
    x1, x2 = views()
    with torch.no_grad():
        out = model(x1, x2)
        cls = model.backbone.model.forward_features(x1)[:, 0]  # normed token 0 = CLS
    assert model.backbone.model.global_pool == "token"
    assert torch.allclose(out.embeddings_1, cls, atol=1e-6)
    export_backbone(model, tmp_path / "export")
    exported = AutoModel.from_pretrained(tmp_path / "export").eval()
    with torch.no_grad():
        pooled = exported(x1).pooler_output
    assert torch.allclose(pooled, cls, atol=1e-5)


def test_model__rejects_a_cnn_backbone():
    with pytest.raises(ValueError, match="needs a ViT"):
        PatchMixForPreTraining(PatchMixConfig(backbone="resnet18", backbone_kwargs={}, image_size=32, **SMALL_HEADS))


def test_model__save_load_round_trip_through_auto_classes(tiny_vit_kwargs, tmp_path):
    model = make(tiny_vit_kwargs, num_groups=[2, 3]).eval()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "sslviews_patchmix"
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is PatchMixForPreTraining and reloaded.config.num_groups == [2, 3]
    x1, x2 = views()
    with torch.no_grad():
        torch.manual_seed(5)
        a = model(x1, x2).loss
        torch.manual_seed(5)
        b = reloaded(x1, x2).loss
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(loss_temperature=0.0), "loss_temperature"),
        (dict(num_groups=0), "num_groups"),
        (dict(num_groups=[]), "num_groups"),
        (dict(num_groups=[2, 1.5]), "num_groups"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(momentum_base=1.2), "momentum"),
        (dict(mix_mix_weight=-1.0), "mix_mix_weight"),
        (dict(predictor_num_layers=0), "predictor_num_layers"),
    ],
)
def test_config__validation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        PatchMixConfig(**bad)


def test_config__paper_defaults_and_json_round_trip(tmp_path):
    config = PatchMixConfig()
    assert (config.loss_temperature, config.num_groups, config.label_smoothing, config.momentum_base) == (0.2, 2, 0.1, 0.996)
    assert (config.projector_hidden_dim, config.projector_dim, config.backbone_kwargs) == (4096, 256, {"drop_path_rate": 0.1})
    PatchMixConfig(num_groups=[2, 3], use_momentum_encoder=False).save_pretrained(tmp_path)
    again = PatchMixConfig.from_pretrained(tmp_path)
    assert again.num_groups == [2, 3] and again.num_groups_choices == [2, 3] and again.use_momentum_encoder is False


# -- views, recipe, trainer --------------------------------------------------------------------
def test_views__two_views_and_local_crops_collate_into_model_inputs(tiny_vit_kwargs):
    config = PatchMixConfig(**tiny_vit_kwargs, **SMALL_HEADS)
    transform = patchmix_recipe.build_patchmix_views(config, scale=(0.3, 1.0), num_local_crops=3, local_size=16)
    rows = random_image_dataset(2, size=40).with_transform(transform)
    batch = ViewCollator()([rows[0], rows[1]])
    assert batch["pixel_values_1"].shape == batch["pixel_values_2"].shape == (2, 3, 32, 32)
    assert batch["local_pixel_values"].shape == (2, 3, 3, 16, 16) and batch["local_pixel_values"].dtype == torch.float32
    view2, local = transform.views["pixel_values_2"], transform.views["local_pixel_values"][0]
    assert (view2.blur_p, view2.solarize_p, local.blur_p, local.scale) == (0.1, 0.2, 0.5, (0.05, 0.35))
    assert "local_pixel_values" not in patchmix_recipe.build_patchmix_views(config).output_keys


def test_recipe__presets_carry_the_paper_numbers():
    recipe = patchmix_recipe.RECIPE
    assert recipe.default_preset == "patchmix_tiny"
    tiny = recipe.presets["patchmix_tiny"]
    assert tiny.config["backbone_kwargs"]["depth"] == 4 and tiny.config["use_momentum_encoder"] is False
    s_cifar = recipe.presets["patchmix_cifar_vit_small"].training
    assert s_cifar["learning_rate"] == pytest.approx(1e-3) and (s_cifar["weight_decay"], s_cifar["weight_decay_end"]) == (0.04, 0.4)
    assert s_cifar["lr_scheduler_kwargs"] == {"min_lr": 1e-6} and s_cifar["warmup_steps"] == pytest.approx(0.125)
    t_cifar = recipe.presets["patchmix_cifar_vit_tiny"]
    assert t_cifar.training["learning_rate"] == pytest.approx(4e-3) and t_cifar.training["weight_decay_end"] == 0.2
    assert t_cifar.config["backbone_kwargs"]["patch_size"] == 2 and t_cifar.config["use_momentum_encoder"] is False
    imagenet = recipe.presets["patchmix_imagenet_vit_small"]
    assert imagenet.views["num_local_crops"] == 8 and imagenet.views["local_size"] == 96 and imagenet.views["scale"] == (0.35, 1.0)
    assert imagenet.training["learning_rate"] == pytest.approx(2e-3)


def test_trainer__patchmix_steps_log_each_term_and_update_momentum(tiny_vit_kwargs, tmp_path):
    from hf_sslviews.training.callbacks import MomentumCallback
    from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

    model = make(tiny_vit_kwargs)
    transform = patchmix_recipe.build_patchmix_views(model.config, scale=(0.3, 1.0), num_local_crops=1, local_size=16)
    train = random_image_dataset(16).with_transform(transform)
    args = SSLTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1,
        learning_rate=1e-3, weight_decay=0.04, weight_decay_end=0.4, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MomentumCallback))
    assert callback.num_updates == 1  # once per optimizer step (2 micro-batches)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(all(k in entry for k in ("id_loss", "mix_origin_loss", "mix_mix_loss", "local_loss")) for entry in logged)
