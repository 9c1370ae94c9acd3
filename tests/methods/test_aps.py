"""APS model, config, recipe and view visualiser: loss values, gradient paths, token subsets, round trips."""

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForPreTraining

import hf_sslviews.methods.aps as aps_recipe  # registers the Auto classes of APS
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.modeling.aps import APSConfig, APSForPreTraining, select_chunk
from hf_sslviews.views.aps import sparse_patch_chunks

from ..helpers import load_script, random_image_dataset

SMALL_HEADS = dict(projector_hidden_dim=32, projector_dim=16, predictor_hidden_dim=24)
GRID, BATCH, CHUNKS = 4, 6, 4  # tiny ViT: 32 px, patch 8 -> 4x4 grid; 4 chunks of 4 patches


def make(tiny_vit_kwargs, **overrides):
    torch.manual_seed(0)
    return APSForPreTraining(APSConfig(**tiny_vit_kwargs, **SMALL_HEADS, **overrides))


def inputs(batch=BATCH, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        pixel_values_1=torch.randn(batch, 3, 32, 32, generator=g),
        pixel_values_2=torch.randn(batch, 3, 32, 32, generator=g),
        token_indices_1=sparse_patch_chunks(GRID, GRID, 0.25, CHUNKS, generator=g, batch_shape=(batch,)),
        token_indices_2=sparse_patch_chunks(GRID, GRID, 0.25, CHUNKS, generator=g, batch_shape=(batch,)),
    )


def two_sided_ce_by_hand(p1, z1, p2, z2, tau):
    """``CE(nrm(p1) @ nrm(z2).T / tau, arange) + CE(nrm(p2) @ nrm(z1).T / tau, arange)``, written out."""

    def one_side(p, z):
        p = p / p.norm(dim=1, keepdim=True)
        z = z / z.norm(dim=1, keepdim=True)
        logits = p @ z.T / tau
        return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()

    return one_side(p1, z2) + one_side(p2, z1)


def branch_outputs(model, batch, chunk):
    """Projector and predictor outputs of both views for one chunk, built step by step."""
    h1 = model.backbone.forward_tokens(batch["pixel_values_1"], batch["token_indices_1"][:, chunk])
    h2 = model.backbone.forward_tokens(batch["pixel_values_2"], batch["token_indices_2"][:, chunk])
    z1, z2 = model.projector(h1), model.projector(h2)
    return model.predictor(z1), z1, model.predictor(z2), z2


# -- the loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_index", [torch.tensor(3), torch.full((BATCH,), 1)])
def test_aps_loss__equals_hand_computed_two_sided_ce_at_tau_0_1(tiny_vit_kwargs, chunk_index):
    model = make(tiny_vit_kwargs).eval()
    batch = inputs()
    chunk = int(torch.as_tensor(chunk_index).reshape(-1)[0])
    with torch.no_grad():
        out = model(**batch, chunk_index=chunk_index)
        expected = two_sided_ce_by_hand(*branch_outputs(model, batch, chunk), tau=0.1)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(out.contrastive_loss, out.loss)
    assert out.embeddings_1.shape == out.embeddings_2.shape == (BATCH, 48)


def test_aps_loss__analytic_value_without_the_2tau_factor(tiny_vit_kwargs):
    # Identity heads and orthonormal features: the positive logit is 1 / 0.1 = 10, the others 0,
    # so each side is log(1 + (N - 1) e^-10). MoCo v3's 2*tau factor would scale it by 0.2.
    model = make(tiny_vit_kwargs).eval()
    model.projector = torch.nn.Identity()
    model.predictor = torch.nn.Identity()
    features = torch.eye(BATCH, 48, dtype=torch.float64)  # float32 log-softmax near 0 loses digits
    model.backbone.forward_tokens = lambda pixels, tokens: features.clone()
    with torch.no_grad():
        loss = model(**inputs()).loss
    assert loss.item() == pytest.approx(2 * math.log(1 + (BATCH - 1) * math.exp(-10)), rel=1e-5)


def test_aps_loss__temperature_comes_from_the_config(tiny_vit_kwargs):
    batch = inputs()
    model = make(tiny_vit_kwargs, loss_temperature=0.5).eval()
    with torch.no_grad():
        out = model(**batch, chunk_index=1)
        expected = two_sided_ce_by_hand(*branch_outputs(model, batch, 1), tau=0.5)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_aps_forward__return_loss_false_gives_embeddings_only(tiny_vit_kwargs):
    out = make(tiny_vit_kwargs).eval()(**inputs(), return_loss=False)
    assert out.loss is None and out.embeddings_1.shape == (BATCH, 48)


# -- gradient paths ------------------------------------------------------------------------------


def test_aps_gradients__keys_are_stop_gradient_without_momentum_encoder(tiny_vit_kwargs):
    # float64 so that the comparison is exact to rounding; train mode: BatchNorm on batch statistics.
    batch = {k: v.double() if v.is_floating_point() else v for k, v in inputs().items()}
    model = make(tiny_vit_kwargs).double()
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    model_grads = grads(model(**batch, chunk_index=2).loss)
    p1, z1, p2, z2 = branch_outputs(model, batch, 2)
    query_only = grads(two_sided_ce_by_hand(p1, z1.detach(), p2, z2.detach(), tau=0.1))
    p1, z1, p2, z2 = branch_outputs(model, batch, 2)
    through_keys = grads(two_sided_ce_by_hand(p1, z1, p2, z2, tau=0.1))
    for got, want in zip(model_grads, query_only):
        assert got is not None and torch.allclose(got, want, rtol=1e-8, atol=1e-10)
    # The check has teeth: letting the gradient through the keys changes the gradients.
    assert sum(not torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(model_grads, through_keys)) > len(params) // 2
    assert not any(name.startswith("target_") for name, _ in model.named_parameters())
    assert not model.has_momentum_encoder


def test_aps_gradients__online_only_with_momentum_encoder(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, use_momentum_encoder=True)
    assert model.has_momentum_encoder
    model(**inputs(), chunk_index=1).loss.backward()
    online = [p for n, p in model.named_parameters() if n.startswith(("backbone.", "projector.", "predictor."))]
    targets = [p for n, p in model.named_parameters() if n.startswith("target_")]
    assert targets and all(p.grad is None and not p.requires_grad for p in targets)
    assert all(p.grad is not None for p in online)
    assert sum(float(p.grad.abs().sum()) for p in online) > 0


def test_aps_momentum__keys_come_from_the_target_network(tiny_vit_kwargs):
    batch = inputs()
    model = make(tiny_vit_kwargs, use_momentum_encoder=True).eval()
    with torch.no_grad():
        model.target_projector[-2].weight.add_(0.3)  # a real change of the target network ...
        p1, _, p2, _ = branch_outputs(model, batch, 0)
        k1 = model.target_projector(model.target_backbone.forward_tokens(batch["pixel_values_1"], batch["token_indices_1"][:, 0]))
        k2 = model.target_projector(model.target_backbone.forward_tokens(batch["pixel_values_2"], batch["token_indices_2"][:, 0]))
        expected = two_sided_ce_by_hand(p1, k1, p2, k2, tau=0.1)
        online_keys = two_sided_ce_by_hand(*branch_outputs(model, batch, 0), tau=0.1)
        loss = model(**batch).loss
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx(online_keys.item(), rel=1e-3)  # ... that the loss sees


def test_aps_momentum__update_moves_target_and_is_a_no_op_when_off(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs, use_momentum_encoder=True)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = model.target_backbone.model.patch_embed.proj.weight.clone()
    model.update_momentum(0.75)
    expected = 0.75 * before + 0.25 * model.backbone.model.patch_embed.proj.weight
    assert torch.allclose(model.target_backbone.model.patch_embed.proj.weight, expected, atol=1e-6)
    plain = make(tiny_vit_kwargs)
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    plain.update_momentum(0.5)
    assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())


# -- token subsets and chunks --------------------------------------------------------------------


def patch_pixel_mask(cells, grid=GRID, patch=8):
    """``bool [B, 1, H, W]``: True on the pixels of the given row-major cells."""
    mask = torch.zeros(cells.shape[0], grid * grid, dtype=torch.bool)
    mask.scatter_(1, cells, True)
    return mask.view(-1, 1, grid, grid).repeat_interleave(patch, 2).repeat_interleave(patch, 3)


@pytest.mark.parametrize("chunk", [0, 3])
def test_aps_tokens__only_the_chosen_chunk_of_view_1_is_seen(tiny_vit_kwargs, chunk):
    model = make(tiny_vit_kwargs).eval()
    batch = inputs()
    kept = patch_pixel_mask(batch["token_indices_1"][:, chunk])
    noise = 5 * torch.randn_like(batch["pixel_values_1"])
    outside = {**batch, "pixel_values_1": torch.where(kept, batch["pixel_values_1"], noise)}
    inside = {**batch, "pixel_values_1": torch.where(kept, noise, batch["pixel_values_1"])}
    with torch.no_grad():
        reference = model(**batch, chunk_index=chunk, return_loss=False).embeddings_1
        unchanged = model(**outside, chunk_index=chunk, return_loss=False).embeddings_1
        changed = model(**inside, chunk_index=chunk, return_loss=False).embeddings_1
        other_chunk = model(**batch, chunk_index=(chunk + 1) % CHUNKS, return_loss=False).embeddings_1
    assert torch.allclose(unchanged, reference, atol=1e-5)
    assert not torch.allclose(changed, reference, atol=1e-3)
    assert not torch.allclose(other_chunk, reference, atol=1e-3)


def test_aps_tokens__single_chunk_input_equals_chunk_of_k(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs).eval()
    batch = inputs()
    single = {**batch, "token_indices_1": batch["token_indices_1"][:, 2], "token_indices_2": batch["token_indices_2"][:, 2]}
    with torch.no_grad():
        assert torch.equal(model(**single).loss, model(**batch, chunk_index=2).loss)


def test_select_chunk__per_image_indices_and_errors():
    tokens = torch.arange(2 * 3 * 2).view(2, 3, 2)
    assert select_chunk(tokens, torch.tensor([2, 0])).tolist() == [[4, 5], [6, 7]]
    assert select_chunk(tokens, 1).tolist() == [[2, 3], [8, 9]]
    with pytest.raises(ValueError, match=r"chunk_index must lie in 0\.\.2"):
        select_chunk(tokens, 3)
    with pytest.raises(ValueError, match="one per image"):
        select_chunk(tokens, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[B, K, n\] or \[B, n\]"):
        select_chunk(tokens.view(2, 3, 2, 1), 0)


# -- config, save/load, backbone ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(loss_temperature=0.0), "loss_temperature"),
        (dict(projector_dim=0), "projector_dim"),
        (dict(predictor_hidden_dim=-8), "predictor_hidden_dim"),
        (dict(momentum_base=1.5), "momentum"),
        (dict(momentum_base=0.99, momentum_final=0.9), "momentum"),
        (dict(backbone="vit_smal_patch16_224"), "unknown backbone"),
    ],
)
def test_aps_config__validation_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        APSConfig(**bad)


def test_aps_config__paper_defaults_and_json_round_trip(tmp_path):
    config = APSConfig()
    assert (config.projector_hidden_dim, config.projector_dim, config.predictor_hidden_dim) == (512, 128, 512)
    assert config.loss_temperature == 0.1 and config.use_momentum_encoder is False
    APSConfig(loss_temperature=0.2, use_momentum_encoder=True).save_pretrained(tmp_path)
    again = AutoConfig.from_pretrained(tmp_path)
    assert type(again) is APSConfig and again.model_type == "sslviews_aps"
    assert again.loss_temperature == 0.2 and again.use_momentum_encoder is True


def test_aps_model__refuses_a_non_vit_backbone():
    with pytest.raises(ValueError, match="APS needs a Vision Transformer backbone.*'resnet18'"):
        APSForPreTraining(APSConfig(backbone="resnet18", image_size=32))


def test_aps_model__projector_and_predictor_have_the_paper_shape():
    config = APSConfig(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1}, image_size=32)
    model = APSForPreTraining(config)
    linears = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias is None) for m in linears] == [(192, 512, True), (512, 512, True), (512, 128, True)]
    assert isinstance(model.projector[-1], torch.nn.BatchNorm1d) and not model.projector[-1].affine
    pred = [(m.in_features, m.out_features) for m in model.predictor if isinstance(m, torch.nn.Linear)]
    assert pred == [(128, 512), (512, 512), (512, 128)]
    assert isinstance(model.predictor[-1], torch.nn.BatchNorm1d) and not model.predictor[-1].affine


@pytest.mark.parametrize("momentum", [False, True])
def test_aps_model__save_load_round_trip_through_auto_classes(tiny_vit_kwargs, tmp_path, momentum):
    model = make(tiny_vit_kwargs, use_momentum_encoder=momentum).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(reloaded) is APSForPreTraining and reloaded.has_momentum_encoder is momentum
    batch = inputs()
    with torch.no_grad():
        assert torch.equal(model(**batch, chunk_index=3).loss, reloaded(**batch, chunk_index=3).loss)
    assert model.state_dict().keys() == reloaded.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


# -- recipe: views feed the model ------------------------------------------------------------------


def test_aps_recipe__patch_size_from_kwargs_name_or_model():
    assert aps_recipe.backbone_patch_size(APSConfig(backbone="vit_small_patch16_224", backbone_kwargs={"patch_size": 2})) == 2
    assert aps_recipe.backbone_patch_size(APSConfig(backbone="vit_base_patch14_dinov2")) == 14
    assert aps_recipe.backbone_patch_size(APSConfig(backbone="vit_medium_patch16_gap_256")) == 16
    # No "patch<N>" in the name: the model is built on the meta device and asked; a CNN has none.
    with pytest.raises(ValueError, match="resnet18 is not a ViT"):
        aps_recipe.backbone_patch_size(APSConfig(backbone="resnet18"))


def test_aps_recipe__presets_build_their_views_and_tiny_comes_first():
    from hf_sslviews.methods import get_recipe

    recipe = get_recipe("aps")
    assert recipe.default_preset == "aps_tiny"
    expected_grid = {"aps_tiny": 8, "aps_fmnist": 4, "aps_cifar_vit_tiny": 16, "aps_cifar_vit_small": 16, "aps_cifar_vit_base": 16, "aps_imagenet_vit_small": 14, "aps_imagenet_vit_base": 14}
    assert list(recipe.presets) == list(expected_grid)
    for name, preset in recipe.presets.items():
        views = recipe.build_views(APSConfig(**preset.config), image_column="img", **preset.views)
        assert (views.grid, views.num_chunks, views.ratio) == (expected_grid[name], 4, 0.25), name
        assert views.image_column == "img"
    cifar = recipe.presets["aps_cifar_vit_small"].training
    assert cifar["learning_rate"] == pytest.approx(5e-4 * 512 / 256) and cifar["per_device_train_batch_size"] == 512


def test_aps_recipe__collated_views_train_the_model_on_every_chunk(tiny_vit_kwargs):
    model = make(tiny_vit_kwargs)
    views = aps_recipe.build_aps_views(model.config)
    assert (views.grid, views.num_chunks, views.num_patches) == (4, 4, 4)
    dataset = random_image_dataset(5, size=40, bad=1).with_transform(views)
    torch.manual_seed(0)
    batch = ViewCollator()([dataset[i] for i in range(len(dataset))])
    assert batch.pop("num_skipped_images").item() == 1 and len(batch.pop("skipped_image_reasons")) == 1
    assert batch["token_indices_1"].shape == (5, 4, 4) and batch["crop_boxes"].shape == (5, 2, 5)
    with torch.no_grad():
        losses = [model(**batch, chunk_index=k).loss for k in range(4)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert len({round(loss.item(), 6) for loss in losses}) == 4  # a different token subset per chunk


# -- the view visualiser ---------------------------------------------------------------------------


def test_visualize_views__aps_writes_a_png(tmp_path):
    visualizer = load_script("visualize_views")
    assert "aps" in visualizer.RENDERERS
    output = tmp_path / "views.png"
    visualizer.main(["--method", "aps", "--output", str(output), "--num_images", "1", "--size", "32", "--patch_size", "8", "--chunk", "3", "--dpi", "30"])
    data = output.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(SystemExit):
        visualizer.main(["--method", "aps", "--output", str(tmp_path / "bad.png"), "--num_images", "1", "--size", "32", "--patch_size", "8", "--chunk", "4"])


def test_trainer_from_python__aps_views_train_every_chunk_without_any_flag(tiny_vit_kwargs, tmp_path):
    """The README's "From Python" path: SSLTrainer reads K from the views, as the script does."""
    from unittest import mock

    from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
    from hf_sslviews.views.aps import APSViewTransform

    model = make(tiny_vit_kwargs)
    views = APSViewTransform(size=32, patch_size=8, ratio=0.25, num_chunks=4)
    train = random_image_dataset(8).with_transform(views)
    args = SSLTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, save_strategy="no",
                                report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    assert trainer.steps_per_batch == 4 and args.steps_per_batch is None  # the user's arguments are left as given
    chunks = []
    forward = model.forward
    with mock.patch.object(model, "forward", side_effect=lambda **kw: chunks.append(int(kw["chunk_index"])) or forward(**kw)):
        trainer.train()
    assert trainer.state.global_step == 8 and chunks == [0, 1, 2, 3] * 2  # 2 batches x 4 chunks
    with pytest.raises(ValueError, match="more than the 4 patch chunks"):
        SSLTrainer(model=model, args=SSLTrainingArguments(**{**args.to_dict(), "steps_per_batch": 10}), train_dataset=train, data_collator=ViewCollator())
    with pytest.raises(ValueError, match="at least 1"):
        SSLTrainer(model=model, args=SSLTrainingArguments(**{**args.to_dict(), "steps_per_batch": 0}), train_dataset=train, data_collator=ViewCollator())


def test_trainer__chunk_steps_need_the_trainer_resume_hook(tiny_vit_kwargs, tmp_path, monkeypatch):
    # Without Trainer.get_resumed_dataloader a resumed APS run would skip batches, not chunks.
    import transformers

    from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments
    from hf_sslviews.views.aps import APSViewTransform

    monkeypatch.delattr(transformers.Trainer, "get_resumed_dataloader")
    train = random_image_dataset(8).with_transform(APSViewTransform(size=32, patch_size=8, ratio=0.25, num_chunks=4))
    args = SSLTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to="none", use_cpu=True)
    with pytest.raises(RuntimeError, match="get_resumed_dataloader"):
        SSLTrainer(model=make(tiny_vit_kwargs), args=args, train_dataset=train, data_collator=ViewCollator())
